"""Regularisers on BatchNorm scales (gamma), for any network with BatchNorm.

Channel pruning by BN scale works when training drives the gammas of useless channels to
zero. Four ways to shrink them are compared in the studies:

* `DynamicWeightDecay` (CSNet's, "dwd"): ``R = 1/2 * sum_c w_b * S_c * gamma_c**2`` where
  ``S_c`` is the batch mean of ``|global average pool|`` of channel ``c``'s output, detached,
  and ``w_b`` a weight per scale (1 in the authors' released setting). Channels whose
  output carries little signal are decayed little per unit of gamma, so the decay tracks
  what the channel actually contributes rather than its parameter magnitude.
* `L2Gamma` ("l2"): ``R = 1/2 * sum_c gamma_c**2`` (plain L2 / weight decay on gamma).
* `L1Gamma` ("l1"): ``R = sum_c |gamma_c|`` (network slimming).
* `NoRegularizer` ("none").

The loss is ``task_loss + weight * R``. Every regulariser but "none" owns the gammas it
covers: they are excluded from the optimizer's ordinary weight decay (see `param_groups`),
so the regulariser alone decides how they shrink.

Which BatchNorms are covered (``scope``):

* ``"ilblocks"``: the per-scale norm + PReLU modules of every CSNet ILBlock (``conv``,
  ``dw1``, ``dw2``; the stem included, the CSF head not), as the authors do. ``S_c`` is
  measured on the module's output, i.e. after BN *and* PReLU, per scale.
* ``"all"``: every trainable affine BatchNorm. Inside a per-scale norm + activation module
  (anything with ``norms`` and ``acts`` ModuleDicts) ``S_c`` is taken after the activation;
  elsewhere, where the following activation is unknown, on the BatchNorm's own output.
* ``"auto"`` (default): ``"ilblocks"`` when the model has ILBlocks, else ``"all"``.

BatchNorms whose weight does not require gradients (frozen BN) are never covered.

Batch reduction of ``S_c`` (documented because the authors' code is indirect about it): ours
averages ``|GAP|`` over the samples of the forward pass, ``S_c = mean_n |mean_hw y[n,c]|``.
The authors' hook sums ``w_b * |GAP| * gamma**2`` over samples *and* channels and their
training loop divides the accumulated sum by the configured batch size; with their
``drop_last=True`` loader every batch is full, so both are the batch mean. Several forward
passes before one `penalty` call (the authors accumulate them too) add up.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError
from ..models.csnet import ILBlock

SCOPES = ("auto", "ilblocks", "all")
# The authors' typo: their optimizer set-up picks the BN weights of `conv1x1` and
# `conv3x3_1` twice and never `conv3x3_2`, so the second depthwise conv's gammas (our
# `dw2`) get both the dynamic and the ordinary weight decay.
AUTHORS_TYPO_ROLE = "dw2"


@dataclass(frozen=True)
class BNUnit:
    """One covered BatchNorm.

    ``bn_name``: qualified name of the BatchNorm; ``owner``: qualified name of the module
    whose output is measured for ``S`` (the BN itself or its norm + activation module);
    ``index``: position of this BN's tensor in the owner's output list (its scale), ``None``
    when the owner returns a tensor; ``scale_weight``: ``w_b``.
    """

    bn_name: str
    bn: _BatchNorm
    owner: str
    index: Optional[int]
    scale_weight: float = 1.0

    @property
    def role(self) -> str:
        """Last component of the owner's name (``conv``, ``dw1``, ``dw2`` in an ILBlock)."""
        return self.owner.rsplit(".", 1)[-1]


def at_least_float32(t: Tensor) -> Tensor:
    """``t`` in float32 when it is in a half type, else as it is: losses and penalties are
    summed in float32 under mixed precision, and a float64 model keeps float64 throughout."""
    return t.float() if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64) else t


def _is_norm_act(module: nn.Module) -> bool:
    return isinstance(getattr(module, "norms", None), nn.ModuleDict) and isinstance(getattr(module, "acts", None), nn.ModuleDict)


def _trainable_bn(m: nn.Module) -> bool:
    return isinstance(m, _BatchNorm) and m.affine and m.weight is not None and m.weight.requires_grad


def _scale_weight(weights: Optional[Sequence[float]], scale: int) -> float:
    if weights is None:
        return 1.0
    if scale >= len(weights):
        raise ConfigError(f"scale weights {list(weights)} have no entry for scale {scale}")
    return float(weights[scale])


def find_bn_units(model: nn.Module, scope: str = "auto", scale_weights: Optional[Sequence[float]] = None) -> list[BNUnit]:
    """The BatchNorms a regulariser covers in ``model`` (see the module docstring)."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown regulariser scope {scope!r}; use one of {SCOPES}")
    model = getattr(model, "module", model)  # DistributedDataParallel
    if scope == "auto":
        scope = "ilblocks" if any(isinstance(m, ILBlock) for m in model.modules()) else "all"
    units: list[BNUnit] = []
    seen: set[int] = set()

    def add_norm_act(name: str, mod: nn.Module) -> None:
        for key, bn in mod.norms.items():
            if _trainable_bn(bn) and id(bn) not in seen:
                seen.add(id(bn))
                scale = int(key)
                units.append(BNUnit(f"{name}.norms.{key}", bn, name, scale, _scale_weight(scale_weights, scale)))

    if scope == "ilblocks":
        for bname, block in model.named_modules():
            if isinstance(block, ILBlock):
                for role in ("conv", "dw1", "dw2"):
                    add_norm_act(f"{bname}.{role}" if bname else role, getattr(block, role))
    else:
        for name, mod in model.named_modules():
            if _is_norm_act(mod):
                add_norm_act(name, mod)
        for name, mod in model.named_modules():
            if _trainable_bn(mod) and id(mod) not in seen:
                seen.add(id(mod))
                units.append(BNUnit(name, mod, name, None, _scale_weight(scale_weights, 0)))
    return units


class Regularizer:
    """Base class: a penalty on the gammas of `find_bn_units`. Use as

    >>> reg = DynamicWeightDecay(weight=3.0).attach(model)
    >>> with reg.recording():
    ...     out = model(x)
    >>> loss = task_loss(out) + reg.weight * reg.penalty()

    Args:
        weight: multiplier of ``R`` in the loss.
        scope: which BatchNorms (``"auto"``, ``"ilblocks"``, ``"all"``).
        scale_weights: ``w_b`` per scale index (default 1 for every scale).
    """

    name = "base"

    def __init__(self, weight: float = 0.0, scope: str = "auto", scale_weights: Optional[Sequence[float]] = None) -> None:
        if scope not in SCOPES:
            raise ConfigError(f"unknown regulariser scope {scope!r}; use one of {SCOPES}")
        self.weight = float(weight)
        self.scope = scope
        self.scale_weights = None if scale_weights is None else [float(w) for w in scale_weights]
        self.units: list[BNUnit] = []

    def attach(self, model: nn.Module) -> "Regularizer":
        """Find the covered BatchNorms of ``model``; returns ``self``."""
        self.detach()
        self.units = find_bn_units(model, self.scope, self.scale_weights)
        return self

    def detach(self) -> None:
        """Remove anything `attach` installed on the model."""
        self.units = []

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Forward passes inside this context count for the next `penalty` (a no-op for
        regularisers that need no activations)."""
        yield

    def gammas(self) -> list[nn.Parameter]:
        return [u.bn.weight for u in self.units]

    def no_weight_decay(self) -> list[nn.Parameter]:
        """Parameters to take out of the optimizer's ordinary weight decay."""
        return self.gammas()

    def penalty(self) -> Tensor:
        """``R`` (unweighted) for the current parameters and recorded forward passes."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups: everything trainable with ``weight_decay``, except
        `no_weight_decay`, which get 0."""
        excluded = {id(p) for p in self.no_weight_decay()}
        model = getattr(model, "module", model)
        normal = [p for p in model.parameters() if p.requires_grad and id(p) not in excluded]
        picked = [p for p in model.parameters() if p.requires_grad and id(p) in excluded]
        groups = [{"params": normal, "weight_decay": float(weight_decay)}]
        if picked:
            groups.append({"params": picked, "weight_decay": 0.0})
        return groups

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight:g}, scope={self.scope!r}, units={len(self.units)})"


class NoRegularizer(Regularizer):
    """No penalty; every gamma stays in the ordinary weight decay."""

    name = "none"

    def no_weight_decay(self) -> list[nn.Parameter]:
        return []

    def penalty(self) -> Tensor:
        return torch.zeros(())


class L2Gamma(Regularizer):
    """``R = 1/2 * sum_c w_b * gamma_c**2``."""

    name = "l2"

    def penalty(self) -> Tensor:
        if not self.units:
            return torch.zeros(())
        return 0.5 * sum(u.scale_weight * at_least_float32(u.bn.weight).pow(2).sum() for u in self.units)


class L1Gamma(Regularizer):
    """``R = sum_c w_b * |gamma_c|`` (network slimming)."""

    name = "l1"

    def penalty(self) -> Tensor:
        if not self.units:
            return torch.zeros(())
        return sum(u.scale_weight * at_least_float32(u.bn.weight).abs().sum() for u in self.units)


class DynamicWeightDecay(Regularizer):
    """CSNet's dynamic weight decay, measured with forward hooks (no model changes).

    Args:
        weight, scope, scale_weights: see `Regularizer` (the authors: 3.0, ILBlocks, 1).
        authors_typo: reproduce the authors' optimizer set-up, which leaves the gammas of
            each ILBlock's second depthwise convolution (``dw2``) in the ordinary weight
            decay as well (see ``AUTHORS_TYPO_ROLE``).
    """

    name = "dwd"

    def __init__(self, weight: float = 3.0, scope: str = "auto", scale_weights: Optional[Sequence[float]] = None, authors_typo: bool = False) -> None:
        super().__init__(weight, scope, scale_weights)
        self.authors_typo = bool(authors_typo)
        self._handles: list = []
        self._records: list[tuple[BNUnit, Tensor]] = []
        self._active = False

    def attach(self, model: nn.Module) -> "DynamicWeightDecay":
        super().attach(model)
        by_owner: dict[str, list[BNUnit]] = {}
        for u in self.units:
            by_owner.setdefault(u.owner, []).append(u)
        modules = dict(getattr(model, "module", model).named_modules())
        for owner, units in by_owner.items():
            self._handles.append(modules[owner].register_forward_hook(self._hook(units)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._records = []
        super().detach()

    def _hook(self, units: list[BNUnit]):
        def hook(module: nn.Module, inputs, output) -> None:
            if not self._active:
                return
            for u in units:
                y = output if u.index is None else output[u.index]
                if y is None:
                    continue
                y = at_least_float32(y.detach())
                gap = y.mean(dim=tuple(range(2, y.dim()))) if y.dim() > 2 else y
                self._records.append((u, gap.abs().mean(dim=0)))

        return hook

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        prev, self._active = self._active, True
        try:
            yield
        finally:
            self._active = prev

    def no_weight_decay(self) -> list[nn.Parameter]:
        if self.authors_typo:
            return [u.bn.weight for u in self.units if u.role != AUTHORS_TYPO_ROLE]
        return self.gammas()

    def penalty(self) -> Tensor:
        """``R`` from the forward passes recorded since the last call (then forgotten)."""
        records, self._records = self._records, []
        if not records:
            return torch.zeros(())
        return 0.5 * sum(u.scale_weight * (s * at_least_float32(u.bn.weight).pow(2)).sum() for u, s in records)

    def clear(self) -> None:
        """Forget recorded forward passes (e.g. after a skipped step)."""
        self._records = []


REGULARIZERS = {"dwd": DynamicWeightDecay, "l2": L2Gamma, "l1": L1Gamma, "none": NoRegularizer}
# Defaults when a config gives no weight: the authors' 3.0 for DWD, their ordinary weight
# decay 5e-3 for L2 (so "l2" equals plain weight decay on gamma), network slimming's 1e-4.
DEFAULT_WEIGHTS = {"dwd": 3.0, "l2": 5e-3, "l1": 1e-4, "none": 0.0}


def build_regularizer(
    name: str,
    weight: Optional[float] = None,
    scope: str = "auto",
    scale_weights: Optional[Sequence[float]] = None,
    authors_typo: bool = False,
) -> Regularizer:
    """A regulariser by name (``dwd``, ``l2``, ``l1``, ``none``), not yet attached."""
    if name not in REGULARIZERS:
        raise ConfigError(f"unknown regularizer {name!r}; use one of {sorted(REGULARIZERS)}")
    w = DEFAULT_WEIGHTS[name] if weight is None else float(weight)
    if name == "dwd":
        return DynamicWeightDecay(w, scope, scale_weights, authors_typo=authors_typo)
    if authors_typo:
        raise ConfigError("authors_typo only applies to the 'dwd' regularizer")
    return REGULARIZERS[name](w, scope, scale_weights)
