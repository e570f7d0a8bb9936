"""The top-channel overlap of two tasks (`sodlab.analysis.overlap`): its value, the bootstrap over
images, the permutation null and the split-half positive control, on constructed attributions
whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sodlab.analysis import chance_topk_jaccard
from sodlab.analysis.overlap import LayerAttributions, bootstrap_overlap, excess_overlap, permutation_null, split_half_overlap
from sodlab.errors import ConfigError

N, C, K = 48, 16, 4


def attributions(profile: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    """(N, C): every image has the channel ``profile`` plus independent noise."""
    g = torch.Generator().manual_seed(seed)
    return profile[None, :] + noise * torch.randn(N, C, generator=g)


PROFILE_A = torch.linspace(1.0, 0.0, C)  # channels 0-3 matter most
PROFILE_B = torch.linspace(0.0, 1.0, C)  # channels 12-15 matter most: disjoint top sets


def test_excess_overlap_of_identical_and_disjoint_rankings():
    chance = chance_topk_jaccard(C, K)
    same = [LayerAttributions("s3", attributions(PROFILE_A, 0.01, 0), attributions(PROFILE_A, 0.01, 1), K)]
    apart = [LayerAttributions("s3", attributions(PROFILE_A, 0.01, 0), attributions(PROFILE_B, 0.01, 1), K)]
    assert excess_overlap(same) == pytest.approx(1.0 - chance)
    assert excess_overlap(apart) == pytest.approx(-chance)
    assert excess_overlap(same + apart) == pytest.approx((1.0 - chance - chance) / 2)  # the mean over layers
    rows = np.arange(10)
    assert excess_overlap(same, rows) == pytest.approx(1.0 - chance)


def test_bootstrap_interval_is_tight_for_a_clear_ranking_and_wide_for_noise():
    clear = [LayerAttributions("s3", attributions(PROFILE_A, 0.05, 0), attributions(PROFILE_B, 0.05, 1), K)]
    low, high = bootstrap_overlap(clear, n_boot=200, seed=0)
    assert low == pytest.approx(-chance_topk_jaccard(C, K)) and high == pytest.approx(low)
    flat = torch.zeros(C)
    noisy = [LayerAttributions("s3", attributions(flat, 1.0, 0), attributions(flat, 1.0, 1), K)]
    low, high = bootstrap_overlap(noisy, n_boot=200, seed=0)
    assert low < 0 < high and high - low > 0.2
    assert bootstrap_overlap(noisy, n_boot=200, seed=0) == (low, high)  # seeded
    with pytest.raises(ConfigError, match=r"level must be in \(0, 1\), got 1.5"):
        bootstrap_overlap(noisy, level=1.5)


def test_permutation_null_centres_on_chance_and_flags_shared_channels():
    same = [LayerAttributions(f"s{i}", attributions(PROFILE_A, 0.05, i), attributions(PROFILE_A, 0.05, 10 + i), K) for i in range(3)]
    t = permutation_null(same, n_perm=500, seed=0)
    assert t.observed == pytest.approx(1.0 - chance_topk_jaccard(C, K))
    assert abs(t.null_mean) < 0.03 and t.null_q05 < 0 < t.null_q95 < t.observed
    assert t.p_greater == pytest.approx(1 / 501) and t.p_less == pytest.approx(1.0)
    apart = [LayerAttributions(f"s{i}", attributions(PROFILE_A, 0.05, i), attributions(PROFILE_B, 0.05, 10 + i), K) for i in range(3)]
    t = permutation_null(apart, n_perm=500, seed=0)
    assert t.p_less < 0.2 < t.p_greater  # three disjoint layers: unusually little overlap, never "more than chance"


def test_split_half_sees_a_reliable_ranking_and_not_noise():
    reliable = [LayerAttributions("s3", attributions(PROFILE_A, 0.2, 0), attributions(torch.zeros(C), 1.0, 1), K)]
    assert split_half_overlap(reliable, "a") == pytest.approx(1.0 - chance_topk_jaccard(C, K))
    halves = [split_half_overlap(reliable, "b", seed=s) for s in range(20)]
    assert abs(float(np.mean(halves))) < 0.1  # pure noise agrees with itself only by chance
    with pytest.raises(ConfigError, match="task must be 'a' or 'b', got 'c'"):
        split_half_overlap(reliable, "c")


def test_inputs_are_checked():
    a = torch.zeros(N, C)
    with pytest.raises(ConfigError, match=r"layer s3: attributions must be two \(N, C\) matrices of one shape, got \(48, 16\) and \(48, 8\)"):
        LayerAttributions("s3", a, torch.zeros(N, 8), K)
    with pytest.raises(ConfigError, match=r"layer s3: k must be in 1..16, got 0"):
        LayerAttributions("s3", a, a, 0)
    with pytest.raises(ConfigError, match=r"every layer needs the same images; image counts differ: \[10, 48\]"):
        excess_overlap([LayerAttributions("s3", a, a, K), LayerAttributions("s4", a[:10], a[:10], K)])
    with pytest.raises(ConfigError, match="no layers to compare"):
        permutation_null([])
