"""Moving a backbone's weights between two models that hold it as ``backbone``.

The study model's classifier (``res2net-mini``, ``res2net50``) and saliency model
(``csf-res2net-mini``, ``csf-res2net50``) share the backbone and its parameter names, so
its weights (BatchNorm statistics included) move by state-dict key in either direction.
`transfer_backbone` says what it moved and what it left: nothing is dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError

BACKBONE_PREFIX = "backbone."


@dataclass
class TransferReport:
    """What `transfer_backbone` did, every list sorted.

    ``moved``: keys copied from source to destination; ``dst_unfilled``: keys of the
    destination left as they were (its head, and any backbone key the source lacks);
    ``src_unused``: keys of the source not copied (its head, backbone keys the destination
    lacks); ``shape_mismatches``: ``(key, source shape, destination shape)`` of backbone
    keys both hold with different shapes (not copied; also listed in ``dst_unfilled`` and
    ``src_unused``)."""

    moved: list[str] = field(default_factory=list)
    dst_unfilled: list[str] = field(default_factory=list)
    src_unused: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every backbone key of the destination was filled."""
        return not any(k.startswith(BACKBONE_PREFIX) for k in self.dst_unfilled)

    def summary(self) -> str:
        return (
            f"moved {len(self.moved)} backbone tensors; destination keys not filled: {len(self.dst_unfilled)}; "
            f"source keys not used: {len(self.src_unused)}; shape mismatches: {len(self.shape_mismatches)}"
        )


def _state(model: nn.Module, role: str) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)  # DDP / DataParallel wrappers
    state = model.state_dict()
    if not any(k.startswith(BACKBONE_PREFIX) for k in state):
        raise ConfigError(f"{role} model {type(model).__name__} has no `backbone` (no {BACKBONE_PREFIX}* keys)")
    return state


@torch.no_grad()
def transfer_backbone(src: nn.Module, dst: nn.Module, allow_mismatch: bool = False) -> TransferReport:
    """Copy the ``backbone.*`` weights and buffers of ``src`` into ``dst`` by key
    (classifier -> saliency model or back); heads are not touched.

    A backbone key whose shapes differ, or a backbone key of ``dst`` that ``src`` lacks,
    raises a `ConfigError` naming the first such key, before anything is copied, unless
    ``allow_mismatch``: then the rest is copied and the report lists what was left.
    """
    source, target = _state(src, "source"), _state(dst, "destination")
    backbone_src = {k for k in source if k.startswith(BACKBONE_PREFIX)}
    backbone_dst = {k for k in target if k.startswith(BACKBONE_PREFIX)}
    shared = sorted(backbone_src & backbone_dst)
    mismatches = [(k, tuple(source[k].shape), tuple(target[k].shape)) for k in shared if source[k].shape != target[k].shape]
    lacking = sorted(backbone_dst - backbone_src)
    if not allow_mismatch:
        if mismatches:
            k, a, b = mismatches[0]
            raise ConfigError(f"backbone weight {k}: source shape {a} does not fit destination shape {b} ({len(mismatches)} keys differ)")
        if lacking:
            raise ConfigError(f"backbone key {lacking[0]} of the destination is not in the source ({len(lacking)} keys missing)")
    bad = {k for k, _, _ in mismatches}
    moved = [k for k in shared if k not in bad]
    for k in moved:
        target[k].copy_(source[k])  # state_dict tensors share storage with the module's
    return TransferReport(
        moved=moved,
        dst_unfilled=sorted(set(target) - set(moved)),
        src_unused=sorted(set(source) - set(moved)),
        shape_mismatches=mismatches,
    )
