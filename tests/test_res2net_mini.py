"""The study model: res2net-mini (classifier), csf-res2net-mini (saliency), res2net50, the
extended Res2NetConfig and moving the shared backbone between them."""
import pytest
import torch

import sodlab
from sodlab.errors import ConfigError
from sodlab.models import Res2NetConfig, create_model, transfer_backbone
from sodlab.models.res2net import Res2Net
from sodlab.models.res2net_family import MINI, Res2NetClassifier, Res2NetClassifierConfig, res2net_mini_config

# A tiny member of the family: 1 block per stage, 2 groups, narrow stages.
TINY = {"layers": [1, 1, 1, 1], "planes": [4, 8, 8, 8], "expansion": 2, "base_width": 32, "scale": 2, "stem_width": 4}


def _tiny_pair(seed_cls: int = 0, seed_sod: int = 1):
    torch.manual_seed(seed_cls)
    cls = create_model("res2net-mini", config=TINY, num_classes=3)
    torch.manual_seed(seed_sod)
    sod = create_model("csf-res2net-mini", config=TINY, head={"gn_groups": 4, "out_channels": 8})
    return cls, sod


# --- the family's structure ------------------------------------------------------------
def test_mini_stage_shapes_and_strides_at_64px():
    backbone = Res2Net(res2net_mini_config())
    cfg = backbone.config
    assert cfg.strides == backbone.strides
    feats = backbone(torch.zeros(2, 3, 64, 64))
    expected = [(2, c, 64 // s, 64 // s) for c, s in zip(cfg.out_channels, cfg.strides)]
    assert [tuple(f.shape) for f in feats] == expected
    assert cfg.out_channels == [p * MINI["expansion"] for p in MINI["planes"]]


@pytest.mark.parametrize(
    "overrides, strides",
    [({}, [4, 8, 16, 32]), ({"max_pool": False}, [2, 4, 8, 16]), ({"stem_stride": 1, "max_pool": False}, [1, 2, 4, 8])],
)
def test_stem_stride_and_max_pool_set_the_strides(overrides, strides):
    backbone = Res2Net(Res2NetConfig(**{**TINY, **overrides}))
    assert backbone.strides == strides
    feats = backbone.eval()(torch.zeros(1, 3, 32, 32))
    assert [f.shape[-1] for f in feats] == [32 // s for s in strides]
    assert [f.shape[1] for f in feats] == [8, 16, 16, 16]


def test_50_layer_defaults_unchanged():
    cfg = Res2NetConfig()
    assert (cfg.planes, cfg.expansion, cfg.stem_stride, cfg.max_pool) == ([64, 128, 256, 512], 4, 2, True)
    assert cfg.out_channels == [256, 512, 1024, 2048] and cfg.strides == [4, 8, 16, 32]
    # a config saved before these fields existed still loads, as the 50-layer model
    old = {"layers": [3, 4, 6, 3], "base_width": 26, "scale": 4, "stem_width": 32, "freeze_bn": False, "frozen_stages": -1}
    assert Res2NetConfig.from_dict(old) == cfg


def test_max_pool_off_keeps_the_state_dict_keys():
    on = Res2Net(Res2NetConfig(**TINY)).state_dict()
    off = Res2Net(Res2NetConfig(**TINY, max_pool=False)).state_dict()
    assert list(on) == list(off)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"planes": [16, 32, 64]}, "Res2Net needs 4 positive stage widths (planes), got [16, 32, 64]"),
        ({"planes": [16, 32, 0, 128]}, "Res2Net needs 4 positive stage widths (planes), got [16, 32, 0, 128]"),
        ({"planes": [2, 32, 64, 128], "base_width": 26},
         "Res2Net planes [2, 32, 64, 128] with base_width 26 leave a group without channels (need planes * base_width >= 64)"),
        ({"expansion": 0}, "Res2Net expansion must be positive, got 0"),
        ({"stem_stride": 3}, "Res2Net stem_stride must be 1 or 2, got 3"),
        ({"layers": [1, 1, 1]}, "Res2Net needs 4 stages of at least one block, got [1, 1, 1]"),
        ({"maxpool": True}, "unknown Res2Net config keys: ['maxpool']"),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError) as exc:
        Res2NetConfig.from_dict({**MINI, **overrides})
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 0}, "num_classes must be a positive integer, got 0"),
        ({"num_classes": 2.5}, "num_classes must be a positive integer, got 2.5"),
        ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    ],
)
def test_classifier_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as exc:
        Res2NetClassifierConfig(backbone=TINY, **kwargs)
    assert str(exc.value) == message


def test_classifier_config_unknown_key():
    with pytest.raises(ConfigError) as exc:
        Res2NetClassifierConfig.from_dict({"backbone": TINY, "classes": 3})
    assert str(exc.value) == "unknown Res2Net classifier config keys: ['classes']"


# --- the two models ----------------------------------------------------------------------
def test_models_declare_task_and_share_the_backbone_names():
    cls, sod = _tiny_pair()
    assert type(cls).task == "classification" and type(sod).task == "sod"
    assert type(cls).family == "res2net-cls" and type(sod).family == "csf"
    assert {k for k in cls.state_dict() if k.startswith("backbone.")} == {k for k in sod.state_dict() if k.startswith("backbone.")}


def test_every_registered_model_declares_its_task():
    for name in ("csnet", "csnet-cls", "csf", "res2net-mini", "csf-res2net-mini"):
        kw = {"backbone": "csnet", "width": 8} if name == "csf" else ({"width": 8} if name.startswith("csnet") else {})
        assert type(create_model(name, **kw)).task in ("sod", "classification")


def test_classifier_logits_shape():
    model = create_model("res2net-mini", num_classes=7)
    assert model.config.num_classes == 7
    out = model(torch.randn(2, 3, 64, 64))
    assert tuple(out.shape) == (2, 7)
    assert tuple(model.embed(torch.randn(2, 3, 64, 64)).shape) == (2, model.config.backbone.out_channels[-1])
    assert create_model("res2net-mini").config.num_classes == 12


@pytest.mark.parametrize("side", [64, 96])
def test_csf_mini_output_shape(side):
    model = create_model("csf-res2net-mini")
    assert tuple(model(torch.randn(2, 3, side, side)).shape) == (2, 1, side, side)


def test_save_load_round_trip(tmp_path):
    cls, sod = _tiny_pair()
    x = torch.randn(2, 3, 32, 32)
    for model in (cls, sod):
        model.eval()
        again = sodlab.load(sodlab.save(model, tmp_path / f"{type(model).family}.pt"))
        assert type(again) is type(model) and again.registry_name == model.registry_name
        assert again.config.to_dict() == model.config.to_dict()
        with torch.no_grad():
            assert torch.equal(again(x), model(x))


# --- moving the backbone -----------------------------------------------------------------
def _assert_transfer(src, dst):
    before_dst = {k: v.clone() for k, v in dst.state_dict().items()}
    src_state = src.state_dict()
    report = transfer_backbone(src, dst)
    after = dst.state_dict()
    backbone = sorted(k for k in src_state if k.startswith("backbone."))
    assert report.moved == backbone and report.complete and report.shape_mismatches == []
    assert report.dst_unfilled == sorted(k for k in after if not k.startswith("backbone."))
    assert report.src_unused == sorted(k for k in src_state if not k.startswith("backbone."))
    for k in backbone:
        assert torch.equal(after[k], src_state[k])
    for k in report.dst_unfilled:  # the head is untouched
        assert torch.equal(after[k], before_dst[k])
    return report


def test_transfer_classifier_to_saliency_and_back():
    cls, sod = _tiny_pair()
    # make the running statistics differ too: they are part of the backbone
    cls.train()(torch.randn(4, 3, 32, 32))
    report = _assert_transfer(cls, sod)
    assert report.src_unused == ["head.bias", "head.weight"]
    assert "classifier.weight" in report.dst_unfilled and "head.fuse.conv.weight" in report.dst_unfilled
    cls2, sod2 = _tiny_pair(seed_cls=5, seed_sod=6)
    report = _assert_transfer(sod2, cls2)
    assert report.dst_unfilled == ["head.bias", "head.weight"]


def test_transfer_shape_mismatch_is_an_error_unless_allowed():
    cls, _ = _tiny_pair()
    torch.manual_seed(3)
    other = create_model("res2net-mini", config={**TINY, "planes": [4, 8, 8, 16]}, num_classes=3)
    with pytest.raises(ConfigError) as exc:
        transfer_backbone(cls, other)
    assert str(exc.value).startswith("backbone weight backbone.layer4.0.bn1.bias: source shape (8,) does not fit destination shape (16,)")
    before = {k: v.clone() for k, v in other.state_dict().items()}
    report = transfer_backbone(cls, other, allow_mismatch=True)
    mismatched = [k for k, _, _ in report.shape_mismatches]
    assert mismatched and all(k.startswith("backbone.layer4.") for k in mismatched)
    assert not report.complete
    assert set(mismatched) <= set(report.dst_unfilled) and set(mismatched) <= set(report.src_unused)
    after = other.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in mismatched)
    assert all(torch.equal(after[k], cls.state_dict()[k]) for k in report.moved)


def test_transfer_missing_backbone_key_is_an_error():
    shallow, _ = _tiny_pair()
    deeper = create_model("res2net-mini", config={**TINY, "layers": [1, 1, 1, 2]}, num_classes=3)
    with pytest.raises(ConfigError) as exc:
        transfer_backbone(shallow, deeper)
    assert str(exc.value).startswith("backbone key backbone.layer4.1.bn1.bias of the destination is not in the source")


def test_transfer_needs_a_backbone():
    cls, _ = _tiny_pair()
    with pytest.raises(ConfigError) as exc:
        transfer_backbone(create_model("csnet", width=8), cls)
    assert str(exc.value) == "source model CSNet has no `backbone` (no backbone.* keys)"


@pytest.mark.slow
def test_res2net50_classifier_shares_csf_res2net50_backbone():
    cls = create_model("res2net50", num_classes=5)
    sod = create_model("csf-res2net50")
    assert isinstance(cls, Res2NetClassifier)
    report = transfer_backbone(sod, cls)
    assert report.complete and report.dst_unfilled == ["head.bias", "head.weight"]
    assert sum(p.numel() for p in cls.backbone.parameters()) == 23_669_352
