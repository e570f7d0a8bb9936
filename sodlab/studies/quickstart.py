"""Study 1, quickstart: does a trained model beat the model-free guesses, image by image?"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from ..baselines import baseline_metrics
from ..errors import ConfigError
from ..evaluation import evaluate
from ..metrics import max_f_from_curves
from .cache import cached_call
from .common import PROTOCOL, evaluate_checkpoint, max_f_gain
from .rules import CI_LEVEL, seed_name
from .twins import sod_model, train_checked

GUESSES = ("centre bias", "contrast + centre")


def replicate_dir(work_dir: str | Path, seed: int) -> Path:
    """The folder of one seed's model in `train_replicates`."""
    return Path(work_dir) / f"csnet_seed{int(seed)}"


def train_replicates(train: Dataset, val: Optional[Dataset], work_dir: str | Path, width: int, epochs: int, seeds: Sequence[int],
                     device: torch.device, schedule_check: bool, batch_size: Optional[int] = None,
                     image_size: Optional[int] = None, **overrides: Any) -> tuple[dict[int, nn.Module], Any, list[dict[str, Any]]]:
    """01's models: a CSNet of ``width`` trained from each of ``seeds`` with the CPU recipe
    (`twins.train_checked`, ``overrides`` going to its config) into ``work_dir/csnet_seed<s>``,
    and with ``schedule_check`` the first seed's schedule check beside it (the plateau gate's
    evidence for every seed: the recipe and data, not the seed, set how long training takes).
    Returns the models by seed, the first seed's training log, and the ``training`` rows
    (curves named ``model`` by seed, `rules.seed_name`)."""
    if not seeds or len(set(int(s) for s in seeds)) != len(seeds):
        raise ConfigError(f"01's seeds must be distinct, at least one, got {list(seeds)}")
    models: dict[int, nn.Module] = {}
    rows: list[dict[str, Any]] = []
    first_log = None
    for s in seeds:
        models[int(s)], log = train_checked("csnet", "sod", lambda s=s: sod_model("csnet", width, int(s)), train, val,
                                            replicate_dir(work_dir, s), epochs, int(s), device, seed_name("model", int(s)),
                                            rows, schedule_check and s == seeds[0], batch_size=batch_size, image_size=image_size,
                                            **overrides)
        first_log = log if first_log is None else first_log
    return models, first_log, rows


def replicate_metrics(work_dir: str | Path, seeds: Sequence[int], folder: str | Path, size: Optional[int] = None,
                      device: Optional[str] = "auto", cache_dir: Optional[str | Path] = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """The scalar metrics (`common.evaluate_checkpoint`) of each seed's model that
    `train_replicates` left in ``work_dir/csnet_seed<s>/best.pt``, scored on ``folder``: one row
    per seed (``model``, ``seed``, the metrics), and the seeds' mean of every numeric column but
    the seed, the figure the verdict reports beside its interval. With ``cache_dir`` each
    seed's scores are read from and written to the result cache (`cache.cached_call`)."""
    if not seeds:
        raise ConfigError("replicate_metrics needs at least one seed")
    rows = []
    for s in seeds:
        checkpoint = replicate_dir(work_dir, s) / "best.pt"
        scores = (evaluate_checkpoint(checkpoint, folder, size=size, device=device) if cache_dir is None
                  else cached_call(cache_dir, evaluate_checkpoint, checkpoint, folder, size=size, device=device))
        rows.append({"model": "csnet", "seed": int(s), **scores})
    table = pd.DataFrame(rows)
    return table, table.drop(columns=["seed"]).mean(numeric_only=True).to_dict()


def guess_gaps(model: nn.Module | Sequence[nn.Module], folder: str | Path, size: Optional[int] = None, device: Optional[str] = "auto",
               guesses: Sequence[str] = GUESSES, n_boot: int = 1000, ci: float = CI_LEVEL, seed: int = 0) -> pd.DataFrame:
    """The model's max-F minus each model-free guess's (`sodlab.baselines`) on the test images
    of ``folder``, both under `PROTOCOL` (the model as `sodlab.evaluate` scores it, at
    ``size``), with a paired percentile interval at level ``ci`` from ``n_boot`` resamples: one
    row per guess (``guess``, ``model_max_f``, ``guess_max_f``, ``gap``, ``low``, ``high``,
    ``level``, ``n_images``, ``n_seeds``, ``protocol``). ``model`` may be a list of the same
    model trained from several seeds: the gap is then the mean over seeds and the interval
    resamples seeds and then images (`common.max_f_gain`), so that it speaks for a retrained
    model too; ``model_max_f`` is the seeds' mean."""
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    if not models:
        raise ConfigError("guess_gaps needs at least one model")
    mine = [evaluate(m, folder, protocol=PROTOCOL, size=size, device=device, progress=False, per_image=True)["per_image"]
            for m in models]
    theirs = baseline_metrics(folder, guesses, protocol=PROTOCOL, per_image=True)
    model_max_f = float(np.mean([max_f_from_curves(p["curves"]) for p in mine]))
    rows = []
    for g in guesses:
        # the guess does not depend on the seed: the same curves stand beside every seed's
        gap = max_f_gain([p["curves"] for p in mine], [theirs[g]["per_image"]["curves"]] * len(mine), n_boot, ci, seed)
        rows.append({"guess": g, "model_max_f": model_max_f, "guess_max_f": theirs[g]["max_f"],
                     "gap": gap["gap"], "low": gap["low"], "high": gap["high"], "level": ci, "n_images": len(mine[0]["mae"]),
                     "n_seeds": len(mine), "protocol": PROTOCOL})
    return pd.DataFrame(rows)
