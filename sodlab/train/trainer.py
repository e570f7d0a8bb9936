"""`fit`: train any sodlab model for saliency or classification, crash-safe and resumable.

A run directory holds ``config.json`` (the resolved configuration), ``last.pt`` (written
atomically after every epoch: model, optimizer, scheduler, grad scaler, RNG states, epoch,
config, log), ``best.pt`` (the best epoch by validation max-F, or top-1 accuracy for
classification; the last epoch when there is no validation data) and ``log.csv`` (one row
per epoch). Both checkpoints are ordinary sodlab checkpoints (`sodlab.load` reads them and
ignores the training state).

Exact resumption: the data order of epoch ``e`` is a permutation drawn from
``(seed, e)`` (torch's `DistributedSampler`, also on one process) and every global RNG
(torch, numpy, python) is re-seeded from ``(seed, e, rank)`` when the epoch starts, so
augmentation and dropout are a function of the epoch too (`sodlab.train.rng`). Stopping after epoch ``k`` and
resuming therefore ends with the same weights as an uninterrupted run (with
``num_workers=0``; with workers each worker is seeded from the same epoch seed as well).

Batch size is the *global* batch of one forward/backward pass: with N processes each takes
``batch_size / N`` images, so a recipe trains the same on any number of processes. One
optimizer step uses ``batch_size * accumulate`` images.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from ..checkpoint import describe_model, model_task
from ..device import resolve_device
from ..errors import ConfigError, DataError, SodlabError
from ..fast import optimize_for_training
from . import distributed as D
from .config import TrainConfig
from .data import as_dataset, class_names_of, train_loader, unpack
from .loss import autocast, task_loss
from .optim import build_optimizer, build_scheduler, group_sizes, rescale_lr, step_factor
from .regularizers import Regularizer, build_regularizer
from .rng import epoch_seed, preserve_global_rng, seed_everything, set_rng_state
from .rundir import RunState, check_resumable, discard_unstarted, open_run_dir, save_epoch, write_config
from .validation import validate

# The validation score a run is selected on (``best.pt``), per task; higher is better.
SELECTION_METRICS = {"sod": "val_max_f", "classification": "val_top1"}

log = logging.getLogger(__name__)


class NonFiniteLossError(SodlabError):
    """Training produced a NaN or infinite loss."""


@dataclasses.dataclass
class _Parts:
    """What a run trains with. ``net`` is the model (a SyncBatchNorm copy under ``sync_bn``),
    ``ddp`` what the forward pass calls (``net``, its fused twin or its DDP wrapper)."""

    net: nn.Module
    reg: Regularizer
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    ddp: Optional[nn.Module] = None


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
            another run is refused unless ``resume``; one holding files of a run's names
            that sodlab did not write is always refused.
        resume: continue the run in ``out_dir`` from its ``last.pt`` (a finished run
            returns its log at once; a run never checkpointed, or no run, starts over).
            ``config`` may differ from the run's only in `RESUMABLE_CHANGES`; a new ``lr``
            rescales the restored optimizer and schedule.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"``... Under an
            initialised process group (torchrun) each process trains on its own device
            and only rank 0 writes.
        progress: tqdm bars (rank 0 only).

    Raises:
        NonFiniteLossError: a NaN or infinite loss; ``out_dir/last.pt`` keeps the last
            good epoch, if one finished (else nothing is left in ``out_dir``).
    """
    config = config if config is not None else TrainConfig()
    config.validate()
    info = _dist_info(device, config)
    out = Path(out_dir)
    existed = out.exists()
    record = _open(out, resume, model, config, info)
    _check_task(model, config)
    bars = progress and info.is_main
    train_ds = as_dataset(train_data, config, train=True, progress=bars)
    names = class_names_of(train_ds)
    val_ds = as_dataset(val_data, config, train=False, class_names=names, progress=bars) if val_data is not None else None
    if config.resolved_task == "classification" and names:
        k = getattr(getattr(model, "config", None), "num_classes", None)
        if isinstance(k, int) and k < len(names):
            raise ConfigError(f"the model has {k} outputs but the training data has {len(names)} classes ({', '.join(names)})")
        model.class_names = names  # best.pt and last.pt remember what each label means
    if len(train_ds) < config.batch_size and config.drop_last:
        raise DataError(f"{len(train_ds)} training images are fewer than one batch of {config.batch_size} (drop_last)")
    parts = _build(model, config, info)
    try:
        run = _restore(record, parts, config, info, out)
        if info.is_main:
            write_config(out, parts.net, config, info)
        parts.ddp = _wrap(parts.net, config, info)
        with preserve_global_rng():
            if record is not None:
                set_rng_state(record["train_state"]["rng"])
            sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed, drop_last=False)
            for epoch in range(run.epoch, config.epochs):
                _epoch(parts, train_ds, val_ds, sampler, epoch, config, info, out, run, progress)
    except BaseException:
        if info.is_main and record is None:
            discard_unstarted(out, existed)
        raise
    finally:
        parts.reg.detach()
    if parts.net is not model:  # SyncBatchNorm copy: hand the trained weights back
        model.load_state_dict(parts.net.state_dict())
    return pd.DataFrame(run.rows)


# --- before the first epoch ----------------------------------------------------------------------
def _check_task(model: nn.Module, config: TrainConfig) -> None:
    """A sodlab model trains for its own task only (a classifier's logits are no saliency map)."""
    if getattr(type(model), "family", None) is None and getattr(model, "task", None) is None:
        return  # not a sodlab model: its task is whatever the user says
    if model_task(model) != config.resolved_task:
        want = "saliency" if config.resolved_task == "sod" else "classification"
        raise ConfigError(f"the model is {describe_model(model)} but the train config's task is {config.task!r}: "
                          f"use a {want} model, or a recipe for its task (--set task=...)")


def _dist_info(device: str | torch.device, config: TrainConfig) -> D.DistInfo:
    dev = resolve_device(device)
    info = D.current(dev)
    if info.distributed and dev.type == "cuda" and dev.index is None:
        info = dataclasses.replace(info, device=torch.device("cuda", info.local_rank))
    if config.batch_size % info.world_size:
        raise ConfigError(f"batch_size {config.batch_size} (global) is not divisible by the {info.world_size} processes")
    return info


def _open(out: Path, resume: bool, model: nn.Module, config: TrainConfig, info: D.DistInfo) -> Optional[dict]:
    """Rank 0 checks the run folder (before any work); every process gets its verdict and
    the record to resume from."""
    record, error = None, None
    if info.is_main:
        try:
            record = open_run_dir(out, resume)
            if record is not None:
                check_resumable(record, model, config, out)
        except SodlabError as exc:
            error = exc
    error = D.broadcast_object(error, info)
    if error is not None:
        raise error
    return D.broadcast_object(record, info)


def _build(model: nn.Module, config: TrainConfig, info: D.DistInfo) -> _Parts:
    dev = info.device
    model.to(dev)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    net = model
    if info.distributed and config.sync_bn and dev.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    reg = build_regularizer(
        config.regularizer, config.resolved_regularizer_weight, config.regularizer_scope, config.dwd_scale_weights, config.authors_wd_typo
    ).attach(net)
    optimizer = build_optimizer(config, reg.param_groups(net, config.weight_decay))
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and config.amp_dtype == "float16" and dev.type == "cuda")
    return _Parts(net, reg, optimizer, build_scheduler(config, optimizer), scaler)


def _restore(record: Optional[dict], parts: _Parts, config: TrainConfig, info: D.DistInfo, out: Path) -> RunState:
    """The run's state from ``last.pt`` (weights, optimizer, schedule, scaler), or a fresh one."""
    if record is None:
        return RunState()
    st = record["train_state"]
    parts.net.load_state_dict(record["state_dict"])
    parts.optimizer.load_state_dict(st["optimizer"])
    parts.scheduler.load_state_dict(st["scheduler"])
    old_lr = float(st["config"]["lr"])
    rescale_lr(parts.optimizer, parts.scheduler, old_lr, config.lr)
    if st.get("scaler"):
        parts.scaler.load_state_dict(st["scaler"])
    if info.is_main:
        log.info("resuming %s after epoch %d of %d", out, int(st["epoch"]), config.epochs)
        if old_lr != config.lr:
            log.warning("%s: learning rate changed from %g to %g at epoch %d", out, old_lr, config.lr, int(st["epoch"]) + 1)
    return RunState(epoch=int(st["epoch"]), best=float(st["best"]), best_epoch=int(st["best_epoch"]), rows=list(st["log"]))


def _wrap(net: nn.Module, config: TrainConfig, info: D.DistInfo) -> nn.Module:
    """What the forward pass calls: the fused training twin (one CPU process, channels-last)
    or DistributedDataParallel (several processes), sharing ``net``'s parameters."""
    if config.fused and config.channels_last and info.device.type == "cpu" and not info.distributed:
        return optimize_for_training(net, channels_last=True)
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(net, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    return net


# --- one epoch ------------------------------------------------------------------------------------
def _epoch(parts: _Parts, train_ds: Dataset, val_ds: Optional[Dataset], sampler: DistributedSampler, epoch: int, config: TrainConfig,
           info: D.DistInfo, out: Path, run: RunState, progress: bool) -> None:
    """Train, validate (when due) and checkpoint epoch ``epoch`` (counted from 0)."""
    t0 = time.perf_counter()
    seed = epoch_seed(config.seed, epoch, info.rank)
    seed_everything(seed)
    sampler.set_epoch(epoch)
    row = _train_epoch(parts, train_loader(train_ds, sampler, config, info, seed), epoch, config, info, out, run, progress)
    row["images_per_s"] = row.pop("images") / (time.perf_counter() - t0)
    if val_ds is not None and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs):
        row.update(validate(parts.net, val_ds, config, info, progress))
    row["time_s"] = time.perf_counter() - t0
    run.rows.append(row)
    run.epoch = epoch + 1
    score = row.get(SELECTION_METRICS[config.resolved_task], float("nan")) if val_ds is not None else float(epoch)
    improved = score == score and score > run.best
    if improved:
        run.best, run.best_epoch = float(score), epoch + 1
    if info.is_main:
        save_epoch(out, parts.net, parts.optimizer, parts.scheduler, parts.scaler, config, run, improved)
        log.info("epoch %d/%d: %s", epoch + 1, config.epochs, ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
    D.barrier(info)


def _train_epoch(parts: _Parts, loader: DataLoader, epoch: int, config: TrainConfig, info: D.DistInfo, out: Path, run: RunState,
                 progress: bool) -> dict:
    """One pass over ``loader``; the log row (mean losses over the images seen, the rate)."""
    n_batches = len(loader)
    if n_batches == 0:
        raise DataError(f"no training batch of {loader.batch_size} images per process (dataset of {len(loader.dataset)})")
    groups = group_sizes(n_batches, config.accumulate)
    steps_per_epoch = math.ceil(n_batches / config.accumulate)
    base_lrs = [g["lr"] for g in parts.optimizer.param_groups]
    parts.ddp.train()
    sums = torch.zeros(4, dtype=torch.float64)  # loss*n, task*n, reg*n, n
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not (progress and info.is_main))
    parts.optimizer.zero_grad(set_to_none=True)
    factor = 1.0
    for i, batch in enumerate(bar):
        step_end = (i + 1) % config.accumulate == 0 or i == n_batches - 1
        sums += _forward_backward(parts, batch, groups[i], step_end, f"epoch {epoch + 1}, batch {i + 1}", config, info, out, run)
        if step_end:
            factor = step_factor(config, epoch, i // config.accumulate, steps_per_epoch)
            _optimizer_step(parts, base_lrs, factor, config)
        if progress and info.is_main and i % 10 == 0:
            bar.set_postfix(loss=f"{sums[0].item() / max(sums[3].item(), 1):.4f}")
    bar.close()
    lr = parts.optimizer.param_groups[0]["lr"] * factor  # the rate of the epoch's last step
    parts.scheduler.step()
    sums = D.all_reduce_sum(sums.to(info.device), info).cpu()
    n = max(float(sums[3]), 1.0)
    return {"epoch": epoch + 1, "train_loss": float(sums[0]) / n, "train_task_loss": float(sums[1]) / n, "train_reg": float(sums[2]) / n,
            "lr": lr, "images": n}


def _forward_backward(parts: _Parts, batch: Any, group: int, step_end: bool, where: str, config: TrainConfig, info: D.DistInfo,
                      out: Path, run: RunState) -> Tensor:
    """Loss and gradients of one micro-batch (``1/group`` of the step's gradient);
    returns (loss*n, task loss*n, penalty*n, n)."""
    dev = info.device
    x, y = unpack(batch, config.resolved_task)
    x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    # DDP all-reduces gradients only at the step's last micro-batch
    sync = contextlib.nullcontext() if (step_end or not info.distributed) else parts.ddp.no_sync()
    with sync:
        with autocast(dev, config), parts.reg.recording():
            pred = parts.ddp(x)
        task = task_loss(pred, y, config)
        r = parts.reg.penalty().to(task.device)
        loss = task + parts.reg.weight * r
        bad = torch.tensor([0.0 if bool(torch.isfinite(loss)) else 1.0], device=dev)
        D.all_reduce_sum(bad, info)  # every process stops together
        if bad.item() > 0:
            raise _non_finite(where, loss, task, r, out, run, config)
        parts.scaler.scale(loss / group).backward()
    n = x.shape[0]
    return torch.tensor([loss.item() * n, task.item() * n, r.item() * n, n], dtype=torch.float64)


def _optimizer_step(parts: _Parts, base_lrs: list[float], factor: float, config: TrainConfig) -> None:
    """One optimizer step at ``factor`` (warm-up) times the scheduled rates."""
    opt = parts.optimizer
    for g, lr0 in zip(opt.param_groups, base_lrs):
        g["lr"] = lr0 * factor
    if config.grad_clip:
        parts.scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(parts.net.parameters(), config.grad_clip)
    parts.scaler.step(opt)
    parts.scaler.update()
    opt.zero_grad(set_to_none=True)
    for g, lr0 in zip(opt.param_groups, base_lrs):
        g["lr"] = lr0


def _non_finite(where: str, loss: Tensor, task: Tensor, r: Tensor, out: Path, run: RunState, config: TrainConfig) -> NonFiniteLossError:
    """The error for a NaN/inf loss, with advice that works: a lower ``lr`` is an allowed
    change on resume, and a run that never finished an epoch leaves nothing to resume."""
    lower = f"{config.lr / 10:g}"
    head = f"{where}: the loss is {loss.item()} (task {task.item()}, regulariser {r.item()}); training stopped. "
    if run.epoch == 0:
        return NonFiniteLossError(
            head + f"No epoch finished, so nothing was saved. Lower the learning rate and start again: the same command with "
            f"--set lr={lower} (fit: lr={lower})"
        )
    return NonFiniteLossError(
        head + f"{out / 'last.pt'} keeps the last good epoch ({run.epoch}). Lower the learning rate and resume from it: "
        f"the same command with --resume --set lr={lower} (fit: resume=True, lr={lower})"
    )
