"""Constants of removed channels and their folding into the layers that read them, and which
channels can be removed exactly.

A removed channel emits a map that does not depend on the input. Where the BatchNorm that
killed it is the last layer of its path (``dw2`` of an ILBlock, any CSF BatchNorm), that map
is the constant ``PReLU(beta)`` everywhere. A constant stays constant through max-pooling,
average-pooling and bilinear resampling, and through a 1x1 convolution it adds
``sum(W[:, c]) * value`` to the next layer's pre-activation. Every consumer here is followed
by a BatchNorm without conv bias, so that shift is folded into the BatchNorm's
``running_mean`` (exact in eval; in training mode the batch statistics absorb a constant
shift by themselves), or into the classifier's bias. Folding is *not* exact when a nonzero
constant enters a 3x3 convolution (the stride-2 ILBlocks, the CSF multi-dilation
convolutions; zero padding makes the border see part of the kernel) or runs through a
depthwise 3x3 before reaching the end of its block, nor when the BatchNorm's gamma is small
but not zero. `exactly_removable` marks the channels where none of that happens (what
`sodlab.prune.slim` removes by default); with ``exact=False`` the others go too, the interior
value is folded, and `sodlab.prune.prune` measures how much the output moved. When the
removed channels output exactly zero (gamma = beta = 0, so BN gives 0 and PReLU(0) = 0),
every fold is zero and the slim model equals the full one to float precision.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..fast.batchnorm import bn_scale_shift
from ..models.csnet import CSNet
from .select import PrunePlan, bn_chain, csnet_blocks


def _bn_eval(bn: nn.BatchNorm2d, u: Tensor) -> Tensor:
    """Eval-mode BatchNorm of a per-channel constant ``u`` (float64)."""
    scale, shift = bn_scale_shift(bn, torch.float64)
    return u * scale + shift


def _prelu(act: nn.PReLU, u: Tensor) -> Tensor:
    a = act.weight.detach().double()
    return torch.where(u >= 0, u, a * u)


def effective_weight(conv: nn.Module) -> Tensor:
    """Weight as used in forward (the authors' x100 gain included), float64."""
    return conv.weight.detach().double() * float(getattr(conv, "gain", 1.0))


def _chain_constants(block: nn.Module, s: int, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Interior value of each channel of scale ``s`` of an ILBlock when it is input-independent.

    Returns ``(value, known, exact)``: ``known`` where some BatchNorm of the chain is below
    the threshold; ``exact`` where the map is that constant everywhere (the last dead
    BatchNorm has gamma exactly 0 and nothing nonzero went through a zero-padded depthwise
    3x3 afterwards).
    """
    value = known = exact = None
    for conv, bn, act in bn_chain(block, s):
        gamma = bn.weight.detach().double()
        if value is None:
            value = torch.zeros_like(gamma)
            known = torch.zeros_like(gamma, dtype=torch.bool)
            exact = torch.ones_like(gamma, dtype=torch.bool)
        else:
            k = effective_weight(conv).sum(dim=(1, 2, 3))
            exact = exact & ~(known & (value != 0))
            value = value * k
        dead = gamma.abs() < threshold
        out = torch.where(dead, bn.bias.detach().double(), _bn_eval(bn, value))
        value = _prelu(act, out)
        exact = torch.where(dead, gamma == 0, exact)
        known = known | dead
    return value, known, exact


def offsets(counts: Sequence[int]) -> list[int]:
    """Start of each scale's channels in a concatenation of ``counts``, and the total."""
    return [int(v) for v in np.cumsum([0, *counts])]


def cat_index(counts: Sequence[int], keeps: Sequence[Tensor]) -> Tensor:
    """Indices into the concatenation of ``counts`` channels of the per-scale ``keeps``."""
    off = offsets(counts)
    parts = [k + off[s] for s, k in enumerate(keeps)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


@dataclass
class Folds:
    """Shifts to subtract from BatchNorm running means (by module name) and to add to the
    classifier bias, plus the places where folding is approximate."""

    mean_shift: dict[str, Tensor] = field(default_factory=dict)
    bias_shift: Optional[Tensor] = None
    inexact: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, delta: Tensor) -> None:
        self.mean_shift[name] = self.mean_shift.get(name, 0) + delta


def _fold_into_goct(
    folds: Folds, goct_bn: nn.Module, prefix: str, in_scale: int, removed: Tensor, values: Tensor, exact: Tensor, what: str
) -> None:
    """A constant on channels ``removed`` of input scale ``in_scale`` of a GOctConvBNAct."""
    conv = goct_bn.conv
    w = effective_weight(conv)
    in_off, out_off = offsets(conv.in_channels), offsets(conv.out_channels)
    cols = removed + in_off[in_scale]
    contrib = (w[:, cols].sum(dim=(2, 3)) * values[removed]).sum(1)  # per output channel, interior
    for j, c in enumerate(conv.out_channels):
        if c:
            folds.add(f"{prefix}.norms.{j}", contrib[out_off[j]:out_off[j + 1]])
    bad = ~exact[removed] | ((values[removed] != 0) & (conv.kernel_size > 1))
    if bool(bad.any()):
        folds.inexact.append(
            {
                "into": prefix,
                "from": what,
                "channels": int(bad.sum()),
                "max_abs_value": float(values[removed][bad].abs().max()),
                "why": "3x3 convolution with zero padding" if conv.kernel_size > 1 else "constant not exact upstream",
            }
        )


@torch.no_grad()
def compute_folds(model: CSNet, plan: PrunePlan) -> Folds:
    """Where the constants of the channels ``plan`` removes go, and where that is approximate."""
    cfg, keep, thr = model.config, plan.keep, plan.threshold
    blocks = csnet_blocks(model)
    names = ["stem"] + [f"stage{k}.{i}" for k, n in enumerate(cfg.stages, 1) for i in range(n)]
    ends = cfg.stage_ends()[1:]
    folds = Folds()
    for b, block in enumerate(blocks):
        for s, c in enumerate(cfg.blocks[b][1]):
            if not c:
                continue
            removed = _removed(c, keep[f"block{b}.{s}"])
            if not len(removed):
                continue
            values, known, exact = _chain_constants(block, s, thr)
            if not bool(known[removed].all()):  # cannot happen: removed means some gamma is below the threshold
                raise AssertionError(f"block {b} scale {s}: removing an input-dependent channel")
            if b + 1 < len(blocks):
                _fold_into_goct(folds, blocks[b + 1].conv, f"{names[b + 1]}.conv", s, removed, values, exact, f"{names[b]} scale {s}")
            if b in ends:
                _fold_into_goct(folds, model.csf.fuse, "csf.fuse", ends.index(b), removed, values, exact, f"{names[b]} scale {s}")

    csf = model.csf
    for s, c in enumerate(cfg.csf_mid):
        if not c or str(s) not in csf.ms:
            continue  # fused channels of a scale without multi-dilation block feed nothing
        removed = _removed(c, keep[f"fuse.{s}"])
        if not len(removed) or not len(keep[f"ms.{s}"]):
            continue  # when the whole CSF scale goes its constants end up in the merge (below)
        bn, act = csf.fuse.norms[str(s)], csf.fuse.acts[str(s)]
        values = _prelu(act, _dead_bn(bn))
        ms = csf.ms[str(s)]
        delta = torch.cat([(effective_weight(conv)[:, removed].sum(dim=(2, 3)) * values[removed]).sum(1) for conv in ms.convs.values()])
        folds.add(f"csf.ms.{s}.norm", delta)
        bad = (values[removed] != 0) | (bn.weight.detach()[removed] != 0)
        if bool(bad.any()):
            folds.inexact.append(
                {"into": f"csf.ms.{s}", "from": f"csf.fuse scale {s}", "channels": int(bad.sum()),
                 "max_abs_value": float(values[removed][bad].abs().max()), "why": "dilated 3x3 convolution with zero padding"}
            )

    for s in range(len(cfg.csf_mid)):
        if str(s) not in csf.ms:
            continue
        ms = csf.ms[str(s)]
        n = ms.norm.num_features
        removed = _removed(n, keep[f"ms.{s}"])
        if not len(removed):
            continue
        exact = ms.norm.weight.detach() == 0
        if not len(keep[f"ms.{s}"]) and cfg.csf_mid[s] and not len(keep[f"fuse.{s}"]):
            # No fused input left: each multi-dilation conv sees only the fused constants.
            bn_f, act_f = csf.fuse.norms[str(s)], csf.fuse.acts[str(s)]
            vf = _prelu(act_f, _dead_bn(bn_f))
            u = torch.cat([(effective_weight(conv).sum(dim=(2, 3)) * vf).sum(1) for conv in ms.convs.values()])
            # the interior value, for every channel: a dead one's gamma may be small, not zero
            values = _prelu(ms.act, _bn_eval(ms.norm, u))
            upstream = bool((vf == 0).all()) and bool((bn_f.weight.detach() == 0).all())
            exact = exact | torch.full_like(exact, upstream)
        elif not len(keep[f"ms.{s}"]):
            # The whole scale goes because its multi-dilation outputs are all dead.
            values = _prelu(ms.act, ms.norm.bias.detach().double())
        else:
            values = _prelu(ms.act, _dead_bn(ms.norm))
        exact = exact.clone()
        _fold_into_goct(folds, csf.merge, "csf.merge", s, removed, values, exact, f"csf.ms scale {s}")

    removed = _removed(cfg.csf_out, keep["merge"])
    if len(removed):
        bn, act = csf.merge.norms["0"], csf.merge.acts["0"]
        values = _prelu(act, _dead_bn(bn))
        w = model.classifier.weight.detach().double()[:, :, 0, 0]
        folds.bias_shift = (w[:, removed] * values[removed]).sum(1)
        bad = bn.weight.detach()[removed] != 0
        if bool(bad.any()):
            folds.inexact.append(
                {"into": "classifier", "from": "csf.merge", "channels": int(bad.sum()),
                 "max_abs_value": float(values[removed][bad].abs().max()), "why": "gamma below the threshold but not zero"}
            )
    return folds


def _dead_bn(bn: nn.BatchNorm2d) -> Tensor:
    """Output of a BatchNorm whose gamma is taken as zero: beta (exact for gamma == 0; for a
    small nonzero gamma, its value at the running mean, the expected input)."""
    return bn.bias.detach().double()


def _removed(n: int, kept: Tensor) -> Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[kept] = False
    return torch.nonzero(mask).flatten()



def _padded(convs: Sequence[nn.Module]) -> bool:
    """Whether any of ``convs`` is wider than 1x1 (zero padding then shows a constant input
    at the border as something else)."""
    return any(max(np.atleast_1d(conv.kernel_size)) > 1 for conv in convs)


@torch.no_grad()
def exactly_removable(model: CSNet, threshold: float) -> dict[str, Tensor]:
    """Boolean masks by the keys of `sodlab.prune.select.channel_scores`: the channels whose
    removal leaves the eval-mode output unchanged (to float rounding). Such a channel is
    input-independent because a BatchNorm on its path has gamma exactly 0 (nothing else
    below ``threshold`` counts), its map is that constant everywhere (no nonzero constant went
    through a zero-padded depthwise 3x3 after it), and the constant is zero wherever it enters
    a convolution wider than 1x1."""
    cfg, csf = model.config, model.csf
    blocks = csnet_blocks(model)
    ends = cfg.stage_ends()[1:]
    masks: dict[str, Tensor] = {}
    for b, block in enumerate(blocks):
        readers = ([blocks[b + 1].conv.conv] if b + 1 < len(blocks) else []) + ([csf.fuse.conv] if b in ends else [])
        for s, c in enumerate(cfg.blocks[b][1]):
            if c:
                values, known, exact = _chain_constants(block, s, threshold)
                masks[f"block{b}.{s}"] = known & exact & ((values == 0) | (not _padded(readers)))
    for s, c in enumerate(cfg.csf_mid):
        if c:
            bn = csf.fuse.norms[str(s)]
            values = _prelu(csf.fuse.acts[str(s)], _dead_bn(bn))
            readers = list(csf.ms[str(s)].convs.values()) if str(s) in csf.ms else []
            masks[f"fuse.{s}"] = (bn.weight.detach() == 0) & ((values == 0) | (not _padded(readers)))
    for s in range(len(cfg.csf_mid)):
        if str(s) in csf.ms:
            ms = csf.ms[str(s)]
            values = _prelu(ms.act, _dead_bn(ms.norm))
            masks[f"ms.{s}"] = (ms.norm.weight.detach() == 0) & ((values == 0) | (not _padded([csf.merge.conv])))
    masks["merge"] = csf.merge.norms["0"].weight.detach() == 0
    return masks
