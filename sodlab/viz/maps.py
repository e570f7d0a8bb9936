"""Image grids: photos next to their saliency maps, masks and activation maps."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np


def _as_unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    return m.astype(np.float32) / 255.0 if m.dtype == np.uint8 else m.astype(np.float32)


def saliency_grid(
    images: Sequence[np.ndarray],
    maps: Mapping[str, Sequence[np.ndarray]],
    row_labels: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
    panel: float = 2.2,
    cmap: str = "gray",
):
    """One row per image: the photo, then one column per entry of ``maps`` (name -> one map
    per image: a saliency map, a ground-truth mask, a Grad-CAM ...). uint8 maps are read as
    0..255, float maps as 0..1; a shared colour bar gives the scale."""
    n = len(images)
    cols = ["image", *maps]
    fig, axes = plt.subplots(n, len(cols), figsize=(panel * len(cols) + 0.8, panel * n), squeeze=False,
                             layout="constrained")
    mappable = None
    for i, img in enumerate(images):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            if col == "image":
                ax.imshow(img)
            else:
                mappable = ax.imshow(_as_unit(maps[col][i]), cmap=cmap, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col, fontsize="medium")
            if j == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[i]), fontsize="small")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[:, 1:].ravel().tolist(), shrink=0.6, label="saliency / mask (0-1)")
    if title:
        fig.suptitle(title)
    return fig


def activation_grid(
    maps: Sequence[np.ndarray],
    labels: Sequence[str],
    ncols: int = 8,
    title: Optional[str] = None,
    cbar_label: str = "activation (a.u.)",
    panel: float = 1.4,
    cmap: str = "magma",
):
    """Small multiples of 2-D maps (e.g. one channel each) on a shared colour scale."""
    n = len(maps)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    arr = [np.asarray(m, dtype=np.float32) for m in maps]
    vmin = float(min(m.min() for m in arr)) if arr else 0.0
    vmax = float(max(m.max() for m in arr)) if arr else 1.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols + 0.8, panel * nrows), squeeze=False,
                             layout="constrained")
    mappable = None
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, m, lab in zip(axes.flat, arr, labels):
        mappable = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(str(lab), fontsize="x-small")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.6, label=cbar_label)
    if title:
        fig.suptitle(title)
    return fig
