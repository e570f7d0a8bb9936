"""The run directory of `fit`: checking it before any work, telling a run sodlab wrote from
anything else, and writing ``config.json``, ``last.pt``, ``best.pt`` and ``log.csv``.

``config.json`` carries `RUN_MARKER`; with ``last.pt`` (a sodlab checkpoint holding
training state) it is how a folder is recognised as a run that may be resumed. A folder
holding files of those names that sodlab did not write is never resumed or overwritten.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import pandas as pd
import torch
from torch import nn

from .. import __version__
from ..atomic import write_text_atomic
from ..checkpoint import atomic_torch_save, model_record, read_checkpoint
from ..errors import CheckpointError, ConfigError
from .config import RESUMABLE_CHANGES, TrainConfig
from .distributed import DistInfo
from .rng import rng_state

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "last.pt", "best.pt", "log.csv")
RUN_MARKER = "sodlab_run"


@dataclass
class RunState:
    """Where a run stands: completed epochs, the best score and its epoch, the log rows."""

    epoch: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    rows: list = field(default_factory=list)


def check_writable(out: Path) -> None:
    """Fail before any work when ``out`` cannot be (or become) a writable folder."""
    p = out
    while not p.exists() and p.parent != p:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"{out}: {p} is a file, not a folder; choose another output folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: folder {p} is not writable; choose another output folder")


def written_by_sodlab(config_json: Path) -> bool:
    """True when ``config_json`` is the ``config.json`` of a sodlab run (a run of an older
    sodlab has no marker but its version and world size)."""
    try:
        doc = json.loads(config_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and (RUN_MARKER in doc or {"sodlab_version", "world_size", "train", "model"} <= set(doc))


def open_run_dir(out: Path, resume: bool) -> Optional[dict]:
    """Check ``out`` and return the record of ``last.pt`` to resume from, or None for a
    fresh start. Raises (touching nothing) when ``out`` holds a run and ``resume`` is off,
    or holds files of a run's names that are not one."""
    check_writable(out)
    present = [n for n in RUN_FILES if (out / n).exists()]
    if not present:
        return None
    record = None
    last = out / "last.pt"
    if last.exists():
        try:
            record = read_checkpoint(last)
        except CheckpointError as exc:
            raise CheckpointError(f"{out} holds a last.pt that is not a sodlab run's ({exc}); choose another output folder") from exc
        if not isinstance(record.get("train_state"), Mapping):
            raise CheckpointError(f"{last}: a model checkpoint without training state, not a run; choose another output folder")
    elif not written_by_sodlab(out / "config.json"):
        raise ConfigError(f"{out} holds {', '.join(present)} that sodlab's training did not write; choose another output folder")
    if not resume:
        raise ConfigError(
            f"{out} already holds a run ({', '.join(present)}); pass resume=True (--resume) to continue it, "
            "or choose another output folder"
        )
    if record is None:
        log.info("%s: no finished epoch to resume from; starting the run from the beginning", out)
    return record


def check_resumable(record: Mapping, model: nn.Module, config: TrainConfig, out: Path) -> None:
    """Refuse to resume a run of another model or with another training config (only
    `RESUMABLE_CHANGES` may differ)."""
    mine = model_record(model)
    if record["family"] != mine["family"] or record["config"] != mine["config"]:
        raise ConfigError(f"{out}: the run trains a different model ({record['family']}, config differs); use another output folder")
    # keys added since the run was written hold their defaults, which are what it ran with
    old = {**TrainConfig().to_dict(), **record["train_state"]["config"]}
    new = config.to_dict()
    diff = [k for k in sorted(set(old) | set(new)) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]
    if diff:
        details = "; ".join(f"{k}: run has {old.get(k)!r}, given {new.get(k)!r}" for k in diff)
        raise ConfigError(f"{out}: cannot resume with a different training config ({details})")


def write_config(out: Path, model: nn.Module, config: TrainConfig, info: DistInfo) -> None:
    rec = model_record(model)
    doc = {
        RUN_MARKER: 1,
        "sodlab_version": __version__,
        "model": {"family": rec["family"], "name": rec["name"], "config": rec["config"]},
        "train": config.to_dict(),
        "world_size": info.world_size,
        "device": info.device.type,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.json", json.dumps(doc, indent=1))


def discard_unstarted(out: Path, existed: bool) -> None:
    """After a run failed before its first checkpoint: remove the ``config.json`` it wrote
    (and ``out`` when this run created it and it is empty), so nothing half-made is left."""
    if (out / "last.pt").exists():
        return
    (out / "config.json").unlink(missing_ok=True)
    if not existed:
        with contextlib.suppress(OSError):
            out.rmdir()


def save_epoch(out: Path, net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, config: TrainConfig,
               run: RunState, improved: bool) -> None:
    """``best.pt`` (when ``improved``), then ``last.pt`` and ``log.csv``, each atomically."""
    record = model_record(net)
    if config.image_size is not None:
        record["input_size"] = int(config.image_size)
    if improved:
        best = dict(record)
        best["train_summary"] = {"epoch": run.epoch, "metrics": run.rows[-1]}
        atomic_torch_save(best, out / "best.pt")
    record["train_state"] = {
        "epoch": run.epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "rng": rng_state(),
        "sampler": {"seed": config.seed, "epoch": run.epoch},
        "config": config.to_dict(),
        "best": run.best,
        "best_epoch": run.best_epoch,
        "log": run.rows,
    }
    atomic_torch_save(record, out / "last.pt")
    write_text_atomic(out / "log.csv", pd.DataFrame(run.rows).to_csv(index=False))
