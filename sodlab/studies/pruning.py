"""Study 3, regularisers and pruning: the same CSNet trained with each regulariser, then pruned."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from torch.utils.data import Subset

from .. import prune
from ..checkpoint import load
from ..device import resolve_device
from ..errors import ConfigError
from ..models.csnet import CSNet
from .common import (PROTOCOL, bn_gammas, datasets, flush_denormals, log_frame, max_f_gain, score_summary, seeded, sod_model, sod_scores,
                     spread, study_tables, training_table)
from .rules import CI_LEVEL, seed_name
from .twins import train_checked


THRESHOLD_COLUMNS = ["regularizer", "threshold", "params", "param_fraction", "max_f", "mae", "protocol"]


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
    per_image: bool = False,
    schedule_check: bool = False,
    loss: str = "auto",
) -> dict[str, Any]:
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
    fine-tuning).

    ``per_image``: also return ``point_curves``, ``{(regularizer, keep_fraction): (N, 3, 256)}``
    per-image F-measure counts on the test images of each point as the curve scored it (after
    fine-tuning when fine-tuned) and of the unpruned model (keep fraction ``None``), for an
    interval over images and seeds (`pruning_replicates`).

    ``schedule_check``: each trained model (every regulariser's, the slim ones from scratch)
    again with the same recipe without the last quarter of its epochs (`rules.check_epochs`),
    into ``schedule-check/``, its validation curve in ``training`` as ``<model>@check``: the
    plateau gate's evidence. ``loss``: the training loss of those models (the recipe's
    ``"auto"``, BCE, or ``"bce+iou"``)."""
    missing = [f for f in slim_scratch if not any(abs(f - k) < 1e-9 for k in keep_fractions)]
    if missing or (slim_scratch and "dwd" not in regularizers):
        raise ConfigError(f"slim_scratch fractions must be among keep_fractions {list(keep_fractions)} and need the 'dwd' "
                          f"regularizer; got {list(slim_scratch)} with {list(regularizers)}")
    dev = resolve_device(device)
    train, val, test = datasets(data_root, image_size)
    tune = train if finetune_images is None else Subset(train, spread(len(train), finetune_images, seed))
    work = Path(work_dir)
    logs, gammas, curves, finals, allocations, scratch, training, by_threshold = [], [], [], [], [], [], [], []
    point_curves: dict[tuple[str, Optional[float]], np.ndarray] = {}

    def fit(make: Any, run: str, name: str, reg: str) -> tuple[Any, pd.DataFrame]:
        # CSNet's CPU recipe, with its schedule check beside the run when asked
        return train_checked("csnet", "sod", make, train, val, work / run, epochs, seed, dev, name, training, schedule_check,
                             batch_size=batch_size, progress=progress, regularizer=reg, loss=loss)

    for reg in regularizers:
        g0 = bn_gammas(sod_model(width, seed))  # the initial weights each run starts from
        g0.insert(0, "epoch", 0)
        model, lg = fit(lambda: sod_model(width, seed), reg, reg, reg)
        g1 = bn_gammas(model)
        g1.insert(0, "epoch", epochs)
        for g in (g0, g1):
            g.insert(0, "regularizer", reg)
            gammas.append(g)
        logs.append(log_frame(lg, regularizer=reg))
        unpruned = sod_scores(model, test, dev)
        finals.append({"regularizer": reg, "params": sum(p.numel() for p in model.parameters()), **score_summary(unpruned)})
        curve = prune.curve(model, test, keep_fractions=list(keep_fractions), finetune_epochs=finetune_epochs,
                            train_data=tune if finetune_epochs else None, size=image_size, macs_size=image_size, seed=seed, device=str(dev),
                            work_dir=work / f"{reg}_prune", progress=progress, protocol=PROTOCOL, batch_size=batch_size, loss=loss)
        if thresholds:
            by_threshold.append(log_frame(prune.curve(model, test, thresholds=[float(t) for t in thresholds], size=image_size,
                                                      macs_size=image_size, seed=seed, device=str(dev), progress=progress,
                                                      protocol=PROTOCOL),
                                          regularizer=reg))
        # fine-tuning images seen over training images seen: the verdict's fine-tuning gate
        curve["finetune_share"] = finetune_epochs * len(tune) / (epochs * len(train))
        curves.append(log_frame(curve, regularizer=reg))
        if per_image:
            point_curves[(reg, None)] = unpruned["curves"]
            for frac in keep_fractions:
                point_curves[(reg, float(frac))] = _point_scores(model, test, dev, float(frac), work / f"{reg}_prune", finetune_epochs > 0)
        for frac in keep_fractions:
            plan = prune.select_channels(model, None, keep_fraction=float(frac))
            allocations.append(log_frame(prune.allocation_table(plan.config, reference=model), regularizer=reg, keep_fraction=float(frac)))
            if reg == "dwd" and any(abs(frac - f) < 1e-9 for f in slim_scratch):
                slim, _ = fit(lambda c=plan.config: seeded(lambda: CSNet(c), seed), f"slim_scratch_{frac:g}",
                              f"slim from scratch at {frac:.0%}", reg)
                scratch.append({"regularizer": reg, "keep_fraction": float(frac), "params": sum(p.numel() for p in slim.parameters()),
                                "epochs": epochs, **score_summary(sod_scores(slim, test, dev))})
    out: dict[str, Any] = {
        "logs": pd.concat(logs, ignore_index=True),
        "gammas": pd.concat(gammas, ignore_index=True),
        "pruning": pd.concat(curves, ignore_index=True),
        "allocation": pd.concat(allocations, ignore_index=True),
        "final": pd.DataFrame(finals),
        "slim_scratch": pd.DataFrame(scratch, columns=["regularizer", "keep_fraction", "params", "epochs", "n_images", "max_f", "mae", "protocol"]),
        "training": training_table(training),
        "threshold_rule": (pd.concat(by_threshold, ignore_index=True)[THRESHOLD_COLUMNS]
                           if by_threshold else pd.DataFrame(columns=THRESHOLD_COLUMNS)),
    }
    if per_image:
        out["point_curves"] = point_curves
    return study_tables(out)


def _point_scores(model: CSNet, test: Any, dev: Any, keep_fraction: float, prune_work: Path, finetuned: bool) -> np.ndarray:
    """Per-image F-measure counts of one point of `prune.curve`: the model it pruned (the same
    deterministic selection) or, when the curve fine-tuned, the fine-tuned model it kept."""
    if finetuned:
        slim = load(prune_work / f"keep_fraction_{keep_fraction:.6g}" / "last.pt")
    else:
        slim, _ = prune.prune(model, None, keep_fraction=keep_fraction, probe_size=None, warn=False, exact=False)
    return sod_scores(slim.to(dev), test, dev)["curves"]


def pruning_work(work_dir: str | Path, seed: int) -> Path:
    """The folder of one seed's models in `pruning_replicates`."""
    return Path(work_dir) / f"seed{int(seed)}"


def pruning_replicates(
    data_root: str | Path,
    seeds: Sequence[int] = (0,),
    work_dir: str | Path = "runs/regularizers",
    n_boot: int = 1000,
    ci: float = CI_LEVEL,
    **kwargs: Any,
) -> dict[str, pd.DataFrame]:
    """`regularizer_study` once per seed (models and data order from that seed, folders
    `pruning_work`), so that the pruning effect gets an interval that speaks for new seeds and
    new images. The conditions beside it, ``slim_scratch`` and ``schedule_check``, run with the
    first seed only.

    Returns the first seed's tables under `regularizer_study`'s names for the figures
    (``pruning``, ``allocation``, ``logs``, ``threshold_rule``), every seed's where a table has a
    ``seed`` column (``gammas``, ``final``, ``slim_scratch``, ``seeds_pruning``: every seed's
    curve), ``training`` with every seed's models named `seed_name`, and ``pruning_stats``: per
    regulariser and kept fraction, max-F of the pruned (fine-tuned, when the curves were) model
    minus the unpruned model's, the mean over seeds of each seed's difference (``effect``), with
    a paired percentile interval at level ``ci`` from ``n_boot`` resamples of seeds and then test
    images (`sodlab.analysis.stats.bootstrap_seeds_images_gap`; one seed: of images alone),
    ``kept`` the mean share of parameters kept. Every score is `PROTOCOL`'s (``protocol``
    column): the curves' points are the same numbers as their per-image counts summed."""
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"pruning seeds must be distinct, at least one, got {seeds}")
    # the schedule check (``schedule_check``) runs for the first seed only: the recipe and data,
    # not the seed, set how long training takes, and the plateau gate reads it for every seed
    check = bool(kwargs.pop("schedule_check", False))
    # so does the slim architecture from scratch: a condition beside the first seed's curve (the
    # verdict reads that seed's), not a replicate of the decided effect
    slim = tuple(kwargs.pop("slim_scratch", ()))
    runs = [regularizer_study(data_root, seed=s, work_dir=pruning_work(work_dir, s), per_image=True, schedule_check=check and s == seeds[0],
                              slim_scratch=slim if s == seeds[0] else (), **kwargs) for s in seeds]
    first = runs[0]

    def every(name: str) -> pd.DataFrame:
        return pd.concat([r[name].assign(seed=s) for r, s in zip(runs, seeds)], ignore_index=True)

    tuned = bool("max_f_finetuned" in first["pruning"] and first["pruning"]["max_f_finetuned"].notna().any())
    seeds_pruning = every("pruning")
    stats = []
    for (reg, frac) in [k for k in first["point_curves"] if k[1] is not None]:
        pruned = np.stack([r["point_curves"][(reg, frac)] for r in runs])
        full = np.stack([r["point_curves"][(reg, None)] for r in runs])
        g = max_f_gain(pruned, full, n_boot, ci, seeds[0])
        at = seeds_pruning[(seeds_pruning.regularizer == reg) & np.isclose(seeds_pruning.keep_fraction, frac)]
        stats.append({"regularizer": reg, "keep_fraction": frac, "kept": float(at["param_fraction"].mean()),
                      "metric": "max_f_finetuned" if tuned else "max_f", "protocol": PROTOCOL, "effect": float(g["gap"]),
                      "ci_low": float(g["low"]),
                      "ci_high": float(g["high"]), "ci_level": ci, "n_seeds": len(seeds), "seeds": ",".join(map(str, seeds)),
                      "n_images": int(full.shape[1]), "n_boot": int(n_boot)})
    out = {name: first[name] for name in ("pruning", "allocation", "logs", "threshold_rule")}
    out.update({name: every(name) for name in ("gammas", "final", "slim_scratch")})
    out["seeds_pruning"] = seeds_pruning
    out["training"] = pd.concat([r["training"].assign(model=[seed_name(m, s) for m in r["training"]["model"]])
                                 for r, s in zip(runs, seeds)], ignore_index=True)
    out["pruning_stats"] = pd.DataFrame(stats)
    return study_tables(out)


# 3: schedule checks; 4: the slim architecture from scratch with the first seed only
pruning_replicates.cache_version = 5  # type: ignore[attr-defined]


# 2: ``slim_scratch``; 3: ``finetune_share`` in ``pruning``; 4: ``threshold_rule``; 5: one protocol;
# 6: schedule checks, ``loss``; 7: fine-tuning with the training's loss and batch size
regularizer_study.cache_version = 7  # type: ignore[attr-defined]
