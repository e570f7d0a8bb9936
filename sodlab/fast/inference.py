"""`optimize_for_inference`: a new module that computes what ``model.eval()`` computes (to
float rounding), with the work rearranged for a CPU:

* BatchNorm (running statistics) and the authors' x100 weight gain are folded into the
  convolution weights and biases once, instead of being applied on every call.
* A gOctConv computes each output scale with one convolution instead of one per input
  scale (`sodlab.fast.planner`, which also records why the finer outputs are up-sampled
  after their convolution: the other order measured 11-20% slower on 2 cores).
* Activations run in channels-last layout, which oneDNN's small depthwise and pointwise
  convolutions need to be fast on a CPU.

The per-scale depthwise convolutions stay one call per scale: scales differ in resolution,
and packing them into one tensor would cost more memory traffic (padding, copies) than the
call it saves.

Modules sodlab does not know (a Res2Net backbone, GroupNorm heads, bilinear-resampling
gOctConvs) are kept as they are, except that a BatchNorm directly following a convolution
inside an ``nn.Sequential`` is folded into it.
"""
from __future__ import annotations

import copy
import logging
import warnings
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.csf import MultiDilationBlock
from ..models.goctconv import GOctConv, GOctConvBNAct, ScaleDepthwiseBNAct, ScaledConv2d, Scales, as_scales
from .batchnorm import bn_scale_shift, is_foldable_bn
from .layout import ChannelsLast
from .planner import OutputPlan, Resampler, fusable_goct, plan_outputs

log = logging.getLogger(__name__)

__all__ = ["optimize_for_inference", "OptimizedModel", "TracedModel", "FoldedGOctConvAct", "FoldedDepthwiseAct", "FoldedMultiDilation"]


def _scale_shift(bn: Optional[nn.Module], channels: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """`bn_scale_shift` of ``bn``, or the identity when there is none."""
    if bn is None:
        return torch.ones(channels, dtype=like.dtype, device=like.device), torch.zeros(channels, dtype=like.dtype, device=like.device)
    return bn_scale_shift(bn)


class FoldedGOctConvAct(nn.Module):
    """A `GOctConvBNAct` (or bare `GOctConv`) in eval mode with BN and gain folded in and
    one convolution per output scale (plus one per up-sampled 3x3 term)."""

    def __init__(self, conv: GOctConv, norms: Optional[nn.ModuleDict] = None, acts: Optional[nn.ModuleDict] = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels = list(conv.in_channels), list(conv.out_channels)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.plain = conv.plain
        w_all = conv.weight.detach() * conv.gain
        b_all = None if conv.bias is None else conv.bias.detach()
        in_off, out_off = conv.offsets(conv.in_channels), conv.offsets(conv.out_channels)
        self.plans = [OutputPlan(0, conv.out_channels[0], [(0, 0)])] if self.plain else plan_outputs(conv)
        self.acts = nn.ModuleDict()
        for j, p in enumerate(self.plans):
            if p is None:
                continue
            bn = norms[str(j)] if norms is not None and str(j) in norms else None
            scale, shift = _scale_shift(bn, p.channels, w_all)
            rows = slice(out_off[j], out_off[j + 1])
            w_rows = w_all[rows] * scale.view(-1, 1, 1, 1)
            # GOctConv adds its bias once per contributing input scale.
            bias = shift.clone() if b_all is None else shift + scale * b_all[rows] * p.n_terms
            if p.concat:
                w = torch.cat([w_rows[:, in_off[i]:in_off[i + 1]] for i, _ in p.concat], dim=1)
                self.register_buffer(f"w{j}", w.contiguous())
                self.register_buffer(f"b{j}", bias)
            for n, (i, _) in enumerate(p.post):
                self.register_buffer(f"w{j}_{i}", w_rows[:, in_off[i]:in_off[i + 1]].contiguous())
                first = n == 0 and not p.concat
                self.register_buffer(f"b{j}_{i}", bias if first else None)
            if acts is not None and str(j) in acts:
                self.acts[str(j)] = copy.deepcopy(acts[str(j)])

    def forward(self, xs: Tensor | Sequence[Optional[Tensor]]) -> Scales:
        xs = as_scales(xs)
        if self.plain:
            y = F.conv2d(xs[0], self.w0, self.b0, self.stride, self.padding, self.dilation)
            return [self.acts["0"](y) if "0" in self.acts else y]
        if len(xs) != len(self.in_channels):
            raise ValueError(f"gOctConv expects {len(self.in_channels)} input scales, got {len(xs)}")
        if self.stride == 2:
            xs = [None if x is None else F.avg_pool2d(x, 2, 2) for x in xs]
        rs = Resampler(xs)
        outs: list[Optional[Tensor]] = []
        for j, p in enumerate(self.plans):
            if p is None:
                outs.append(None)
                continue
            y = None
            if p.concat:
                y = F.conv2d(rs.concat(p.concat), getattr(self, f"w{j}"), getattr(self, f"b{j}"), 1, self.padding, self.dilation)
            for i, k in p.post:
                z = F.conv2d(xs[i], getattr(self, f"w{j}_{i}"), getattr(self, f"b{j}_{i}"), 1, self.padding, self.dilation)
                z = F.interpolate(z, scale_factor=k, mode="bilinear", align_corners=False)
                y = z if y is None else y.add_(z)
            outs.append(self.acts[str(j)](y) if str(j) in self.acts else y)
        return outs


def _fold_conv(conv: nn.Conv2d, scale: Optional[Tensor] = None, shift: Optional[Tensor] = None, gain: float = 1.0) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` computing ``conv(x) * scale + shift`` per output channel, where
    ``conv``'s weight is first multiplied by ``gain`` (`ScaledConv2d`)."""
    w = conv.weight.detach() * gain
    if scale is None:
        scale, shift = _scale_shift(None, w.shape[0], w)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
                    bias=True, padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype)
    out.weight.data.copy_(w * scale.view(-1, 1, 1, 1))
    out.bias.data.copy_(shift if conv.bias is None else shift + scale * conv.bias.detach())
    out.requires_grad_(False)
    return out


def _fold_conv_bn(conv: nn.Conv2d, bn: Optional[nn.Module]) -> nn.Conv2d:
    scale, shift = _scale_shift(bn, conv.out_channels, conv.weight)
    return _fold_conv(conv, scale, shift, _gain(conv))


def _gain(conv: nn.Conv2d) -> float:
    return getattr(conv, "gain", 1.0) if isinstance(conv, ScaledConv2d) else 1.0


class FoldedDepthwiseAct(nn.Module):
    """`ScaleDepthwiseBNAct` in eval mode: BN and gain folded into each scale's convolution."""

    def __init__(self, block: ScaleDepthwiseBNAct) -> None:
        super().__init__()
        self.channels = list(block.channels)
        self.convs = nn.ModuleDict({k: _fold_conv_bn(c, block.norms[k] if k in block.norms else None) for k, c in block.convs.items()})
        self.acts = copy.deepcopy(block.acts)

    def forward(self, xs: Tensor | Sequence[Optional[Tensor]]) -> Scales:
        xs = as_scales(xs)
        out = []
        for i, x in enumerate(xs):
            k = str(i)
            if x is None or k not in self.convs:
                out.append(None)
                continue
            y = self.convs[k](x)
            out.append(self.acts[k](y) if k in self.acts else y)
        return out


class FoldedMultiDilation(nn.Module):
    """`MultiDilationBlock` in eval mode: the concatenation's BN folded into each dilated conv."""

    def __init__(self, block: MultiDilationBlock) -> None:
        super().__init__()
        convs, start = [], 0
        scale, shift = _scale_shift(block.norm, sum(c.out_channels for c in block.convs.values()), next(block.parameters()))
        for c in block.convs.values():
            n = c.out_channels
            convs.append(_fold_conv(c, scale[start:start + n], shift[start:start + n], _gain(c)))
            start += n
        self.convs = nn.ModuleList(convs)
        self.act = copy.deepcopy(block.act)

    def forward(self, x: Tensor) -> Tensor:
        ys = [c(x) for c in self.convs]
        return self.act(ys[0] if len(ys) == 1 else torch.cat(ys, dim=1))


def _fold_sequential(seq: nn.Sequential) -> None:
    """Fold every BatchNorm2d that directly follows a Conv2d inside ``seq`` (in place)."""
    names = list(seq._modules)
    for a, b in zip(names, names[1:]):
        conv, bn = seq._modules[a], seq._modules[b]
        if type(conv) in (nn.Conv2d, ScaledConv2d) and is_foldable_bn(bn) and conv.padding_mode == "zeros":
            seq._modules[a] = _fold_conv_bn(conv, bn)
            seq._modules[b] = nn.Identity()


def _swap_inference(module: nn.Module) -> int:
    """Replace known sub-modules of ``module`` (in place) by folded ones; returns the count."""
    n = 0
    for name, child in list(module.named_children()):
        new: Optional[nn.Module] = None
        if isinstance(child, GOctConvBNAct) and fusable_goct(child.conv) and all(is_foldable_bn(m) for m in child.norms.values()):
            new = FoldedGOctConvAct(child.conv, child.norms, child.acts)
        elif type(child) is GOctConv and fusable_goct(child):
            new = FoldedGOctConvAct(child)
        elif isinstance(child, ScaleDepthwiseBNAct) and all(is_foldable_bn(m) for m in child.norms.values()):
            new = FoldedDepthwiseAct(child)
        elif isinstance(child, MultiDilationBlock) and is_foldable_bn(child.norm):
            new = FoldedMultiDilation(child)
        if new is not None:
            module._modules[name] = new
            n += 1
            continue
        if isinstance(child, nn.Sequential):
            _fold_sequential(child)
        n += _swap_inference(child)
    return n


class OptimizedModel(ChannelsLast):
    """The inference-optimised form of a model: ``inner`` with folded layers, run in
    channels-last layout when ``channels_last`` (logits come back in the default layout)."""

    def __init__(self, inner: nn.Module, channels_last: bool) -> None:
        super().__init__(inner, channels_last)
        self.source_type = type(inner).__name__

    def extra_repr(self) -> str:
        return f"source={self.source_type}, channels_last={self.channels_last}"


class TracedModel(nn.Module):
    """An `OptimizedModel` run as TorchScript graphs, traced and frozen once per input shape.

    TorchScript's executor runs the same kernels without Python between them and frees
    intermediates sooner: about 1.25x the eager module's throughput for CSNet-L-x2 at batch 1
    and 8 on 2 cores. A trace records one path through shape-dependent Python branches (the
    2x2 max-pooling takes a faster route on even sides), so every new input shape, dtype or
    device gets its own trace (about 2 s, then cached). Calls that need a gradient, and shapes
    whose trace fails, run the eager module. PyTorch 2.13 marks TorchScript deprecated in
    favour of ``torch.compile`` (which needs a C++ compiler and minutes on 2 cores here); if a
    later release drops it, tracing fails and the eager module runs.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self._graphs: dict[tuple, nn.Module] = {}
        if getattr(inner, "input_size", None) is not None:
            self.input_size = inner.input_size

    def forward(self, x: Tensor):
        if not isinstance(x, Tensor) or (x.requires_grad and torch.is_grad_enabled()):
            return self.inner(x)
        key = (tuple(x.shape), x.dtype, x.device)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._trace(x)
        return graph(x)

    def _trace(self, x: Tensor) -> nn.Module:
        try:
            # an inference-mode tensor cannot be traced; a normal copy can
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)  # see the class docstring
                return torch.jit.freeze(torch.jit.trace(self.inner, x.clone(), check_trace=False).eval())
        except Exception as exc:  # noqa: BLE001 - any tracing failure: the eager module is exact
            log.warning("TorchScript tracing failed for input %s (%s); running the eager module", tuple(x.shape), exc)
            return self.inner

    def _apply(self, fn, *args, **kwargs):
        self._graphs.clear()  # frozen graphs hold the weights as constants
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        self._graphs.clear()
        return super().load_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"traced shapes={len(self._graphs)}"


@torch.no_grad()
def optimize_for_inference(model: nn.Module, channels_last: Optional[bool] = None, compile: bool = False,
                           jit: bool = False) -> nn.Module:
    """An eval-mode module computing what ``model.eval()`` computes (to float rounding), faster.

    Args:
        model: any module; sodlab's gOctConv, depthwise and multi-dilation layers with
            BatchNorm are replaced by folded ones, ``Conv2d``+``BatchNorm2d`` pairs inside
            ``nn.Sequential`` are folded, everything else is copied unchanged. ``model``
            itself is not modified.
        channels_last: run in channels-last layout; ``None`` chooses it on CPU.
        compile: wrap the result in ``torch.compile`` (first call compiles; needs a C++
            compiler on CPU).
        jit: run it as TorchScript graphs traced per input shape (`TracedModel`; what
            ``sodlab predict`` and ``sodlab eval`` use).

    Returns:
        An `OptimizedModel` (or its `TracedModel` or compiled wrapper) in eval mode, without
        gradients.
    """
    inner = copy.deepcopy(model).eval()
    n = _swap_inference(inner)
    if isinstance(inner, nn.Sequential):
        _fold_sequential(inner)
    inner.requires_grad_(False)
    if channels_last is None:
        p = next(inner.parameters(), None)
        if p is None:
            p = next(inner.buffers(), None)
        channels_last = p is None or p.device.type == "cpu"
    log.debug("optimize_for_inference: %d layers folded, channels_last=%s", n, channels_last)
    out = OptimizedModel(inner, bool(channels_last)).eval()
    if getattr(model, "input_size", None) is not None:
        out.input_size = model.input_size
    if compile:
        return torch.compile(out)
    return TracedModel(out).eval() if jit else out

