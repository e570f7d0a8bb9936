"""Curves, bars, heatmaps and histograms from tidy DataFrames (one row per measurement).

Each function takes the column names to plot and the axis labels (with units) to print;
it draws into ``ax`` when given, else into a new figure, and returns the figure.
"""
from __future__ import annotations

from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

STYLE = "whitegrid"


def _axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _label(ax, xlabel: str, ylabel: str, title: Optional[str]) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)


def metric_curves(
    df: pd.DataFrame,
    x: str,
    y: str,
    xlabel: str,
    ylabel: str,
    hue: Optional[str] = None,
    band: Optional[tuple[str, str]] = None,
    title: Optional[str] = None,
    logx: bool = False,
    ax=None,
    figsize=(5.5, 3.8),
):
    """Lines with markers of ``y`` against ``x``, one per ``hue`` value; ``band`` names two
    columns (low, high) drawn as a shaded interval."""
    with sns.axes_style(STYLE):
        fig, ax = _axes(ax, figsize)
        groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=False))
        palette = sns.color_palette(n_colors=max(len(groups), 1))
        for color, (key, g) in zip(palette, groups):
            g = g.sort_values(x)
            ax.plot(g[x], g[y], marker="o", ms=4, color=color, label=None if key is None else str(key))
            if band is not None:
                ax.fill_between(g[x], g[band[0]], g[band[1]], color=color, alpha=0.2, lw=0)
        if logx:
            ax.set_xscale("log")
        if hue is not None:
            ax.legend(title=hue, fontsize="small")
        _label(ax, xlabel, ylabel, title)
    return fig


def bar_plot(
    df: pd.DataFrame,
    x: str,
    y: str,
    xlabel: str,
    ylabel: str,
    hue: Optional[str] = None,
    err: Optional[tuple[str, str]] = None,
    title: Optional[str] = None,
    ax=None,
    figsize=(5.5, 3.8),
    rotate: int = 0,
):
    """Bars of ``y`` per ``x`` (grouped by ``hue``); ``err`` names (low, high) columns drawn as
    error bars, e.g. a bootstrap confidence interval."""
    with sns.axes_style(STYLE):
        fig, ax = _axes(ax, figsize)
        xs = list(dict.fromkeys(df[x]))
        hues = [None] if hue is None else list(dict.fromkeys(df[hue]))
        width = 0.8 / len(hues)
        palette = sns.color_palette(n_colors=len(hues))
        for j, (h, color) in enumerate(zip(hues, palette)):
            g = df if h is None else df[df[hue] == h]
            g = g.set_index(x).reindex(xs)
            pos = np.arange(len(xs)) + (j - (len(hues) - 1) / 2) * width
            yerr = None
            if err is not None:
                yerr = np.vstack([g[y] - g[err[0]], g[err[1]] - g[y]]).clip(min=0)
            ax.bar(pos, g[y], width=width * 0.95, color=color, yerr=yerr, capsize=3,
                   label=None if h is None else str(h))
        ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs], rotation=rotate, ha="right" if rotate else "center")
        if hue is not None:
            ax.legend(title=hue, fontsize="small")
        _label(ax, xlabel, ylabel, title)
    return fig


def heatmap(
    data: pd.DataFrame | np.ndarray,
    xlabel: str,
    ylabel: str,
    cbar_label: str,
    title: Optional[str] = None,
    annot: bool = True,
    fmt: str = ".2f",
    cmap: str = "viridis",
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    center: Optional[float] = None,
    ax=None,
    figsize=(5.5, 4.5),
    rotate: int = 0,
):
    """A matrix as a heatmap; row/column labels come from the DataFrame's index/columns
    (``rotate``: degrees to turn the column labels, for long ones)."""
    data = pd.DataFrame(data)
    with sns.axes_style("white"):
        fig, ax = _axes(ax, figsize)
        big = data.size > 144
        sns.heatmap(data, ax=ax, annot=annot and not big, fmt=fmt, cmap=cmap, vmin=vmin, vmax=vmax, center=center,
                    cbar_kws={"label": cbar_label}, annot_kws={"fontsize": 7})
        if rotate:
            ax.tick_params(axis="x", labelrotation=rotate)
            for t in ax.get_xticklabels():
                t.set_horizontalalignment("right")
        _label(ax, xlabel, ylabel, title)
    return fig


def histograms(
    df: pd.DataFrame,
    value: str,
    xlabel: str,
    facet: Optional[str] = None,
    hue: Optional[str] = None,
    bins: int = 40,
    log_y: bool = False,
    title: Optional[str] = None,
    col_wrap: int = 3,
    panel: float = 3.0,
):
    """Histograms of ``value`` (counts), one panel per ``facet`` value, overlaid by ``hue``."""
    facets = [None] if facet is None else list(dict.fromkeys(df[facet]))
    ncols = min(col_wrap, len(facets))
    nrows = int(np.ceil(len(facets) / ncols))
    edges = np.histogram_bin_edges(df[value].to_numpy(dtype=float), bins=bins)
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(panel * 1.3 * ncols, panel * nrows), squeeze=False,
                                 sharex=True, layout="constrained")
        for ax, f in zip(axes.flat, facets):
            g = df if f is None else df[df[facet] == f]
            sns.histplot(g, x=value, hue=hue, bins=edges, element="step", fill=False, ax=ax, legend=ax is axes.flat[0],
                         palette="viridis" if hue is not None and pd.api.types.is_numeric_dtype(df[hue]) else None)
            if log_y:
                ax.set_yscale("log")
            _label(ax, xlabel, "channels (count)", None if f is None else f"{facet} = {f}")
        for ax in list(axes.flat)[len(facets):]:
            ax.set_visible(False)
        if title:
            fig.suptitle(title)
    return fig


def scatter_plot(
    df: pd.DataFrame,
    x: str,
    y: str,
    xlabel: str,
    ylabel: str,
    hue: Optional[str] = None,
    title: Optional[str] = None,
    identity: bool = False,
    ax=None,
    figsize=(4.5, 4.0),
):
    """Points of ``y`` against ``x``; ``identity`` draws the y = x line."""
    with sns.axes_style(STYLE):
        fig, ax = _axes(ax, figsize)
        sns.scatterplot(df, x=x, y=y, hue=hue, ax=ax, s=18, edgecolor="none")
        if identity:
            lo = float(np.nanmin([df[x].min(), df[y].min()]))
            hi = float(np.nanmax([df[x].max(), df[y].max()]))
            ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, ls="--", label="y = x")
        _label(ax, xlabel, ylabel, title)
    return fig
