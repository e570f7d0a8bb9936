"""BN-scale regularisers: hand-computed penalties, coverage of CSNet's ILBlocks, weight-decay
exclusion (with and without the authors' typo)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sodlab.errors import ConfigError
from sodlab.models.csnet import ILBlock
from sodlab.train.regularizers import (
    DynamicWeightDecay,
    L1Gamma,
    L2Gamma,
    NoRegularizer,
    build_regularizer,
    find_bn_units,
)
from sodlab import create_model


def _affine_bn(gamma, beta) -> nn.BatchNorm2d:
    """An eval-mode BN computing exactly gamma * x + beta."""
    bn = nn.BatchNorm2d(len(gamma), eps=0.0).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
    return bn


def _two_images() -> torch.Tensor:
    x = torch.zeros(2, 2, 3, 3)
    x[0, 0], x[1, 0] = 1.0, -3.0
    x[0, 1], x[1, 1] = 2.0, 0.0
    return x


def test_dwd_hand_computation_on_a_plain_batchnorm():
    # y = gamma * x + beta: channel 0 pools to 2 and -6 (S = (2 + 6) / 2 = 4), channel 1 to
    # 0.5*2+1 = 2 and 1 (S = 1.5). R = 1/2 (4 * 2^2 + 1.5 * 0.5^2) = 8.1875.
    bn = _affine_bn([2.0, 0.5], [0.0, 1.0])
    model = nn.Sequential(bn)
    reg = DynamicWeightDecay(weight=3.0).attach(model)
    assert [u.bn_name for u in reg.units] == ["0"]
    with reg.recording():
        model(_two_images())
    r = reg.penalty()
    assert r.item() == pytest.approx(8.1875, abs=1e-6)
    r.backward()
    # S is detached: dR/dgamma_c = w * S_c * gamma_c.
    assert bn.weight.grad.tolist() == pytest.approx([4 * 2.0, 1.5 * 0.5], abs=1e-6)
    # Nothing is recorded outside `recording()`, and a penalty is consumed once.
    model(_two_images())
    assert reg.penalty().item() == 0.0


def test_dwd_sums_forward_passes_and_applies_scale_weights():
    bn = _affine_bn([2.0, 0.5], [0.0, 1.0])
    model = nn.Sequential(bn)
    reg = DynamicWeightDecay(scale_weights=[0.5]).attach(model)
    with reg.recording():
        model(_two_images())
        model(_two_images())
    assert reg.penalty().item() == pytest.approx(2 * 0.5 * 8.1875, abs=1e-6)
    reg.detach()
    with reg.recording():
        model(_two_images())
    assert reg.penalty().item() == 0.0  # hooks removed


def test_dwd_measures_after_prelu_in_per_scale_modules():
    torch.manual_seed(0)
    block = ILBlock([3], [4, 4], first=True)
    model = nn.Sequential(block).train()
    x = torch.randn(3, 3, 16, 16)
    reg = DynamicWeightDecay().attach(model)
    assert len(reg.units) == 6  # conv, dw1, dw2 x two scales
    with reg.recording():
        model(x)
    got = reg.penalty().item()
    # By hand: every module's per-scale output, after BN and PReLU.
    expected = 0.0
    with torch.no_grad():
        ys = x
        for mod in (block.conv, block.dw1, block.dw2):
            ys = mod(ys)
            for s, y in enumerate(ys):
                S = y.mean(dim=(2, 3)).abs().mean(dim=0)
                expected += 0.5 * float((S * mod.norms[str(s)].weight ** 2).sum())
    assert got == pytest.approx(expected, rel=1e-6)
    # PReLU matters: with a negative slope of 0 on the stem conv, S changes.
    with torch.no_grad():
        for a in block.conv.acts.values():
            a.weight.zero_()
    with reg.recording():
        model(x)
    assert reg.penalty().item() != pytest.approx(got, rel=1e-3)


def test_csnet_coverage_is_every_ilblock_conv_not_the_head():
    model = create_model("csnet", width=8)
    units = find_bn_units(model)
    owners = {u.owner for u in units}
    n_blocks = 1 + sum(model.config.stages)
    assert {o.rsplit(".", 1)[-1] for o in owners} == {"conv", "dw1", "dw2"}
    assert len(owners) == 3 * n_blocks
    assert "stem.conv" in owners and "stage4.3.dw2" in owners
    assert not any(u.bn_name.startswith(("csf.", "classifier")) for u in units)
    # One unit per present output scale of each module.
    expected = sum(3 * sum(1 for c in b[1] if c) for b in model.config.blocks)
    assert len(units) == expected
    # "all" adds the CSF head's BatchNorms.
    everything = find_bn_units(model, scope="all")
    assert {u.bn_name for u in units} < {u.bn_name for u in everything}
    assert any(u.bn_name.startswith("csf.") for u in everything)
    n_bn = sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert len(everything) == n_bn


def test_weight_decay_exclusion_and_the_authors_typo():
    model = create_model("csnet", width=8)
    gammas = {id(u.bn.weight): u for u in find_bn_units(model)}
    ours = DynamicWeightDecay().attach(model)
    normal, picked = ours.param_groups(model, 5e-3)
    assert normal["weight_decay"] == 5e-3 and picked["weight_decay"] == 0.0
    assert {id(p) for p in picked["params"]} == set(gammas)
    n_params = sum(1 for p in model.parameters())
    assert len(normal["params"]) + len(picked["params"]) == n_params
    typo = DynamicWeightDecay(authors_typo=True).attach(model)
    _, picked_t = typo.param_groups(model, 5e-3)
    roles = {gammas[id(p)].role for p in picked_t["params"]}
    assert roles == {"conv", "dw1"}
    left = set(gammas) - {id(p) for p in picked_t["params"]}
    assert left and all(gammas[i].role == "dw2" for i in left)
    # "none" regularises nothing and excludes nothing.
    assert len(NoRegularizer().attach(model).param_groups(model, 1e-3)) == 1


def test_l1_and_l2_hand_computation():
    bn = _affine_bn([2.0, -0.5], [0.0, 0.0])
    model = nn.Sequential(nn.Conv2d(2, 2, 1), bn)
    assert L2Gamma(1.0).attach(model).penalty().item() == pytest.approx(0.5 * (4 + 0.25))
    assert L1Gamma(1.0).attach(model).penalty().item() == pytest.approx(2.5)


def test_frozen_batchnorm_is_not_covered_and_bad_names_are_refused():
    bn = nn.BatchNorm2d(3)
    bn.weight.requires_grad_(False)
    assert find_bn_units(nn.Sequential(bn)) == []
    with pytest.raises(ConfigError, match="unknown regularizer 'l3'"):
        build_regularizer("l3")
    with pytest.raises(ConfigError, match="scope"):
        build_regularizer("dwd", scope="heads")
    with pytest.raises(ConfigError, match="authors_typo"):
        build_regularizer("l1", authors_typo=True)
    assert build_regularizer("dwd").weight == 3.0


def test_dwd_on_a_classifier_with_batchnorm1d():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    reg = DynamicWeightDecay(weight=1.0).attach(model.train())
    x = torch.randn(5, 4)
    with reg.recording():
        model(x)
    with torch.no_grad():
        y = model[1](model[0](x))
        expected = 0.5 * float((y.abs().mean(0) * model[1].weight ** 2).sum())
    assert reg.penalty().item() == pytest.approx(expected, rel=1e-6)
