"""sodlab.fast: the optimised modules compute what the plain model computes."""
from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn

from sodlab.fast import (
    FoldedDepthwiseAct,
    FoldedGOctConvAct,
    FoldedMultiDilation,
    FusedGOctConvBNAct,
    OptimizedModel,
    optimize_for_inference,
    optimize_for_training,
)
from sodlab.models.csnet import CSNet, CSNetConfig, csnet_config
from sodlab.models.goctconv import GOctConv, GOctConvBNAct

ATOL = 1e-4


# --- helpers ----------------------------------------------------------------------------
def randomise(model: nn.Module, seed: int, calibrate_input: torch.Tensor | None = None) -> nn.Module:
    """Random weights, BatchNorm statistics calibrated on one batch then perturbed, random
    BN affine and PReLU slopes (negative and above one included), so folding is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2.0 - 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    if calibrate_input is not None:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 1.0
        model.train()
        with torch.no_grad():
            model(calibrate_input)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.mul_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.8)
                m.running_mean.add_(torch.randn(m.running_mean.shape, generator=g) * 0.1 * m.running_var.sqrt())
    return model.eval()


def random_config(seed: int) -> CSNetConfig:
    """A valid CSNet configuration with 1-3 scales per block and zero-channel scales."""
    rng = random.Random(seed)
    stages = [rng.randint(1, 2) for _ in range(4)]

    def scales(single_end: bool) -> list[int]:
        if single_end:
            return [rng.randint(2, 7)] + [0] * rng.randint(0, 1)
        n = rng.randint(1, 3)
        while True:
            c = [rng.choice([0, rng.randint(1, 6)]) for _ in range(n)]
            if sum(c):
                return c

    config_blocks = [[[3], scales(False)]]
    ends = set()
    start = 1
    for k, n in enumerate(stages):
        start += n
        if k >= 1:
            ends.add(start - 1)
    for b in range(1, 1 + sum(stages)):
        config_blocks.append([config_blocks[-1][1], scales(b in ends)])
    csf_in = [sum(config_blocks[e][1]) for e in sorted(ends)]
    mid = [rng.randint(0, 5) for _ in range(3)]
    if not any(mid):
        mid[0] = 3
    dil = [[rng.randint(0, 2) for _ in range(5)] if m else [0] * 5 for m in mid]
    if not any(map(sum, dil)):
        first = next(i for i, m in enumerate(mid) if m)
        dil[first][0] = 2
    return CSNetConfig(blocks=config_blocks, csf_in=csf_in, csf_mid=mid, csf_dilation_channels=dil,
                       csf_out=rng.randint(1, 6), stages=stages)


def assert_same(model: nn.Module, x: torch.Tensor, **kw) -> float:
    """Optimised == plain. In float64 the two must agree to 1e-9 (relative to the logits'
    size): a real difference in what is computed cannot hide there. In float32 randomly
    weighted deep models amplify summation-order rounding, so they get 1e-4 relative to the
    logits' size (the released checkpoints are held to 1e-4 absolute below)."""
    fast = optimize_for_inference(model, **kw)
    with torch.no_grad():
        ref = model.eval()(x)
        got = fast(x)
        ref64 = copy.deepcopy(model).double()(x.double())
        # (float64 convolutions have no fast channels-last kernel; the layout does not change the maths)
        got64 = optimize_for_inference(copy.deepcopy(model).double(), channels_last=False)(x.double())
    assert got.shape == ref.shape and got.dtype == torch.float32
    scale = max(1.0, float(ref.abs().max()))
    err64 = float((got64 - ref64).abs().max())
    assert err64 <= 1e-9 * scale, f"float64 max |difference| {err64}"
    err = float((got - ref).abs().max())
    assert err <= 2 * ATOL * scale, f"float32 max |difference| {err}"
    return err


# --- the authors' released models -------------------------------------------------------------
@pytest.mark.parametrize("name", ["csnet-L-x1", "csnet-L-x2"])
def test_official_checkpoints_match(reference_dir, name):
    from sodlab.models.official import load_official_csnet

    model = load_official_csnet(reference_dir / "official" / f"{name}.pth.tar", preset=name)
    data = np.load(reference_dir / f"{name}_random.npz")
    x = torch.from_numpy(data["input"])
    fast = optimize_for_inference(model)
    with torch.no_grad():
        plain, got = model(x), fast(x)
    assert float((got - plain).abs().max()) < ATOL
    assert float((got - torch.from_numpy(data["logits"])).abs().max()) < ATOL
    photo = np.load(reference_dir / f"{name}_astronaut.npz")
    with torch.no_grad():
        got = fast(torch.from_numpy(photo["input"]))
    assert float((got - torch.from_numpy(photo["logits"])).abs().max()) < ATOL


def test_optimized_structure_and_input_untouched(reference_dir):
    from sodlab.models.official import load_official_csnet

    model = load_official_csnet(reference_dir / "official" / "csnet-L-x2.pth.tar", preset="csnet-L-x2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types_before = [type(m) for m in model.modules()]
    fast = optimize_for_inference(model)
    assert isinstance(fast, OptimizedModel) and fast.channels_last
    kinds = {type(m) for m in fast.modules()}
    assert {FoldedGOctConvAct, FoldedDepthwiseAct, FoldedMultiDilation} <= kinds
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert not any(p.requires_grad for p in fast.parameters())
    # One convolution over the joined fine and pooled inputs per output scale (w0, w1), plus
    # one at the coarse scale for the fine output (w0_1), up-sampled afterwards.
    blk = fast.inner.stage1[1].conv
    assert sorted(n for n, _ in blk.named_buffers() if n.startswith("w")) == ["w0", "w0_1", "w1"]
    assert [type(m) for m in model.modules()] == types_before
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.stem.conv.norms["0"].weight.requires_grad


def test_traced_model_matches_per_shape_and_follows_new_weights():
    """jit=True: TorchScript graphs traced per input shape give the eager module's outputs,
    also where a shape takes the other branch of the 2x2 max-pooling (odd sides deeper
    down); gradients and state changes go through the eager module / a fresh trace."""
    from sodlab.fast import TracedModel

    torch.manual_seed(0)
    model = randomise(CSNet(csnet_config(8, (0.5, 0.5))), 0, calibrate_input=torch.randn(2, 3, 64, 64))
    traced = optimize_for_inference(model, jit=True)
    assert isinstance(traced, TracedModel) and isinstance(traced.inner, OptimizedModel)
    for shape in [(1, 3, 64, 64), (3, 3, 64, 64), (1, 3, 80, 48), (1, 3, 64, 64)]:  # 80/16 = 5: odd sides
        x = torch.randn(*shape)
        with torch.inference_mode():
            got = traced(x)
        assert got.shape == (shape[0], 1, *shape[2:])
        assert float((got - model(x).detach()).abs().max()) < ATOL, shape
    assert len(traced._graphs) == 3  # the repeated shape reused its graph
    assert all(isinstance(g, torch.jit.ScriptModule) for g in traced._graphs.values())
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    traced(x).sum().backward()  # eager: the folded weights take no gradient, the input does
    assert x.grad is not None and x.grad.abs().sum() > 0
    # new weights: the frozen graphs are dropped, not reused with stale constants
    state = {k: v * 2 if k.endswith("w0") else v for k, v in traced.state_dict().items()}
    traced.load_state_dict(state)
    assert not traced._graphs
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert torch.allclose(traced(x), traced.inner(x), atol=1e-6)
        assert not torch.allclose(traced(x), model(x), atol=1e-3)


# --- random configurations ------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_random_configs_match(seed):
    torch.manual_seed(seed)
    config = random_config(seed)
    model = CSNet(config)
    x = torch.randn(2, 3, 64, 96)
    randomise(model, seed, calibrate_input=x)
    assert_same(model, torch.randn(2, 3, 64, 96))


@pytest.mark.parametrize("split", [(1.0,), (0.75, 0.25), (0.5, 0.5), (0.0, 1.0)])
def test_unpruned_splits_match(split):
    torch.manual_seed(0)
    model = CSNet(csnet_config(8, split))
    x = torch.randn(2, 3, 48, 64)
    randomise(model, 1, calibrate_input=x)
    assert_same(model, torch.randn(1, 3, 48, 64))
    assert_same(model, torch.randn(1, 3, 48, 64), channels_last=False)


def test_single_scale_width20_is_plain_convs():
    model = CSNet(csnet_config(20, (1.0,)))
    x = torch.randn(1, 3, 32, 32)
    randomise(model, 2, calibrate_input=x)
    assert_same(model, x)
    fast = optimize_for_inference(model)
    # Stride-2 single-scale blocks stay strided convolutions (no average pooling).
    assert fast.inner.stage2[0].conv.plain and fast.inner.stage2[0].conv.stride == 2


@pytest.mark.parametrize(
    "ins,outs,k,stride,bias",
    [
        ([4, 3], [5, 2], 1, 1, False),
        ([4, 3, 2], [3, 4, 5], 3, 1, True),   # up-sampled 3x3 terms by 2 and 4
        ([4, 3, 2], [3, 4, 5], 1, 1, True),   # 1x1: up-sampling moved before the conv
        ([0, 3, 2], [3, 0, 5], 3, 2, False),  # absent scales, stride 2
        ([6], [3, 4], 3, 2, True),
        ([3, 4], [6], 1, 1, True),
    ],
)
def test_goctconv_block_folding(ins, outs, k, stride, bias):
    torch.manual_seed(3)
    block = GOctConvBNAct(ins, outs, kernel_size=k, stride=stride)
    if bias:
        block.conv.bias = nn.Parameter(torch.randn(sum(outs)) * 0.3)
    xs = [torch.randn(2, c, 32 // 2**i, 48 // 2**i) if c else None for i, c in enumerate(ins)]
    with torch.no_grad():
        block.train()(xs)  # populate running statistics
    randomise(block, 4)
    folded = FoldedGOctConvAct(block.conv, block.norms, block.acts)
    with torch.no_grad():
        ref, got = block(xs), folded(xs)
        got_cl = folded([None if x is None else x.contiguous(memory_format=torch.channels_last) for x in xs])
    for r, g, gc in zip(ref, got, got_cl):
        assert (r is None) == (g is None) == (gc is None)
        if r is not None:
            assert torch.allclose(r, g, atol=1e-5, rtol=1e-5)
            assert torch.allclose(r, gc, atol=1e-5, rtol=1e-5)


def test_bare_goctconv_and_missing_input():
    torch.manual_seed(5)
    conv = GOctConv([3, 2], [2, 4], 3, bias=True)
    folded = FoldedGOctConvAct(conv)
    xs = [torch.randn(1, 3, 16, 16), torch.randn(1, 2, 8, 8)]
    with torch.no_grad():
        for r, g in zip(conv(xs), folded(xs)):
            assert torch.allclose(r, g, atol=1e-5)
    with pytest.raises(ValueError, match="2 input scales"):
        folded(xs[:1])


# --- other models -----------------------------------------------------------------------------
def test_sequential_conv_bn_folded():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4))
    x = torch.randn(2, 3, 16, 16)
    randomise(model, 7, calibrate_input=x)
    assert_same(model, x)
    fast = optimize_for_inference(model)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules()) == 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2


def test_csf_res2net_small_is_equivalent():
    from sodlab import create_model

    try:
        model = create_model("csf", backbone="res2net50", layers=[1, 1, 1, 1], base_width=8, stem_width=8)
    except Exception as exc:  # the CSF family belongs to another module; skip if it changed
        pytest.skip(f"csf model unavailable: {exc}")
    x = torch.randn(1, 3, 64, 64)
    randomise(model, 8, calibrate_input=x)
    assert_same(model, x)


def test_csf_csnet_backbone_is_equivalent():
    from sodlab import create_model

    try:
        model = create_model("csf", backbone="csnet", width=8)
    except Exception as exc:
        pytest.skip(f"csf model unavailable: {exc}")
    x = torch.randn(1, 3, 64, 64)
    randomise(model, 9, calibrate_input=x)
    assert_same(model, x)


# --- training path ------------------------------------------------------------------------------
def _grads_after_step(net: nn.Module, params, x: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
    net.train()
    nn.functional.binary_cross_entropy_with_logits(net(x), target).backward()
    return [p.grad.clone() for p in params]


@pytest.mark.parametrize("seed, channels_last", [(0, False), (1, False), (0, True), (1, True)])
def test_training_path_gives_same_gradients_and_statistics(seed, channels_last, monkeypatch):
    """Identical maths: in float64 gradients and BN statistics agree to 1e-9. (In float32,
    training-mode BatchNorm over a tiny random batch amplifies rounding too much for a
    meaningful tight bound.) Channels-last runs BatchNorm+PReLU through `sodlab.fast.norm_act`,
    which must be called for every pair."""
    from sodlab.fast import norm_act

    torch.manual_seed(seed)
    config = random_config(10 + seed) if seed else csnet_config(8, (0.5, 0.5))
    plain = CSNet(config)
    x = torch.randn(2, 3, 64, 96)
    randomise(plain, seed, calibrate_input=x)
    plain, x = plain.double(), x.double()
    twin = copy.deepcopy(plain)
    fast = optimize_for_training(twin, channels_last=channels_last)
    assert {id(p) for p in fast.parameters()} == {id(p) for p in twin.parameters()}
    assert any(isinstance(m, FusedGOctConvBNAct) for m in fast.modules())
    assert not any(isinstance(m, FusedGOctConvBNAct) for m in twin.modules())  # twin's tree untouched
    target = torch.rand(2, 1, 64, 96, dtype=torch.float64)
    calls = []
    real = norm_act._BatchNormPReLU.apply
    monkeypatch.setattr(norm_act._BatchNormPReLU, "apply", lambda *a: calls.append(1) or real(*a))
    g_plain = _grads_after_step(plain, list(plain.parameters()), x, target)
    g_fast = _grads_after_step(fast, list(twin.parameters()), x, target)
    n_pairs = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    if channels_last:
        assert len(calls) == n_pairs
    else:  # only maps whose strides are channels-last as well (one channel, or 1x1)
        assert len(calls) < n_pairs
    for (name, _), a, b in zip(plain.named_parameters(), g_plain, g_fast):
        assert float((a - b).abs().max()) <= 1e-9 * max(1.0, float(a.abs().max())), name
    for (name, b), c in zip(plain.named_buffers(), twin.buffers()):
        assert torch.allclose(b.double(), c.double(), rtol=1e-9, atol=1e-12), name


def test_training_path_float32_channels_last_close():
    torch.manual_seed(2)
    plain = CSNet(csnet_config(8, (0.5, 0.5)))
    x = torch.randn(4, 3, 64, 64)
    randomise(plain, 3, calibrate_input=x)
    twin = copy.deepcopy(plain)
    fast = optimize_for_training(twin)
    assert fast.channels_last
    plain.train(), fast.train()
    with torch.no_grad():
        a, b = plain(x), fast(x)
    # train-mode BN over 4 images of 64x64 amplifies float32 rounding (the float64 test above
    # is the exact one); 1e-3 of the output range still catches any wrong term.
    assert b.is_contiguous()
    assert float((a - b).abs().max()) < 1e-3 * max(1.0, float(a.abs().max()))


@pytest.mark.parametrize("shape", [(2, 5, 8, 6), (1, 3, 7, 8), (1, 4, 6, 5)])
def test_max_pool2_equals_max_pool2d(shape):
    from sodlab.fast.planner import max_pool2

    x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
    x[0, 0, :2, :2] = 0.5  # a tie inside one window
    with torch.no_grad():
        y = max_pool2(x)
    assert torch.equal(y, torch.nn.functional.max_pool2d(x, 2, 2))  # odd sides fall back to it
    # under autograd the pooling routes a tie's gradient as max_pool2d does
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    max_pool2(a).sum().backward()
    torch.nn.functional.max_pool2d(b, 2, 2).sum().backward()
    assert torch.equal(a.grad, b.grad)
