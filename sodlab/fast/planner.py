"""Which inputs of a gOctConv feed which output scale, and how: the plan shared by the
folded inference modules (`sodlab.fast.inference`) and the fused training modules
(`sodlab.fast.training`).

A gOctConv computes each output scale with one convolution instead of one per input scale.
Convolution is linear, so the sum of the per-input convolutions equals one convolution over
the channel-concatenated inputs, provided every input is first brought to the output's
resolution exactly as `GOctConv.forward` does it:

- coarser output: max-pool the input, then convolve. Max-pooling is not linear, so it must
  stay in front of the convolution; a 4x pool is taken from the cached 2x pool (max over
  nested windows is exact).
- finer output: convolve at the input's resolution, then up-sample the result bilinearly
  and add it in place, as `GOctConv.forward` does. For a 1x1 convolution the two orders
  commute (bilinear interpolation and a 1x1 convolution are both linear, bias included),
  so the input could instead be up-sampled first: joined to the concatenation, that was
  measured slower on 2 cores (CSNet-L-x2: 11-12% at batch 1, 16-20% at batch 8), because
  the up-sampled copy and the concatenation at the fine scale move more memory than the
  extra small convolution costs; up-sampling only where the 1x1 convolution widens the
  channels (the CSF merge: 24 and 18 channels to 79), with a separate convolution at the
  fine scale or in the concatenation, was 3-6% slower too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.goctconv import GOctConv, as_scales


@dataclass
class OutputPlan:
    """How one output scale of a gOctConv is computed.

    ``concat``: (input scale, resample) pairs joined along channels for one convolution;
    resample is 0 (same scale) or ``k > 0`` (max-pool by k). ``post``: (input scale, k) pairs
    convolved at the input's scale, then up-sampled by k.
    """

    scale: int
    channels: int
    concat: list[tuple[int, int]] = field(default_factory=list)
    post: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n_terms(self) -> int:
        return len(self.concat) + len(self.post)


def plan_outputs(conv: GOctConv) -> list[Optional[OutputPlan]]:
    """One `OutputPlan` per output scale of ``conv`` (None where the scale has no channels or
    no input)."""
    present = [i for i, c in enumerate(conv.in_channels) if c]
    plans: list[Optional[OutputPlan]] = []
    for j, cout in enumerate(conv.out_channels):
        if cout == 0 or not present:
            plans.append(None)
            continue
        p = OutputPlan(j, cout)
        for i in present:
            if i <= j:
                p.concat.append((i, 2 ** (j - i) if i < j else 0))
            else:
                # even where the orders commute (1x1): see the module docstring
                p.post.append((i, 2 ** (i - j)))
        plans.append(p)
    return plans


def fusable_goct(conv: GOctConv) -> bool:
    """Whether the plan applies: max-pool resampling, no grouped convolution."""
    return conv.resample == "pool" and conv.groups == 1


def max_pool2(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2, 2)``, as the maximum of the four strided views where the sides are
    even: the same numbers, 1.5-2.9x faster on channels-last maps on 2 cores (oneDNN's pooling
    also computes indices nobody reads). Not when a gradient is wanted (on ties max_pool2d sends
    it to one element, torch.maximum splits it, and the training path must match the plain
    model), nor in an ONNX export (onnxruntime's MaxPool is faster than slices and Max)."""
    if (x.shape[-1] % 2 or x.shape[-2] % 2 or (x.requires_grad and torch.is_grad_enabled())
            or torch.onnx.is_in_onnx_export()):
        return F.max_pool2d(x, 2, 2)
    return torch.maximum(torch.maximum(x[..., ::2, ::2], x[..., 1::2, ::2]), torch.maximum(x[..., ::2, 1::2], x[..., 1::2, 1::2]))


class Resampler:
    """Resampled versions of the inputs of one forward call, each computed once."""

    def __init__(self, xs: Sequence[Optional[Tensor]]) -> None:
        self.xs = xs
        self.cache: dict[tuple[int, int], Tensor] = {}

    def get(self, i: int, how: int) -> Tensor:
        if how == 0:
            return self.xs[i]
        key = (i, how)
        if key not in self.cache:
            # nested windows: max over a 4x4 window is the max of its 2x2 maxima
            y = max_pool2(self.xs[i] if how == 2 else self.get(i, how // 2))
            self.cache[key] = y
        return self.cache[key]

    def concat(self, parts: Sequence[tuple[int, int]]) -> Tensor:
        ts = [self.get(i, how) for i, how in parts]
        return ts[0] if len(ts) == 1 else torch.cat(ts, dim=1)


def prepare_inputs(conv: GOctConv, xs: Tensor | Sequence[Optional[Tensor]]) -> list[Optional[Tensor]]:
    """``xs`` as a list of scales, checked against the scales ``conv`` was built with."""
    xs = as_scales(xs)
    if len(xs) != len(conv.in_channels):
        raise ValueError(f"gOctConv expects {len(conv.in_channels)} input scales, got {len(xs)}")
    for i, c in enumerate(conv.in_channels):
        if c and xs[i] is None:
            raise ValueError(f"input scale {i} is missing but the layer was built with {c} channels there")
    return xs

