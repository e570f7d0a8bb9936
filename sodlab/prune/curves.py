"""Fine-tuning slim models and pruning curves: parameters, MACs and accuracy of a model slimmed
at several thresholds or kept parameter fractions, with and without fine-tuning.

A curve prunes with ``exact=False``: its points remove channels whose scale is small but
not zero, which is what it measures (each row records whether folding was exact).
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import load
from ..errors import ConfigError
from ..evaluation import evaluate
from ..metrics import PROTOCOLS
from ..models.csnet import CSNet
from ..profiling import count_parameters, profile
from ..train import TrainConfig, fit
from .select import DEFAULT_THRESHOLD, check_csnet
from .surgery import prune

logger = logging.getLogger(__name__)

# --- fine-tuning and curves -------------------------------------------------------------
FINETUNE_DEFAULTS: dict[str, Any] = {"optimizer": "adam", "lr": 3e-4, "betas": [0.9, 0.99], "weight_decay": 0.0,
                                     "schedule": "cosine", "channels_last": True}


def finetune(
    model: nn.Module,
    train_data: Any,
    epochs: int = 1,
    *,
    val_data: Any = None,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "auto",
    run_dir: Optional[str | Path] = None,
    regularizer: str = "none",
    progress: bool = False,
    **train_overrides: Any,
) -> nn.Module:
    """Train a (slim) model further with `sodlab.train.fit`, returning the trained copy.

    `fit` creates its optimizer for the model it is given, i.e. for the slim model's own
    parameters. (The authors' script creates its optimizer before rebuilding the slim model,
    so it keeps updating the old, discarded tensors and their fine-tuning barely trains.)
    With ``run_dir`` the run is kept there and resumed if interrupted; else it goes to a
    temporary folder.

    Defaults (`FINETUNE_DEFAULTS`, each overridable through ``train_overrides``): Adam at 3e-4
    annealed to 0, no weight decay. A slim model starts close to a good solution; the
    training defaults (constant 1e-3 with coupled weight decay 5e-3) pulled every weight
    towards zero and lowered max-F even of an unpruned model fine-tuned the same way.
    """
    if epochs <= 0:
        return model
    settings = {**FINETUNE_DEFAULTS, **train_overrides}
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, regularizer=regularizer, task="sod", **settings)
    with tempfile.TemporaryDirectory(prefix="sodlab-finetune-") as tmp:
        rd = Path(run_dir) if run_dir is not None else Path(tmp)
        fit(model, train_data, val_data, config, rd, resume=(rd / "last.pt").is_file(), device=device, progress=progress)
        return load(rd / "last.pt")


def _evaluate(model: nn.Module, data: Any, size: Optional[int], batch_size: int, device: str, protocol: str) -> dict[str, float]:
    kw: dict[str, Any] = {"batch_size": batch_size, "device": device, "progress": False, "protocol": protocol}
    if size is not None:
        kw["size"] = size
    res = evaluate(model, data, **kw)
    return {"max_f": float(res["max_f"]), "mae": float(res["mae"])}


def _as_model(model_or_checkpoint: nn.Module | str | Path) -> CSNet:
    if isinstance(model_or_checkpoint, (str, Path)):
        model_or_checkpoint = load(model_or_checkpoint)
    return check_csnet(model_or_checkpoint)


def curve(
    model_or_checkpoint: nn.Module | str | Path,
    data: Any,
    thresholds: Optional[Sequence[float]] = None,
    keep_fractions: Optional[Sequence[float]] = None,
    finetune_epochs: int = 0,
    train_data: Any = None,
    *,
    size: Optional[int] = None,
    macs_size: int = 224,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "auto",
    work_dir: Optional[str | Path] = None,
    progress: bool = True,
    protocol: str = "standard",
    **finetune_kw: Any,
) -> pd.DataFrame:
    """Pruning curve: slim the model at each threshold and/or kept parameter fraction and
    evaluate it on ``data`` (a dataset or a folder `sodlab.evaluate` accepts).

    With ``finetune_epochs > 0`` each slim model is also fine-tuned on ``train_data``
    (`finetune`; runs kept under ``work_dir`` when given, so an interrupted curve resumes).
    One row per point: ``threshold``, ``keep_fraction`` (target, NaN for a threshold
    point), ``params``, ``param_fraction``, ``macs`` (at ``macs_size``), ``max_f``, ``mae``,
    ``max_f_finetuned``, ``mae_finetuned`` (NaN without fine-tuning), ``fold_exact``,
    ``protocol`` (the `sodlab.metrics` protocol the points were scored under, by `sodlab.evaluate`).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    full = _as_model(model_or_checkpoint)
    if thresholds is None and keep_fractions is None:
        thresholds = [DEFAULT_THRESHOLD]
    if finetune_epochs > 0 and train_data is None:
        raise ConfigError("fine-tuning a pruning curve needs train_data")
    points = [("threshold", float(t)) for t in (thresholds or [])] + [("keep_fraction", float(f)) for f in (keep_fractions or [])]
    full_params = count_parameters(full)
    rows = []
    for kind, value in tqdm(points, desc="pruning curve", disable=not progress):
        thr, frac = (value, None) if kind == "threshold" else (None, value)
        # one line per point rather than one per block: a curve prunes many times, and
        # ``fold_exact`` in the result records the same thing
        small, report = prune(full, thr, keep_fraction=frac, probe_size=None, warn=False, exact=False)
        for note in report["notes"]:
            logger.warning("prune: %s", note)
        if report["inexact_folds"]:
            logger.warning("prune: %s %g: folding is approximate in %d place(s) (largest |constant| %.3g); "
                           "the row's fold_exact is False", kind.replace("_", " "), value, len(report["inexact_folds"]),
                           max(item["max_abs_value"] for item in report["inexact_folds"]))
        prof = profile(small, macs_size)
        row: dict[str, Any] = {
            "threshold": report["threshold"],
            "keep_fraction": float("nan") if frac is None else frac,
            "params": int(prof["params"]),
            "param_fraction": prof["params"] / full_params,
            "macs": int(prof["macs"]),
            "fold_exact": report["fold_exact"],
        }
        row.update(_evaluate(small, data, size, batch_size, device, protocol))
        row["max_f_finetuned"] = row["mae_finetuned"] = float("nan")
        if finetune_epochs > 0:
            run_dir = None if work_dir is None else Path(work_dir) / f"{kind}_{value:.6g}"
            tuned = finetune(small, train_data, finetune_epochs, batch_size=batch_size, seed=seed, device=device, run_dir=run_dir, **finetune_kw)
            ev = _evaluate(tuned, data, size, batch_size, device, protocol)
            row["max_f_finetuned"], row["mae_finetuned"] = ev["max_f"], ev["mae"]
        row["protocol"] = protocol
        rows.append(row)
    cols = ["threshold", "keep_fraction", "params", "param_fraction", "macs", "max_f", "mae", "max_f_finetuned", "mae_finetuned", "fold_exact",
            "protocol"]
    return pd.DataFrame(rows, columns=cols)


def compare_regularizers(
    models: Mapping[str, nn.Module | str | Path],
    data: Any,
    keep_fractions: Sequence[float] = (1.0, 0.5, 0.25),
    finetune_epochs: int = 0,
    train_data: Any = None,
    thresholds: Sequence[float] = (DEFAULT_THRESHOLD,),
    work_dir: Optional[str | Path] = None,
    **curve_kw: Any,
) -> pd.DataFrame:
    """`curve` for models of the same architecture trained with different regularisers
    (``{"dwd": model_or_checkpoint, "l2": ..., ...}``), at the same kept parameter fractions
    (hence matched parameter budgets) plus each model's own ``thresholds`` points. One
    DataFrame with a ``regularizer`` column; rows with ``keep_fraction`` 1 are the unpruned
    models."""
    frames = []
    for name, m in models.items():
        wd = None if work_dir is None else Path(work_dir) / name
        df = curve(m, data, thresholds=list(thresholds), keep_fractions=list(keep_fractions), finetune_epochs=finetune_epochs,
                   train_data=train_data, work_dir=wd, **curve_kw)
        df.insert(0, "regularizer", name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
