"""`optimize_for_training`: a module that shares ``model``'s parameters and BatchNorm modules
(so an optimizer on ``model.parameters()`` trains it, and the BatchNorm statistics are
updated as usual), with the gOctConv blocks fused as for inference (`sodlab.fast.planner`).

In channels-last layout each training-mode BatchNorm and the PReLU after it run as one step
(`sodlab.fast.norm_act`): PyTorch's channels-last kernels for these two layers are slow on a
CPU, while its convolutions are 2-4x faster there than in the default layout. Gradients equal
the plain model's to float rounding. A fused block calls the original block's forward hooks
with its output (the dynamic weight decay records activations that way); blocks with forward
pre-hooks, and BatchNorm or PReLU modules with any hooks, are left unfused.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.csf import MultiDilationBlock
from ..models.goctconv import GOctConvBNAct, ScaleDepthwiseBNAct, Scales, as_scales
from .layout import ChannelsLast
from .norm_act import batch_norm_prelu, fusable
from .planner import OutputPlan, Resampler, fusable_goct, plan_outputs, prepare_inputs

__all__ = ["optimize_for_training", "FusedGOctConvBNAct", "FusedDepthwiseBNAct", "FusedMultiDilationTrain"]


class FusedGOctConvBNAct(nn.Module):
    """A `GOctConvBNAct` whose per-output-scale convolutions are fused (as in inference),
    sharing the original's weight, BatchNorm and PReLU modules; BN keeps its mode."""

    def __init__(self, block: GOctConvBNAct) -> None:
        super().__init__()
        self.block = block  # shared, not copied: its parameters are the ones trained
        conv = block.conv
        self.plans = [OutputPlan(0, conv.out_channels[0], [(0, 0)])] if conv.plain else plan_outputs(conv)
        self.in_off, self.out_off = conv.offsets(conv.in_channels), conv.offsets(conv.out_channels)

    def forward(self, inputs: Tensor | Sequence[Optional[Tensor]]) -> Scales:
        conv = self.block.conv
        xs = prepare_inputs(conv, inputs)
        w_all = conv.weight if conv.gain == 1.0 else conv.weight * conv.gain
        if conv.plain:
            ys: list[Optional[Tensor]] = [F.conv2d(xs[0], w_all, conv.bias, conv.stride, conv.padding, conv.dilation)]
            return _run_hooks(self.block, inputs, _norm_act(self.block, ys))
        if conv.stride == 2:
            xs = [None if x is None else F.avg_pool2d(x, 2, 2) for x in xs]
        rs = Resampler(xs)
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
        if isinstance(child, GOctConvBNAct) and fusable_goct(child.conv):
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
    return ChannelsLast(shell, bool(channels_last))


def _shallow_tree_copy(module: nn.Module) -> nn.Module:
    """Copies of the container modules down to each block `_swap_training` may replace
    (`GOctConvBNAct`, `ScaleDepthwiseBNAct`, `MultiDilationBlock`); those and leaves are shared."""
    if isinstance(module, (GOctConvBNAct, ScaleDepthwiseBNAct, MultiDilationBlock)) or not module._modules:
        return module
    clone = copy.copy(module)
    clone._modules = {k: (None if v is None else _shallow_tree_copy(v)) for k, v in module._modules.items()}
    # Parameters, buffers and hooks dicts are shared with the original on purpose.
    return clone
