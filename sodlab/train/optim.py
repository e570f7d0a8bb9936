"""Optimizer, learning-rate schedule, warm-up and gradient-accumulation groups of a run."""
from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from .config import TrainConfig


def build_optimizer(config: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestones, gamma=config.gamma)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
    # "onecycle" changes the rate within epochs: `step_factor` applies it step by step
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)


def rescale_lr(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, old: float, new: float) -> None:
    """A resumed run with base rate ``new`` instead of ``old``: the restored optimizer and
    schedule scaled by ``new / old``. Every schedule here (step, cosine to 0, constant) is
    proportional to the base rate, so this is the state a run at ``new`` would be in."""
    if new == old:
        return
    if old <= 0:
        raise ConfigError(f"train config key 'lr': the run was trained at lr {old}, which cannot be rescaled to {new}")
    factor = new / old
    for g in optimizer.param_groups:
        g["lr"] *= factor
        if "initial_lr" in g:
            g["initial_lr"] *= factor
    scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def warmup_factor(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    if config.warmup_epochs <= 0:
        return 1.0
    t = (epoch + step / max(steps_per_epoch, 1)) / config.warmup_epochs
    return min(1.0, max(t, 1.0 / max(steps_per_epoch, 1) / config.warmup_epochs))


# torch's OneCycleLR defaults: start at lr/25, peak after 30% of the steps, end at lr/25/1e4.
ONECYCLE_PCT, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4


def onecycle_factor(step: int, total_steps: int) -> float:
    """The one-cycle rate at optimizer step ``step`` (from 0) of ``total_steps``, as a
    fraction of the peak (torch's OneCycleLR with cosine annealing, rate only). A function of
    the step alone, so a resumed run follows the same curve."""
    lo, end = 1.0 / ONECYCLE_DIV, 1.0 / ONECYCLE_DIV / ONECYCLE_FINAL_DIV
    up = max(ONECYCLE_PCT * total_steps - 1, 1.0)
    down = max(total_steps - 1 - up, 1.0)
    if step <= up:
        a, b, t = lo, 1.0, step / up
    else:
        a, b, t = 1.0, end, min((step - up) / down, 1.0)
    return b + (a - b) * (1 + math.cos(math.pi * t)) / 2


def step_factor(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """What multiplies the epoch's scheduled rate at optimizer step ``step`` of ``epoch``:
    the warm-up, and the one-cycle schedule when chosen."""
    f = warmup_factor(config, epoch, step, steps_per_epoch)
    if config.schedule == "onecycle":
        f *= onecycle_factor(epoch * steps_per_epoch + step, config.epochs * steps_per_epoch)
    return f


def group_sizes(n_batches: int, accumulate: int) -> list[int]:
    """Micro-batches in the optimizer step each batch belongs to (the last may be short)."""
    full = n_batches // accumulate
    rest = n_batches - full * accumulate
    return [accumulate] * (full * accumulate) + [rest] * rest
