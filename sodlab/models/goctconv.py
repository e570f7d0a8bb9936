"""Generalised octave convolution (gOctConv) and its normalised wrappers.

A feature map is a list of tensors, one per scale: scale ``s`` has 1/2**s the resolution of
scale 0. A scale whose channel count is 0 is absent and travels as ``None``.

One weight tensor of shape ``(sum(out), sum(in) // groups, k, k)`` serves every
(input scale, output scale) block, so a gOctConv has exactly the parameters of a plain
convolution with the same total channels.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

Scales = list  # list[Optional[Tensor]]

# The authors multiply the weights of their single-scale, depthwise and dilated convolutions
# by 100 inside forward(). Their released checkpoints store the un-multiplied weights, and
# the factor also rescales the effective learning rate and weight decay of those layers, so
# both loading their weights and reproducing their training dynamics need it kept as is.
AUTHORS_GAIN = 100.0

RESAMPLE_MODES = ("pool", "bilinear")


def _counts(channels: Sequence[int] | int, what: str) -> list[int]:
    if isinstance(channels, (int, float)):
        channels = [channels]
    out = []
    for c in channels:
        if float(c) != int(round(float(c))) or float(c) < 0:
            raise ConfigError(f"{what}: channel counts must be non-negative integers, got {list(channels)}")
        out.append(int(round(float(c))))
    if not out or sum(out) == 0:
        raise ConfigError(f"{what}: at least one scale needs channels, got {out}")
    return out


def as_scales(x: Tensor | Sequence[Optional[Tensor]]) -> Scales:
    """A tensor is a one-scale feature map; lists pass through."""
    return [x] if isinstance(x, Tensor) else list(x)


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ScaledConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is multiplied by ``gain`` in forward (see AUTHORS_GAIN)."""

    def __init__(self, *args, gain: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gain = float(gain)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.gain == 1.0 else self.weight * self.gain
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", gain={self.gain:g}" if self.gain != 1.0 else "")


class GOctConv(nn.Module):
    """Convolution between multi-scale feature maps.

    Args:
        in_channels: channels per input scale (0: that scale is absent).
        out_channels: channels per output scale (0: absent).
        kernel_size, dilation, groups, bias: as in ``nn.Conv2d``; ``padding`` defaults to
            ``dilation * (kernel_size - 1) // 2``.
        stride: 1, or 2 to halve every scale (each input is 2x2 average-pooled first). With one
            input and one output scale the layer is an ordinary (strided) convolution.
        resample: ``"pool"`` (CSNet): to a coarser scale max-pool, then convolve; to a finer
            scale convolve, then up-sample bilinearly by the scale ratio. ``"bilinear"``
            (CSF+Res2Net): resize bilinearly to the size of the target scale's input in both
            directions, so scales need not be exact halves of each other.
        gain: constant multiplying the weight in forward (see AUTHORS_GAIN).
    """

    def __init__(
        self,
        in_channels: Sequence[int] | int,
        out_channels: Sequence[int] | int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: Optional[int] = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        resample: str = "pool",
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_channels = _counts(in_channels, "gOctConv input")
        self.out_channels = _counts(out_channels, "gOctConv output")
        if stride not in (1, 2):
            raise ConfigError(f"gOctConv stride must be 1 or 2, got {stride}")
        if resample not in RESAMPLE_MODES:
            raise ConfigError(f"gOctConv resample must be one of {RESAMPLE_MODES}, got {resample!r}")
        for c in self.in_channels + [sum(self.out_channels)]:
            if c % groups:
                raise ConfigError(f"gOctConv channels {self.in_channels}->{self.out_channels} are not divisible by groups={groups}")
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.dilation = int(dilation)
        self.padding = self.dilation * (self.kernel_size - 1) // 2 if padding is None else int(padding)
        self.groups = int(groups)
        self.resample = resample
        self.gain = float(gain)
        self.weight = nn.Parameter(torch.empty(sum(self.out_channels), sum(self.in_channels) // groups, self.kernel_size, self.kernel_size))
        self.bias = nn.Parameter(torch.empty(sum(self.out_channels))) if bias else None
        self.reset_parameters()

    @property
    def plain(self) -> bool:
        """One scale in and one out: an ordinary convolution."""
        return len(self.in_channels) == 1 and len(self.out_channels) == 1

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def offsets(self, counts: Sequence[int], per_group: bool = False) -> list[int]:
        """Start of each scale's slice in the shared weight, and the end of the last."""
        div = self.groups if per_group else 1
        acc = [0]
        for c in counts:
            acc.append(acc[-1] + c // div)
        return acc

    def _conv(self, x: Tensor, w: Tensor, b: Optional[Tensor], stride: int = 1) -> Tensor:
        return F.conv2d(x, w, b, stride, self.padding, self.dilation, self.groups)

    def forward(self, xs: Tensor | Sequence[Optional[Tensor]]) -> Scales:
        xs = as_scales(xs)
        if len(xs) != len(self.in_channels):
            raise ValueError(f"gOctConv expects {len(self.in_channels)} input scales, got {len(xs)}")
        weight = self.weight if self.gain == 1.0 else self.weight * self.gain
        if self.plain:
            return [self._conv(xs[0], weight, self.bias, self.stride)]
        in_off = self.offsets(self.in_channels, per_group=True)
        out_off = self.offsets(self.out_channels)
        # Target sizes per output scale; the bilinear variant takes them from the inputs.
        ref = next(i for i, x in enumerate(xs) if x is not None)
        h0, w0 = xs[ref].shape[-2] * 2**ref, xs[ref].shape[-1] * 2**ref
        if self.stride == 2:
            h0, w0 = h0 // 2, w0 // 2
        outs: list[list[Tensor]] = [[] for _ in self.out_channels]
        for i, x in enumerate(xs):
            if x is None or self.in_channels[i] == 0:
                continue
            if self.stride == 2:
                x = F.avg_pool2d(x, 2, 2)
            for j, cout in enumerate(self.out_channels):
                if cout == 0:
                    continue
                w = weight[out_off[j]:out_off[j + 1], in_off[i]:in_off[i + 1]]
                b = None if self.bias is None else self.bias[out_off[j]:out_off[j + 1]]
                if i == j:
                    y = self._conv(x, w, b)
                elif self.resample == "pool":
                    if i < j:
                        k = 2 ** (j - i)
                        y = self._conv(F.max_pool2d(x, k, k), w, b)
                    else:
                        y = F.interpolate(self._conv(x, w, b), scale_factor=2 ** (i - j), mode="bilinear", align_corners=False)
                else:
                    target = xs[j].shape[-2:] if (j < len(xs) and xs[j] is not None and self.stride == 1) else (h0 // 2**j, w0 // 2**j)
                    y = self._conv(_resize(x, target), w, b) if i < j else _resize(self._conv(x, w, b), target)
                outs[j].append(y)
        # Summed in input-scale order, as the authors do, so results match to the last bit.
        return [sum(ys[1:], ys[0]) if ys else None for ys in outs]

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.resample != "pool":
            s += f", resample={self.resample}"
        if self.gain != 1.0:
            s += f", gain={self.gain:g}"
        return s


def make_norm(kind: str, channels: int, gn_groups: int = 32) -> nn.Module:
    """``"bn"``: BatchNorm2d; ``"gn"``: GroupNorm with ``gn_groups`` groups (the CSF+Res2Net head)."""
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        if channels % gn_groups:
            raise ConfigError(f"GroupNorm({gn_groups}) needs channels divisible by {gn_groups}, got {channels}")
        return nn.GroupNorm(gn_groups, channels)
    raise ConfigError(f"unknown normalisation {kind!r}; use 'bn' or 'gn'")


class _PerScaleNormAct(nn.Module):
    """Normalisation and PReLU for every present output scale."""

    def _init_norm_act(self, channels: Sequence[int], norm: str, gn_groups: int) -> None:
        self.norms = nn.ModuleDict({str(i): make_norm(norm, c, gn_groups) for i, c in enumerate(channels) if c})
        self.acts = nn.ModuleDict({str(i): nn.PReLU(c) for i, c in enumerate(channels) if c})

    def _norm_act(self, ys: Scales) -> Scales:
        return [None if y is None else self.acts[str(i)](self.norms[str(i)](y)) for i, y in enumerate(ys)]


class GOctConvBNAct(_PerScaleNormAct):
    """gOctConv, then per-scale normalisation and PReLU.

    With one input and one output scale the authors use their x100 convolution; with
    several scales their gOctConv has no gain. ``gain=None`` follows that rule.
    """

    def __init__(
        self,
        in_channels: Sequence[int] | int,
        out_channels: Sequence[int] | int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "bn",
        gn_groups: int = 32,
        resample: str = "pool",
        gain: Optional[float] = None,
    ) -> None:
        super().__init__()
        ins, outs = _counts(in_channels, "gOctConv input"), _counts(out_channels, "gOctConv output")
        if gain is None:
            gain = AUTHORS_GAIN if len(ins) == 1 and len(outs) == 1 else 1.0
        self.conv = GOctConv(ins, outs, kernel_size, stride=stride, dilation=dilation, resample=resample, gain=gain)
        self._init_norm_act(outs, norm, gn_groups)

    @property
    def out_channels(self) -> list[int]:
        return self.conv.out_channels

    def forward(self, xs: Tensor | Sequence[Optional[Tensor]]) -> Scales:
        return self._norm_act(self.conv(xs))


class ScaleDepthwiseBNAct(_PerScaleNormAct):
    """Per-scale depthwise convolution (no exchange between scales), then norm and PReLU."""

    def __init__(
        self,
        channels: Sequence[int] | int,
        kernel_size: int = 3,
        dilation: int = 1,
        norm: str = "bn",
        gn_groups: int = 32,
        gain: float = AUTHORS_GAIN,
    ) -> None:
        super().__init__()
        self.channels = _counts(channels, "depthwise")
        pad = dilation * (kernel_size - 1) // 2
        self.convs = nn.ModuleDict(
            {
                str(i): ScaledConv2d(c, c, kernel_size, padding=pad, dilation=dilation, groups=c, bias=False, gain=gain)
                for i, c in enumerate(self.channels)
                if c
            }
        )
        self._init_norm_act(self.channels, norm, gn_groups)

    @property
    def out_channels(self) -> list[int]:
        return self.channels

    def forward(self, xs: Tensor | Sequence[Optional[Tensor]]) -> Scales:
        xs = as_scales(xs)
        ys = [None if (x is None or str(i) not in self.convs) else self.convs[str(i)](x) for i, x in enumerate(xs)]
        return self._norm_act(ys)
