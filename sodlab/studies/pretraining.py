"""Study 5, pre-training: SOD from scratch vs from an encoder pre-trained to classify."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..analysis import categories as cat
from ..analysis.stats import bootstrap_ci
from ..device import resolve_device
from ..metrics import max_f_from_curves
from ..models.classifier import transfer_encoder
from .common import (category_names, classifier_row, cls_model, datasets, flush_denormals, log_frame, score_summary, sod_model,
                     sod_scores, train_or_resume, training_table, validation_rows)
from .rules import CI_LEVEL


@flush_denormals
def pretraining_effect(
    data_root: str | Path,
    fractions: Sequence[float] = (0.25, 1.0),
    width: int = 8,
    epochs: int = 3,
    image_size: int = 64,
    seed: int = 0,
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/pretraining",
    pretrain_epochs: Optional[int] = None,
    batch_size: int = 16,
    n_boot: int = 300,
    progress: bool = False,
    ci: float = CI_LEVEL,
) -> dict[str, pd.DataFrame]:
    """SOD from scratch vs from an encoder pre-trained to classify the benchmark's categories
    (the stand-in for ImageNet), on ``fractions`` of the training set (stratified by category).

    Returns ``pretrain_log``, ``curves`` (training logs by init and fraction), ``final``
    (max-F/MAE per init and fraction), ``efficiency`` (pretrained minus scratch per
    fraction with a bootstrap interval over test images at ``level`` = ``ci``) and ``classifiers`` (the
    pre-training classifier's test accuracy next to chance).
    """
    dev = resolve_device(device)
    train, val, test = datasets(data_root, image_size)
    names = category_names(train)
    work = Path(work_dir) / f"w{width}_seed{seed}"
    cls, pre_log = train_or_resume(cls_model(width, len(names), seed), train, val, work / "pretrain", pretrain_epochs or epochs, batch_size, seed, dev, task="classification", progress=progress)
    curves, finals, eff = [], [], []
    training = validation_rows("pretraining_classifier", pre_log)
    for frac in fractions:
        sub = cat.fraction_subset(train, frac, seed) if frac < 1 else train
        scores = {}
        for init in ("scratch", "pretrained"):
            model = sod_model(width, seed)
            if init == "pretrained":
                transfer_encoder(cls, model)
            trained, lg = train_or_resume(model, sub, val, work / f"{init}_f{frac:g}", epochs, batch_size, seed, dev, progress=progress)
            training += validation_rows(f"{init} at {frac:.0%}", lg)
            curves.append(log_frame(lg, init=init, fraction=frac))
            scores[init] = sod_scores(trained, test, dev)
            finals.append({"init": init, "fraction": frac, "n_train": len(sub), **score_summary(scores[init])})
        # the same images for both inits: a paired bootstrap (rows of the stacked curves resampled whole)
        paired = np.stack([scores["pretrained"]["curves"], scores["scratch"]["curves"]], 1)
        gain = bootstrap_ci(paired, n_boot, ci, seed=seed, statistic=lambda v: max_f_from_curves(v[:, 0]) - max_f_from_curves(v[:, 1]))
        eff.append({"fraction": frac, "n_train": len(sub), "max_f_gain": gain["estimate"], "low": gain["low"], "high": gain["high"], "level": ci,
                    "mae_gain": float(scores["scratch"]["mae"].mean() - scores["pretrained"]["mae"].mean())})
    return {"pretrain_log": pre_log, "curves": pd.concat(curves, ignore_index=True), "final": pd.DataFrame(finals), "efficiency": pd.DataFrame(eff), "training": training_table(training),
            "classifiers": pd.DataFrame([classifier_row("pretraining_classifier", cls, test, dev, len(names))])}
