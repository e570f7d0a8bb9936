"""The figure of a generated benchmark: samples per category, ground truth outlined."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..data.folder import SODFolder


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
