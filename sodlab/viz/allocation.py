"""The channel allocation of a CSNet configuration as stacked bars (`sodlab.prune.allocation_table`)."""
from __future__ import annotations

from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from ..models.csnet import CSNetConfig
from ..prune.allocation import allocation_table


def plot_allocation(config: CSNetConfig | nn.Module, reference: Optional[CSNetConfig | nn.Module] = None, title: Optional[str] = None,
                    ax: Optional[Axes] = None) -> Figure:
    """Stacked bars of channels per block (scale 0 below, scale 1 on top), with the CSF head
    (fused channels per scale, then each dilation group) at the right; ``reference`` is
    drawn as an outline. Returns the figure."""
    df = allocation_table(config, reference)
    blocks = df[df["kind"] == "block"]
    head = df[df["kind"] != "block"]
    labels, lows, highs, refs = [], [], [], []
    for name, g in blocks.groupby("index", sort=True):
        labels.append(g["block"].iloc[0])
        lows.append(int(g[g["scale"] == 0]["channels"].sum()))
        highs.append(int(g[g["scale"] > 0]["channels"].sum()))
        refs.append(int(g["reference_channels"].sum()) if reference is not None else None)
    for s in sorted(head[head["kind"] == "csf_fuse"]["scale"].unique()):
        g = head[(head["kind"] == "csf_fuse") & (head["scale"] == s)]
        labels.append(f"fuse s{s}")
        lows.append(int(g["channels"].sum()))
        highs.append(0)
        refs.append(int(g["reference_channels"].sum()) if reference is not None else None)
    for d in sorted(head[head["kind"] == "dilation"]["dilation"].unique()):
        g = head[(head["kind"] == "dilation") & (head["dilation"] == d)]
        labels.append(f"dil {d}")
        lows.append(int(g[g["scale"] == 0]["channels"].sum()))
        highs.append(int(g[g["scale"] > 0]["channels"].sum()))
        refs.append(int(g["reference_channels"].sum()) if reference is not None else None)
    with sns.axes_style("whitegrid"):
        if ax is None:
            fig, ax = plt.subplots(figsize=(max(7.0, 0.32 * len(labels) + 2), 3.8), layout="constrained")
        else:
            fig = ax.figure
        x = np.arange(len(labels))
        pal = sns.color_palette(n_colors=2)
        ax.bar(x, lows, color=pal[0], label="scale 0 (full resolution)")
        ax.bar(x, highs, bottom=lows, color=pal[1], label="coarser scales (1/2; CSF dilations: 1/2 and 1/4)")
        if reference is not None:
            ax.bar(x, refs, fill=False, edgecolor="0.3", lw=0.8, label="reference (unpruned)")
        ax.axvline(len(blocks["index"].unique()) - 0.5, color="0.5", lw=0.8, ls="--")
        ax.set_xticks(x, labels, rotation=70, ha="right", fontsize=7)
        ax.set_xlabel("ILBlock (stem, stage.block) | CSF head")
        ax.set_ylabel("output channels (count)")
        ax.legend(fontsize="small")
        if title:
            ax.set_title(title)
    return fig

