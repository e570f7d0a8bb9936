"""Study 3, regularisers and pruning: the same CSNet trained with each regulariser, then pruned."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
from torch.utils.data import Subset

from .. import prune
from ..device import resolve_device
from ..errors import ConfigError
from ..models.csnet import CSNet
from .common import (bn_gammas, datasets, flush_denormals, log_frame, score_summary, seeded, sod_model, sod_scores, spread,
                     train_or_resume, training_table, validation_rows)


@flush_denormals
def regularizer_study(
    data_root: str | Path,
    regularizers: Sequence[str] = ("dwd", "l2", "l1", "none"),
    width: int = 8,
    epochs: int = 3,
    image_size: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/regularizers",
    keep_fractions: Sequence[float] = (1.0, 0.5, 0.3, 0.2),
    finetune_epochs: int = 0,
    finetune_images: Optional[int] = None,
    slim_scratch: Sequence[float] = (),
    thresholds: Sequence[float] = (prune.DEFAULT_THRESHOLD,),
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Train the same CSNet with each regulariser; return ``logs`` (training logs),
    ``gammas`` (|gamma| of every regularised channel at initialisation and after training),
    ``pruning`` (`sodlab.prune.curve` per regulariser), ``allocation`` (channels per block and
    scale that each point of the curve keeps, `sodlab.prune.allocation_table` against the trained
    model, with ``regularizer`` and ``keep_fraction``) and ``final`` (metrics per regulariser).
    ``finetune_images`` fine-tunes each slim model on that many training images (a fixed random
    subset, the same for every point) instead of all of them: fine-tuning every point of every
    curve on the whole set costs more than training the models.

    ``slim_scratch`` (kept fractions, each among ``keep_fractions``): the slim architecture
    that pruning the DWD model to that fraction selects, initialised afresh and trained from
    scratch like the full models (same epochs, data, seed). Pruning earns its keep only if the
    pruned (and fine-tuned) model beats this; the table ``slim_scratch`` holds its scores.

    ``thresholds``: the authors' rule beside keep-fraction pruning: remove every channel whose
    |gamma| is below the threshold (default theirs, `sodlab.prune.DEFAULT_THRESHOLD`), however
    many that is; the table ``threshold_rule`` holds each regulariser's point (without
    fine-tuning)."""
    missing = [f for f in slim_scratch if not any(abs(f - k) < 1e-9 for k in keep_fractions)]
    if missing or (slim_scratch and "dwd" not in regularizers):
        raise ConfigError(f"slim_scratch fractions must be among keep_fractions {list(keep_fractions)} and need the 'dwd' "
                          f"regularizer; got {list(slim_scratch)} with {list(regularizers)}")
    dev = resolve_device(device)
    train, val, test = datasets(data_root, image_size)
    tune = train if finetune_images is None else Subset(train, spread(len(train), finetune_images, seed))
    work = Path(work_dir)
    logs, gammas, curves, finals, allocations, scratch, training, by_threshold = [], [], [], [], [], [], [], []
    for reg in regularizers:
        init = sod_model(width, seed)
        g0 = bn_gammas(init)
        g0.insert(0, "epoch", 0)
        model, lg = train_or_resume(init, train, val, work / f"{reg}", epochs, batch_size, seed, dev, regularizer=reg, progress=progress)
        g1 = bn_gammas(model)
        g1.insert(0, "epoch", epochs)
        for g in (g0, g1):
            g.insert(0, "regularizer", reg)
            gammas.append(g)
        logs.append(log_frame(lg, regularizer=reg))
        training += validation_rows(reg, lg)
        s = score_summary(sod_scores(model, test, dev))
        finals.append({"regularizer": reg, "params": sum(p.numel() for p in model.parameters()), **s})
        curve = prune.curve(model, test, keep_fractions=list(keep_fractions), finetune_epochs=finetune_epochs, train_data=tune if finetune_epochs else None,
                            size=image_size, macs_size=image_size, seed=seed, device=str(dev), work_dir=work / f"{reg}_prune", progress=progress)
        if thresholds:
            by_threshold.append(log_frame(prune.curve(model, test, thresholds=[float(t) for t in thresholds], size=image_size,
                                                      macs_size=image_size, seed=seed, device=str(dev), progress=progress),
                                          regularizer=reg))
        # fine-tuning images seen over training images seen: the verdict's fine-tuning gate
        curve["finetune_share"] = finetune_epochs * len(tune) / (epochs * len(train))
        curves.append(log_frame(curve, regularizer=reg))
        for frac in keep_fractions:
            plan = prune.select_channels(model, None, keep_fraction=float(frac))
            allocations.append(log_frame(prune.allocation_table(plan.config, reference=model), regularizer=reg, keep_fraction=float(frac)))
            if reg == "dwd" and any(abs(frac - f) < 1e-9 for f in slim_scratch):
                fresh = seeded(lambda: CSNet(plan.config), seed)
                slim, slog = train_or_resume(fresh, train, val, work / f"slim_scratch_{frac:g}", epochs, batch_size, seed, dev,
                                             regularizer=reg, progress=progress)
                training += validation_rows(f"slim from scratch at {frac:.0%}", slog)
                scratch.append({"regularizer": reg, "keep_fraction": float(frac), "params": sum(p.numel() for p in slim.parameters()),
                                "epochs": epochs, **score_summary(sod_scores(slim, test, dev))})
    return {
        "logs": pd.concat(logs, ignore_index=True),
        "gammas": pd.concat(gammas, ignore_index=True),
        "pruning": pd.concat(curves, ignore_index=True),
        "allocation": pd.concat(allocations, ignore_index=True),
        "final": pd.DataFrame(finals),
        "slim_scratch": pd.DataFrame(scratch, columns=["regularizer", "keep_fraction", "params", "epochs", "n_images", "max_f", "mae"]),
        "training": training_table(training),
        "threshold_rule": (pd.concat(by_threshold, ignore_index=True)[["regularizer", "threshold", "params", "param_fraction", "max_f", "mae"]]
                           if by_threshold else pd.DataFrame(columns=["regularizer", "threshold", "params", "param_fraction", "max_f", "mae"])),
    }


# 2: ``slim_scratch``; 3: ``finetune_share`` in ``pruning``; 4: ``threshold_rule``
regularizer_study.cache_version = 4  # type: ignore[attr-defined]
