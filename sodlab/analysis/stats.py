"""Bootstrap intervals over items (images), or over seeds and images, reproducible from a seed.

The resampling is `scipy.stats.bootstrap` (percentile intervals); a statistic that reads whole
rows of a multi-dimensional array (max-F over per-image precision/recall curves) is bootstrapped
through the item indices, since scipy resamples along one axis of 1-d samples.

A score measured for several seeds (independently trained models) on the same test images has
two sources of chance: the images drawn and the seeds trained. An interval over images alone
treats the models as fixed and claims more than a rerun with new seeds would replicate;
`bootstrap_seeds_images` resamples both (seeds and, independently, images, the same image
indices for every drawn seed since the images are shared). Resampling both factors of such a
crossed design is Owen's "pigeonhole" bootstrap (2007), mildly conservative when both factors
have many levels (it counts the seed-by-image noise more than once). With very few seeds the
seed factor is the weak part: the resampled seed variance is (S - 1) / S of the sample's, and 3
seeds give only 10 distinct resamples, so such an interval is still optimistic about
replication across seeds.

When each replicate has its own items (a category split decides which test images are "seen"),
the design is nested, not crossed: `bootstrap_replicates_gap` draws replicates and then, within
each drawn replicate, its own items.
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


# ------------------------------------------------------------------------ seeds x images
def _seed_image_mean(v: np.ndarray) -> float:
    """Mean over seeds of the per-seed mean over images (all seeds have the same N images, so
    this is the grand mean of the (S, N) array)."""
    if v.ndim != 2:
        raise ConfigError(f"the default statistic (the mean) needs values of shape (seeds, images), got shape {v.shape}; "
                          "pass a statistic for per-image data")
    return float(v.mean())


def _check_seeds_images(v: np.ndarray, what: str) -> None:
    if v.ndim < 2:
        raise ConfigError(f"{what} should have shape (seeds, images, ...), got shape {v.shape}")
    if v.shape[0] < 2 or v.shape[1] < 2:
        raise ConfigError(f"a seeds-and-images bootstrap needs at least 2 seeds and 2 images, "
                          f"got {v.shape[0]} seeds and {v.shape[1]} images ({what} of shape {v.shape})")


def _check_resampling(n_boot: int, ci: float) -> None:
    if not n_boot >= 2:
        raise ConfigError(f"n_boot {n_boot}: a bootstrap needs at least 2 resamples")
    if not 0 < ci < 1:
        raise ConfigError(f"ci {ci}: the interval level must lie strictly between 0 and 1")


def _counts(draws: np.ndarray, n: int) -> np.ndarray:
    """(B, n) how often each of ``n`` indices occurs in each row of ``draws`` (B, k)."""
    offsets = n * np.arange(len(draws))[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=len(draws) * n).reshape(len(draws), n).astype(np.float64)


def _seed_image_distribution(arms: Sequence[np.ndarray], statistic: Callable[[np.ndarray], float], n_boot: int,
                             seed: int) -> np.ndarray:
    """(n_boot, len(arms)): ``statistic`` of each arm on the same B resamples. A resample draws
    S seed indices and, independently, N image indices, both with replacement, and takes every
    drawn image for every drawn seed. The default mean is computed from the draw counts (a
    weighted grand mean, identical to indexing), without materialising the resamples."""
    n_seeds, n_images = arms[0].shape[:2]
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, (n_boot, n_seeds))
    images = rng.integers(0, n_images, (n_boot, n_images))
    if statistic is _seed_image_mean and all(a.ndim == 2 for a in arms):
        cs, ci = _counts(seeds, n_seeds), _counts(images, n_images)
        return np.stack([np.einsum("bs,sn,bn->b", cs, a, ci) / (n_seeds * n_images) for a in arms], 1)
    return np.array([[statistic(a[np.ix_(s, i)]) for a in arms] for s, i in zip(seeds, images)], dtype=np.float64)


def _percentiles(dist: np.ndarray, ci: float) -> tuple[float, float]:
    low, high = np.percentile(dist, [50 * (1 - ci), 50 * (1 + ci)])
    return float(low), float(high)


def bootstrap_seeds_images(
    values: Sequence | np.ndarray,
    n_boot: int = 1000,
    ci: float = 0.90,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = _seed_image_mean,
) -> dict[str, float]:
    """Two-level percentile bootstrap interval of ``statistic`` for a score measured for S seeds
    on the same N images, so that the interval speaks for a rerun with new seeds as well as for
    new images (module docstring): ``{"estimate", "low", "high", "n_seeds", "n_images"}``.

    ``values`` has shape (S, N, ...): the trailing dims are per-image data (e.g. the (3, 256)
    counts of `sodlab.metrics.max_f_from_curves`). ``statistic`` takes an (S, N, ...) array (a
    resample, seeds and images possibly repeated) and returns a number; the default, the mean
    over seeds of the per-seed mean over images, needs (S, N) values. Reproducible from ``seed``.
    """
    v = np.asarray(values, dtype=np.float64)
    _check_seeds_images(v, "values")
    _check_resampling(n_boot, ci)
    estimate = float(statistic(v))
    low, high = _percentiles(_seed_image_distribution((v,), statistic, n_boot, seed)[:, 0], ci)
    return {"estimate": estimate, "low": low, "high": high, "n_seeds": v.shape[0], "n_images": v.shape[1]}


def bootstrap_seeds_images_gap(
    a: Sequence | np.ndarray,
    b: Sequence | np.ndarray,
    n_boot: int = 1000,
    ci: float = 0.90,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = _seed_image_mean,
) -> dict[str, float]:
    """Two-level bootstrap interval of ``statistic(a) - statistic(b)`` for two arms measured on
    the same S seeds and N images (paired: one set of resampled seed and image indices is
    applied to both arms, so what the arms share cancels): ``{"gap", "low", "high",
    "p_gap_le_0"}`` as `bootstrap_gap` (the last: share of resamples where the gap is not
    positive, a one-sided bootstrap p-value). ``a`` and ``b`` have the same shape (S, N, ...)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _check_seeds_images(x, "a")
    _check_seeds_images(y, "b")
    if x.shape != y.shape:
        raise ConfigError(f"a paired seeds-and-images bootstrap needs arms of the same shape, got a {x.shape} and b {y.shape}")
    _check_resampling(n_boot, ci)
    gap = float(statistic(x) - statistic(y))
    dist = _seed_image_distribution((x, y), statistic, n_boot, seed)
    gaps = dist[:, 0] - dist[:, 1]
    low, high = _percentiles(gaps, ci)
    return {"gap": gap, "low": low, "high": high, "p_gap_le_0": float((gaps <= 0).mean())}


# ------------------------------------------------------------------------ replicates x images
def bootstrap_replicates_gap(
    groups: Sequence[tuple[Sequence | np.ndarray, Sequence | np.ndarray]],
    n_boot: int = 1000,
    ci: float = 0.90,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = _mean0,
) -> dict[str, float]:
    """Two-level bootstrap interval of the mean over R replicates of ``statistic(a_r) -
    statistic(b_r)``, where each replicate (e.g. a category split with its own model) has its
    own two groups of items (``groups``: R pairs ``(a_r, b_r)``, items along the first axis).
    A resample draws R replicates with replacement and, within each drawn replicate, the items
    of each group with replacement, so that the interval speaks for new replicates (new splits
    and seeds) as well as for new images: ``{"gap", "low", "high", "p_gap_le_0",
    "n_replicates"}``. With one replicate it is `bootstrap_gap`'s interval over images (not the
    same draws). Reproducible from ``seed``."""
    pairs = [(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)) for a, b in groups]
    if not pairs:
        raise ConfigError("a replicates bootstrap needs at least one replicate")
    for r, (a, b) in enumerate(pairs):
        if len(a) < 2 or len(b) < 2:
            raise ConfigError(f"replicate {r}: a bootstrap needs at least 2 items per group, got {len(a)} and {len(b)}")
    _check_resampling(n_boot, ci)
    gap = float(np.mean([statistic(a) - statistic(b) for a, b in pairs]))
    rng = np.random.default_rng(seed)
    dist = np.empty(n_boot)
    for i in range(n_boot):
        drawn = rng.integers(0, len(pairs), len(pairs))
        dist[i] = np.mean([statistic(pairs[r][0][rng.integers(0, len(pairs[r][0]), len(pairs[r][0]))])
                           - statistic(pairs[r][1][rng.integers(0, len(pairs[r][1]), len(pairs[r][1]))]) for r in drawn])
    low, high = _percentiles(dist, ci)
    return {"gap": gap, "low": low, "high": high, "p_gap_le_0": float((dist <= 0).mean()), "n_replicates": len(pairs)}
