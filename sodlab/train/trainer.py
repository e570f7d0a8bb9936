"""`fit`: train any sodlab model for saliency or classification, crash-safe and resumable.

A run directory holds ``config.json`` (the resolved configuration), ``last.pt`` (written
atomically after every epoch: model, optimizer, scheduler, grad scaler, RNG states, epoch,
config, log), ``best.pt`` (the best epoch by validation max-F, or accuracy for
classification; the last epoch when there is no validation data) and ``log.csv`` (one row
per epoch). Both checkpoints are ordinary sodlab checkpoints (`sodlab.load` reads them and
ignores the training state).

Exact resumption: the data order of epoch ``e`` is a permutation drawn from
``(seed, e)`` (torch's `DistributedSampler`, also on one process) and every global RNG
(torch, numpy, python) is re-seeded from ``(seed, e, rank)`` when the epoch starts, so
augmentation and dropout are a function of the epoch too. Stopping after epoch ``k`` and
resuming therefore ends with the same weights as an uninterrupted run (with
``num_workers=0``; with workers each worker is seeded from the same epoch seed as well).

Batch size is the *global* batch of one forward/backward pass: with N processes each takes
``batch_size / N`` images, so a recipe trains the same on any number of processes. One
optimizer step uses ``batch_size * accumulate`` images.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..atomic import write_text_atomic
from ..checkpoint import atomic_torch_save, model_record, read_checkpoint
from ..metrics import SaliencyStats
from ..errors import CheckpointError, ConfigError, DataError, SodlabError
from ..device import resolve_device
from . import distributed as D
from .regularizers import DEFAULT_WEIGHTS, REGULARIZERS, Regularizer, build_regularizer

log = logging.getLogger(__name__)

TASKS = {"sod": "sod", "saliency": "sod", "classification": "classification"}
RUN_FILES = ("config.json", "last.pt", "best.pt", "log.csv")
# Settings that may differ when a run is resumed: they change how long or how fast it
# runs, not what an epoch computes.
RESUMABLE_CHANGES = ("epochs", "num_workers", "val_batch_size", "val_every", "fused")


class NonFiniteLossError(SodlabError):
    """Training produced a NaN or infinite loss."""


@dataclass
class TrainConfig:
    """Everything `fit` needs besides the model and the data, as plain data.

    Task and loss: ``task`` ``"sod"`` (alias ``"saliency"``: targets ``mask``, BCE with
    logits) or ``"classification"`` (targets ``label``, cross-entropy); ``loss`` ``"auto"``
    picks that; ``bce_reduction`` ``"mean"`` over pixels or ``"sum"`` over the pixels of
    each image, averaged over images (the authors' CSF+Res2Net).

    Optimisation: ``optimizer`` ``"adam"`` (coupled L2 ``weight_decay``, as the authors),
    ``"adamw"`` or ``"sgd"``; ``schedule`` ``"step"`` (x ``gamma`` at each epoch in
    ``milestones``; epoch indices count from 0, so ``[200]`` changes the rate for the
    201st epoch on), ``"cosine"`` (per epoch, to 0 at ``epochs``) or ``"constant"``;
    ``warmup_epochs``: linear warm-up of the first epochs (per step); ``accumulate``:
    micro-batches per optimizer step; ``grad_clip``: max gradient norm or None.

    Regulariser on BN scales (`sodlab.train.regularizers`): ``regularizer`` ``"dwd"``,
    ``"l2"``, ``"l1"`` or ``"none"``; ``regularizer_weight`` (None: 3.0, 5e-3, 1e-4);
    ``regularizer_scope``; ``dwd_scale_weights`` (w_b per scale); ``authors_wd_typo``.

    Data (used when `fit` is given folders rather than datasets): ``image_size``,
    ``hflip``. ``batch_size`` is the global batch (see the module docstring);
    ``val_batch_size`` defaults to ``2 * batch_size``; ``drop_last`` drops an incomplete
    last training batch.

    Device: ``amp`` mixed precision on CUDA (``amp_dtype`` ``"bfloat16"`` or
    ``"float16"`` with loss scaling); ``sync_bn`` converts BatchNorm to SyncBatchNorm when
    training on several CUDA processes; ``channels_last`` trains in NHWC memory format
    (about 20% faster for CSNet on CPU); ``fused`` (with ``channels_last``, on a CPU, one
    process) trains through `sodlab.fast.optimize_for_training`: the same parameters and
    maths, gOctConvs fused and BatchNorm + PReLU computed in one step (CSNet: 1.2-1.4x faster
    per step than channels-last alone). It changes no result beyond float rounding, so a run
    resumes with it on or off.
    """

    task: str = "sod"
    epochs: int = 10
    batch_size: int = 8
    accumulate: int = 1
    loss: str = "auto"
    bce_reduction: str = "mean"
    optimizer: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-8
    momentum: float = 0.9
    weight_decay: float = 5e-3
    schedule: str = "step"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    grad_clip: Optional[float] = None
    regularizer: str = "none"
    regularizer_weight: Optional[float] = None
    regularizer_scope: str = "auto"
    dwd_scale_weights: Optional[list[float]] = None
    authors_wd_typo: bool = False
    image_size: Optional[int] = None
    hflip: bool = True
    val_batch_size: Optional[int] = None
    val_every: int = 1
    drop_last: bool = True
    num_workers: int = 0
    seed: int = 0
    amp: bool = False
    amp_dtype: str = "bfloat16"
    sync_bn: bool = False
    channels_last: bool = False
    fused: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"train config key {key!r}: {msg}")

        if self.task not in TASKS:
            raise bad("task", f"use one of {sorted(TASKS)}, got {self.task!r}")
        for key in ("epochs", "batch_size", "accumulate", "val_every"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if key == "epochs" else 1):
                raise bad(key, f"must be a {'non-negative' if key == 'epochs' else 'positive'} integer, got {v!r}")
            setattr(self, key, int(v))
        if self.loss not in ("auto", "bce", "ce"):
            raise bad("loss", f"use 'auto', 'bce' or 'ce', got {self.loss!r}")
        if self.bce_reduction not in ("mean", "sum"):
            raise bad("bce_reduction", f"use 'mean' or 'sum', got {self.bce_reduction!r}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise bad("optimizer", f"use 'adam', 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("step", "cosine", "constant"):
            raise bad("schedule", f"use 'step', 'cosine' or 'constant', got {self.schedule!r}")
        for key in ("lr", "eps", "weight_decay", "gamma", "momentum", "warmup_epochs"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(key, f"must be a non-negative number, got {v!r}")
            setattr(self, key, float(v))
        if len(self.betas) != 2:
            raise bad("betas", f"needs two numbers, got {self.betas!r}")
        self.betas = [float(b) for b in self.betas]
        self.milestones = sorted(int(m) for m in self.milestones)
        if self.regularizer not in REGULARIZERS:
            raise bad("regularizer", f"use one of {sorted(REGULARIZERS)}, got {self.regularizer!r}")
        if self.authors_wd_typo and self.regularizer != "dwd":
            raise bad("authors_wd_typo", "only applies to regularizer 'dwd'")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise bad("amp_dtype", f"use 'bfloat16' or 'float16', got {self.amp_dtype!r}")
        if self.image_size is not None and (int(self.image_size) <= 0):
            raise bad("image_size", f"must be positive, got {self.image_size!r}")
        if self.num_workers < 0:
            raise bad("num_workers", f"must be >= 0, got {self.num_workers!r}")

    @property
    def resolved_task(self) -> str:
        return TASKS[self.task]

    @property
    def resolved_loss(self) -> str:
        if self.loss != "auto":
            return self.loss
        return "bce" if self.resolved_task == "sod" else "ce"

    @property
    def resolved_regularizer_weight(self) -> float:
        return DEFAULT_WEIGHTS[self.regularizer] if self.regularizer_weight is None else float(self.regularizer_weight)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "train config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "TrainConfig":
        return self.from_dict({**self.to_dict(), **changes})


# --- recipes -------------------------------------------------------------------------------
def list_recipes() -> list[str]:
    """Names of the recipes shipped with sodlab."""
    folder = resources.files("sodlab.train") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def read_recipe(name_or_path: str | Path) -> dict:
    """A recipe as plain data: ``{"description", "model": {"name", "args"}, "train": {...}}``.

    ``name_or_path``: a shipped recipe name (see `list_recipes`) or a JSON file, either in
    that form or a flat `TrainConfig` dict.
    """
    path = Path(name_or_path)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: no such recipe file")
        text, source = path.read_text(), str(path)
    else:
        res = resources.files("sodlab.train") / "recipes" / f"{name_or_path}.json"
        if not res.is_file():
            raise ConfigError(f"unknown recipe {str(name_or_path)!r}; shipped: {', '.join(list_recipes())} (or give a .json file)")
        text, source = res.read_text(), f"recipe {name_or_path}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    if "train" not in data:
        data = {"train": data}
    extra = sorted(set(data) - {"description", "model", "train", "notes"})
    if extra:
        raise ConfigError(f"{source}: unknown top-level keys {extra} (use description, model, train, notes)")
    TrainConfig.from_dict(data["train"], source)  # validate early, naming the file
    return data


def load_recipe(name_or_path: str | Path) -> TrainConfig:
    """The `TrainConfig` of a shipped recipe (``csnet-paper``, ``quick``, ...) or a JSON file."""
    data = read_recipe(name_or_path)
    return TrainConfig.from_dict(data["train"], f"recipe {name_or_path}")


# --- data ------------------------------------------------------------------------------------
def folder_dataset(root: str | Path, config: TrainConfig, train: bool, category_names: Optional[Sequence[str]] = None) -> Dataset:
    """A `SODFolder` with the training (flip when ``config.hflip``) or evaluation transform
    at ``config.image_size``; ``category_names`` fixes label indices (give validation the
    training set's)."""
    from ..data import SODFolder
    from ..data import transforms as T

    if config.image_size is None:
        raise ConfigError("training from a folder needs image_size in the train config")
    if train:
        transform = T.train_transform(int(config.image_size), hflip=config.hflip)
    else:
        transform = T.eval_transform(int(config.image_size))
    return SODFolder(root, transform=transform, category_names=category_names)


def _as_dataset(data: Any, config: TrainConfig, train: bool) -> Dataset:
    if isinstance(data, (str, Path)):
        return folder_dataset(data, config, train)
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise DataError(f"expected a dataset or a folder path, got {type(data).__name__}")
    return data


def _unpack(batch: Any, task: str) -> tuple[Tensor, Tensor]:
    if isinstance(batch, Mapping):
        key = "mask" if task == "sod" else "label"
        if "image" not in batch or key not in batch:
            raise DataError(f"{task} training needs batches with 'image' and {key!r}; got keys {sorted(batch)}")
        return batch["image"], batch[key]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise DataError(f"cannot read a batch of type {type(batch).__name__}; datasets should yield dicts with 'image' and 'mask'/'label'")


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch per worker from the loader's generator; numpy and python
    # follow from it so that augmentations in workers are reproducible too.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch), int(rank)]).generate_state(1)[0])


def _seed_everything(s: int) -> None:
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


# --- RNG states in checkpoints (weights_only-loadable: tensors and plain data) ------------------
def _rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def _preserve_global_rng() -> Iterator[None]:
    """`fit` re-seeds the global RNGs every epoch; the caller gets theirs back afterwards."""
    saved = _rng_state()
    try:
        yield
    finally:
        _set_rng_state(saved)


# --- the run ------------------------------------------------------------------------------------
@dataclass
class _Run:
    epoch: int = 0  # completed epochs
    best: float = -math.inf
    best_epoch: int = 0
    rows: list = field(default_factory=list)


def _build_optimizer(config: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def _build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestones, gamma=config.gamma)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)


def _run_dir_state(out: Path, resume: bool) -> Optional[dict]:
    """The record of ``last.pt`` to resume from, or None for a fresh start."""
    present = [n for n in RUN_FILES if (out / n).exists()]
    if not resume:
        if present:
            raise ConfigError(
                f"{out} already holds a run ({', '.join(present)}); pass resume=True (--resume) to continue it, "
                "or choose another output folder"
            )
        return None
    if not (out / "last.pt").is_file():
        if present:
            log.info("%s: no finished epoch to resume from; starting the run from the beginning", out)
        return None
    return read_checkpoint(out / "last.pt")


def _check_resumable(record: Mapping, model: nn.Module, config: TrainConfig, out: Path) -> None:
    stored = record.get("train_state")
    if not isinstance(stored, Mapping):
        raise CheckpointError(f"{out / 'last.pt'}: a model checkpoint without training state; it cannot be resumed")
    mine = model_record(model)
    if record["family"] != mine["family"] or record["config"] != mine["config"]:
        raise ConfigError(f"{out}: the run trains a different model ({record['family']}, config differs); use another output folder")
    old = stored["config"]
    new = config.to_dict()
    diff = [k for k in sorted(set(old) | set(new)) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]
    if diff:
        details = "; ".join(f"{k}: run has {old.get(k)!r}, given {new.get(k)!r}" for k in diff)
        raise ConfigError(f"{out}: cannot resume with a different training config ({details})")


def _warmup_factor(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    if config.warmup_epochs <= 0:
        return 1.0
    t = (epoch + step / max(steps_per_epoch, 1)) / config.warmup_epochs
    return min(1.0, max(t, 1.0 / max(steps_per_epoch, 1) / config.warmup_epochs))


def _task_loss(out: Any, target: Tensor, config: TrainConfig) -> Tensor:
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    kind = config.resolved_loss
    total = None
    for o in outs:
        if kind == "bce":
            t = target.to(o.dtype) if target.dtype != o.dtype else target
            if t.dim() == o.dim() - 1:
                t = t.unsqueeze(1)
            if o.shape[-2:] != t.shape[-2:]:
                o = F.interpolate(o, size=t.shape[-2:], mode="bilinear", align_corners=False)
            if config.bce_reduction == "mean":
                l = F.binary_cross_entropy_with_logits(o.float(), t.float())
            else:
                l = F.binary_cross_entropy_with_logits(o.float(), t.float(), reduction="sum") / o.shape[0]
        else:
            if (target < 0).any():
                raise DataError("classification needs a category label for every training image (found -1: no categories.csv?)")
            l = F.cross_entropy(o.float(), target.long())
        total = l if total is None else total + l
    return total


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, (list, tuple)) else out


def _autocast(dev: torch.device, config: TrainConfig):
    if config.amp and dev.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, config.amp_dtype))
    return contextlib.nullcontext()


def _group_sizes(n_batches: int, accumulate: int) -> list[int]:
    """Micro-batches in the optimizer step each batch belongs to (the last may be short)."""
    full = n_batches // accumulate
    rest = n_batches - full * accumulate
    return [accumulate] * (full * accumulate) + [rest] * rest


def _val_loader(ds: Dataset, config: TrainConfig, info: D.DistInfo) -> DataLoader:
    if info.distributed:
        ds = Subset(ds, list(range(info.rank, len(ds), info.world_size)))
    bs = config.val_batch_size or max(1, 2 * config.batch_size // info.world_size)
    return DataLoader(ds, batch_size=bs, shuffle=False, num_workers=config.num_workers, worker_init_fn=_seed_worker)


@torch.no_grad()
def _validate(model: nn.Module, ds: Dataset, config: TrainConfig, info: D.DistInfo, progress: bool) -> dict[str, float]:
    from tqdm.auto import tqdm

    task = config.resolved_task
    was_training = model.training
    model.eval()
    dev = info.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.float64, device=dev)
    count = torch.zeros((), dtype=torch.float64, device=dev)
    stats = SaliencyStats(dev)
    try:
        loader = _val_loader(ds, config, info)
        for batch in tqdm(loader, desc="validate", leave=False, disable=not (progress and info.is_main)):
            x, y = _unpack(batch, task)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, config):
                out = model(x)
            n = x.shape[0]
            loss_sum += _task_loss(out, y, config).double() * n
            count += n
            logits = _first(out).float()
            if task == "sod":
                m = y if y.dim() == logits.dim() else y.unsqueeze(1)
                if logits.shape[-2:] != m.shape[-2:]:
                    logits = F.interpolate(logits, size=m.shape[-2:], mode="bilinear", align_corners=False)
                stats.update(torch.sigmoid(logits[:, :1]), m)
            else:
                correct += (logits.argmax(1) == y).sum().double()
    finally:
        model.train(was_training)
    packed = torch.stack([loss_sum, correct, count, *stats.tensors()[1:]])
    D.all_reduce_sum(packed, info)
    D.all_reduce_sum(stats.f_sum, info)
    loss_sum, correct, count, stats.mae_sum, stats.count = packed
    n = float(count)
    res = {"val_loss": float(loss_sum) / n if n else float("nan")}
    if task == "sod":
        r = stats.results()
        res.update({"val_max_f": r["max_f"], "val_mae": r["mae"]})
    else:
        res["val_acc"] = float(correct) / n if n else float("nan")
    return res


def _write_log(out: Path, rows: list[dict]) -> None:

    write_text_atomic(out / "log.csv", pd.DataFrame(rows).to_csv(index=False))


def _write_config(out: Path, model: nn.Module, config: TrainConfig, info: D.DistInfo) -> None:
    from .. import __version__

    rec = model_record(model)
    doc = {
        "sodlab_version": __version__,
        "model": {"family": rec["family"], "name": rec["name"], "config": rec["config"]},
        "train": config.to_dict(),
        "world_size": info.world_size,
        "device": info.device.type,
    }
    write_text_atomic(out / "config.json", json.dumps(doc, indent=1))


def fit(
    model: nn.Module,
    train_data: Any,
    val_data: Any = None,
    config: Optional[TrainConfig] = None,
    out_dir: str | Path = "runs/train",
    resume: bool = False,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """Train ``model`` in place and return the per-epoch log as a DataFrame.

    Args:
        model: any sodlab model (it needs ``family`` and ``config`` to be checkpointed);
            for ``task="sod"`` it maps (N,3,H,W) to logits (N,1,H,W), for
            ``"classification"`` to (N,K). BatchNorm handling is the model's own (a model
            that freezes BN keeps doing so: `fit` only calls ``model.train()``).
        train_data, val_data: datasets yielding dicts with ``image`` and ``mask``
            (``label`` for classification) or ``(image, target)`` pairs, or folders
            (built with ``config.image_size``). ``val_data`` may be None.
        config: a `TrainConfig` (default: ``TrainConfig()``).
        out_dir: the run directory (see the module docstring). A directory that holds
            another run is refused unless ``resume``.
        resume: continue the run in ``out_dir`` from its ``last.pt`` (a finished run
            returns its log at once; a run never checkpointed starts over).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"``... Under an
            initialised process group (torchrun) each process trains on its own device
            and only rank 0 writes.
        progress: tqdm bars (rank 0 only).

    Raises:
        NonFiniteLossError: a NaN or infinite loss; ``out_dir/last.pt`` keeps the last
            good epoch.
    """
    from tqdm.auto import tqdm

    config = config if config is not None else TrainConfig()
    config.validate()
    task = config.resolved_task
    dev = resolve_device(device)
    info = D.current(dev)
    if info.distributed and dev.type == "cuda" and dev.index is None:
        info = dataclasses.replace(info, device=torch.device("cuda", info.local_rank))
    dev = info.device
    if config.batch_size % info.world_size:
        raise ConfigError(f"batch_size {config.batch_size} (global) is not divisible by the {info.world_size} processes")
    local_bs = config.batch_size // info.world_size
    out = Path(out_dir)

    record = None
    if info.is_main:
        try:
            record = _run_dir_state(out, resume)
            if record is not None:
                _check_resumable(record, model, config, out)
            error = None
        except SodlabError as exc:
            error = exc
    else:
        error = None
    error = D.broadcast_object(error, info)
    if error is not None:
        raise error
    record = D.broadcast_object(record, info)

    train_ds = _as_dataset(train_data, config, train=True)
    val_ds = _as_dataset(val_data, config, train=False) if val_data is not None else None
    if len(train_ds) < config.batch_size and config.drop_last:
        raise DataError(f"{len(train_ds)} training images are fewer than one batch of {config.batch_size} (drop_last)")

    model.to(dev)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    net = model
    if info.distributed and config.sync_bn and dev.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    reg: Regularizer = build_regularizer(
        config.regularizer, config.resolved_regularizer_weight, config.regularizer_scope, config.dwd_scale_weights, config.authors_wd_typo
    ).attach(net)
    optimizer = _build_optimizer(config, reg.param_groups(net, config.weight_decay))
    scheduler = _build_scheduler(config, optimizer)
    use_scaler = config.amp and config.amp_dtype == "float16" and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    run = _Run()

    if record is not None:
        st = record["train_state"]
        net.load_state_dict(record["state_dict"])
        optimizer.load_state_dict(st["optimizer"])
        scheduler.load_state_dict(st["scheduler"])
        if st.get("scaler"):
            scaler.load_state_dict(st["scaler"])
        run = _Run(epoch=int(st["epoch"]), best=float(st["best"]), best_epoch=int(st["best_epoch"]), rows=list(st["log"]))
        if info.is_main:
            log.info("resuming %s after epoch %d of %d", out, run.epoch, config.epochs)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _write_config(out, net, config, info)

    ddp = net
    if config.fused and config.channels_last and dev.type == "cpu" and not info.distributed:
        from ..fast import optimize_for_training

        ddp = optimize_for_training(net, channels_last=True)
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)

    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed, drop_last=False)
    metric_key = "val_max_f" if task == "sod" else "val_acc"

    with _preserve_global_rng():
        if record is not None:
            _set_rng_state(record["train_state"]["rng"])
        try:
            for epoch in range(run.epoch, config.epochs):
                t0 = time.perf_counter()
                seed = _epoch_seed(config.seed, epoch, info.rank)
                _seed_everything(seed)
                sampler.set_epoch(epoch)
                loader = DataLoader(
                    train_ds,
                    batch_size=local_bs,
                    sampler=sampler,
                    drop_last=config.drop_last,
                    num_workers=config.num_workers,
                    worker_init_fn=_seed_worker,
                    generator=torch.Generator().manual_seed(seed),
                    pin_memory=dev.type == "cuda",
                )
                n_batches = len(loader)
                if n_batches == 0:
                    raise DataError(f"no training batch of {local_bs} images per process (dataset of {len(train_ds)})")
                groups = _group_sizes(n_batches, config.accumulate)
                steps_per_epoch = math.ceil(n_batches / config.accumulate)
                base_lrs = [g["lr"] for g in optimizer.param_groups]
                ddp.train()
                sums = torch.zeros(4, dtype=torch.float64)  # loss*n, task*n, reg*n, n
                bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not (progress and info.is_main))
                optimizer.zero_grad(set_to_none=True)
                for i, batch in enumerate(bar):
                    x, y = _unpack(batch, task)
                    x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                    if config.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    step_end = (i + 1) % config.accumulate == 0 or i == n_batches - 1
                    sync = contextlib.nullcontext() if (step_end or not info.distributed) else ddp.no_sync()
                    with sync:
                        with _autocast(dev, config), reg.recording():
                            out_ = ddp(x)
                        task_loss = _task_loss(out_, y, config)
                        r = reg.penalty().to(task_loss.device)
                        loss = task_loss + reg.weight * r
                        bad = torch.tensor([0.0 if bool(torch.isfinite(loss)) else 1.0], device=dev)
                        D.all_reduce_sum(bad, info)
                        if bad.item() > 0:
                            raise NonFiniteLossError(
                                f"epoch {epoch + 1}, batch {i + 1}: the loss is {loss.item()} (task {task_loss.item()}, regulariser {r.item()}); "
                                f"training stopped. {out / 'last.pt'} keeps the last good epoch ({run.epoch}); "
                                "lower the learning rate (or check the data) and resume"
                            )
                        scaler.scale(loss / groups[i]).backward()
                    n = x.shape[0]
                    sums += torch.tensor([loss.item() * n, task_loss.item() * n, r.item() * n, n], dtype=torch.float64)
                    if step_end:
                        step = i // config.accumulate
                        factor = _warmup_factor(config, epoch, step, steps_per_epoch)
                        for g, lr0 in zip(optimizer.param_groups, base_lrs):
                            g["lr"] = lr0 * factor
                        if config.grad_clip:
                            scaler.unscale_(optimizer)
                            nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                        scaler.step(optimizer)
                        scaler.update()
                        optimizer.zero_grad(set_to_none=True)
                        for g, lr0 in zip(optimizer.param_groups, base_lrs):
                            g["lr"] = lr0
                    if progress and info.is_main and i % 10 == 0:
                        bar.set_postfix(loss=f"{sums[0].item() / max(sums[3].item(), 1):.4f}")
                bar.close()
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                sums = D.all_reduce_sum(sums.to(dev), info).cpu()
                n_seen = max(float(sums[3]), 1.0)
                train_time = time.perf_counter() - t0
                row = {
                    "epoch": epoch + 1,
                    "train_loss": float(sums[0]) / n_seen,
                    "train_task_loss": float(sums[1]) / n_seen,
                    "train_reg": float(sums[2]) / n_seen,
                    "lr": lr,
                    "images_per_s": n_seen / train_time,
                }
                do_val = val_ds is not None and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs)
                if do_val:
                    row.update(_validate(net, val_ds, config, info, progress))
                row["time_s"] = time.perf_counter() - t0
                run.rows.append(row)
                run.epoch = epoch + 1
                score = row.get(metric_key, float("nan")) if val_ds is not None else float(epoch)
                improved = score == score and score > run.best
                if improved:
                    run.best, run.best_epoch = float(score), epoch + 1
                if info.is_main:
                    _save(out, net, optimizer, scheduler, scaler, config, run, improved)
                    shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch",))
                    log.info("epoch %d/%d: %s", epoch + 1, config.epochs, shown)
                D.barrier(info)
        finally:
            reg.detach()
    if net is not model:  # SyncBatchNorm copy: hand the trained weights back
        model.load_state_dict(net.state_dict())
    return pd.DataFrame(run.rows)


def _save(out: Path, net: nn.Module, optimizer, scheduler, scaler, config: TrainConfig, run: _Run, improved: bool) -> None:
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
        "rng": _rng_state(),
        "sampler": {"seed": config.seed, "epoch": run.epoch},
        "config": config.to_dict(),
        "best": run.best,
        "best_epoch": run.best_epoch,
        "log": run.rows,
    }
    atomic_torch_save(record, out / "last.pt")
    _write_log(out, run.rows)
