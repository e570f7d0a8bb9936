"""Bootstrap intervals over items (images), reproducible from a seed.

The resampling is `scipy.stats.bootstrap` (percentile intervals); a statistic that reads whole
rows of a multi-dimensional array (max-F over per-image precision/recall curves) is bootstrapped
through the item indices, since scipy resamples along one axis of 1-d samples.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.stats import bootstrap

from ..errors import ConfigError


def _mean0(a: np.ndarray) -> float:
    return float(np.mean(a, axis=0))


def _bootstrap(index_samples: tuple[np.ndarray, ...], statistic: Callable[..., float], n_boot: int, ci: float, seed: int):
    # independent resampling of each sample (paired=False); one sample of row indices resamples rows whole
    return bootstrap(index_samples, statistic, n_resamples=n_boot, confidence_level=ci, method="percentile",
                     vectorized=False, paired=False, rng=np.random.default_rng(seed))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = _mean0,
) -> dict[str, float]:
    """Percentile bootstrap interval of ``statistic`` over items (rows of ``values``):
    ``{"estimate", "low", "high"}``. Rows are resampled whole, so a paired comparison is
    ``values = np.stack([a, b], 1)`` with a statistic of ``v[:, 0]`` and ``v[:, 1]``."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        raise ConfigError(f"a bootstrap needs at least 2 items, got {len(v)}")
    res = _bootstrap((np.arange(len(v)),), lambda i: statistic(v[i]), n_boot, ci, seed)
    return {"estimate": float(statistic(v)), "low": float(res.confidence_interval.low), "high": float(res.confidence_interval.high)}


def bootstrap_gap(
    seen: Sequence[float] | np.ndarray,
    unseen: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = _mean0,
) -> dict[str, float]:
    """Bootstrap interval of ``statistic(seen) - statistic(unseen)``, resampling the images of
    each group independently: ``{"gap", "low", "high", "p_gap_le_0"}`` (the last: share of
    resamples where the gap is not positive, a one-sided bootstrap p-value)."""
    s, u = np.asarray(seen, dtype=np.float64), np.asarray(unseen, dtype=np.float64)
    if len(s) < 2 or len(u) < 2:
        raise ConfigError(f"a bootstrap needs at least 2 items per group, got {len(s)} seen and {len(u)} unseen")
    res = _bootstrap((np.arange(len(s)), np.arange(len(u))), lambda i, j: statistic(s[i]) - statistic(u[j]), n_boot, ci, seed)
    return {
        "gap": float(statistic(s) - statistic(u)),
        "low": float(res.confidence_interval.low),
        "high": float(res.confidence_interval.high),
        "p_gap_le_0": float((res.bootstrap_distribution <= 0).mean()),
    }
