"""Study 1, quickstart: does a trained model beat the model-free guesses, image by image?"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
from torch import nn

from ..baselines import baseline_metrics
from ..evaluation import evaluate
from ..metrics import max_f_from_curves
from .common import PROTOCOL, max_f_gain
from .rules import CI_LEVEL

GUESSES = ("centre bias", "contrast + centre")


def guess_gaps(model: nn.Module, folder: str | Path, size: Optional[int] = None, device: Optional[str] = "auto",
               guesses: Sequence[str] = GUESSES, n_boot: int = 1000, ci: float = CI_LEVEL, seed: int = 0) -> pd.DataFrame:
    """The model's max-F minus each model-free guess's (`sodlab.baselines`) on the test images
    of ``folder``, both under `PROTOCOL` (the model as `sodlab.evaluate` scores it, at
    ``size``), with a paired percentile interval at level ``ci`` from ``n_boot`` resamples of
    the images: one row per guess (``guess``, ``model_max_f``, ``guess_max_f``, ``gap``,
    ``low``, ``high``, ``level``, ``n_images``, ``protocol``)."""
    mine = evaluate(model, folder, protocol=PROTOCOL, size=size, device=device, progress=False, per_image=True)["per_image"]
    theirs = baseline_metrics(folder, guesses, protocol=PROTOCOL, per_image=True)
    model_max_f = max_f_from_curves(mine["curves"])
    rows = []
    for g in guesses:
        gap = max_f_gain([mine["curves"]], [theirs[g]["per_image"]["curves"]], n_boot, ci, seed)
        rows.append({"guess": g, "model_max_f": model_max_f, "guess_max_f": theirs[g]["max_f"],
                     "gap": gap["gap"], "low": gap["low"], "high": gap["high"], "level": ci, "n_images": len(mine["mae"]),
                     "protocol": PROTOCOL})
    return pd.DataFrame(rows)
