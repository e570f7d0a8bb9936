"""How much two tasks' most important channels overlap, with its uncertainty and its controls.

The overlap of one layer is the Jaccard index of the two tasks' top-``k`` channel sets minus
the index two random ``k``-sets would have (`chance_topk_jaccard`); a study's effect is its
mean over layers (`excess_overlap`). Importance is a mean over images of per-image
attributions, so three questions can be asked of the same (N, C) matrices:

* **how sure** (`bootstrap_overlap`): resample the images (one resample for every layer and
  both tasks: the comparison is paired), recompute both importances and the effect; a
  percentile interval;
* **what chance gives** (`permutation_null`): relabel one task's channels at random in each
  layer; the null distribution of the effect and a one-sided p-value for "more overlap than
  chance" and for "less";
* **whether the protocol can see sharing at all** (`split_half_overlap`): the same task on
  two disjoint halves of the images. Its channels are shared by construction, so a reliable
  ranking overlaps with itself far above chance; when it does not, no overlap between two
  tasks can be read as "different channels".

Each comes in a pooled form over replicates (models trained from several seeds, each with its
own attributions): the effect is the mean of the replicates' effects, and the bootstrap draws
replicates, then images within each (`pooled_bootstrap_overlap`), so that its interval speaks
for new seeds as well as new images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from .importance import chance_topk_jaccard, topk_jaccard


@dataclass(frozen=True)
class LayerAttributions:
    """Per-image, per-channel attributions (N, C) of two tasks at one layer, and the ``k`` of
    their top sets. Row ``i`` of both is the same image."""

    layer: str
    a: Tensor
    b: Tensor
    k: int

    def __post_init__(self) -> None:
        if self.a.dim() != 2 or self.a.shape != self.b.shape:
            raise ConfigError(f"layer {self.layer}: attributions must be two (N, C) matrices of one shape, got "
                              f"{tuple(self.a.shape)} and {tuple(self.b.shape)}")
        if not 1 <= self.k <= self.a.shape[1]:
            raise ConfigError(f"layer {self.layer}: k must be in 1..{self.a.shape[1]}, got {self.k}")


def _check(layers: Sequence[LayerAttributions]) -> int:
    if not layers:
        raise ConfigError("no layers to compare")
    n = {int(la.a.shape[0]) for la in layers}
    if len(n) != 1:
        raise ConfigError(f"every layer needs the same images; image counts differ: {sorted(n)}")
    return n.pop()


def excess_overlap(layers: Sequence[LayerAttributions], rows: Optional[np.ndarray] = None) -> float:
    """Mean over layers of the top-``k`` Jaccard of the two tasks' importances (means over the
    images ``rows``, all by default) minus its chance level."""
    _check(layers)
    out = []
    for la in layers:
        a, b = (la.a, la.b) if rows is None else (la.a[rows], la.b[rows])
        out.append(topk_jaccard(a.mean(0), b.mean(0), la.k) - chance_topk_jaccard(la.a.shape[1], la.k))
    return float(np.mean(out))


Replicates = Sequence[Sequence[LayerAttributions]]


def _check_replicates(replicates: Replicates) -> list[int]:
    if not replicates:
        raise ConfigError("no replicates to pool")
    return [_check(layers) for layers in replicates]


def pooled_overlap(replicates: Replicates) -> float:
    """The mean over replicates of their `excess_overlap`."""
    _check_replicates(replicates)
    return float(np.mean([excess_overlap(layers) for layers in replicates]))


def pooled_bootstrap_overlap(replicates: Replicates, n_boot: int = 1000, level: float = 0.90,
                             seed: int = 0) -> tuple[float, float]:
    """Percentile interval at ``level`` of `pooled_overlap` over ``n_boot`` two-level resamples:
    the replicates with replacement (when there is more than one), then within each drawn
    replicate its images with replacement (the same rows for every layer and both tasks)."""
    sizes = _check_replicates(replicates)
    if min(sizes) < 2:
        raise ConfigError(f"a bootstrap over images needs at least 2 images, got {min(sizes)}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    r = len(replicates)
    stats = np.empty(int(n_boot))
    for t in range(int(n_boot)):
        drawn = rng.integers(0, r, r) if r > 1 else [0]
        stats[t] = np.mean([excess_overlap(replicates[i], rng.integers(0, sizes[i], sizes[i])) for i in drawn])
    tail = (1.0 - level) / 2
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1.0 - tail))


def bootstrap_overlap(layers: Sequence[LayerAttributions], n_boot: int = 1000, level: float = 0.90,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile interval at ``level`` of `excess_overlap` over ``n_boot`` resamples of the
    images (with replacement, the same rows for every layer and both tasks)."""
    return pooled_bootstrap_overlap([layers], n_boot, level, seed)


@dataclass(frozen=True)
class NullTest:
    """`permutation_null`'s result: the observed effect, the null's mean and 5th/95th
    percentiles, and one-sided p-values (with the +1 correction, never 0)."""

    observed: float
    null_mean: float
    null_q05: float
    null_q95: float
    p_greater: float
    p_less: float
    n_perm: int


def pooled_permutation_null(replicates: Replicates, n_perm: int = 2000, seed: int = 0) -> NullTest:
    """`permutation_null` of `pooled_overlap`: each permutation relabels the second task's
    channels at random in every layer of every replicate, and averages over the replicates."""
    _check_replicates(replicates)
    means = [[(la.a.mean(0), la.b.mean(0), la.k) for la in layers] for layers in replicates]
    observed = pooled_overlap(replicates)
    rng = np.random.default_rng(seed)
    null = np.empty(int(n_perm))
    for t in range(int(n_perm)):
        null[t] = np.mean([np.mean([topk_jaccard(a, b[torch.from_numpy(rng.permutation(len(b)))], k) - chance_topk_jaccard(len(a), k)
                                    for a, b, k in rep]) for rep in means])
    return NullTest(observed, float(null.mean()), float(np.quantile(null, 0.05)), float(np.quantile(null, 0.95)),
                    float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_perm)),
                    float((1 + np.sum(null <= observed + 1e-12)) / (1 + n_perm)), int(n_perm))


def permutation_null(layers: Sequence[LayerAttributions], n_perm: int = 2000, seed: int = 0) -> NullTest:
    """The effect when the second task's channel labels are shuffled in every layer (its
    importances intact, their channel assignment random): what `excess_overlap` is when the
    two rankings are unrelated."""
    return pooled_permutation_null([layers], n_perm, seed)


def split_half_overlap(layers: Sequence[LayerAttributions], task: str = "a", seed: int = 0) -> float:
    """`excess_overlap` of one task (``"a"`` or ``"b"``) with itself, between two disjoint
    random halves of the images: the overlap the protocol reports when channels are shared."""
    n = _check(layers)
    if task not in ("a", "b"):
        raise ConfigError(f"task must be 'a' or 'b', got {task!r}")
    if n < 2:
        raise ConfigError(f"a split-half needs at least 2 images, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    first, second = order[: n // 2], order[n // 2:]
    halves = [LayerAttributions(la.layer, getattr(la, task)[first], getattr(la, task)[second][: len(first)], la.k) for la in layers]
    return excess_overlap(halves)


def pooled_split_half_overlap(replicates: Replicates, task: str = "a", seed: int = 0) -> float:
    """The mean over replicates of their `split_half_overlap`."""
    _check_replicates(replicates)
    return float(np.mean([split_half_overlap(layers, task, seed) for layers in replicates]))
