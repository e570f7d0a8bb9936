"""Figures for the study notebooks: saliency grids, metric curves, bars, heatmaps, the
channel explorer and the notebooks' live panels (`sodlab.viz.widgets`, `sodlab.viz.panels`). Every figure labels its axes with units; `savefig` writes PNGs atomically.

Imported lazily so that `sodlab.studies` (and the CLI) do not load matplotlib.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "savefig": "sodlab.viz.io",
    "save_table": "sodlab.viz.io",
    "saliency_grid": "sodlab.viz.maps",
    "activation_grid": "sodlab.viz.maps",
    "metric_curves": "sodlab.viz.plots",
    "bar_plot": "sodlab.viz.plots",
    "heatmap": "sodlab.viz.plots",
    "histograms": "sodlab.viz.plots",
    "scatter_plot": "sodlab.viz.plots",
    "channel_explorer": "sodlab.viz.explorer",
    "channel_figure": "sodlab.viz.explorer",
    "explorer_panel": "sodlab.viz.explorer",
    "sample_grid": "sodlab.viz.samples",
    "task_primer": "sodlab.viz.samples",
    "LivePanel": "sodlab.viz.widgets",
    "SaliencyThresholds": "sodlab.viz.panels",
    "allocation_panel": "sodlab.viz.panels",
    "pruning_panel": "sodlab.viz.panels",
    "category_panel": "sodlab.viz.panels",
    "learning_panel": "sodlab.viz.panels",
    "redundancy_panel": "sodlab.viz.panels",
    "plot_allocation": "sodlab.viz.allocation",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sodlab.viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
