"""Every registered model, one test each (in the spirit of timm's tests/test_models.py): build,
forward at two sizes, backward, save/load round trip, profile and the inference-optimised
equivalent. A model added to the registry is tested here without editing this file; only
its small build arguments may be added to ``SMALL``."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import sodlab
from sodlab.models import list_models
from sodlab.models._registry import build_from_config, model_family
from sodlab.profiling import count_parameters

SIZES = (32, 64)
# Small variants keep the test cheap on 2 cores; names not listed are built with defaults.
SMALL = {
    "csnet": {"width": 8},
    "csnet-cls": {"width": 8, "num_classes": 5},
    "csf": {"backbone": "csnet", "width": 8},
    # the mini models at a quarter of their preset width
    "res2net-mini": {"config": {"planes": [4, 8, 16, 32], "base_width": 32, "stem_width": 8}, "num_classes": 5},
    "csf-res2net-mini": {"config": {"planes": [4, 8, 16, 32], "base_width": 32, "stem_width": 8}},
}
# Parameters of the released models, as the papers and the README give them.
# res2net50: the 23,669,352 of its backbone + a 2048 x 12 linear head.
PARAMS = {"csnet-L-x1": 93_647, "csnet-L-x2": 140_894, "csf-res2net50": 36_528_489, "res2net50": 23_693_940}
SLOW = {"csf-res2net50", "res2net50"}  # 23.7M-36.5M parameters: a few seconds even at 32 px
ALL = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in list_models()]


def _build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return sodlab.create_model(name, **SMALL.get(name, {}))


def _expected_shape(name: str, model: nn.Module, n: int, side: int) -> tuple[int, ...]:
    if type(model).task == "classification":
        return (n, model.config.num_classes)
    return (n, 1, side, side)


def _calibrated(model: nn.Module) -> nn.Module:
    # One training-mode pass gives BatchNorm real statistics, so eval outputs are finite.
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    return model.eval()


def _close(got: torch.Tensor, ref: torch.Tensor, rtol: float = 1e-4) -> None:
    assert got.shape == ref.shape
    assert torch.isfinite(ref).all()
    scale = max(1.0, float(ref.abs().max()))
    assert float((got - ref).abs().max()) <= rtol * scale


def test_every_registered_name_is_covered():
    # A new model should get a cheap entry in SMALL if its defaults are large.
    assert set(list_models()) == {
        "csf", "csf-res2net-mini", "csf-res2net50", "csnet", "csnet-L-x1", "csnet-L-x2", "csnet-cls", "res2net-mini", "res2net50",
    }


@pytest.mark.parametrize("name", ALL)
def test_model(name, tmp_path):
    model = _build(name)
    family = type(model).family
    assert model_family(model) == family and model.registry_name == name
    assert type(model).task in ("sod", "classification")
    if name in PARAMS:
        assert count_parameters(model) == PARAMS[name]

    # forward at two sizes, then backward: every trainable parameter gets a finite gradient
    model.train()
    for side in SIZES:
        x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(side))
        out = model(x)
        assert tuple(out.shape) == _expected_shape(name, model, 2, side)
        assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    trainable = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [k for k, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []

    # save/load round trip: same family, name, config and outputs
    model = _calibrated(model)
    path = sodlab.save(model, tmp_path / f"{name}.pt")
    again = sodlab.load(path)
    assert type(again).family == family and again.registry_name == name
    assert again.config.to_dict() == model.config.to_dict()
    assert type(build_from_config(family, model.config.to_dict())) is type(again)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(again(x), ref)

    # profile: parameters as counted, MACs grow with the input
    small, large = sodlab.profile(model, SIZES[0]), sodlab.profile(model, SIZES[1])
    assert small["params"] == count_parameters(model) == large["params"]
    assert 0 < small["macs"] < large["macs"]

    # the inference-optimised equivalent computes the same logits
    fast = sodlab.optimize_for_inference(model)
    with torch.no_grad():
        _close(fast(x), ref)
