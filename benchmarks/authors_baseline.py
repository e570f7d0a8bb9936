"""The authors' CSNet computation, transcribed for timing: the baseline of the speed benchmark.

Reimplemented from the facts of their released code (SOD100K ``CSNet/model/csnet.py`` and
``conv2d.py``), not copied. What matters for a fair baseline is that it performs the same
operations in the same order:

* one weight tensor per gOctConv, sliced per (input branch, output branch) pair with channel
  offsets taken from cumulative split fractions (``round(total * cumsum(alpha))``);
* per input branch: 2x2 average pool first when the stride is 2; then for every output
  branch a separate ``F.conv2d`` on the slice: same scale -> convolve; coarser target ->
  max-pool by the scale ratio, then convolve; finer target -> convolve, then bilinear
  up-sampling by ``scale_factor``;
* branch results summed with Python's ``sum`` (so ``0 + y0 + y1 + ...``) in input order;
* BatchNorm then PReLU per output branch, each its own module call;
* single-scale gOctConvs, per-scale depthwise convolutions and the dilated convolutions of
  the CSF head multiply their weight by 100 inside every forward pass (``100.0 * weight``);
* the CSF head concatenates the dilated convolutions, then one BatchNorm + PReLU.

Module names follow their ``state_dict`` keys, so their ``.pth.tar`` loads with
``strict=True``. Used only by ``benchmarks/bench_inference.py``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _cumulative(fractions: Sequence[float]) -> list[float]:
    acc, out = 0.0, [0.0]
    for f in fractions:
        acc += f
        out.append(acc)
    return out


class Conv2dX100(nn.Module):
    """Convolution whose weight is multiplied by 100 on every call (their convergence trick)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.weight = nn.Parameter(torch.empty(cout, cin // groups, k, k))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, 100.0 * self.weight, None, self.stride, self.padding, self.dilation, self.groups)


class OctaveConv(nn.Module):
    """Their multi-branch gOctConv: one weight, sliced per branch pair on every call."""

    def __init__(self, cin: int, cout: int, k: int, alpha_in: Sequence[float], alpha_out: Sequence[float], stride: int, padding: int) -> None:
        super().__init__()
        self.cin, self.cout, self.stride, self.padding = cin, cout, stride, padding
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.cum_in, self.cum_out = _cumulative(alpha_in), _cumulative(alpha_out)

    def forward(self, xset) -> list[Optional[Tensor]]:
        xset = [xset] if isinstance(xset, Tensor) else xset
        n_out = len(self.cum_out) - 1
        partial: list[list[Tensor]] = [[] for _ in range(n_out)]
        for i in range(len(self.cum_in) - 1):
            if xset[i] is None:
                continue
            x = F.avg_pool2d(xset[i], (2, 2), stride=2) if self.stride == 2 else xset[i]
            bx, ex = int(round(self.cin * self.cum_in[i])), int(round(self.cin * self.cum_in[i + 1]))
            if bx == ex:
                continue
            for j in range(n_out):
                by, ey = int(round(self.cout * self.cum_out[j])), int(round(self.cout * self.cum_out[j + 1]))
                if by == ey:
                    continue
                w = self.weight[by:ey, bx:ex, :, :]
                ratio = 2 ** (i - j)
                if ratio > 1:
                    y = F.interpolate(F.conv2d(x, w, None, 1, self.padding), scale_factor=ratio, mode="bilinear")
                elif ratio < 1:
                    r = int(round(1.0 / ratio))
                    y = F.conv2d(F.max_pool2d(x, r, stride=r), w, None, 1, self.padding)
                else:
                    y = F.conv2d(x, w, None, 1, self.padding)
                partial[j].append(y)
        return [sum(ys) if ys else None for ys in partial]


class OctaveCBR(nn.Module):
    """gOctConv (or their x100 plain convolution when one branch in and out), then BN + PReLU per branch."""

    def __init__(self, cin: int, cout: int, k: int, alpha_in: Sequence[float], alpha_out: Sequence[float], stride: int = 1) -> None:
        super().__init__()
        pad = (k - 1) // 2
        self.single = len(alpha_in) == 1 and len(alpha_out) == 1
        self.conv = Conv2dX100(cin, cout, k, stride, pad) if self.single else OctaveConv(cin, cout, k, alpha_in, alpha_out, stride, pad)
        self.bns, self.prelus = nn.ModuleList(), nn.ModuleList()
        for a in alpha_out:
            c = int(round(cout * a))
            self.bns.append(nn.BatchNorm2d(c) if c else None)
            self.prelus.append(nn.PReLU(c) if c else None)

    def forward(self, xset):
        if self.single:
            x = xset if isinstance(xset, Tensor) else xset[0]
            return self.prelus[0](self.bns[0](self.conv(x)))
        ys = self.conv(xset)
        for i in range(len(ys)):
            if ys[i] is not None:
                ys[i] = self.prelus[i](self.bns[i](ys[i]))
        return ys


class BranchDepthwise(nn.Module):
    """Their simplified gOctConv: a separate x100 depthwise 3x3 + BN + PReLU per branch."""

    def __init__(self, channels: int, alpha: Sequence[float]) -> None:
        super().__init__()
        self.convs, self.bns, self.prelus = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for a in alpha:
            c = int(round(channels * a))
            ok = c >= 1
            self.convs.append(Conv2dX100(c, c, 3, padding=1, groups=c) if ok else None)
            self.bns.append(nn.BatchNorm2d(c) if ok else None)
            self.prelus.append(nn.PReLU(c) if ok else None)

    def forward(self, xset):
        xset = [xset] if isinstance(xset, Tensor) else xset
        return [None if x is None else self.prelus[i](self.bns[i](self.convs[i](x))) for i, x in enumerate(xset)]


class ILBlock(nn.Module):
    def __init__(self, inlist: np.ndarray, outlist: np.ndarray, stride: int = 1, first: bool = False) -> None:
        super().__init__()
        cin, cout = int(round(inlist.sum())), int(round(outlist.sum()))
        a_in, a_out = (inlist / cin).tolist(), (outlist / cout).tolist()
        k = 3 if (first or stride == 2) else 1
        self.conv1x1 = OctaveCBR(cin, cout, k, a_in, a_out, stride=stride)
        self.conv3x3_1 = BranchDepthwise(cout, a_out)
        self.conv3x3_2 = BranchDepthwise(cout, a_out)

    def forward(self, x):
        return self.conv3x3_2(self.conv3x3_1(self.conv1x1(x)))


class MSBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dil_channels: Sequence[int], dilations: Sequence[int] = (1, 2, 4, 8, 16)) -> None:
        super().__init__()
        self.msconv = nn.ModuleList(
            [Conv2dX100(cin, int(c), 3, padding=d, dilation=d) if c else None for c, d in zip(dil_channels, dilations)]
        )
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.prelu(self.bn(torch.cat([m(x) for m in self.msconv if m is not None], dim=1)))


class PallMSBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dil_channels, alpha_in, alpha_out) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                MSBlock(int(round(cin * a_i)), int(round(cout * a_o)), dil) if max(dil) else None
                for a_i, a_o, dil in zip(alpha_in, alpha_out, dil_channels)
            ]
        )

    def forward(self, xset):
        return [None if m is None else m(x) for m, x in zip(self.convs, xset)]


class CSFHead(nn.Module):
    def __init__(self, entries) -> None:
        super().__init__()
        (f_in, f_mid), (m_in, m_out, dils), (_, f_out) = entries
        f_in, f_mid, m_out, f_out = (np.asarray(v, dtype=float) for v in (f_in, f_mid, m_out, f_out))
        cin, cmid, cmo, cout = (int(round(v.sum())) for v in (f_in, f_mid, m_out, f_out))
        self.fuse = OctaveCBR(cin, cmid, 1, (f_in / cin).tolist(), (f_mid / cmid).tolist())
        self.ms = PallMSBlock(cmid, cmo, dils, (f_mid / cmid).tolist(), (m_out / cmo).tolist())
        self.fuse1x1 = OctaveCBR(cmo, cout, 1, (m_out / cmo).tolist(), [1.0])

    def forward(self, xset):
        return self.fuse1x1(self.ms(self.fuse(xset)))


class AuthorsCSNet(nn.Module):
    """Their CSNet from their 22-entry ``layer_config`` list (see the reference README)."""

    def __init__(self, layer_config, num_classes: int = 1) -> None:
        super().__init__()
        self.stages = [int(s) for s in layer_config[-1]]
        entries = [[np.atleast_1d(np.asarray(e[0], dtype=float)), np.atleast_1d(np.asarray(e[1], dtype=float))] for e in layer_config[: 1 + sum(self.stages)]]
        self.stage0 = nn.ModuleList([ILBlock(np.array([3.0]), entries[0][1], first=True)])
        b = 1
        for s, n in enumerate(self.stages, 1):
            blocks = nn.ModuleList()
            for k in range(n):
                blocks.append(ILBlock(entries[b][0], entries[b][1], stride=2 if (k == 0 and s > 1) else 1))
                b += 1
            setattr(self, f"stage{s}", blocks)
        self.oct_fuse = CSFHead(layer_config[b:b + 3])
        self.cls_layer = nn.Conv2d(int(round(sum(float(c) for c in layer_config[b + 2][1]))), num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stage0[0](x)
        for blk in self.stage1:
            h = blk(h)
        x2 = h
        for blk in self.stage2:
            x2 = blk(x2)
        x3 = x2
        for blk in self.stage3:
            x3 = blk(x3)
        x4 = x3
        for blk in self.stage4:
            x4 = blk(x4)
        out = self.cls_layer(self.oct_fuse([x2[0], x3[0], x4[0]])[0])
        return F.interpolate(out, x.size()[2:], mode="bilinear", align_corners=False)


def load_authors_csnet(checkpoint: str, layer_config) -> AuthorsCSNet:
    """Their model holding their released weights (eval mode); ``layer_config`` is their list."""
    model = AuthorsCSNet(layer_config)
    sd = torch.load(checkpoint, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd)
    model.load_state_dict({k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}, strict=True)
    return model.eval()
