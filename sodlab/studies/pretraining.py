"""Study 5, pre-training: SOD from scratch vs from an encoder pre-trained to classify."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from torch.utils.data import Dataset

from ..analysis import categories as cat
from ..analysis.stats import bootstrap_ci
from ..device import resolve_device
from ..errors import ConfigError
from ..metrics import max_f_from_curves
from ..models.classifier import transfer_encoder
from .common import (category_names, classifier_row, cls_model, datasets, flush_denormals, log_frame, score_summary, sod_model,
                     sod_scores, study_tables, train_or_resume, training_table, validation_rows)
from .rules import CI_LEVEL


ARMS = ("scratch", "pretrained", "random_labels", "scratch_matched")


class RelabelledDataset(Dataset):
    """``dataset`` with each item's ``label`` replaced by ``labels[i]`` (the random-label arm's
    pre-training data: the same images, their labels shuffled)."""

    def __init__(self, dataset: Dataset, labels: Sequence[int]) -> None:
        if len(labels) != len(dataset):
            raise ConfigError(f"{len(labels)} labels for {len(dataset)} items")
        self.dataset, self.labels = dataset, [int(v) for v in labels]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "label": self.labels[index]}


def matched_epochs(epochs: int, pretrain_epochs: int, n_pretrain: int, n_train: int) -> int:
    """Epochs over ``n_train`` images that see as many images as ``pretrain_epochs`` over
    ``n_pretrain`` followed by ``epochs`` over ``n_train`` (rounded up): the compute-matched
    scratch arm."""
    return int(epochs + math.ceil(pretrain_epochs * n_pretrain / n_train))


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
    arms: Sequence[str] = ("scratch", "pretrained"),
) -> dict[str, pd.DataFrame]:
    """SOD from scratch vs from an encoder pre-trained to classify the benchmark's categories
    (the stand-in for ImageNet), on ``fractions`` of the training set (stratified by category).

    ``arms`` (always with ``scratch`` and ``pretrained``) adds the controls: ``random_labels``,
    an encoder pre-trained the same way on the same images with their labels shuffled (what
    pre-training gives without the categories' meaning), and ``scratch_matched``, scratch
    trained for as many images as pre-training plus fine-tuning see together (`matched_epochs`:
    what the pre-trained model's extra compute alone would give).

    Returns ``pretrain_log``, ``curves`` (training logs by init and fraction), ``final``
    (max-F/MAE per init and fraction), ``efficiency`` (pretrained minus scratch per
    fraction with a bootstrap interval over test images at ``level`` = ``ci``), ``controls``
    (pretrained minus each control arm, per fraction, intervals alike) and ``classifiers`` (the
    pre-training classifier's test accuracy next to chance).
    """
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not {"scratch", "pretrained"} <= set(arms):
        raise ConfigError(f"arms must include 'scratch' and 'pretrained' and be among {ARMS}; got {list(arms)}")
    dev = resolve_device(device)
    train, val, test = datasets(data_root, image_size)
    names = category_names(train)
    work = Path(work_dir) / f"w{width}_seed{seed}"
    pre_epochs = pretrain_epochs or epochs
    cls, pre_log = train_or_resume(cls_model(width, len(names), seed), train, val, work / "pretrain", pre_epochs, batch_size, seed, dev, task="classification", progress=progress)
    encoders = {"pretrained": cls}
    if "random_labels" in arms:
        shuffled = np.random.default_rng(seed).permutation(cat.dataset_labels(train))
        # no validation: held-out images cannot score shuffled labels, so the last epoch is kept
        encoders["random_labels"], _ = train_or_resume(cls_model(width, len(names), seed), RelabelledDataset(train, shuffled), None,
                                                       work / "pretrain_random_labels", pre_epochs, batch_size, seed, dev,
                                                       task="classification", progress=progress)
    curves, finals, eff, controls = [], [], [], []
    training = validation_rows("pretraining_classifier", pre_log)
    for frac in fractions:
        sub = cat.fraction_subset(train, frac, seed) if frac < 1 else train
        scores = {}
        for init in [a for a in ARMS if a in arms]:
            model = sod_model(width, seed)
            if init in encoders:
                transfer_encoder(encoders[init], model)
            n_epochs = matched_epochs(epochs, pre_epochs, len(train), len(sub)) if init == "scratch_matched" else epochs
            trained, lg = train_or_resume(model, sub, val, work / f"{init}_f{frac:g}", n_epochs, batch_size, seed, dev, progress=progress)
            training += validation_rows(f"{init} at {frac:.0%}", lg)
            curves.append(log_frame(lg, init=init, fraction=frac))
            scores[init] = sod_scores(trained, test, dev)
            finals.append({"init": init, "fraction": frac, "n_train": len(sub), "epochs": n_epochs, **score_summary(scores[init])})

        def gain(a: str, b: str) -> dict:
            # the same images for both arms: a paired bootstrap (rows of the stacked curves resampled whole)
            paired = np.stack([scores[a]["curves"], scores[b]["curves"]], 1)
            g = bootstrap_ci(paired, n_boot, ci, seed=seed, statistic=lambda v: max_f_from_curves(v[:, 0]) - max_f_from_curves(v[:, 1]))
            return {"fraction": frac, "n_train": len(sub), "max_f_gain": g["estimate"], "low": g["low"], "high": g["high"], "level": ci,
                    "mae_gain": float(scores[b]["mae"].mean() - scores[a]["mae"].mean())}

        eff.append(gain("pretrained", "scratch"))
        for control in ("random_labels", "scratch_matched"):
            if control in scores:
                controls.append({"versus": control, **gain("pretrained", control)})
    return study_tables({"pretrain_log": pre_log, "curves": pd.concat(curves, ignore_index=True), "final": pd.DataFrame(finals), "efficiency": pd.DataFrame(eff),
            "controls": pd.DataFrame(controls, columns=["versus", "fraction", "n_train", "max_f_gain", "low", "high", "level", "mae_gain"]),
            "training": training_table(training),
            "classifiers": pd.DataFrame([classifier_row("pretraining_classifier", cls, test, dev, len(names))])})


# 2: ``controls``, ``epochs`` in ``final``; 3: protocol columns, scored as sodlab.evaluate scores
pretraining_effect.cache_version = 3  # type: ignore[attr-defined]
