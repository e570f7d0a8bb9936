"""sodlab.fast.norm_act: BatchNorm + PReLU in one autograd step equals the two native layers."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sodlab.fast import norm_act
from sodlab.fast import optimize_for_training
from sodlab.fast.norm_act import batch_norm_prelu, fusable


@pytest.fixture(params=["numba", "torch"])
def path(request, monkeypatch):
    """Runs a test once with the compiled kernels and once with the torch-ops fallback."""
    if request.param == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("SODLAB_NUMBA", "1" if request.param == "numba" else "0")
    monkeypatch.setattr(norm_act, "_KERNELS", None)
    monkeypatch.setattr(norm_act, "_KERNELS_TRIED", False)
    assert norm_act.numba_available() == (request.param == "numba")
    return request.param


def _pair(channels: int, slopes: int, dtype: torch.dtype, seed: int, momentum=0.1):
    g = torch.Generator().manual_seed(seed)
    bn, act = nn.BatchNorm2d(channels, momentum=momentum).to(dtype), nn.PReLU(slopes).to(dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=g, dtype=dtype) * 2 - 0.5)  # negative gammas too
        bn.bias.copy_(torch.randn(channels, generator=g, dtype=dtype))
        act.weight.copy_(torch.rand(slopes, generator=g, dtype=dtype) * 1.5 - 0.5)  # negative slopes too
        bn.running_mean.normal_(generator=g)
        if channels > 2:  # a dead channel: y == 0 exactly, where PReLU's gradient takes the slope
            bn.weight[2] = 0.0
            bn.bias[2] = 0.0
    return bn, act


def _run(bn, act, x, grad, fused: bool):
    x = x.clone().requires_grad_()
    out = batch_norm_prelu(x, bn, act) if fused else act(bn(x))
    out.backward(grad)
    return out.detach(), [x.grad, bn.weight.grad, bn.bias.grad, act.weight.grad, bn.running_mean, bn.running_var,
                          bn.num_batches_tracked]


@pytest.mark.parametrize("shape, slopes, momentum", [((2, 7, 9, 11), 7, 0.1), ((3, 5, 4, 6), 1, 0.1), ((1, 4, 2, 3), 4, None)])
def test_float64_equals_native(path, shape, slopes, momentum):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(*shape, generator=g, dtype=torch.float64) * 3 + 2).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(*shape, generator=g, dtype=torch.float64)
    bn, act = _pair(shape[1], slopes, torch.float64, 1, momentum)
    bn2, act2 = copy.deepcopy(bn), copy.deepcopy(act)
    assert fusable(bn2, act2, x)
    for step in range(2):  # the second step sees updated running statistics (and momentum=None's 1/2)
        ref_out, ref = _run(bn, act, x, grad, fused=False)
        out, got = _run(bn2, act2, x, grad, fused=True)
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(out, ref_out, rtol=0, atol=1e-12)
        names = ["dx", "dgamma", "dbeta", "dslope", "running_mean", "running_var", "num_batches_tracked"]
        for name, a, b in zip(names, ref, got):
            assert b.shape == a.shape, name
            assert torch.allclose(b.double(), a.double(), rtol=0, atol=1e-11), (name, step, float((a - b).abs().max()))
        for p in (bn.weight, bn.bias, act.weight, bn2.weight, bn2.bias, act2.weight):
            p.grad = None


def test_float32_close_to_native(path):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(4, 19, 16, 24, generator=g) * 2 + 1).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(4, 19, 16, 24, generator=g)
    bn, act = _pair(19, 19, torch.float32, 4)
    out_ref, ref = _run(copy.deepcopy(bn), copy.deepcopy(act), x, grad, fused=False)
    out, got = _run(bn, act, x, grad, fused=True)
    assert float((out - out_ref).abs().max()) < 1e-5
    for a, b in zip(ref[:4], got[:4]):
        assert float((a - b).abs().max()) <= 1e-5 * max(1.0, float(a.abs().max()))


def test_not_fusable_falls_back():
    bn, act = nn.BatchNorm2d(4), nn.PReLU(4)
    x = torch.randn(2, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    assert fusable(bn, act, x)
    assert not fusable(bn, act, x.contiguous())  # default layout: the native layers are as fast
    assert not fusable(bn, act, x[:1, :, :1, :1].contiguous(memory_format=torch.channels_last))  # one value per channel
    assert not fusable(bn, act, torch.randn(2, 3, 5, 5).contiguous(memory_format=torch.channels_last))  # wrong channels
    assert not fusable(bn, nn.ReLU(), x)
    assert not fusable(nn.GroupNorm(2, 4), act, x)
    assert not fusable(nn.BatchNorm2d(4, affine=False), act, x)
    assert not fusable(nn.BatchNorm2d(4, track_running_stats=False), act, x)
    assert not fusable(bn.eval(), act, x)  # eval mode: running statistics, folded for inference instead
    assert not fusable(bn.train().double(), act, x)  # mixed precision


def test_fused_blocks_call_forward_hooks(path):
    """The dynamic weight decay records activations through forward hooks on the blocks: a
    fused block calls them with the output the plain block gives. A forward pre-hook (which
    may change the input) keeps its block unfused."""
    from sodlab.fast import FusedGOctConvBNAct
    from sodlab.models.csnet import CSNet, csnet_config

    torch.manual_seed(0)
    model = CSNet(csnet_config(8, (0.5, 0.5))).train()
    x = torch.randn(2, 3, 32, 32)
    seen: dict[str, list] = {"plain": [], "fused": []}
    key = ["plain"]
    handle = model.stage1[0].conv.register_forward_hook(lambda m, i, o: seen[key[0]].append((m, [t.detach().clone() for t in o])))
    model(x.contiguous(memory_format=torch.channels_last))
    key[0] = "fused"
    fast = optimize_for_training(model)
    assert isinstance(fast.inner.stage1[0].conv, FusedGOctConvBNAct)
    fast(x)
    (m0, plain), (m1, fused) = seen["plain"][0], seen["fused"][0]
    assert m0 is m1 is model.stage1[0].conv
    assert len(plain) == len(fused)
    for a, b in zip(plain, fused):
        assert float((a - b).abs().max()) < 1e-4
    handle.remove()
    model.stem.conv.register_forward_pre_hook(lambda m, i: None)
    assert optimize_for_training(model).inner.stem.conv is model.stem.conv
