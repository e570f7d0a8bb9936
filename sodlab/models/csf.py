"""The Cross-Stage Fusion (CSF) head, reusable on any list of stage features.

Stage features enter as the scales of one gOctConv (finest stage first), are fused, pass
through a per-scale multi-dilation block and are merged into a single-scale map.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .goctconv import AUTHORS_GAIN, GOctConvBNAct, ScaledConv2d, Scales, make_norm

DEFAULT_DILATIONS = (1, 2, 4, 8, 16)


class MultiDilationBlock(nn.Module):
    """3x3 convolutions at several dilations on one scale, concatenated, then norm + PReLU.

    ``dilation_channels[k]`` output channels at ``dilations[k]`` (0: that dilation is absent).
    """

    def __init__(
        self,
        in_channels: int,
        dilation_channels: Sequence[int],
        dilations: Sequence[int] = DEFAULT_DILATIONS,
        norm: str = "bn",
        gn_groups: int = 32,
        gain: float = AUTHORS_GAIN,
    ) -> None:
        super().__init__()
        if len(dilation_channels) != len(dilations):
            raise ConfigError(f"{len(dilation_channels)} dilation channel counts for {len(dilations)} dilations")
        self.dilation_channels = [int(round(float(c))) for c in dilation_channels]
        self.dilations = [int(d) for d in dilations]
        self.convs = nn.ModuleDict(
            {
                str(k): ScaledConv2d(in_channels, c, 3, padding=d, dilation=d, bias=False, gain=gain)
                for k, (c, d) in enumerate(zip(self.dilation_channels, self.dilations))
                if c
            }
        )
        out = sum(self.dilation_channels)
        self.norm = make_norm(norm, out, gn_groups)
        self.act = nn.PReLU(out)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(torch.cat([conv(x) for conv in self.convs.values()], dim=1)))


class CSFHead(nn.Module):
    """Cross-Stage Fusion: gOctConv 1x1 over stages as scales -> multi-dilation per scale ->
    gOctConv 1x1 merge to one scale.

    Args:
        in_channels: channels of each stage feature, finest first (each the next's double
            resolution with ``resample="pool"``; any sizes with ``"bilinear"``).
        mid_channels: channels per scale after the fuse convolution.
        dilation_channels: per scale, output channels at each dilation (all zero: the scale
            has no multi-dilation block and is dropped).
        out_channels: channels of the merged map.
        norm, gn_groups: ``"bn"`` (CSNet) or ``"gn"`` with 32 groups (CSF+Res2Net).
        resample: how gOctConv changes resolution (see ``GOctConv``).
        gain: weight gain of the multi-dilation convolutions.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        mid_channels: Sequence[int],
        dilation_channels: Sequence[Sequence[int]],
        out_channels: int,
        dilations: Sequence[int] = DEFAULT_DILATIONS,
        norm: str = "bn",
        gn_groups: int = 32,
        resample: str = "pool",
        gain: float = AUTHORS_GAIN,
    ) -> None:
        super().__init__()
        if not (len(in_channels) == len(mid_channels) == len(dilation_channels)):
            raise ConfigError(
                f"CSF head: {len(in_channels)} input scales, {len(mid_channels)} fused scales and "
                f"{len(dilation_channels)} dilation groups must agree"
            )
        self.fuse = GOctConvBNAct(in_channels, mid_channels, 1, norm=norm, gn_groups=gn_groups, resample=resample)
        self.ms = nn.ModuleDict(
            {
                str(i): MultiDilationBlock(int(mid_channels[i]), dil, dilations, norm=norm, gn_groups=gn_groups, gain=gain)
                for i, dil in enumerate(dilation_channels)
                if max(dil) > 0
            }
        )
        ms_out = [int(sum(d)) if str(i) in self.ms else 0 for i, d in enumerate(dilation_channels)]
        self.merge = GOctConvBNAct(ms_out, [int(out_channels)], 1, norm=norm, gn_groups=gn_groups, resample=resample)
        self.out_channels = int(out_channels)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        fused = self.fuse(list(feats))
        ys: Scales = [self.ms[str(i)](y) if (y is not None and str(i) in self.ms) else None for i, y in enumerate(fused)]
        return self.merge(ys)[0]
