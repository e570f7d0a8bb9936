"""Decoding a dataset's files once into memory (`SODFolder.preload`, `LabelledImages.preload`).

A study's epoch over 12,000 small images spends about as long decoding JPEGs and PNGs as the
model spends on them; decoded once, every later epoch reads memory. Both datasets share the
memory budget, the bar and the stacking here.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

# What `preload` may hold by default: a dataset whose decoded pixels need more stays on disk.
PRELOAD_MAX_BYTES = 2 * 2**30

Item = TypeVar("Item")


def decode_all(root: Path, count: int, need: int, max_bytes: int, read: Callable[[int], Item], progress: bool = False,
               what: str = "images") -> Optional[list[Item]]:
    """``read(i)`` of every item ``i < count`` of the dataset in ``root`` (a bar with
    ``progress``), or None with a warning when its ``need`` bytes of decoded data exceed
    ``max_bytes``. Any error of ``read`` propagates, so an unreadable file fails here as it would
    when read later."""
    if need > max_bytes:
        log.warning("%s: not preloading %d %s: they need %.1f GiB of memory, over the %.1f GiB allowed",
                    root, count, what, need / 2**30, max_bytes / 2**30)
        return None
    items = [read(i) for i in tqdm(range(count), desc=f"preloading {root.name}", leave=False, disable=not progress)]
    log.debug("%s: %d %s preloaded (%.1f MiB)", root, count, what, need / 2**20)
    return items


def stacked(arrays: Sequence[np.ndarray]) -> Optional[Tensor]:
    """One (N, ...) tensor of ``arrays`` when they share a shape (batches can then be indexed
    and transformed at once), else None."""
    if len({a.shape for a in arrays}) != 1:
        return None
    return torch.from_numpy(np.stack(arrays))


def checked_index(index: int, count: int) -> int:
    """``index`` into ``count`` items, negative ones from the end; an `IndexError` outside."""
    if not -count <= index < count:
        raise IndexError(f"index {index} out of range for {count} items")
    return index % count
