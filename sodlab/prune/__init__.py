"""Pruning CSNet: learned channel numbers from BatchNorm scales, exact slim models,
fine-tuning and pruning curves.

- `sodlab.prune.select`: which channels go (scores, structural rules, learned configuration);
- `sodlab.prune.fold`: constants of removed channels, their folding, and which removals are exact;
- `sodlab.prune.surgery`: `slim` and `prune` (exact by default), `output_change`;
- `sodlab.prune.allocation`: `allocation_table` (its figure: `sodlab.viz.plot_allocation`);
- `sodlab.prune.curves`: `finetune`, `curve`, `compare_regularizers`.
"""
from __future__ import annotations

from .allocation import allocation_table
from .curves import FINETUNE_DEFAULTS, compare_regularizers, curve, finetune
from .fold import exactly_removable
from .select import DEFAULT_THRESHOLD, PrunePlan, channel_scores, first_nonfinite, select_channels
from .surgery import output_change, prune, slim

__all__ = [
    "DEFAULT_THRESHOLD",
    "FINETUNE_DEFAULTS",
    "PrunePlan",
    "channel_scores",
    "select_channels",
    "exactly_removable",
    "first_nonfinite",
    "slim",
    "prune",
    "output_change",
    "allocation_table",
    "finetune",
    "curve",
    "compare_regularizers",
]
