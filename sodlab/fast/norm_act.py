"""Training-mode BatchNorm followed by PReLU as one autograd step, for channels-last CPU tensors.

On a CPU, PyTorch's channels-last kernels for these two layers are the slowest part of a
CSNet training step: their backward passes (per-channel reductions over an N*H*W x C matrix
with a dozen to a few dozen channels) take several times as long as the convolutions around
them. `batch_norm_prelu` computes the same maths in as few passes over memory as it can:

* with numba (a dependency; set ``SODLAB_NUMBA=0`` to do without it), three compiled loops
  (`sodlab.fast._norm_act_kernels`): statistics, then normalise + PReLU in the forward; sums,
  then the input gradient in the backward;
* without it, large elementwise torch operations and matrix-vector products for the sums.

numba's default thread pool must not be entered from two Python threads at once; to train
in several threads of one process, set ``NUMBA_THREADING_LAYER=omp`` (or ``SODLAB_NUMBA=0``).

The gradients are those of ``prelu(batch_norm(x))``:

* PReLU: ``dy = g * where(y > 0, 1, a)``; ``da = sum(g * min(y, 0))`` per channel.
* BatchNorm (batch statistics, ``x_hat = (x - mean) * invstd``):
  ``dgamma = sum(dy * x_hat)``, ``dbeta = sum(dy)`` and
  ``dx = gamma * invstd * (dy - dbeta / M - x_hat * dgamma / M)`` over the ``M = N*H*W``
  positions of each channel.

Float64 results agree with the native layers to about 1e-15; float32 ones differ by
summation order (the sums here are the more accurate ones). Running statistics are updated
exactly as ``nn.BatchNorm2d`` does.
"""
from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["batch_norm_prelu", "fusable", "numba_available"]

log = logging.getLogger(__name__)
_KERNELS: Optional[ModuleType] = None
_KERNELS_TRIED = False


def _kernels() -> Optional[ModuleType]:
    """The numba kernels module, or None (numba missing, or ``SODLAB_NUMBA=0``)."""
    global _KERNELS, _KERNELS_TRIED
    if os.environ.get("SODLAB_NUMBA", "1") == "0":
        return None
    if not _KERNELS_TRIED:
        _KERNELS_TRIED = True
        try:
            from . import _norm_act_kernels
            _KERNELS = _norm_act_kernels
        except Exception as exc:  # noqa: BLE001 - no numba, or no writable cache folder for it: the torch path is exact
            log.info("numba kernels unavailable (%s: %s): BatchNorm+PReLU uses the torch-ops path", type(exc).__name__, exc)
    return _KERNELS


def numba_available() -> bool:
    """Whether `batch_norm_prelu` runs the compiled kernels."""
    return _kernels() is not None


def _set_threads() -> None:
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _n_chunks(m: int) -> int:
    return max(1, min(64, m // 2048))


def _np(t: Tensor):
    return t.detach().numpy()


def fusable(bn: Optional[nn.Module], act: Optional[nn.Module], x: Tensor) -> bool:
    """Whether `batch_norm_prelu` computes ``act(bn(x))`` for this input: a training-mode
    ``nn.BatchNorm2d`` with affine parameters and running statistics, an ``nn.PReLU``, and a
    channels-last float tensor on the CPU."""
    return (type(bn) is nn.BatchNorm2d and type(act) is nn.PReLU and bn.training and bn.affine
            and bn.track_running_stats and bn.running_mean is not None
            and x.device.type == "cpu" and x.dim() == 4 and x.dtype in (torch.float32, torch.float64)
            and x.shape[0] * x.shape[2] * x.shape[3] > 1
            and x.is_contiguous(memory_format=torch.channels_last)
            and x.shape[1] == bn.num_features and act.weight.numel() in (1, x.shape[1])
            and bn.weight.dtype == act.weight.dtype == x.dtype)


def batch_norm_prelu(x: Tensor, bn: nn.BatchNorm2d, act: nn.PReLU) -> Tensor:
    """``act(bn(x))`` for a training-mode BatchNorm (see `fusable`), with the same outputs,
    gradients and running-statistics updates, and a faster backward."""
    momentum = bn.momentum
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if momentum is None:  # cumulative moving average, as nn.BatchNorm2d
            momentum = 1.0 / float(bn.num_batches_tracked)
    return _BatchNormPReLU.apply(x, bn.weight, bn.bias, act.weight, bn.running_mean, bn.running_var, float(momentum), float(bn.eps))


def _rows(t: Tensor) -> Tensor:
    """A channels-last (N, C, H, W) tensor as its (N*H*W, C) matrix: a view, no copy."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _channel_sums(t: Tensor) -> Tensor:
    """Per-channel sums of a channels-last (N, C, H, W) tensor.

    One matrix-vector product over the (N*H, W*C) view, then a sum over W: as accurate as
    ``t.sum((0, 2, 3))`` (each product accumulates N*H terms, not N*H*W) and several times
    faster than it for a few dozen channels, where the reduction's inner loop is too short."""
    n, c, h, w = t.shape
    return torch.mv(t.permute(0, 2, 3, 1).reshape(n * h, w * c).t(), t.new_ones(n * h)).view(w, c).sum(0)


class _BatchNormPReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, slope: Tensor, running_mean: Tensor, running_var: Tensor,
                momentum: float, eps: float) -> Tensor:
        n, c, h, w = x.shape
        m = n * h * w
        a = slope.detach().expand(c).contiguous() if slope.numel() == 1 else slope.detach()
        kernels = _kernels()
        ctx.kernels = kernels
        if kernels is not None:
            _set_threads()
            chunks = _n_chunks(m)
            x2 = _np(_rows(x))
            mean64, var64 = kernels.batch_stats(x2, chunks)
            mean64, var64 = torch.from_numpy(mean64), torch.from_numpy(var64)
            mean, var = mean64.to(x.dtype), var64.to(x.dtype)
            invstd = torch.rsqrt(var64 + eps).to(x.dtype)
            scale = weight.detach() * invstd
            out = torch.empty_like(x, memory_format=torch.channels_last)
            kernels.forward(x2, mean.numpy(), scale.numpy(), _np(bias), a.numpy(), _np(_rows(out)), chunks)
            ctx.save_for_backward(x, mean, invstd, scale, bias, a)
        else:
            mean = _channel_sums(x).div_(m)
            xc = x - mean.view(1, c, 1, 1)  # keeps x's channels-last layout
            y = torch.mul(xc, xc)
            var = _channel_sums(y).div_(m)
            invstd = torch.rsqrt(var + eps)
            scale = weight.detach() * invstd
            torch.addcmul(bias.detach().view(1, c, 1, 1), xc, scale.view(1, c, 1, 1), out=y)
            out = F.prelu(y, a)
            ctx.save_for_backward(xc, y, invstd, scale, a)
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        # nn.BatchNorm2d keeps the unbiased variance
        running_var.mul_(1 - momentum).add_(var.to(running_var.dtype), alpha=momentum * m / (m - 1))
        ctx.slope_shape = slope.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        g = grad.contiguous(memory_format=torch.channels_last)
        if ctx.kernels is not None:
            x, mean, invstd, scale, bias, a = ctx.saved_tensors
            n, c, h, w = x.shape
            _set_threads()
            dx = torch.empty_like(x, memory_format=torch.channels_last)
            sums = ctx.kernels.backward(_np(_rows(g)), _np(_rows(x)), mean.numpy(), scale.numpy(), _np(bias), a.numpy(),
                                        invstd.numpy(), _np(_rows(dx)), _n_chunks(n * h * w))
            sums = torch.from_numpy(sums)
            d_bias, d_slope = sums[0].to(x.dtype), sums[2].to(x.dtype)
            d_weight = (sums[1] * invstd.double()).to(x.dtype)  # sums[1] = sum(dy * (x - mean))
        else:
            dx, d_weight, d_bias, d_slope = _backward_torch(g, *ctx.saved_tensors)
        if ctx.slope_shape.numel() == 1:
            d_slope = d_slope.sum()
        return dx, d_weight, d_bias, d_slope.reshape(ctx.slope_shape), None, None, None, None


def _backward_torch(g: Tensor, xc: Tensor, y: Tensor, invstd: Tensor, scale: Tensor, a: Tensor):
    n, c, h, w = xc.shape
    m = n * h * w
    shape = (1, c, 1, 1)
    a = a.view(shape)
    # PReLU: dy = g where y > 0, a * g elsewhere (y == 0 takes a, as the native kernel);
    # v = g where y <= 0 gives both dy = g + (a - 1) v and d_slope = sum(v * y).
    v = torch.gt(y, 0, out=torch.empty_like(y))
    torch.addcmul(g, g, v, value=-1, out=v)
    dy = torch.addcmul(g, v, a - 1)
    d_slope = _channel_sums(v.mul_(y))
    # BatchNorm with batch statistics
    d_bias = _channel_sums(dy)
    dot = _channel_sums(torch.mul(dy, xc, out=v))
    k1 = (scale * invstd * invstd * dot / -m).view(shape)
    k0 = (scale * d_bias / -m).view(shape)
    dx = torch.addcmul(k0, xc, k1, out=v).addcmul_(dy, scale.view(shape))
    return dx, dot * invstd, d_bias, d_slope
