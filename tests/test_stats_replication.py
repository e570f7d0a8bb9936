"""Intervals that replicate across seeds (two-level bootstrap) and corrections for several
comparisons (issue 18, item 3). Numpy data only: no models are trained here."""
from __future__ import annotations


import numpy as np
import pytest

from sodlab.analysis import bootstrap_ci, bootstrap_gap, bootstrap_replicates_gap, bootstrap_seeds_images, bootstrap_seeds_images_gap
from sodlab.errors import ConfigError
from sodlab.studies.rules import familywise_level, holm


def _scores(rng: np.random.Generator, offsets, n_images: int = 200, image_sd: float = 0.2, noise_sd: float = 0.02,
            mean: float = 0.6) -> np.ndarray:
    """(S, N) scores: a shared per-image difficulty, a per-seed offset and seed-by-image noise."""
    images = rng.normal(0.0, image_sd, n_images)
    offsets = np.asarray(offsets, dtype=np.float64)[:, None]
    return mean + offsets + images[None, :] + rng.normal(0.0, noise_sd, (len(offsets), n_images))


def _width(interval: dict) -> float:
    return interval["high"] - interval["low"]


def test_interval_widens_when_seeds_disagree_and_not_when_they_agree():
    rng = np.random.default_rng(0)
    agree = _scores(rng, [0.0] * 5)
    disagree = agree + np.array([-0.1, -0.05, 0.0, 0.05, 0.1])[:, None]
    for v, lo, hi in ((agree, 0.85, 1.15), (disagree, 1.5, np.inf)):
        both = bootstrap_seeds_images(v, n_boot=2000, seed=1)
        images_only = bootstrap_ci(v.mean(0), n_boot=2000, ci=0.90, seed=1)
        assert both["estimate"] == pytest.approx(images_only["estimate"]) == pytest.approx(v.mean())
        assert lo <= _width(both) / _width(images_only) <= hi
        assert both["low"] <= both["estimate"] <= both["high"]
        assert (both["n_seeds"], both["n_images"]) == (5, 200)


def test_interval_covers_the_true_mean_where_the_images_only_one_does_not():
    """Seeds drawn around the true mean: the two-level interval covers it about as often as its
    level says; the images-only interval, blind to the seeds, far less often."""
    rng = np.random.default_rng(2)
    trials, truth = 60, 0.6
    covered_both = covered_images = 0
    for t in range(trials):
        v = _scores(rng, rng.normal(0.0, 0.1, 8), n_images=100, mean=truth)  # seed spread dominates
        both = bootstrap_seeds_images(v, n_boot=500, ci=0.90, seed=t)
        images_only = bootstrap_ci(v.mean(0), n_boot=500, ci=0.90, seed=t)
        covered_both += both["low"] <= truth <= both["high"]
        covered_images += images_only["low"] <= truth <= images_only["high"]
    assert covered_both / trials >= 0.75
    assert covered_images / trials <= 0.8 and covered_images < covered_both - 6


def test_matches_a_hand_resampling_with_the_same_draws():
    """The draws written out: default_rng(seed) draws the (B, S) seed indices, then the (B, N)
    image indices; every drawn image is taken for every drawn seed. The default mean (computed
    from draw counts) and a statistic given by hand agree with it."""
    rng = np.random.default_rng(3)
    v = rng.normal(0.0, 1.0, (4, 30))
    draws = np.random.default_rng(7)
    seeds, images = draws.integers(0, 4, (300, 4)), draws.integers(0, 30, (300, 30))
    means = np.array([v[s][:, i].mean() for s, i in zip(seeds, images)])
    want = (np.percentile(means, 5), np.percentile(means, 95))
    fast = bootstrap_seeds_images(v, n_boot=300, seed=7)
    slow = bootstrap_seeds_images(v, n_boot=300, seed=7, statistic=lambda r: float(r.mean(1).mean()))
    assert (fast["low"], fast["high"]) == pytest.approx(want, abs=1e-12)
    assert (slow["low"], slow["high"]) == pytest.approx(want, abs=1e-12)
    assert fast["estimate"] == slow["estimate"] == pytest.approx(v.mean())


def test_deterministic_for_a_seed():
    v = np.random.default_rng(4).normal(0.0, 1.0, (3, 40))
    assert bootstrap_seeds_images(v, n_boot=200, seed=5) == bootstrap_seeds_images(v, n_boot=200, seed=5)
    assert bootstrap_seeds_images(v, n_boot=200, seed=5) != bootstrap_seeds_images(v, n_boot=200, seed=6)
    w = v + 0.1
    assert bootstrap_seeds_images_gap(w, v, n_boot=200, seed=5) == bootstrap_seeds_images_gap(w, v, n_boot=200, seed=5)


def test_per_image_data_in_trailing_dims():
    """Values (S, N, ...) with a statistic reading the trailing dims: resamples keep each image's
    data whole. The default mean refuses them, since it would average the per-image data too."""
    rng = np.random.default_rng(5)
    v = np.stack([rng.normal(0.0, 1.0, (3, 20)), rng.normal(5.0, 1.0, (3, 20))], -1)  # (3, 20, 2)
    seen = []

    def statistic(r: np.ndarray) -> float:
        seen.append(r.shape)
        return float(r[..., 0].mean() - r[..., 1].mean())

    got = bootstrap_seeds_images(v, n_boot=50, seed=0, statistic=statistic)
    assert set(seen) == {(3, 20, 2)}
    assert got["low"] <= got["estimate"] <= got["high"] < -4
    with pytest.raises(ConfigError) as e:
        bootstrap_seeds_images(v, n_boot=50)
    assert str(e.value) == ("the default statistic (the mean) needs values of shape (seeds, images), got shape (3, 20, 2); "
                            "pass a statistic for per-image data")


def test_shape_and_level_errors():
    v = np.zeros((3, 10))
    cases = [
        (lambda: bootstrap_seeds_images(np.zeros(10)), "values should have shape (seeds, images, ...), got shape (10,)"),
        (lambda: bootstrap_seeds_images(np.zeros((1, 10))),
         "a seeds-and-images bootstrap needs at least 2 seeds and 2 images, got 1 seeds and 10 images (values of shape (1, 10))"),
        (lambda: bootstrap_seeds_images(np.zeros((4, 1, 3))),
         "a seeds-and-images bootstrap needs at least 2 seeds and 2 images, got 4 seeds and 1 images (values of shape (4, 1, 3))"),
        (lambda: bootstrap_seeds_images(v, ci=1.0), "ci 1.0: the interval level must lie strictly between 0 and 1"),
        (lambda: bootstrap_seeds_images(v, n_boot=1), "n_boot 1: a bootstrap needs at least 2 resamples"),
        (lambda: bootstrap_seeds_images_gap(v, np.zeros((3, 9))),
         "a paired seeds-and-images bootstrap needs arms of the same shape, got a (3, 10) and b (3, 9)"),
        (lambda: bootstrap_seeds_images_gap(v, np.zeros((1, 10))),
         "a seeds-and-images bootstrap needs at least 2 seeds and 2 images, got 1 seeds and 10 images (b of shape (1, 10))"),
    ]
    for call, message in cases:
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == message


def test_paired_gap_of_arms_that_differ_by_a_constant():
    rng = np.random.default_rng(7)
    b = _scores(rng, [-0.1, 0.0, 0.1, 0.05])
    exact = bootstrap_seeds_images_gap(b + 0.03, b, n_boot=500, seed=0)
    # one resample index set for both arms: everything they share cancels, the constant is left
    assert (exact["gap"], exact["low"], exact["high"]) == pytest.approx((0.03, 0.03, 0.03), abs=1e-12)
    assert exact["p_gap_le_0"] == 0.0
    noisy = bootstrap_seeds_images_gap(b + 0.03 + rng.normal(0.0, 0.01, b.shape), b, n_boot=500, seed=0)
    assert noisy["low"] < 0.03 < noisy["high"] and noisy["high"] - noisy["low"] < 0.01
    # a constant in the arm-to-arm direction the other way round: the gap is negative, p is 1
    flipped = bootstrap_seeds_images_gap(b, b + 0.03, n_boot=500, seed=0)
    assert flipped["high"] == pytest.approx(-0.03) and flipped["p_gap_le_0"] == 1.0


# ------------------------------------------------------------------------ several comparisons
def test_familywise_level():
    assert familywise_level(0.9, 1) == 0.9
    assert familywise_level(0.9, 5) == 0.98
    assert familywise_level(0.95, 10) == pytest.approx(0.995)
    assert familywise_level(0.9, np.int64(2)) == pytest.approx(0.95)
    cases = [
        ((0.9, 0), "k 0: the number of comparisons must be a whole number >= 1"),
        ((0.9, 2.0), "k 2.0: the number of comparisons must be a whole number >= 1"),
        ((0.9, True), "k True: the number of comparisons must be a whole number >= 1"),
        ((1.0, 3), "level 1.0: the family-wise level must lie strictly between 0 and 1"),
        ((0.0, 3), "level 0.0: the family-wise level must lie strictly between 0 and 1"),
    ]
    for args, message in cases:
        with pytest.raises(ConfigError) as e:
            familywise_level(*args)
        assert str(e.value) == message


def test_holm():
    # textbook: sorted 0.005 <= 0.05/4, 0.01 <= 0.05/3, then 0.03 > 0.05/2 stops the steps
    assert holm([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    assert holm([0.01, 0.02, 0.03], 0.05) == [True, True, True]  # Holm rejects where Bonferroni (0.0167) keeps two
    assert holm([0.5, 0.001], 0.05) == [False, True]
    assert holm([0.02, 0.02], 0.05) == [True, True]
    assert holm([0.03, 0.03], 0.05) == [False, False]
    assert holm([], 0.05) == []
    with pytest.raises(ConfigError) as e:
        holm([0.1, 1.5], 0.05)
    assert str(e.value) == "p-values must lie in [0, 1], got [1.5]"
    with pytest.raises(ConfigError) as e:
        holm([0.1], 0.0)
    assert str(e.value) == "alpha 0.0: the family-wise error rate must lie strictly between 0 and 1"


# ------------------------------------------------------------------------ replicates with their own items
def test_replicates_gap_matches_a_hand_resampling():
    """The draws written out: per resample, R replicate indices, then for each drawn replicate
    its first group's item indices and its second group's."""
    rng = np.random.default_rng(0)
    groups = [(rng.normal(0.1 * r, 1, 20 + r), rng.normal(0, 1, 15 + 2 * r)) for r in range(3)]
    draws, dist = np.random.default_rng(4), []
    for _ in range(200):
        gaps = []
        for r in draws.integers(0, 3, 3):
            a, b = groups[r]
            gaps.append(a[draws.integers(0, len(a), len(a))].mean() - b[draws.integers(0, len(b), len(b))].mean())
        dist.append(np.mean(gaps))
    got = bootstrap_replicates_gap(groups, n_boot=200, seed=4)
    assert (got["low"], got["high"]) == pytest.approx((np.percentile(dist, 5), np.percentile(dist, 95)), abs=1e-12)
    assert got["gap"] == pytest.approx(np.mean([a.mean() - b.mean() for a, b in groups]))
    assert got["n_replicates"] == 3 and got["p_gap_le_0"] == pytest.approx(np.mean(np.array(dist) <= 0))


def test_replicates_gap_widens_when_replicates_disagree():
    """Same images, same mean gap: replicates that disagree (+0.3 and -0.1 around +0.1) give a
    wider interval than replicates that agree (+0.1 each), which the image bootstrap alone
    cannot see; one replicate is the image bootstrap."""
    rng = np.random.default_rng(1)
    base = [(rng.normal(0, 0.05, 200), rng.normal(0, 0.05, 200)) for _ in range(4)]
    agree = [(a + 0.1, b) for a, b in base]
    disagree = [(a + (0.3 if r % 2 else -0.1), b) for r, (a, b) in enumerate(base)]
    wa, wd = (bootstrap_replicates_gap(g, n_boot=500, seed=0) for g in (agree, disagree))
    assert wa["gap"] == pytest.approx(wd["gap"], abs=1e-12)
    assert (wd["high"] - wd["low"]) > 5 * (wa["high"] - wa["low"])
    one = bootstrap_replicates_gap(base[:1], n_boot=2000, seed=0)
    ref = bootstrap_gap(*base[0], n_boot=2000, ci=0.9, seed=0)
    assert one["gap"] == pytest.approx(ref["gap"]) and one["low"] == pytest.approx(ref["low"], abs=0.002)
    with pytest.raises(ConfigError, match="replicate 1: a bootstrap needs at least 2 items per group, got 1 and 200"):
        bootstrap_replicates_gap([base[0], (base[1][0][:1], base[1][1])])
    with pytest.raises(ConfigError, match="at least one replicate"):
        bootstrap_replicates_gap([])
