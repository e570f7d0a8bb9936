import json

import numpy as np
import pytest
import torch

import sodlab
from sodlab.errors import ConfigError
from sodlab.models.csnet import CSNet, CSNetConfig, csnet_config


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name,kw,expected",
    [("csnet-L-x1", {}, 93_647), ("csnet-L-x2", {}, 140_894), ("csnet", {}, 210_985), ("csnet", {"width": 40}, 788_631)],
)
def test_parameter_counts(name, kw, expected):
    assert n_params(sodlab.create_model(name, **kw)) == expected


def test_registry_lists_the_presets():
    names = sodlab.list_models()
    assert {"csnet", "csnet-L-x1", "csnet-L-x2"} <= set(names)
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        sodlab.create_model("nope")


def test_unpruned_family_matches_the_authors_init(reference_dir):
    ref = json.loads((reference_dir / "csnet_w20_s50-50_config.json").read_text())
    assert csnet_config(20, (0.5, 0.5)).to_layer_config() == ref["layer_config"]


def test_config_round_trips_through_json(tmp_path):
    cfg = sodlab.create_model("csnet-L-x2").config
    cfg.to_json(tmp_path / "c.json")
    assert CSNetConfig.from_json(tmp_path / "c.json") == cfg
    assert CSNetConfig.from_layer_config(cfg.to_layer_config()) == cfg


def test_config_errors_name_the_block():
    d = csnet_config(20).to_dict()
    d["blocks"][5][0] = [11, 10]
    with pytest.raises(ConfigError, match=r"block 5 \(stage2\.1\)"):
        CSNetConfig.from_dict(d)


@pytest.mark.parametrize("split", [(1.0,), (0.75, 0.25), (0.5, 0.25, 0.25)])
def test_other_splits_build_and_run(split):
    # Train mode: BatchNorm normalises with batch statistics (fresh running statistics
    # cannot tame the x100 gains of an untrained network).
    m = sodlab.create_model("csnet", width=8, split=split).train()
    y = m(torch.randn(2, 3, 64, 96))
    assert y.shape == (2, 1, 64, 96) and torch.isfinite(y).all()
    y.mean().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_sides_must_be_multiples_of_16():
    m = sodlab.create_model("csnet", width=8).eval()
    with pytest.raises(ValueError, match="multiples of 16; got 100x96"):
        m(torch.randn(1, 3, 100, 96))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        m(torch.randn(1, 1, 96, 96))
