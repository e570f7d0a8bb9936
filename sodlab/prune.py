"""Pruning CSNet: learned channel numbers from BatchNorm scales, exact slim models,
fine-tuning and pruning curves.

**Which channels go.** Every prunable channel ends in a BatchNorm; when its scale gamma is
(close to) zero, the channel's output no longer depends on the input. A channel is removed
when its *score* is below the threshold:

- an ILBlock output channel (block ``b``, scale ``s``, channel ``c``) runs through three
  BatchNorms in a row (gOctConv ``conv.norms[s]``, depthwise ``dw1.norms[s]`` and
  ``dw2.norms[s]``, the depthwise layers being per channel). Its score is the *smallest*
  ``|gamma|`` of the three: a zero anywhere in that chain makes the channel's output
  input-independent, so it carries nothing. The authors select by the gOctConv BatchNorm
  alone; with only that one regularised (the depthwise gammas stay large) both rules agree.
- a CSF head channel (fuse output ``csf.fuse.norms[s]``, a multi-dilation output
  ``csf.ms[s].norm``, the merge output ``csf.merge.norms["0"]``): its own ``|gamma|``.

Structural rules: a scale left with no channels disappears (count 0); a block keeps at
least its best channel; a CSF scale whose fused input or whose multi-dilation output is
empty loses both; the head keeps at least one channel per stage. Scale lists keep their
length, so the x100 gain of single-scale layers is decided exactly as before.

**What removal does to the output.** A removed channel emits a map that does not depend on
the input. Where the BatchNorm that killed it is the last layer of its path (``dw2`` of an
ILBlock, any CSF BatchNorm), that map is the constant ``PReLU(beta)`` everywhere. A constant
stays constant through max-pooling, average-pooling and bilinear resampling, and through a
1x1 convolution it adds ``sum(W[:, c]) * value`` to the next layer's pre-activation. Every
consumer here is followed by a BatchNorm without conv bias, so that shift is folded into
the BatchNorm's ``running_mean`` (exact in eval; in training mode the batch statistics absorb
a constant shift by themselves), or into the classifier's bias. Folding is *not* exact when
a nonzero constant enters a 3x3 convolution (the stride-2 ILBlocks, the CSF multi-dilation
convolutions; zero padding makes the border see part of the kernel) or runs through a
depthwise 3x3 before reaching the end of its block; we then fold the interior value and
`prune` measures how much the output moved. When the removed channels output exactly zero
(gamma = beta = 0, so BN gives 0 and PReLU(0) = 0), every fold is zero and the slim model
equals the full one to float precision.
"""
from __future__ import annotations

import copy
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .errors import ConfigError
from .models.csnet import CSNet, CSNetConfig
from .profiling import count_parameters

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 1e-20

__all__ = [
    "PrunePlan",
    "channel_scores",
    "select_channels",
    "slim",
    "prune",
    "output_change",
    "allocation_table",
    "plot_allocation",
    "finetune",
    "curve",
    "compare_regularizers",
]


# --- channel selection --------------------------------------------------------------
def _check_csnet(model: nn.Module) -> CSNet:
    model = getattr(model, "module", model)
    if not isinstance(model, CSNet):
        raise ConfigError(f"pruning needs a CSNet, got {type(model).__name__}")
    for name, m in model.named_modules():
        if isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
            raise ConfigError(f"pruning needs BatchNorm everywhere; {name} is {type(m).__name__}")
    return model


def _blocks(model: CSNet) -> list[nn.Module]:
    return [model.stem] + [blk for stage in model.stage_modules() for blk in stage]


def _chain(block: nn.Module, s: int) -> list[tuple[Optional[nn.Module], nn.BatchNorm2d, nn.PReLU]]:
    """(depthwise conv or None, BatchNorm, PReLU) along the path of scale ``s`` of a block."""
    k = str(s)
    return [
        (None, block.conv.norms[k], block.conv.acts[k]),
        (block.dw1.convs[k], block.dw1.norms[k], block.dw1.acts[k]),
        (block.dw2.convs[k], block.dw2.norms[k], block.dw2.acts[k]),
    ]


@torch.no_grad()
def channel_scores(model: nn.Module) -> dict[str, Tensor]:
    """``|gamma|`` that decides each prunable channel (see the module docstring).

    Keys: ``"block{b}.{s}"`` (ILBlock ``b``, scale ``s``; min over its three BatchNorms),
    ``"fuse.{s}"``, ``"ms.{s}"`` (the multi-dilation outputs of scale ``s`` in concatenation
    order) and ``"merge"``. Scales with no channels have no key.
    """
    model = _check_csnet(model)
    cfg = model.config
    scores: dict[str, Tensor] = {}
    for b, block in enumerate(_blocks(model)):
        for s, c in enumerate(cfg.blocks[b][1]):
            if c:
                g = torch.stack([bn.weight.detach().abs().double() for _, bn, _ in _chain(block, s)])
                scores[f"block{b}.{s}"] = g.min(0).values
    for s, c in enumerate(cfg.csf_mid):
        if c:
            scores[f"fuse.{s}"] = model.csf.fuse.norms[str(s)].weight.detach().abs().double()
    for s in range(len(cfg.csf_mid)):
        if str(s) in model.csf.ms:
            scores[f"ms.{s}"] = model.csf.ms[str(s)].norm.weight.detach().abs().double()
    scores["merge"] = model.csf.merge.norms["0"].weight.detach().abs().double()
    return scores


@dataclass
class PrunePlan:
    """Which channels of a CSNet survive: sorted kept indices per key of `channel_scores`
    (every scale of every block is present, empty when the scale goes), and the resulting
    learned configuration."""

    threshold: float
    keep: dict[str, Tensor]
    config: CSNetConfig
    full_config: CSNetConfig
    notes: list[str] = field(default_factory=list)

    def removed(self) -> int:
        return sum(self._full_count(k) - len(v) for k, v in self.keep.items())

    def _full_count(self, key: str) -> int:
        cfg = self.full_config
        if key.startswith("block"):
            b, s = (int(t) for t in key[5:].split("."))
            return cfg.blocks[b][1][s]
        if key.startswith("fuse."):
            return cfg.csf_mid[int(key[5:])]
        if key.startswith("ms."):
            s = int(key[3:])
            return sum(cfg.csf_dilation_channels[s]) if max(cfg.csf_dilation_channels[s]) > 0 else 0
        return cfg.csf_out


def _kept(score: Optional[Tensor], threshold: float) -> Tensor:
    if score is None:
        return torch.zeros(0, dtype=torch.long)
    return torch.nonzero(score >= threshold).flatten()


def _best(score: Tensor) -> Tensor:
    return torch.argmax(score).reshape(1)


def _plan(model: CSNet, scores: Mapping[str, Tensor], threshold: float) -> PrunePlan:
    cfg = model.config
    keep: dict[str, Tensor] = {}
    notes: list[str] = []
    for b, (_, outs) in enumerate(cfg.blocks):
        for s in range(len(outs)):
            keep[f"block{b}.{s}"] = _kept(scores.get(f"block{b}.{s}"), threshold)
        if not any(len(keep[f"block{b}.{s}"]) for s in range(len(outs))):
            # A block with no output would cut the network; keep its strongest channel.
            present = [s for s in range(len(outs)) if f"block{b}.{s}" in scores]
            best_s = max(present, key=lambda s: float(scores[f"block{b}.{s}"].max()))
            keep[f"block{b}.{best_s}"] = _best(scores[f"block{b}.{best_s}"])
            notes.append(f"{cfg.block_name(b)}: every channel below the threshold; kept its strongest one")
    n_csf = len(cfg.csf_mid)
    for s in range(n_csf):
        keep[f"fuse.{s}"] = _kept(scores.get(f"fuse.{s}"), threshold)
        keep[f"ms.{s}"] = _kept(scores.get(f"ms.{s}"), threshold)
    raw_fuse = {s: len(keep[f"fuse.{s}"]) > 0 for s in range(n_csf)}
    for s in range(n_csf):
        # A multi-dilation block with no input computes a constant; one with no output
        # makes its fused input useless. Either way the whole CSF scale goes.
        if not len(keep[f"fuse.{s}"]) or not len(keep[f"ms.{s}"]):
            keep[f"fuse.{s}"] = keep[f"fuse.{s}"][:0]
            keep[f"ms.{s}"] = keep[f"ms.{s}"][:0]
    if not any(len(keep[f"ms.{s}"]) for s in range(n_csf)):
        present = [s for s in range(n_csf) if f"ms.{s}" in scores and f"fuse.{s}" in scores]
        if not present:
            raise ConfigError("the CSF head has no scale with both fused and multi-dilation channels")
        preferred = [s for s in present if raw_fuse[s]] or present
        best_s = max(preferred, key=lambda s: float(scores[f"ms.{s}"].max()))
        keep[f"ms.{best_s}"] = _best(scores[f"ms.{best_s}"])
        keep[f"fuse.{best_s}"] = _kept(scores[f"fuse.{best_s}"], threshold)
        if not len(keep[f"fuse.{best_s}"]):
            keep[f"fuse.{best_s}"] = _best(scores[f"fuse.{best_s}"])
        notes.append("CSF head: every multi-dilation channel below the threshold; kept the strongest one")
    keep["merge"] = _kept(scores["merge"], threshold)
    if not len(keep["merge"]):
        keep["merge"] = _best(scores["merge"])
        notes.append("CSF merge: every channel below the threshold; kept the strongest one")

    blocks = []
    prev = [3]
    for b, (_, outs) in enumerate(cfg.blocks):
        out = [len(keep[f"block{b}.{s}"]) for s in range(len(outs))]
        blocks.append([list(cfg.blocks[0][0]) if b == 0 else prev, out])
        prev = out
    ends = cfg.stage_ends()[1:]
    dil = []
    for s in range(n_csf):
        counts = [0] * len(cfg.dilations)
        if len(keep[f"ms.{s}"]):
            off = np.cumsum([0] + cfg.csf_dilation_channels[s])
            for i in keep[f"ms.{s}"].tolist():
                counts[int(np.searchsorted(off, i, side="right")) - 1] += 1
        dil.append(counts)
    new = CSNetConfig(
        blocks=blocks,
        csf_in=[sum(blocks[e][1]) for e in ends],
        csf_mid=[len(keep[f"fuse.{s}"]) for s in range(n_csf)],
        csf_dilation_channels=dil,
        csf_out=len(keep["merge"]),
        stages=list(cfg.stages),
        dilations=list(cfg.dilations),
        num_classes=cfg.num_classes,
    )
    return PrunePlan(threshold=float(threshold), keep=keep, config=new, full_config=cfg, notes=notes)


def _config_params(config: CSNetConfig) -> int:
    return count_parameters(CSNet(config))


def _threshold_for_fraction(model: CSNet, scores: Mapping[str, Tensor], keep_fraction: float) -> float:
    """Smallest threshold (just above one of the scores) whose slim model has at most
    ``keep_fraction`` of the parameters."""
    if not 0 < keep_fraction <= 1:
        raise ConfigError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    full = count_parameters(model)
    budget = keep_fraction * full
    values = torch.unique(torch.cat([v.flatten() for v in scores.values()])).double()
    candidates = [0.0] + [math.nextafter(float(v), math.inf) for v in values]
    lo, hi = 0, len(candidates) - 1
    if _config_params(_plan(model, scores, candidates[hi]).config) > budget:
        return candidates[hi]  # even the smallest model is over budget; go as small as possible
    while lo < hi:  # parameters only shrink as the threshold grows
        mid = (lo + hi) // 2
        if _config_params(_plan(model, scores, candidates[mid]).config) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return candidates[lo]


def select_channels(model: nn.Module, threshold: Optional[float] = DEFAULT_THRESHOLD, keep_fraction: Optional[float] = None) -> PrunePlan:
    """Learned channel configuration of ``model``: channels whose score (`channel_scores`)
    is below ``threshold`` go. With ``keep_fraction`` the threshold is chosen instead, as the
    smallest that leaves at most that fraction of the parameters."""
    model = _check_csnet(model)
    scores = channel_scores(model)
    if keep_fraction is not None:
        threshold = _threshold_for_fraction(model, scores, float(keep_fraction))
    if threshold is None or not threshold >= 0:
        raise ConfigError(f"threshold must be a non-negative number, got {threshold}")
    return _plan(model, scores, float(threshold))


# --- constants of removed channels and their folding ----------------------------------
def _bn_eval(bn: nn.BatchNorm2d, u: Tensor) -> Tensor:
    """Eval-mode BatchNorm of a per-channel constant ``u`` (float64)."""
    rm, rv = bn.running_mean.double(), bn.running_var.double()
    return (u - rm) / torch.sqrt(rv + bn.eps) * bn.weight.double() + bn.bias.double()


def _prelu(act: nn.PReLU, u: Tensor) -> Tensor:
    a = act.weight.detach().double()
    return torch.where(u >= 0, u, a * u)


def _eff_weight(conv: nn.Module) -> Tensor:
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
    for conv, bn, act in _chain(block, s):
        gamma = bn.weight.detach().double()
        if value is None:
            value = torch.zeros_like(gamma)
            known = torch.zeros_like(gamma, dtype=torch.bool)
            exact = torch.ones_like(gamma, dtype=torch.bool)
        else:
            k = _eff_weight(conv).sum(dim=(1, 2, 3))
            exact = exact & ~(known & (value != 0))
            value = value * k
        dead = gamma.abs() < threshold
        out = torch.where(dead, bn.bias.detach().double(), _bn_eval(bn, value))
        value = _prelu(act, out)
        exact = torch.where(dead, gamma == 0, exact)
        known = known | dead
    return value, known, exact


def _offsets(counts: Sequence[int]) -> list[int]:
    return [int(v) for v in np.cumsum([0, *counts])]


def _cat_index(counts: Sequence[int], keeps: Sequence[Tensor]) -> Tensor:
    off = _offsets(counts)
    parts = [k + off[s] for s, k in enumerate(keeps)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


@dataclass
class _Folds:
    """Shifts to subtract from BatchNorm running means (by module name) and to add to the
    classifier bias, plus the places where folding is approximate."""

    mean_shift: dict[str, Tensor] = field(default_factory=dict)
    bias_shift: Optional[Tensor] = None
    inexact: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, delta: Tensor) -> None:
        self.mean_shift[name] = self.mean_shift.get(name, 0) + delta


def _fold_into_goct(
    folds: _Folds, goct_bn: nn.Module, prefix: str, in_scale: int, removed: Tensor, values: Tensor, exact: Tensor, what: str
) -> None:
    """A constant on channels ``removed`` of input scale ``in_scale`` of a GOctConvBNAct."""
    conv = goct_bn.conv
    w = _eff_weight(conv)
    in_off, out_off = _offsets(conv.in_channels), _offsets(conv.out_channels)
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
def _compute_folds(model: CSNet, plan: PrunePlan) -> _Folds:
    cfg, keep, thr = model.config, plan.keep, plan.threshold
    blocks = _blocks(model)
    names = ["stem"] + [f"stage{k}.{i}" for k, n in enumerate(cfg.stages, 1) for i in range(n)]
    ends = cfg.stage_ends()[1:]
    folds = _Folds()
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
        delta = torch.cat([(_eff_weight(conv)[:, removed].sum(dim=(2, 3)) * values[removed]).sum(1) for conv in ms.convs.values()])
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
            u = torch.cat([(_eff_weight(conv).sum(dim=(2, 3)) * vf).sum(1) for conv in ms.convs.values()])
            dead = ms.norm.weight.detach().abs() < thr
            values = _prelu(ms.act, torch.where(dead, ms.norm.bias.detach().double(), _bn_eval(ms.norm, u)))
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


# --- surgery ------------------------------------------------------------------------
def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, idx: Tensor, shift: Optional[Tensor] = None) -> None:
    dst.weight.copy_(src.weight[idx])
    dst.bias.copy_(src.bias[idx])
    rm = src.running_mean.double() - (shift if shift is not None else 0)
    dst.running_mean.copy_(rm[idx].to(dst.running_mean.dtype))
    dst.running_var.copy_(src.running_var[idx])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.eps, dst.momentum = src.eps, src.momentum


def _copy_prelu(dst: nn.PReLU, src: nn.PReLU, idx: Tensor) -> None:
    dst.weight.copy_(src.weight if src.weight.numel() == 1 else src.weight[idx])


def _copy_goct(dst: nn.Module, src: nn.Module, in_keep: Sequence[Tensor], out_keep: Sequence[Tensor], name: str, folds: _Folds) -> None:
    rows = _cat_index(src.conv.out_channels, out_keep)
    cols = _cat_index(src.conv.in_channels, in_keep)
    dst.conv.weight.copy_(src.conv.weight[rows][:, cols])
    if src.conv.bias is not None:
        dst.conv.bias.copy_(src.conv.bias[rows])
    for s, k in enumerate(out_keep):
        if len(k):
            _copy_bn(dst.norms[str(s)], src.norms[str(s)], k, folds.mean_shift.get(f"{name}.norms.{s}"))
            _copy_prelu(dst.acts[str(s)], src.acts[str(s)], k)


@torch.no_grad()
def _surgery(model: CSNet, plan: PrunePlan, folds: _Folds) -> CSNet:
    cfg, keep = model.config, plan.keep
    ref = next(model.parameters())
    new = CSNet(copy.deepcopy(plan.config)).to(device=ref.device, dtype=ref.dtype)
    src_blocks, dst_blocks = _blocks(model), _blocks(new)
    names = ["stem"] + [f"stage{k}.{i}" for k, n in enumerate(cfg.stages, 1) for i in range(n)]
    prev = [torch.arange(cfg.blocks[0][0][0])]
    for b, (src, dst) in enumerate(zip(src_blocks, dst_blocks)):
        out_keep = [keep[f"block{b}.{s}"] for s in range(len(cfg.blocks[b][1]))]
        _copy_goct(dst.conv, src.conv, prev, out_keep, f"{names[b]}.conv", folds)
        for layer in ("dw1", "dw2"):
            sl, dl = getattr(src, layer), getattr(dst, layer)
            for s, k in enumerate(out_keep):
                if len(k):
                    dl.convs[str(s)].weight.copy_(sl.convs[str(s)].weight[k])
                    _copy_bn(dl.norms[str(s)], sl.norms[str(s)], k)
                    _copy_prelu(dl.acts[str(s)], sl.acts[str(s)], k)
        prev = out_keep
    ends = cfg.stage_ends()[1:]
    n_csf = len(cfg.csf_mid)
    stage_keep = [keep[f"block{e}.0"] for e in ends]
    fuse_keep = [keep[f"fuse.{s}"] for s in range(n_csf)]
    _copy_goct(new.csf.fuse, model.csf.fuse, stage_keep, fuse_keep, "csf.fuse", folds)
    ms_keep = []
    for s in range(n_csf):
        k = keep[f"ms.{s}"]
        ms_keep.append(k)
        if not len(k):
            continue
        src, dst = model.csf.ms[str(s)], new.csf.ms[str(s)]
        off = _offsets(src.dilation_channels)
        for g, conv in src.convs.items():
            gi = int(g)
            rows = k[(k >= off[gi]) & (k < off[gi + 1])] - off[gi]
            if len(rows):
                dst.convs[g].weight.copy_(conv.weight[rows][:, fuse_keep[s]])
        _copy_bn(dst.norm, src.norm, k, folds.mean_shift.get(f"csf.ms.{s}.norm"))
        _copy_prelu(dst.act, src.act, k)
    _copy_goct(new.csf.merge, model.csf.merge, ms_keep, [keep["merge"]], "csf.merge", folds)
    new.classifier.weight.copy_(model.classifier.weight[:, keep["merge"]])
    bias = model.classifier.bias.detach().double()
    if folds.bias_shift is not None:
        bias = bias + folds.bias_shift
    new.classifier.bias.copy_(bias.to(new.classifier.bias.dtype))
    new.train(model.training)
    new.registry_name = "csnet"
    return new


def slim(model: nn.Module, threshold: Optional[float] = DEFAULT_THRESHOLD, keep_fraction: Optional[float] = None, fold: bool = True) -> CSNet:
    """A smaller CSNet without the channels whose BatchNorm scale is below ``threshold``
    (or, with ``keep_fraction``, at most that fraction of the parameters).

    The surviving weights are copied; constants of removed channels are folded into the
    next layer (``fold=False`` drops them instead). See the module docstring for when the
    result is exact; `prune` also measures the output change.
    """
    return prune(model, threshold, keep_fraction=keep_fraction, fold=fold, probe_size=None)[0]


def prune(
    model: nn.Module,
    threshold: Optional[float] = DEFAULT_THRESHOLD,
    keep_fraction: Optional[float] = None,
    fold: bool = True,
    probe_size: Optional[int] = 128,
    seed: int = 0,
    warn: bool = True,
) -> tuple[CSNet, dict[str, Any]]:
    """`slim` plus a report: channel and parameter counts, the places where folding is
    approximate, and (``probe_size`` not None) the output change on a random input.
    ``warn``: log each note and each approximate fold as a warning (``False``: they are only
    in the report, for callers that summarise them)."""
    full = _check_csnet(model)
    plan = select_channels(full, threshold, keep_fraction)
    folds = _compute_folds(full, plan) if fold else _Folds()
    new = _surgery(full, plan, folds)
    if warn:
        for note in plan.notes:
            logger.warning("prune: %s", note)
        for item in folds.inexact:
            logger.warning("prune: folding %d constant channel(s) of %s into %s is approximate (%s; |value| <= %.3g)",
                           item["channels"], item["from"], item["into"], item["why"], item["max_abs_value"])
    report: dict[str, Any] = {
        "threshold": plan.threshold,
        "keep_fraction_target": keep_fraction,
        "params_full": count_parameters(full),
        "params_slim": count_parameters(new),
        "channels_removed": plan.removed(),
        "folded": bool(fold),
        "fold_exact": not folds.inexact,
        "inexact_folds": folds.inexact,
        "notes": list(plan.notes),
    }
    report["param_fraction"] = report["params_slim"] / report["params_full"]
    if probe_size is not None:
        report.update(output_change(full, new, size=probe_size, seed=seed))
    return new, report


@torch.no_grad()
def output_change(full: nn.Module, slim_model: nn.Module, size: int = 128, batch: int = 2, seed: int = 0) -> dict[str, float]:
    """Largest and mean absolute differences of logits and probabilities between two
    models on a seeded random normalised input (eval mode)."""
    gen = torch.Generator().manual_seed(seed)
    ref = next(full.parameters())
    x = torch.randn(batch, 3, size, size, generator=gen).to(device=ref.device, dtype=ref.dtype)
    modes = full.training, slim_model.training
    full.eval(), slim_model.eval()
    try:
        a, b = full(x).double(), slim_model(x).double()
    finally:
        full.train(modes[0]), slim_model.train(modes[1])
    pa, pb = torch.sigmoid(a), torch.sigmoid(b)
    return {
        "probe_size": size,
        "max_abs_logit_change": float((a - b).abs().max()),
        "max_abs_prob_change": float((pa - pb).abs().max()),
        "mean_abs_prob_change": float((pa - pb).abs().mean()),
        "logit_scale": float(a.abs().max()),
    }


# --- allocation -----------------------------------------------------------------------
def allocation_table(config: CSNetConfig | nn.Module, reference: Optional[CSNetConfig | nn.Module] = None) -> pd.DataFrame:
    """Channels of a CSNet configuration, one row per (layer, scale[, dilation]).

    Columns: ``kind`` (``"block"``: an ILBlock output; ``"csf_fuse"``, ``"dilation"`` (a
    multi-dilation group of the CSF head), ``"csf_merge"``), ``block`` (block name or CSF
    layer), ``index`` (block number, -1 in the head), ``stage`` (0 for the stem, 5 for the
    head), ``scale`` (0 = full resolution), ``dilation`` (0 unless ``kind == "dilation"``),
    ``channels``. With ``reference`` (e.g. the unpruned configuration it was learned from),
    also ``reference_channels`` and ``kept`` (their ratio; NaN where the reference is 0).
    """
    cfg = _as_config(config)
    rows = _allocation_rows(cfg)
    df = pd.DataFrame(rows, columns=["kind", "block", "index", "stage", "scale", "dilation", "channels"])
    if reference is not None:
        ref = pd.DataFrame(_allocation_rows(_as_config(reference)), columns=df.columns)
        keys = ["kind", "block", "index", "stage", "scale", "dilation"]
        if len(ref) != len(df) or not (ref[keys].values == df[keys].values).all():
            raise ConfigError("allocation_table: the reference configuration has a different structure")
        df["reference_channels"] = ref["channels"].values
        df["kept"] = df["channels"] / df["reference_channels"].where(df["reference_channels"] > 0)
    return df


def _as_config(config: CSNetConfig | nn.Module) -> CSNetConfig:
    if isinstance(config, CSNetConfig):
        return config
    cfg = getattr(getattr(config, "module", config), "config", None)
    if not isinstance(cfg, CSNetConfig):
        raise ConfigError(f"expected a CSNetConfig or a CSNet, got {type(config).__name__}")
    return cfg


def _allocation_rows(cfg: CSNetConfig) -> list[tuple]:
    rows = []
    starts = [1 + sum(cfg.stages[:k]) for k in range(4)]
    for b, (_, outs) in enumerate(cfg.blocks):
        stage = 0 if b == 0 else max(k + 1 for k, s in enumerate(starts) if b >= s)
        for s, c in enumerate(outs):
            rows.append(("block", cfg.block_name(b), b, stage, s, 0, int(c)))
    for s, c in enumerate(cfg.csf_mid):
        rows.append(("csf_fuse", "csf.fuse", -1, 5, s, 0, int(c)))
    for s, dil in enumerate(cfg.csf_dilation_channels):
        for d, c in zip(cfg.dilations, dil):
            rows.append(("dilation", "csf.ms", -1, 5, s, int(d), int(c)))
    rows.append(("csf_merge", "csf.merge", -1, 5, 0, 0, int(cfg.csf_out)))
    return rows


def plot_allocation(config: CSNetConfig | nn.Module, reference: Optional[CSNetConfig | nn.Module] = None, title: Optional[str] = None, ax=None):
    """Stacked bars of channels per block (scale 0 below, scale 1 on top), with the CSF head
    (fused channels per scale, then each dilation group) at the right; ``reference`` is
    drawn as an outline. Returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = allocation_table(config, reference)
    blocks = df[df["kind"] == "block"]
    head = df[df["kind"] != "block"]
    labels, lows, highs, refs = [], [], [], []
    for name, g in blocks.groupby("index", sort=True):
        labels.append(g["block"].iloc[0])
        lows.append(int(g[g["scale"] == 0]["channels"].sum()))
        highs.append(int(g[g["scale"] > 0]["channels"].sum()))
        refs.append(int(g["reference_channels"].sum()) if reference is not None else None)
    for s in sorted(head[head["kind"] == "csf_fuse"]["scale"].unique()):
        g = head[(head["kind"] == "csf_fuse") & (head["scale"] == s)]
        labels.append(f"fuse s{s}")
        lows.append(int(g["channels"].sum()))
        highs.append(0)
        refs.append(int(g["reference_channels"].sum()) if reference is not None else None)
    for d in sorted(head[head["kind"] == "dilation"]["dilation"].unique()):
        g = head[(head["kind"] == "dilation") & (head["dilation"] == d)]
        labels.append(f"dil {d}")
        lows.append(int(g[g["scale"] == 0]["channels"].sum()))
        highs.append(int(g[g["scale"] > 0]["channels"].sum()))
        refs.append(int(g["reference_channels"].sum()) if reference is not None else None)
    with sns.axes_style("whitegrid"):
        if ax is None:
            fig, ax = plt.subplots(figsize=(max(7.0, 0.32 * len(labels) + 2), 3.8), layout="constrained")
        else:
            fig = ax.figure
        x = np.arange(len(labels))
        pal = sns.color_palette(n_colors=2)
        ax.bar(x, lows, color=pal[0], label="scale 0 (full resolution)")
        ax.bar(x, highs, bottom=lows, color=pal[1], label="coarser scales (1/2; CSF dilations: 1/2 and 1/4)")
        if reference is not None:
            ax.bar(x, refs, fill=False, edgecolor="0.3", lw=0.8, label="reference (unpruned)")
        ax.axvline(len(blocks["index"].unique()) - 0.5, color="0.5", lw=0.8, ls="--")
        ax.set_xticks(x, labels, rotation=70, ha="right", fontsize=7)
        ax.set_xlabel("ILBlock (stem, stage.block) | CSF head")
        ax.set_ylabel("output channels (count)")
        ax.legend(fontsize="small")
        if title:
            ax.set_title(title)
    return fig


# --- fine-tuning and curves -------------------------------------------------------------
FINETUNE_DEFAULTS: dict[str, Any] = {"optimizer": "adam", "lr": 3e-4, "betas": [0.9, 0.99], "weight_decay": 0.0,
                                     "schedule": "cosine", "channels_last": True}


def finetune(
    model: nn.Module,
    train_data: Any,
    epochs: int = 1,
    *,
    val_data: Any = None,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "auto",
    run_dir: Optional[str | Path] = None,
    regularizer: str = "none",
    progress: bool = False,
    **train_overrides: Any,
) -> nn.Module:
    """Train a (slim) model further with `sodlab.train.fit`, returning the trained copy.

    `fit` creates its optimizer for the model it is given, i.e. for the slim model's own
    parameters. (The authors' script creates its optimizer before rebuilding the slim model,
    so it keeps updating the old, discarded tensors and their fine-tuning barely trains.)
    With ``run_dir`` the run is kept there and resumed if interrupted; else it goes to a
    temporary folder.

    Defaults (`FINETUNE_DEFAULTS`, each overridable through ``train_overrides``): Adam at 3e-4
    annealed to 0, no weight decay. A slim model starts close to a good solution; the
    training defaults (constant 1e-3 with coupled weight decay 5e-3) pulled every weight
    towards zero and lowered max-F even of an unpruned model fine-tuned the same way.
    """
    from .checkpoint import load
    from .train import TrainConfig, fit

    if epochs <= 0:
        return model
    settings = {**FINETUNE_DEFAULTS, **train_overrides}
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, regularizer=regularizer, task="sod", **settings)
    with tempfile.TemporaryDirectory(prefix="sodlab-finetune-") as tmp:
        rd = Path(run_dir) if run_dir is not None else Path(tmp)
        fit(model, train_data, val_data, config, rd, resume=(rd / "last.pt").is_file(), device=device, progress=progress)
        return load(rd / "last.pt")


def _evaluate(model: nn.Module, data: Any, size: Optional[int], batch_size: int, device: str) -> dict[str, float]:
    from .evaluation import evaluate

    kw: dict[str, Any] = {"batch_size": batch_size, "device": device, "progress": False}
    if size is not None:
        kw["size"] = size
    res = evaluate(model, data, **kw)
    return {"max_f": float(res["max_f"]), "mae": float(res["mae"])}


def _as_model(model_or_checkpoint: nn.Module | str | Path) -> CSNet:
    if isinstance(model_or_checkpoint, (str, Path)):
        from .checkpoint import load

        model_or_checkpoint = load(model_or_checkpoint)
    return _check_csnet(model_or_checkpoint)


def curve(
    model_or_checkpoint: nn.Module | str | Path,
    data: Any,
    thresholds: Optional[Sequence[float]] = None,
    keep_fractions: Optional[Sequence[float]] = None,
    finetune_epochs: int = 0,
    train_data: Any = None,
    *,
    size: Optional[int] = None,
    macs_size: int = 224,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "auto",
    work_dir: Optional[str | Path] = None,
    progress: bool = True,
    **finetune_kw: Any,
) -> pd.DataFrame:
    """Pruning curve: slim the model at each threshold and/or kept parameter fraction and
    evaluate it on ``data`` (a dataset or a folder `sodlab.evaluate` accepts).

    With ``finetune_epochs > 0`` each slim model is also fine-tuned on ``train_data``
    (`finetune`; runs kept under ``work_dir`` when given, so an interrupted curve resumes).
    One row per point: ``threshold``, ``keep_fraction`` (target, NaN for a threshold
    point), ``params``, ``param_fraction``, ``macs`` (at ``macs_size``), ``max_f``, ``mae``,
    ``max_f_finetuned``, ``mae_finetuned`` (NaN without fine-tuning), ``fold_exact``.
    """
    from tqdm.auto import tqdm

    from .profiling import profile

    full = _as_model(model_or_checkpoint)
    if thresholds is None and keep_fractions is None:
        thresholds = [DEFAULT_THRESHOLD]
    if finetune_epochs > 0 and train_data is None:
        raise ConfigError("fine-tuning a pruning curve needs train_data")
    points = [("threshold", float(t)) for t in (thresholds or [])] + [("keep_fraction", float(f)) for f in (keep_fractions or [])]
    full_params = count_parameters(full)
    rows = []
    for kind, value in tqdm(points, desc="pruning curve", disable=not progress):
        thr, frac = (value, None) if kind == "threshold" else (None, value)
        # one line per point rather than one per block: a curve prunes many times, and
        # ``fold_exact`` in the result records the same thing
        small, report = prune(full, thr, keep_fraction=frac, probe_size=None, warn=False)
        for note in report["notes"]:
            logger.warning("prune: %s", note)
        if report["inexact_folds"]:
            logger.warning("prune: %s %g: folding is approximate in %d place(s) (largest |constant| %.3g); "
                           "the row's fold_exact is False", kind.replace("_", " "), value, len(report["inexact_folds"]),
                           max(item["max_abs_value"] for item in report["inexact_folds"]))
        prof = profile(small, macs_size)
        row: dict[str, Any] = {
            "threshold": report["threshold"],
            "keep_fraction": float("nan") if frac is None else frac,
            "params": int(prof["params"]),
            "param_fraction": prof["params"] / full_params,
            "macs": int(prof["macs"]),
            "fold_exact": report["fold_exact"],
        }
        row.update(_evaluate(small, data, size, batch_size, device))
        row["max_f_finetuned"] = row["mae_finetuned"] = float("nan")
        if finetune_epochs > 0:
            run_dir = None if work_dir is None else Path(work_dir) / f"{kind}_{value:.6g}"
            tuned = finetune(small, train_data, finetune_epochs, batch_size=batch_size, seed=seed, device=device, run_dir=run_dir, **finetune_kw)
            ev = _evaluate(tuned, data, size, batch_size, device)
            row["max_f_finetuned"], row["mae_finetuned"] = ev["max_f"], ev["mae"]
        rows.append(row)
    cols = ["threshold", "keep_fraction", "params", "param_fraction", "macs", "max_f", "mae", "max_f_finetuned", "mae_finetuned", "fold_exact"]
    return pd.DataFrame(rows, columns=cols)


def compare_regularizers(
    models: Mapping[str, nn.Module | str | Path],
    data: Any,
    keep_fractions: Sequence[float] = (1.0, 0.5, 0.25),
    finetune_epochs: int = 0,
    train_data: Any = None,
    thresholds: Sequence[float] = (DEFAULT_THRESHOLD,),
    work_dir: Optional[str | Path] = None,
    **curve_kw: Any,
) -> pd.DataFrame:
    """`curve` for models of the same architecture trained with different regularisers
    (``{"dwd": model_or_checkpoint, "l2": ..., ...}``), at the same kept parameter fractions
    (hence matched parameter budgets) plus each model's own ``thresholds`` points. One
    DataFrame with a ``regularizer`` column; rows with ``keep_fraction`` 1 are the unpruned
    models."""
    frames = []
    for name, m in models.items():
        wd = None if work_dir is None else Path(work_dir) / name
        df = curve(m, data, thresholds=list(thresholds), keep_fractions=list(keep_fractions), finetune_epochs=finetune_epochs,
                   train_data=train_data, work_dir=wd, **curve_kw)
        df.insert(0, "regularizer", name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
