"""The figure of a generated benchmark: samples per category, ground truth outlined."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..data.folder import SODFolder
from ..errors import DataError


def sample_grid(root: str | Path, per_category: int = 4, split: str = "train", outline: bool = True) -> Figure:
    """A matplotlib figure: one row per category, ``per_category`` images each, the ground
    truth outlined in the image (or shown beside it when ``outline`` is false)."""
    ds = SODFolder(root, split=split)
    names = ds.category_names
    cols = per_category * (1 if outline else 2)
    fig, axes = plt.subplots(len(names), cols, figsize=(1.3 * cols + 1.2, 1.3 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        idx = [i for i, c in enumerate(ds.categories) if c == name][:per_category]
        for k in range(per_category):
            cells = axes[r, k:k + 1] if outline else axes[r, 2 * k:2 * k + 2]
            for ax in cells:
                ax.set_xticks([])
                ax.set_yticks([])
                for s in ax.spines.values():
                    s.set_visible(False)
            if k >= len(idx):
                continue
            image, mask = ds.read(idx[k])
            cells[0].imshow(image)
            if outline:
                cells[0].contour(mask.astype(float), levels=[0.5], colors=["#ffe600"], linewidths=0.8)
            else:
                cells[1].imshow(mask, cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"Synthetic benchmark: {split} samples per category (ground truth outlined)" if outline
                 else f"Synthetic benchmark: {split} samples per category (image, ground truth)", fontsize=10)
    fig.tight_layout()
    return fig


def task_primer(root: str | Path, n: int = 4, split: str = "test") -> Figure:
    """The two tasks on the same images: one test image from each of ``n`` categories, with
    what a classifier must answer (one category name per image) above what a saliency model
    must answer (a map: for every pixel, is it part of the salient object?)."""
    ds = SODFolder(root, split=split)
    names = ds.category_names
    if not names:
        raise DataError(f"{root}/{split}: no categories.csv, so there is no classification task to show")
    picks = []
    for name in names:
        idx = [i for i, c in enumerate(ds.categories) if c == name]
        if idx:
            picks.append((name, idx[0]))
        if len(picks) == n:
            break
    fig, axes = plt.subplots(2, len(picks), figsize=(2.3 * len(picks) + 1.6, 5.0), squeeze=False, layout="constrained")
    for k, (name, i) in enumerate(picks):
        image, mask = ds.read(i)
        axes[0, k].imshow(image)
        axes[0, k].set_title(f'"{name}"', fontsize=10)
        im = axes[1, k].imshow(mask, cmap="gray", vmin=0, vmax=1)
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("classification:\none label per image", fontsize=9)
    axes[1, 0].set_ylabel("saliency (SOD):\none value per pixel", fontsize=9)
    fig.colorbar(im, ax=axes[1, :].ravel().tolist(), shrink=0.8, label="salient (1) or not (0)")
    fig.suptitle("The same images, two tasks: name the object, or outline it", fontsize=10)
    return fig
