"""CSF+Res2Net: the authors' model reproduced, the Res2Net backbone, CSF on other backbones."""
import importlib.util
import json

import numpy as np
import pytest
import torch
from torch import nn

import sodlab
from sodlab.errors import CheckpointError, ConfigError
from sodlab.models.csf_res2net import (
    CSFHeadConfig,
    CSFNet,
    CSFRes2Net,
    CSNetEncoder,
    authors_res2net_head,
)
from sodlab.models.csnet import csnet_config
from sodlab.models.official import csf_res2net_from_official, csf_res2net_key_to_ours
from sodlab.models.registry import create_model, list_models
from sodlab.models.res2net import Res2Net, Res2NetConfig, load_imagenet_weights

ATOL = 1e-4
PARAMS = 36_528_489
BACKBONE_PARAMS = 23_669_352


def _tiny_res2net(**kw) -> Res2Net:
    return Res2Net(Res2NetConfig(layers=[1, 1, 1, 1], base_width=8, stem_width=8, **kw))


@pytest.fixture(scope="module")
def csf_model():
    torch.manual_seed(0)
    return create_model("csf-res2net50")


@pytest.fixture(scope="module")
def official_fill(reference_dir):
    spec_path = reference_dir / "csf_res2net_official_keys.json"
    fill_path = reference_dir / "fill.py"
    if not spec_path.is_file() or not fill_path.is_file():
        pytest.skip("CSF+Res2Net reference files absent")
    spec = importlib.util.spec_from_file_location("_sodlab_reference_fill", fill_path)
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    return fill.official_state_dict(str(spec_path)), json.loads(spec_path.read_text())


# --- the authors' model --------------------------------------------------------------------
def test_official_logits_match(official_fill, reference_dir):
    sd, _ = official_fill
    sd = dict(sd)
    # Their released checkpoint carries the backbone's ImageNet classifier: must be ignored.
    sd["base.fc.weight"] = torch.zeros(1000, 2048)
    sd["base.fc.bias"] = torch.zeros(1000)
    model = csf_res2net_from_official(sd)
    assert not model.training
    ref = np.load(reference_dir / "csf_res2net_fill.npz")
    with torch.no_grad():
        y = model(torch.from_numpy(ref["input"]))
    assert y.shape == ref["logits"].shape == (2, 1, 224, 224)
    assert (y - torch.from_numpy(ref["logits"])).abs().max().item() < ATOL


def test_official_keys_cover_our_model(official_fill, csf_model):
    _, spec = official_fill
    ours = csf_model.state_dict()
    mapped = {csf_res2net_key_to_ours(k): v["shape"] for k, v in spec.items()}
    assert set(mapped) == set(ours)
    assert all(list(ours[k].shape) == s for k, s in mapped.items())
    n = sum(int(np.prod(v["shape"])) for k, v in spec.items() if "running" not in k and "num_batches" not in k)
    assert n == PARAMS


def test_official_wrong_shape_names_the_key(official_fill):
    sd = dict(official_fill[0])
    sd["ms.convs.2.msconv.4.weight"] = torch.zeros(102, 512, 3, 3)
    with pytest.raises(CheckpointError, match=r"ms\.convs\.2\.msconv\.4\.weight"):
        csf_res2net_from_official(sd)
    sd = dict(official_fill[0])
    del sd["fuse1x1.prelus.0.weight"]
    with pytest.raises(CheckpointError, match=r"head\.merge\.acts\.0\.weight"):
        csf_res2net_from_official(sd)


def test_parameter_counts(csf_model):
    assert sum(p.numel() for p in csf_model.parameters()) == PARAMS
    assert sum(p.numel() for p in csf_model.backbone.parameters()) == BACKBONE_PARAMS
    head = authors_res2net_head()
    assert head.in_channels == [256, 512, 1024, 2048] and sum(head.in_channels) == 3840
    assert head.mid_channels == [128, 256, 512, 512] and head.out_channels == 1408
    assert head.dilation_channels == [[25, 25, 25, 25, 28], [51, 51, 51, 51, 52]] + [[102, 102, 102, 102, 104]] * 2
    assert (head.norm, head.resample, head.gain) == ("gn", "bilinear", 1.0)
    assert {"csf-res2net50", "csf"} <= set(list_models())


# --- the backbone ----------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(224, 224), (64, 96), (100, 130)])
def test_res2net_feature_shapes(csf_model, h, w):
    backbone = csf_model.backbone.eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, h, w))
    side = lambda n, k: -(-n // 2**k)  # every down-sampling rounds up
    assert [tuple(f.shape) for f in feats] == [(1, c, side(h, k), side(w, k)) for c, k in zip((256, 512, 1024, 2048), (2, 3, 4, 5))]


def test_any_input_size_and_352(csf_model):
    csf_model.eval()
    with torch.no_grad():
        assert csf_model(torch.randn(1, 3, 100, 130)).shape == (1, 1, 100, 130)
        assert csf_model(torch.randn(1, 3, 352, 352)).shape == (1, 1, 352, 352)


def test_imagenet_weights_roundtrip_and_fc_ignored(tmp_path):
    torch.manual_seed(1)
    src = _tiny_res2net()
    sd = {f"module.{k}": v for k, v in src.state_dict().items()}
    sd["module.fc.weight"], sd["module.fc.bias"] = torch.zeros(10, 256), torch.zeros(10)
    del sd["module.layer2.0.bn1.num_batches_tracked"]  # old files lack the counters
    torch.save(sd, tmp_path / "res2net.pth")
    dst = load_imagenet_weights(_tiny_res2net(), tmp_path / "res2net.pth")
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_wrong_backbone_file_is_refused(tmp_path):
    other = Res2Net(Res2NetConfig(layers=[1, 1, 1, 1], base_width=14, stem_width=8))
    torch.save(other.state_dict(), tmp_path / "wrong_width.pth")
    with pytest.raises(CheckpointError, match=r"wrong_width\.pth.*layer1\.0\.conv1\.weight"):
        load_imagenet_weights(_tiny_res2net(), tmp_path / "wrong_width.pth")
    torch.save(create_model("csnet", width=8).state_dict(), tmp_path / "csnet.pth")
    with pytest.raises(CheckpointError, match=r"csnet\.pth.*(unknown keys, first \['stem|missing for)"):
        load_imagenet_weights(_tiny_res2net(), tmp_path / "csnet.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        load_imagenet_weights(_tiny_res2net(), tmp_path / "junk.pth")


def test_frozen_bn_and_frozen_stages():
    torch.manual_seed(0)
    net = _tiny_res2net(freeze_bn=True, frozen_stages=1).train()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(not m.training and not m.weight.requires_grad for m in bns)
    assert not any(p.requires_grad for p in net.conv1.parameters())
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for n, p in net.layer2.named_parameters() if "bn" not in n and "downsample.2" not in n)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sum(f.mean() for f in net(torch.randn(2, 3, 64, 64))).backward()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items() if "running" in k or "num_batches" in k)
    with pytest.raises(ConfigError):
        Res2NetConfig(frozen_stages=5)


# --- training ---------------------------------------------------------------------------------
def test_train_step_batch3_finite_grads_and_batch_independent(csf_model):
    model = CSFRes2Net(freeze_bn=True).train()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y = model(x)
    # Frozen BN and GroupNorm make every image independent of the rest of its batch.
    assert torch.allclose(model(x[1:2]), y[1:2], atol=1e-5)
    loss = nn.functional.binary_cross_entropy_with_logits(y, (x[:, :1] > 0).float())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert model.head.fuse.conv.weight.grad.abs().sum() > 0


class _TinyBackbone(nn.Module):
    """Two stages at strides 2 and 4, no `out_channels` attribute (read by a probe pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(16, 24, 3, 2, 1), nn.ReLU())

    def forward(self, x):
        a = self.a(x)
        return [a, self.b(a)]


def _overfit(model: nn.Module, steps: int = 6, accumulation: int = 2) -> list[float]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 32, 32, generator=g)
    # Salient = where the red channel is bright, blurred to the scale the head works at.
    target = (nn.functional.avg_pool2d(x[:, :1], 8, 1, padding=4)[..., :32, :32] > 0).float()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        total = 0.0
        for xb, tb in zip(x.chunk(accumulation), target.chunk(accumulation)):
            loss = nn.functional.binary_cross_entropy_with_logits(model(xb), tb) / accumulation
            loss.backward()
            total += loss.item()
        opt.step()
        losses.append(total)
    return losses


@pytest.mark.parametrize("which", ["custom", "csnet"])
def test_csf_on_other_backbones_trains(which):
    torch.manual_seed(0)
    backbone = _TinyBackbone() if which == "custom" else CSNetEncoder(csnet_config(8))
    model = create_model("csf", backbone=backbone)
    assert isinstance(model, CSFNet)
    assert model.head_config.in_channels == ([16, 24] if which == "custom" else [16, 32, 32])
    losses = _overfit(model)
    assert np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0]


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    for i, model in enumerate([create_model("csf", backbone="csnet", width=8),
                               create_model("csf", backbone="res2net50", layers=[1, 1, 1, 1], base_width=8, freeze_bn=True)]):
        path = sodlab.save(model, tmp_path / f"m{i}.pt")
        back = sodlab.load(path)
        assert type(back.backbone) is type(model.backbone) and back.config.to_dict() == model.config.to_dict()
        # Train mode: a fresh CSNet's BatchNorm statistics are not calibrated for eval.
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(back.train()(x), model.train()(x))
    custom = create_model("csf", backbone=_TinyBackbone())
    with pytest.raises(ConfigError, match="custom backbone"):
        sodlab.save(custom, tmp_path / "custom.pt")


def test_head_config_rule_and_errors():
    cfg = CSFHeadConfig.for_stages([40, 80, 80])
    assert cfg.mid_channels == [32, 32, 32] and cfg.out_channels == 96
    bn = CSFHeadConfig.for_stages([40, 80, 80], norm="bn", resample="pool")
    assert bn.mid_channels == [20, 40, 40] and bn.dilation_channels[0] == [4, 4, 4, 4, 4]
    assert CSFHeadConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"\[16, 24\]"):
        CSFNet(_TinyBackbone(), CSFHeadConfig.for_stages([16, 32]))
    with pytest.raises(ConfigError, match="only apply"):
        create_model("csf", backbone=_TinyBackbone(), width=8)
