"""Random state of a training run: per-epoch seeds, the seeded model initialisation, and the
global RNG states saved in and restored from checkpoints.

Every global RNG (torch, numpy, python) is re-seeded from ``(seed, epoch, rank)`` when an
epoch starts, so augmentation and dropout are a function of the epoch; the model's initial
weights are a function of ``seed`` alone (`seeded`). The caller's own RNG states are
restored afterwards in both cases.
"""
from __future__ import annotations

import contextlib
import random
from typing import Iterator, Mapping

import numpy as np
import torch

# Keeps the initialisation stream apart from the epoch streams (which use epoch >= 0).
_INIT_STREAM = 2**31 - 1


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of every global RNG on process ``rank`` during ``epoch``."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(rank)]).generate_state(1)[0])


def seed_everything(s: int) -> None:
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


def rng_state() -> dict:
    """The global RNG states as tensors and plain data (a weights_only-loadable checkpoint)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        # a checkpoint from a machine with other GPUs: their CUDA streams do not matter here
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserve_global_rng() -> Iterator[None]:
    """`fit` re-seeds the global RNGs every epoch; the caller gets theirs back afterwards."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Global RNGs seeded from ``seed`` for building a model (its random initial weights),
    the caller's states restored afterwards: same seed, same initial weights."""
    with preserve_global_rng():
        seed_everything(epoch_seed(seed, _INIT_STREAM, 0))
        yield
