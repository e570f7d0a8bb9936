"""sodlab.analysis and the classification twin, on cases that can be worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import sodlab
from sodlab.analysis import (
    ClassLogitTarget,
    SODTarget,
    ablation_importance,
    bootstrap_ci,
    bootstrap_gap,
    chance_topk_jaccard,
    channel_attributions,
    channel_correlation,
    channel_importance,
    cka_matrix,
    collect_activations,
    components_for,
    correlation_summary,
    effective_rank,
    fraction_subset,
    stratified_draw,
    grad_cam,
    layer_redundancy,
    leave_one_category_out,
    linear_cka,
    map_correlation,
    pca_spectrum,
    rank_correlation,
    split_categories,
    subset_by_category,
    topk_jaccard,
)
from sodlab.errors import ConfigError, DataError
from sodlab.models.classifier import CSNetClassifier, classifier_from_sod, encoder_state, sod_from_classifier, transfer_encoder


def calibrate(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Batch-norm statistics from ``x``: an untrained CSNet in eval mode (unit running
    variance, x100 gains) overflows, a trained one does not."""
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


class Squeeze(nn.Module):
    def forward(self, x):
        return x.flatten(1).sum(1)


class ConvToy(nn.Module):
    """x -> 1x1 conv (the studied layer, C=3) -> [tanh] -> 1x1 conv with weights v -> sum over positions."""

    def __init__(self, smooth: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.layer = nn.Conv2d(2, 3, 1)
        self.out = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.layer.weight.copy_(torch.randn(3, 2, 1, 1, generator=g))
            self.layer.bias.copy_(torch.randn(3, generator=g))
            self.out.weight.copy_(torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1))
        self.smooth = smooth

    def forward(self, x):
        h = self.layer(x)
        if self.smooth:
            h = torch.tanh(h)
        return self.out(h).flatten(1).sum(1)


# --- importance ------------------------------------------------------------------------
def test_grad_x_activation_of_a_linear_layer_is_activation_times_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1), Squeeze())
    x = torch.randn(5, 3)
    with torch.no_grad():
        h = model[0](x)
    expected = (h * model[1].weight[0]).mean(0)
    got = channel_importance(model, x, model[0], method="grad_x_act")
    torch.testing.assert_close(got, expected)


def test_grad_x_activation_of_a_conv_layer_sums_positions():
    model = ConvToy()
    x = torch.randn(4, 2, 5, 6)
    with torch.no_grad():
        h = model.layer(x)
    v = torch.tensor([2.0, -1.0, 0.5])
    expected = v[None] * h.sum((2, 3))
    torch.testing.assert_close(channel_attributions(model, x, "layer"), expected)


def test_conductance_channels_sum_to_the_target_change():
    # Completeness: over a whole layer, conductance adds up to target(x) - target(0); captum's
    # step-sum approximation converges as the number of steps grows.
    model = ConvToy(smooth=True)
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        change = model(x) - model(torch.zeros_like(x))
    errors = []
    for n_steps in (64, 1024):
        cond = channel_attributions(model, x, model.layer, method="conductance", n_steps=n_steps)
        assert cond.shape == (3, 3)
        errors.append(((cond.sum(1) - change) / change).abs().max().item())
    assert errors[1] < 0.06 and errors[1] < errors[0] / 4


def test_ablation_drop_equals_the_channel_contribution():
    model = ConvToy()
    x = torch.randn(4, 2, 3, 3)
    with torch.no_grad():
        h = model.layer(x)
    expected = (torch.tensor([2.0, -1.0, 0.5]) * h.sum((2, 3))).mean(0)
    drops = ablation_importance(model, x, "layer")
    torch.testing.assert_close(drops, expected)
    # in batches (the mean is over images, not batches), and only the channels asked for
    torch.testing.assert_close(ablation_importance(model, x, "layer", batch_size=3), expected)
    torch.testing.assert_close(ablation_importance(model, x, "layer", channels=[2, 0]), expected * torch.tensor([1.0, 0.0, 1.0]))
    # the hook is gone afterwards: the model computes what it did before
    torch.testing.assert_close(model(x), (torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1) * h).flatten(1).sum(1))
    assert not model.layer._forward_hooks


class FixedLogits(nn.Module):
    """'Model' whose logits are the first input channel."""

    def forward(self, x):
        return x[:, :1]


def test_sod_target_is_the_mean_logit_over_the_region():
    logits = torch.tensor([[1.0, -2.0], [3.0, -4.0]]).view(1, 1, 2, 2)
    x = torch.cat([logits, torch.zeros(1, 2, 2, 2)], 1)
    t = SODTarget(FixedLogits())
    assert t(x).item() == pytest.approx(2.0)  # predicted region: the positive logits 1 and 3
    gt = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    assert t(x, gt).item() == pytest.approx(-3.0)
    assert t(x, torch.zeros_like(gt)).item() == pytest.approx(-0.5)  # empty region: all pixels
    torch.testing.assert_close(t.default_aux(x), (logits > 0).float())


def test_class_logit_target_picks_the_class():
    lin = nn.Linear(3, 4)
    x = torch.randn(5, 3)
    t = ClassLogitTarget(lin)
    labels = torch.tensor([0, 1, 2, 3, 1])
    with torch.no_grad():
        torch.testing.assert_close(t(x, labels), lin(x)[torch.arange(5), labels])
        torch.testing.assert_close(t(x), lin(x).max(1).values)


def test_grad_cam_matches_the_definition():
    model = ConvToy()
    x = torch.randn(2, 2, 4, 4)
    cam = grad_cam(model, x, "layer", relu=True, normalize=False)
    with torch.no_grad():
        h = model.layer(x)
    # the gradient of sum(v . h) w.r.t. h_c is v_c everywhere
    expected = torch.relu((torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1) * h).sum(1, keepdim=True))
    torch.testing.assert_close(cam, expected)


def test_importance_on_csnet_and_its_classifier_twin():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    sod = calibrate(sodlab.create_model("csnet", width=4), x)
    cls = calibrate(sodlab.create_model("csnet-cls", width=4, num_classes=3), x)
    a = channel_importance(SODTarget(sod), x, "stage4")
    b = channel_importance(ClassLogitTarget(cls), x, "stage4", aux=torch.tensor([0, 1, 2, 0]))
    assert a.shape == b.shape == (16,) and torch.isfinite(a).all() and torch.isfinite(b).all()
    assert ablation_importance(SODTarget(sod), x, "stage2", channels=[0, 3]).shape == (8,)
    cam = grad_cam(SODTarget(sod), x, "stage3")
    assert cam.shape == (4, 1, 32, 32) and cam.min() >= 0 and cam.max() <= 1
    with pytest.raises(ConfigError, match="no layer 'stage9'"):
        channel_importance(SODTarget(sod), x, "stage9")


def test_topk_overlap_and_rank_correlation():
    a = [5.0, 4.0, 3.0, 2.0, 1.0]
    assert topk_jaccard(a, a, 2) == 1.0
    assert topk_jaccard(a, [1.0, 2.0, 3.0, 4.0, 5.0], 2) == 0.0
    assert topk_jaccard(a, [5.0, 1.0, 4.0, 2.0, 0.0], 2) == pytest.approx(1 / 3)  # {0,1} vs {0,2}
    assert topk_jaccard([-9.0, 1.0, 0.0], [9.0, 0.0, 1.0], 1) == 1.0  # by magnitude
    assert rank_correlation(a, [10, 8, 6, 4, 2]) == pytest.approx(1.0)
    assert rank_correlation(a, [1, 2, 3, 4, 5]) == pytest.approx(-1.0)
    assert math.isnan(rank_correlation(a, [1, 1, 1, 1, 1]))
    with pytest.raises(ConfigError, match="differ in length"):
        topk_jaccard(a, [1.0], 1)


def test_chance_jaccard_matches_simulation():
    rng = np.random.default_rng(0)
    n, k = 12, 4
    sims = [topk_jaccard(rng.random(n), rng.random(n), k) for _ in range(4000)]
    assert chance_topk_jaccard(n, k) == pytest.approx(np.mean(sims), abs=0.01)
    assert chance_topk_jaccard(5, 5) == 1.0


def test_map_correlation():
    a = torch.randn(3, 1, 4, 4)
    r = map_correlation(a, torch.cat([a[:1], -a[1:2], torch.zeros(1, 1, 4, 4)]))
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(-1.0) and torch.isnan(r[2])


# --- redundancy ------------------------------------------------------------------------
def test_cka_identity_orthogonal_and_scale_invariance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.5 * x @ q) == pytest.approx(1.0)
    assert linear_cka(x, x + 7.0) == pytest.approx(1.0)  # centring
    assert linear_cka(x, rng.normal(size=(60, 8))) < 0.35
    # CKA is not invariant to arbitrary (non-orthogonal) linear maps
    assert linear_cka(x, x @ np.diag([10.0] + [0.1] * 7)) < 0.9
    with pytest.raises(ConfigError, match="same examples"):
        linear_cka(x, x[:10])


def test_effective_rank_of_known_spectra():
    assert effective_rank([1, 1, 1, 1]) == pytest.approx(4.0)
    assert effective_rank([7.0, 0, 0]) == pytest.approx(1.0)
    assert effective_rank([3.0, 1.0]) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert effective_rank([0, 0]) == 0.0


def test_spectrum_of_a_rank_two_layer():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20, 2, 5, 5, generator=g)
    mix = torch.randn(6, 2, generator=g)
    act = torch.einsum("cz,nzhw->nchw", mix, z)
    s = pca_spectrum(act)
    assert s.shape == (6,) and s[2:].max() < 1e-6 * s[0]
    assert components_for(s, 0.9) <= 2
    assert 1.0 <= effective_rank(s) <= 2.0
    iso = torch.randn(200, 6, 4, 4, generator=g)
    assert effective_rank(pca_spectrum(iso)) > 5.8


def test_channel_correlation_duplicates_and_dead_channels():
    a = torch.randn(10, 3, 4, 4)
    a[:, 1] = 2 * a[:, 0] + 1
    a[:, 2] = 0
    c = channel_correlation(a)
    assert c[0, 1] == pytest.approx(1.0) and np.isnan(c[2]).all()
    summary = correlation_summary(c)
    assert summary["mean_abs_corr"] == pytest.approx(1.0)


def test_collect_activations_leaves_the_model_alone():
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    model = calibrate(sodlab.create_model("csnet", width=4), x).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    acts = collect_activations(model, x, ["stem", "stage2", "stage4"], batch_size=2)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {"stem": (3, 2, 32, 32), "stage2": (3, 8, 16, 16), "stage4": (3, 16, 4, 4)}
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())
    table = layer_redundancy(acts)
    assert list(table["layer"]) == ["stem", "stage2", "stage4"]
    assert ((table["effective_rank"] >= 1) & (table["effective_rank"] <= table["channels"])).all()
    cka = cka_matrix(acts)
    np.testing.assert_allclose(np.diag(cka.to_numpy()), 1.0)
    np.testing.assert_allclose(cka.to_numpy(), cka.to_numpy().T)


# --- categories --------------------------------------------------------------------------
def test_category_split_is_seeded_and_disjoint():
    cats = [f"c{i}" for i in range(10)]
    seen, unseen = split_categories(cats, 6, seed=3)
    assert len(seen) == 6 and len(unseen) == 4 and not set(seen) & set(unseen) and set(seen) | set(unseen) == set(cats)
    assert split_categories(cats, 6, seed=3) == (seen, unseen)
    assert any(split_categories(cats, 6, seed=s)[0] != seen for s in range(4, 10))
    assert split_categories(4, 2, seed=0)[0] + split_categories(4, 2, seed=0)[1] != []
    with pytest.raises(ConfigError, match="n_seen"):
        split_categories(cats, 10, seed=0)
    assert [h for h, rest in leave_one_category_out(cats[:3])] == cats[:3]
    assert all(h not in rest and len(rest) == 2 for h, rest in leave_one_category_out(cats[:3]))


class LabelledSet(torch.utils.data.Dataset):
    category_names = ["cat", "dog", "car"]

    def __init__(self):
        self.labels = [0, 1, 2, 0, 1, 2, 0, 0]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"label": self.labels[i], "index": i}


def test_subsets_by_category_and_fraction():
    ds = LabelledSet()
    sub = subset_by_category(ds, ["cat", 2])
    assert list(sub.indices) == [0, 2, 3, 5, 6, 7]
    assert [sub[i]["index"] for i in subset_by_category(sub, ["cat"]).indices] == [0, 3, 6, 7]
    with pytest.raises(DataError, match="unknown category 'bird'"):
        subset_by_category(ds, ["bird"])
    frac = fraction_subset(ds, 0.25, seed=0)
    assert {ds.labels[i] for i in frac.indices} == {0, 1, 2}
    assert fraction_subset(ds, 0.25, seed=0).indices == frac.indices
    # leave_one: every label keeps an undrawn item, and a label with one item is never drawn
    labels = [0, 0, 0, 1, 2, 2]
    assert set(np.asarray(labels)[stratified_draw(labels, 0.9, seed=0, leave_one=True)]) == {0, 2}
    assert len(stratified_draw(labels, 0.9, seed=0, leave_one=False)) == 3 + 1 + 2
    assert len(stratified_draw(labels, 0.9, seed=0, leave_one=True)) == 2 + 0 + 1


def test_bootstrap_ci_covers_the_true_mean():
    rng = np.random.default_rng(0)
    covered = 0
    trials = 150
    for t in range(trials):
        sample = rng.normal(loc=2.0, scale=1.0, size=40)
        ci = bootstrap_ci(sample, n_boot=300, ci=0.9, seed=t)
        assert ci["low"] <= ci["estimate"] <= ci["high"]
        covered += ci["low"] <= 2.0 <= ci["high"]
    assert 0.80 <= covered / trials <= 0.97


def test_bootstrap_matches_a_hand_resampling_with_the_same_draws():
    """scipy's percentile bootstrap, checked against the resampling written out: B resamples of
    the row indices drawn at once per sample from default_rng(seed), percentiles of the statistic."""
    rng = np.random.default_rng(3)
    s, u = rng.normal(1.0, 1.0, 7), rng.normal(0.0, 1.0, 5)
    draws = np.random.default_rng(11)
    i, j = draws.integers(0, 7, (200, 7)), draws.integers(0, 5, (200, 5))
    gaps = s[i].mean(1) - u[j].mean(1)
    got = bootstrap_gap(s, u, n_boot=200, ci=0.9, seed=11)
    assert got["gap"] == pytest.approx(s.mean() - u.mean(), abs=1e-12)
    assert (got["low"], got["high"]) == pytest.approx((np.percentile(gaps, 5), np.percentile(gaps, 95)), abs=1e-12)
    assert got["p_gap_le_0"] == pytest.approx((gaps <= 0).mean())
    # rows are resampled whole: a paired statistic over a stacked (N, 2, ...) array
    pairs = np.stack([s[:5], u], 1)
    rows = np.random.default_rng(11).integers(0, 5, (200, 5))
    diffs = pairs[rows, 0].max(1) - pairs[rows, 1].max(1)
    ci = bootstrap_ci(pairs, n_boot=200, seed=11, statistic=lambda v: v[:, 0].max() - v[:, 1].max())
    assert (ci["low"], ci["high"]) == pytest.approx((np.percentile(diffs, 2.5), np.percentile(diffs, 97.5)), abs=1e-12)
    assert bootstrap_ci(s, n_boot=50, seed=4) == bootstrap_ci(s, n_boot=50, seed=4) != bootstrap_ci(s, n_boot=50, seed=5)


def test_bootstrap_gap():
    rng = np.random.default_rng(1)
    gap = bootstrap_gap(rng.normal(1.0, 0.2, 50), rng.normal(0.5, 0.2, 50), n_boot=500, seed=0)
    assert 0.35 < gap["gap"] < 0.65 and gap["low"] > 0.3 and gap["p_gap_le_0"] == 0.0
    same = bootstrap_gap(rng.normal(0, 1, 50), rng.normal(0, 1, 50), n_boot=500, seed=0)
    assert same["low"] < 0 < same["high"] or abs(same["gap"]) < 0.5


# --- classifier twin ----------------------------------------------------------------------
def test_classifier_twin_shapes_and_checkpoint(tmp_path):
    cls = sodlab.create_model("csnet-cls", width=4, num_classes=7)
    assert isinstance(cls, CSNetClassifier)
    x = torch.randn(2, 3, 32, 32)
    assert cls(x).shape == (2, 7)
    assert [f.shape[1:] for f in cls.features(x)] == [(8, 16, 16), (16, 8, 8), (16, 4, 4)]
    sodlab.save(cls, tmp_path / "c.pt")
    back = sodlab.load(tmp_path / "c.pt")
    assert isinstance(back, CSNetClassifier) and back.config.num_classes == 7
    cls.eval()
    torch.testing.assert_close(back(x), cls(x))
    with pytest.raises(ValueError, match="multiples of 16"):
        cls(torch.randn(1, 3, 30, 30))


def test_encoder_transfer_both_ways():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    sod = calibrate(sodlab.create_model("csnet", width=4), x)
    cls = sodlab.create_model("csnet-cls", width=4, num_classes=3).eval()
    keys = transfer_encoder(sod, cls)
    assert keys and all(k.startswith(("stem.", "stage")) for k in keys)
    for a, b in zip(sod.features(x), cls.features(x)):
        torch.testing.assert_close(a, b)
    back = sod_from_classifier(cls).eval()
    assert set(encoder_state(back)) == set(encoder_state(cls))
    for a, b in zip(back.features(x), cls.features(x)):
        torch.testing.assert_close(a, b)
    twin = classifier_from_sod(sod, num_classes=5)
    assert twin.head.out_features == 5
    assert all(torch.equal(v, encoder_state(sod)[k]) for k, v in encoder_state(twin).items())
    with pytest.raises(ConfigError, match="encoder weight"):
        transfer_encoder(sodlab.create_model("csnet", width=8), cls)
