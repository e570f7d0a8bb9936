"""Fast equivalents of sodlab models: folded for inference, fused for training.

`optimize_for_inference` returns a new module that computes what ``model.eval()`` computes
(to float rounding), with the work rearranged for a CPU:

* BatchNorm (running statistics) and the authors' x100 weight gain are folded into the
  convolution weights and biases once, instead of being applied on every call.
* A gOctConv computes each output scale with one convolution instead of one per input
  scale. Convolution is linear, so the sum of the per-input convolutions equals one
  convolution over the channel-concatenated inputs, provided every input is first brought to
  the output's resolution exactly as `GOctConv.forward` does it:

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
* Activations run in channels-last layout, which oneDNN's small depthwise and pointwise
  convolutions need to be fast on a CPU.

The per-scale depthwise convolutions stay one call per scale: scales differ in resolution,
and packing them into one tensor would cost more memory traffic (padding, copies) than the
call it saves.

`optimize_for_training` returns a module that shares ``model``'s parameters and BatchNorm
modules (so an optimizer on ``model.parameters()`` trains it, and the BatchNorm statistics
are updated as usual), with the gOctConv blocks fused as above. In channels-last layout each
training-mode BatchNorm and the PReLU after it run as one step (`sodlab.norm_act`): PyTorch's
channels-last kernels for these two layers are slow on a CPU, while its convolutions are
2-4x faster there than in the default layout. Gradients equal the plain model's to float
rounding. A fused block calls the original block's forward hooks with its output (the dynamic
weight decay records activations that way); blocks with forward pre-hooks, and BatchNorm or
PReLU modules with any hooks, are left unfused.

Modules sodlab does not know (a Res2Net backbone, GroupNorm heads, bilinear-resampling
gOctConvs) are kept as they are, except that a BatchNorm directly following a convolution
inside an ``nn.Sequential`` is folded into it.
"""
from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models.csf import MultiDilationBlock
from .models.goctconv import GOctConv, GOctConvBNAct, ScaleDepthwiseBNAct, ScaledConv2d, Scales, as_scales
from .norm_act import batch_norm_prelu, fusable

log = logging.getLogger(__name__)

__all__ = ["optimize_for_inference", "optimize_for_training", "OptimizedModel", "TracedModel", "FoldedGOctConvAct", "FusedGOctConvBNAct",
           "FusedDepthwiseBNAct", "FusedMultiDilationTrain"]


# --- planning: which inputs feed which output scale, and how --------------------------------
@dataclass
class _OutputPlan:
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


def _plan(conv: GOctConv) -> list[Optional[_OutputPlan]]:
    present = [i for i, c in enumerate(conv.in_channels) if c]
    plans: list[Optional[_OutputPlan]] = []
    for j, cout in enumerate(conv.out_channels):
        if cout == 0 or not present:
            plans.append(None)
            continue
        p = _OutputPlan(j, cout)
        for i in present:
            if i <= j:
                p.concat.append((i, 2 ** (j - i) if i < j else 0))
            else:
                # even where the orders commute (1x1): see the module docstring
                p.post.append((i, 2 ** (i - j)))
        plans.append(p)
    return plans


def _fusable_goct(conv: GOctConv) -> bool:
    return conv.resample == "pool" and conv.groups == 1


def _bn_scale_shift(bn: Optional[nn.Module], channels: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) of an eval-mode BatchNorm (identity when ``bn`` is None)."""
    if bn is None:
        return torch.ones(channels, dtype=like.dtype, device=like.device), torch.zeros(channels, dtype=like.dtype, device=like.device)
    std = torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight / std if bn.weight is not None else 1.0 / std
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()


def _is_foldable_bn(m: Optional[nn.Module]) -> bool:
    return isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None


def _max_pool2(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2, 2)``, as the maximum of the four strided views where the sides are
    even: the same numbers, 1.5-2.9x faster on channels-last maps on 2 cores (oneDNN's pooling
    also computes indices nobody reads). Not when a gradient is wanted (on ties max_pool2d sends
    it to one element, torch.maximum splits it, and the training path must match the plain
    model), nor in an ONNX export (onnxruntime's MaxPool is faster than slices and Max)."""
    if (x.shape[-1] % 2 or x.shape[-2] % 2 or (x.requires_grad and torch.is_grad_enabled())
            or torch.onnx.is_in_onnx_export()):
        return F.max_pool2d(x, 2, 2)
    return torch.maximum(torch.maximum(x[..., ::2, ::2], x[..., 1::2, ::2]), torch.maximum(x[..., ::2, 1::2], x[..., 1::2, 1::2]))


class _Resampler:
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
            y = _max_pool2(self.xs[i] if how == 2 else self.get(i, how // 2))
            self.cache[key] = y
        return self.cache[key]

    def concat(self, parts: Sequence[tuple[int, int]]) -> Tensor:
        ts = [self.get(i, how) for i, how in parts]
        return ts[0] if len(ts) == 1 else torch.cat(ts, dim=1)


def _prepare_inputs(conv: GOctConv, xs: Tensor | Sequence[Optional[Tensor]]) -> list[Optional[Tensor]]:
    xs = as_scales(xs)
    if len(xs) != len(conv.in_channels):
        raise ValueError(f"gOctConv expects {len(conv.in_channels)} input scales, got {len(xs)}")
    for i, c in enumerate(conv.in_channels):
        if c and xs[i] is None:
            raise ValueError(f"input scale {i} is missing but the layer was built with {c} channels there")
    return xs


# --- inference: folded modules --------------------------------------------------------------
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
        self.plans = [_OutputPlan(0, conv.out_channels[0], [(0, 0)])] if self.plain else _plan(conv)
        self.acts = nn.ModuleDict()
        for j, p in enumerate(self.plans):
            if p is None:
                continue
            bn = norms[str(j)] if norms is not None and str(j) in norms else None
            scale, shift = _bn_scale_shift(bn, p.channels, w_all)
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
        rs = _Resampler(xs)
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
        scale, shift = _bn_scale_shift(None, w.shape[0], w)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
                    bias=True, padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype)
    out.weight.data.copy_(w * scale.view(-1, 1, 1, 1))
    out.bias.data.copy_(shift if conv.bias is None else shift + scale * conv.bias.detach())
    out.requires_grad_(False)
    return out


def _fold_conv_bn(conv: nn.Conv2d, bn: Optional[nn.Module]) -> nn.Conv2d:
    scale, shift = _bn_scale_shift(bn, conv.out_channels, conv.weight)
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
        scale, shift = _bn_scale_shift(block.norm, sum(c.out_channels for c in block.convs.values()), next(block.parameters()))
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
        if type(conv) in (nn.Conv2d, ScaledConv2d) and _is_foldable_bn(bn) and conv.padding_mode == "zeros":
            seq._modules[a] = _fold_conv_bn(conv, bn)
            seq._modules[b] = nn.Identity()


def _swap_inference(module: nn.Module) -> int:
    """Replace known sub-modules of ``module`` (in place) by folded ones; returns the count."""
    n = 0
    for name, child in list(module.named_children()):
        new: Optional[nn.Module] = None
        if isinstance(child, GOctConvBNAct) and _fusable_goct(child.conv) and all(_is_foldable_bn(m) for m in child.norms.values()):
            new = FoldedGOctConvAct(child.conv, child.norms, child.acts)
        elif type(child) is GOctConv and _fusable_goct(child):
            new = FoldedGOctConvAct(child)
        elif isinstance(child, ScaleDepthwiseBNAct) and all(_is_foldable_bn(m) for m in child.norms.values()):
            new = FoldedDepthwiseAct(child)
        elif isinstance(child, MultiDilationBlock) and _is_foldable_bn(child.norm):
            new = FoldedMultiDilation(child)
        if new is not None:
            module._modules[name] = new
            n += 1
            continue
        if isinstance(child, nn.Sequential):
            _fold_sequential(child)
        n += _swap_inference(child)
    return n


class OptimizedModel(nn.Module):
    """The inference-optimised form of a model: ``inner`` with folded layers, run in
    channels-last layout when ``channels_last`` (logits come back in the default layout)."""

    def __init__(self, inner: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.inner = inner
        self.channels_last = channels_last
        self.source_type = type(inner).__name__

    def forward(self, x: Tensor):
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.inner(x)
        if isinstance(y, Tensor) and y.dim() == 4:
            y = y.contiguous()
        return y

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


# --- training: fused gOctConvs sharing the original parameters ------------------------------
class FusedGOctConvBNAct(nn.Module):
    """A `GOctConvBNAct` whose per-output-scale convolutions are fused (as in inference),
    sharing the original's weight, BatchNorm and PReLU modules; BN keeps its mode."""

    def __init__(self, block: GOctConvBNAct) -> None:
        super().__init__()
        self.block = block  # shared, not copied: its parameters are the ones trained
        conv = block.conv
        self.plans = [_OutputPlan(0, conv.out_channels[0], [(0, 0)])] if conv.plain else _plan(conv)
        self.in_off, self.out_off = conv.offsets(conv.in_channels), conv.offsets(conv.out_channels)

    def forward(self, inputs: Tensor | Sequence[Optional[Tensor]]) -> Scales:
        conv = self.block.conv
        xs = _prepare_inputs(conv, inputs)
        w_all = conv.weight if conv.gain == 1.0 else conv.weight * conv.gain
        if conv.plain:
            ys: list[Optional[Tensor]] = [F.conv2d(xs[0], w_all, conv.bias, conv.stride, conv.padding, conv.dilation)]
            return _run_hooks(self.block, inputs, _norm_act(self.block, ys))
        if conv.stride == 2:
            xs = [None if x is None else F.avg_pool2d(x, 2, 2) for x in xs]
        rs = _Resampler(xs)
        ys = []
        for j, p in enumerate(self.plans):
            if p is None:
                ys.append(None)
                continue
            rows = w_all[self.out_off[j]:self.out_off[j + 1]]
            b = None if conv.bias is None else conv.bias[self.out_off[j]:self.out_off[j + 1]] * p.n_terms
            y = None
            if p.concat:
                parts = [rows[:, self.in_off[i]:self.in_off[i + 1]] for i, _ in p.concat]
                w = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
                y = F.conv2d(rs.concat(p.concat), w, b, 1, conv.padding, conv.dilation)
                b = None
            for i, k in p.post:
                z = F.conv2d(xs[i], rows[:, self.in_off[i]:self.in_off[i + 1]], b, 1, conv.padding, conv.dilation)
                b = None
                z = F.interpolate(z, scale_factor=k, mode="bilinear", align_corners=False)
                y = z if y is None else y.add_(z)  # conv and up-sampling outputs are not saved for backward
            ys.append(y)
        return _run_hooks(self.block, inputs, _norm_act(self.block, ys))


def _norm_act_one(norm: nn.Module, act: nn.Module, y: Tensor) -> Tensor:
    if fusable(norm, act, y) and not (_has_hooks(norm) or _has_hooks(act)):
        return batch_norm_prelu(y, norm, act)
    return act(norm(y))


def _has_hooks(m: nn.Module) -> bool:
    """Forward hooks would not run if the module's forward is bypassed, so such modules are
    left as they are."""
    return bool(m._forward_hooks or m._forward_pre_hooks)


def _run_hooks(block: nn.Module, inputs, out):
    """Calls ``block``'s forward hooks as ``block(inputs)`` would (a fused block replaces
    its forward; the dynamic weight decay records activations through such hooks)."""
    for key, hook in list(block._forward_hooks.items()):
        with_kwargs = key in block._forward_hooks_with_kwargs
        r = hook(block, (inputs,), {}, out) if with_kwargs else hook(block, (inputs,), out)
        if r is not None:
            out = r
    return out


def _norm_act(block: nn.Module, ys: Scales) -> Scales:
    """``block._norm_act(ys)`` (per-scale norm and PReLU), fused where `fusable`."""
    return [None if y is None else _norm_act_one(block.norms[str(i)], block.acts[str(i)], y) for i, y in enumerate(ys)]


class FusedDepthwiseBNAct(nn.Module):
    """A `ScaleDepthwiseBNAct` (shared, not copied) with BN and PReLU fused where `fusable`."""

    def __init__(self, block: ScaleDepthwiseBNAct) -> None:
        super().__init__()
        self.block = block

    def forward(self, xs: Tensor | Sequence[Optional[Tensor]]) -> Scales:
        xs = as_scales(xs)
        convs = self.block.convs
        ys = [None if (x is None or str(i) not in convs) else convs[str(i)](x) for i, x in enumerate(xs)]
        return _run_hooks(self.block, xs, _norm_act(self.block, ys))


class FusedMultiDilationTrain(nn.Module):
    """A `MultiDilationBlock` (shared, not copied) with BN and PReLU fused where `fusable`."""

    def __init__(self, block: MultiDilationBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        b = self.block
        return _run_hooks(b, x, _norm_act_one(b.norm, b.act, torch.cat([conv(x) for conv in b.convs.values()], dim=1)))


def _swap_training(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if child._forward_pre_hooks:  # they may change the input: the block's own forward must run
            continue
        if isinstance(child, GOctConvBNAct) and _fusable_goct(child.conv):
            module._modules[name] = FusedGOctConvBNAct(child)
        elif isinstance(child, ScaleDepthwiseBNAct):
            module._modules[name] = FusedDepthwiseBNAct(child)
        elif isinstance(child, MultiDilationBlock):
            module._modules[name] = FusedMultiDilationTrain(child)
        else:
            _swap_training(child)


def optimize_for_training(model: nn.Module, channels_last: Optional[bool] = None) -> nn.Module:
    """A faster module for training ``model``: same parameters (shared, not copied), same
    BatchNorm modules (statistics update as usual), gOctConv blocks fused, and in
    channels-last layout (``None``: on CPU) each BatchNorm + PReLU pair computed as one step.

    The module tree of ``model`` is not modified; the returned module wraps shallow copies of
    its containers that point at the original layers. Gradients and BN statistics equal those
    of training ``model`` directly, to float rounding.
    """
    shell = _shallow_tree_copy(model)
    _swap_training(shell)
    if channels_last is None:
        p = next(model.parameters(), None)
        channels_last = p is None or p.device.type == "cpu"
    return _TrainingModel(shell, bool(channels_last))


def _shallow_tree_copy(module: nn.Module) -> nn.Module:
    """Copies of the container modules down to each block `_swap_training` may replace
    (`GOctConvBNAct`, `ScaleDepthwiseBNAct`, `MultiDilationBlock`); those and leaves are shared."""
    if isinstance(module, (GOctConvBNAct, ScaleDepthwiseBNAct, MultiDilationBlock)) or not module._modules:
        return module
    clone = copy.copy(module)
    clone._modules = {k: (None if v is None else _shallow_tree_copy(v)) for k, v in module._modules.items()}
    # Parameters, buffers and hooks dicts are shared with the original on purpose.
    return clone


class _TrainingModel(nn.Module):
    def __init__(self, inner: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.inner = inner
        self.channels_last = channels_last

    def forward(self, x: Tensor):
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.inner(x)
        if isinstance(y, Tensor) and y.dim() == 4:
            y = y.contiguous()
        return y
