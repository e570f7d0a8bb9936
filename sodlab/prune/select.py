"""Which channels of a CSNet go: scores from BatchNorm scales, the structural rules, and the
learned configuration they leave.

Every prunable channel ends in a BatchNorm; when its scale gamma is (close to) zero, the
channel's output no longer depends on the input. A channel is removed when its *score* is
below the threshold:

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

Which of the channels below the threshold may actually go (only those whose removal is
exact, by default) is decided in `sodlab.prune.fold` and passed in as ``removable``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.csnet import CSNet, CSNetConfig
from ..profiling import count_parameters

DEFAULT_THRESHOLD = 1e-20


def check_csnet(model: nn.Module) -> CSNet:
    model = getattr(model, "module", model)
    if not isinstance(model, CSNet):
        raise ConfigError(f"pruning needs a CSNet, got {type(model).__name__}")
    for name, m in model.named_modules():
        if isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
            raise ConfigError(f"pruning needs BatchNorm everywhere; {name} is {type(m).__name__}")
    return model


def csnet_blocks(model: CSNet) -> list[nn.Module]:
    """The ILBlocks in order: the stem, then every block of every stage."""
    return [model.stem] + [blk for stage in model.stage_modules() for blk in stage]


def bn_chain(block: nn.Module, s: int) -> list[tuple[Optional[nn.Module], nn.BatchNorm2d, nn.PReLU]]:
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
    model = check_csnet(model)
    cfg = model.config
    scores: dict[str, Tensor] = {}
    for b, block in enumerate(csnet_blocks(model)):
        for s, c in enumerate(cfg.blocks[b][1]):
            if c:
                g = torch.stack([bn.weight.detach().abs().double() for _, bn, _ in bn_chain(block, s)])
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



def select_channels(
    model: nn.Module,
    threshold: Optional[float] = DEFAULT_THRESHOLD,
    keep_fraction: Optional[float] = None,
    removable: Optional[Mapping[str, Tensor]] = None,
) -> PrunePlan:
    """Learned channel configuration of ``model``: channels whose score (`channel_scores`)
    is below ``threshold`` go. With ``keep_fraction`` the threshold is chosen instead, as the
    smallest that leaves at most that fraction of the parameters. ``removable`` (boolean
    masks by the keys of `channel_scores`): only those channels may go, the others stay
    whatever their score (`sodlab.prune.fold.exactly_removable` gives the exact ones)."""
    model = check_csnet(model)
    scores = channel_scores(model)
    if removable is not None:
        scores = {k: torch.where(removable[k], v, torch.full_like(v, math.inf)) for k, v in scores.items()}
    if keep_fraction is not None:
        threshold = _threshold_for_fraction(model, scores, float(keep_fraction))
    if threshold is None or not threshold >= 0:
        raise ConfigError(f"threshold must be a non-negative number, got {threshold}")
    return _plan(model, scores, float(threshold))


def first_nonfinite(model: nn.Module) -> Optional[str]:
    """The state-dict key of the first parameter or buffer holding a NaN or an infinity
    (None when all are finite): pruning such a model would fold NaN into its neighbours."""
    for key, value in model.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None
