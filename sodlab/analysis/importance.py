"""Which channels of a layer matter for a task: attributions with captum, and ablation.

Every task is expressed as a *target*: a module ``target(x, aux) -> (N,)`` giving one
scalar per image, with ``aux`` the per-image extra it needs (the region mask for saliency,
the class index for classification) and ``target.default_aux(x)`` to derive it from the
model's own prediction. The same channel-importance code then serves both tasks, which is
what makes their importances comparable.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

STAGE_ALIASES = ("stem", "stage1", "stage2", "stage3", "stage4")


# --- targets -------------------------------------------------------------------------
class SODTarget(nn.Module):
    """Mean saliency logit over a region: ``sum(logit * mask) / sum(mask)`` per image.

    ``aux`` is the region, (N,1,H,W) in {0,1} (e.g. the ground-truth mask). Without it,
    `default_aux` takes the model's own predicted region (logit > 0); an image whose
    region is empty falls back to all pixels, so the target is always defined.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @torch.no_grad()
    def default_aux(self, x: Tensor) -> Tensor:
        return (self.model(x)[:, :1] > 0).float()

    def forward(self, x: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        logits = self.model(x)[:, :1]
        if aux is None:
            aux = (logits.detach() > 0).float()
        mask = aux.to(logits.dtype)
        if mask.shape[-2:] != logits.shape[-2:]:
            mask = (F.interpolate(mask, size=logits.shape[-2:], mode="nearest") > 0.5).to(logits.dtype)
        empty = mask.flatten(1).sum(1) == 0
        if empty.any():
            mask = torch.where(empty.view(-1, 1, 1, 1), torch.ones_like(mask), mask)
        return (logits * mask).flatten(1).sum(1) / mask.flatten(1).sum(1)


class ClassLogitTarget(nn.Module):
    """The logit of one class per image; ``aux`` holds the class indices (N,) (e.g. the
    labels), and `default_aux` the predicted classes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @torch.no_grad()
    def default_aux(self, x: Tensor) -> Tensor:
        return self.model(x).argmax(1)

    def forward(self, x: Tensor, aux: Optional[Tensor] = None) -> Tensor:
        logits = self.model(x)
        if aux is None:
            aux = logits.detach().argmax(1)
        return logits.gather(1, aux.long().view(-1, 1)).squeeze(1)


def _inner(target: nn.Module) -> nn.Module:
    return getattr(target, "model", target)


def _aux_for(target: nn.Module, x: Tensor, aux: Optional[Tensor]) -> Optional[Tensor]:
    if aux is not None:
        return aux.to(x.device)
    fn = getattr(target, "default_aux", None)
    return fn(x) if fn is not None else None


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the duration (batch norm must not update on attribution passes)."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


# --- layers --------------------------------------------------------------------------
def resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """A module of ``model`` from a dotted name, or an alias ``stem``/``stage1``..``stage4``.

    An alias means the full-resolution activation that ends that block or stage of a CSNet
    (or its classifier twin): a single tensor, as captum's layer methods need. Stages 2-4
    end on one scale, so their alias is the whole stage output; for ``stem``/``stage1`` it
    is the full-resolution scale only.
    """
    model = _inner(model)
    if isinstance(layer, nn.Module):
        return layer
    if layer in STAGE_ALIASES:
        block = getattr(model, layer, None)
        if block is None:
            raise ConfigError(f"{type(model).__name__} has no {layer!r}")
        if isinstance(block, nn.Sequential):
            block = block[-1]
        return block.dw2.acts["0"]
    try:
        return model.get_submodule(layer)
    except AttributeError as exc:
        raise ConfigError(f"{type(model).__name__} has no layer {layer!r} (aliases: {', '.join(STAGE_ALIASES)})") from exc


# --- channel importance -------------------------------------------------------------
Method = Literal["grad_x_act", "conductance"]


def channel_attributions(
    target: nn.Module,
    inputs: Tensor,
    layer: str | nn.Module,
    method: Method = "grad_x_act",
    aux: Optional[Tensor] = None,
    n_steps: int = 16,
    batch_size: int = 8,
) -> Tensor:
    """Per-image, per-channel attribution (N, C) of ``target`` to the output of ``layer``.

    ``grad_x_act``: captum's `LayerGradientXActivation`, summed over positions (the
    first-order estimate of what zeroing the channel would cost); ``conductance``: captum's
    `LayerConductance` from an all-zero input (``n_steps`` Gauss-Legendre points), whose
    channels sum to ``target(x) - target(0)``.
    """
    from captum.attr import LayerConductance, LayerGradientXActivation

    module = resolve_layer(target, layer)
    device = next(_inner(target).parameters()).device
    out = []
    with eval_mode(target):
        for start in range(0, len(inputs), batch_size):
            x = inputs[start:start + batch_size].to(device)
            a = _aux_for(target, x, None if aux is None else aux[start:start + batch_size])
            extra = None if a is None else (a,)
            if method == "grad_x_act":
                attr = LayerGradientXActivation(target, module).attribute(x, additional_forward_args=extra)
            elif method == "conductance":
                attr = LayerConductance(target, module).attribute(x, baselines=0.0, additional_forward_args=extra, n_steps=n_steps)
            else:
                raise ConfigError(f"unknown attribution method {method!r}; use 'grad_x_act' or 'conductance'")
            out.append(attr.detach().flatten(2).sum(2).cpu() if attr.dim() > 2 else attr.detach().cpu())
    return torch.cat(out)


def channel_importance(
    target: nn.Module,
    inputs: Tensor,
    layer: str | nn.Module,
    method: Method = "grad_x_act",
    aux: Optional[Tensor] = None,
    n_steps: int = 16,
    batch_size: int = 8,
) -> Tensor:
    """Mean over images of `channel_attributions`: one importance per channel (C,)."""
    return channel_attributions(target, inputs, layer, method, aux, n_steps, batch_size).mean(0)


@contextlib.contextmanager
def zero_channels(module: nn.Module, channels: Sequence[int]) -> Iterator[None]:
    """While active, ``module``'s output has ``channels`` set to zero (a forward hook;
    the model itself is not modified)."""
    idx = list(channels)

    def hook(_m, _inp, out):
        if not isinstance(out, Tensor):
            raise ConfigError(f"cannot ablate channels of a {type(out).__name__} output; pick a layer with a single tensor output")
        out = out.clone()
        out[:, idx] = 0
        return out

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def ablation_importance(
    target: nn.Module,
    inputs: Tensor,
    layer: str | nn.Module,
    aux: Optional[Tensor] = None,
    channels: Optional[Sequence[int]] = None,
    batch_size: int = 16,
) -> Tensor:
    """Drop of the mean target when each channel of ``layer`` is zeroed alone (C,): captum's
    `LayerFeatureAblation` with one feature group per channel and a zero baseline. With
    ``channels``, only those are ablated (the others, one extra group, read 0).

    ``aux`` (region/class) is fixed from the intact model, so the drop measures the same
    quantity before and after ablation. Positive: the channel supports the target.
    """
    return ablation_attributions(target, inputs, layer, aux, channels, batch_size).mean(0)


def ablation_attributions(
    target: nn.Module,
    inputs: Tensor,
    layer: str | nn.Module,
    aux: Optional[Tensor] = None,
    channels: Optional[Sequence[int]] = None,
    batch_size: int = 16,
) -> Tensor:
    """`ablation_importance` per image (N, C): each image's drop of the target when each
    channel is zeroed alone (0 for channels not among ``channels``)."""
    from captum.attr import LayerFeatureAblation

    module = resolve_layer(target, layer)
    device = next(_inner(target).parameters()).device
    drops: list[Tensor] = []
    mask: Optional[Tensor] = None
    with eval_mode(target), torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            x = inputs[start:start + batch_size].to(device)
            a = _aux_for(target, x, None if aux is None else aux[start:start + batch_size])
            extra = None if a is None else (a,)
            if mask is None:  # the channel count, hence the groups, is the same for every batch
                mask, chosen = _channel_groups(target, module, x, extra, channels)
            attr = LayerFeatureAblation(target, module).attribute(x, layer_baselines=0.0, additional_forward_args=extra,
                                                                  layer_mask=mask)
            per_channel = attr.flatten(2)[:, :, 0] if attr.dim() > 2 else attr
            drops.append(torch.where(chosen, per_channel.cpu(), torch.zeros(())))
    return torch.cat(drops)


def _channel_groups(target: nn.Module, module: nn.Module, x: Tensor, extra: Optional[tuple],
                    channels: Optional[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """A captum layer mask giving each channel of ``module``'s output its own group (the unchosen
    channels share one last group), and which channels were chosen."""
    shapes: list[torch.Size] = []
    probe = module.register_forward_hook(lambda _m, _i, o: shapes.append(o.shape))
    try:
        target(x, *(extra or ()))
    finally:
        probe.remove()
    shape = shapes[0]
    n = shape[1]
    chosen = torch.zeros(n, dtype=torch.bool)
    chosen[list(range(n)) if channels is None else list(channels)] = True
    group = torch.full((n,), int(chosen.sum()), dtype=torch.long)
    group[chosen] = torch.arange(int(chosen.sum()))
    return group.view(1, n, *([1] * (len(shape) - 2))).to(x.device), chosen


def grad_cam(
    target: nn.Module,
    inputs: Tensor,
    layer: str | nn.Module,
    aux: Optional[Tensor] = None,
    relu: bool = True,
    normalize: bool = True,
    batch_size: int = 8,
) -> Tensor:
    """Grad-CAM of ``target`` at ``layer`` (captum's `LayerGradCam`), upsampled to the
    input size: (N, 1, H, W); with ``normalize`` each map is scaled to [0, 1]."""
    from captum.attr import LayerAttribution, LayerGradCam

    module = resolve_layer(target, layer)
    device = next(_inner(target).parameters()).device
    maps = []
    with eval_mode(target):
        for start in range(0, len(inputs), batch_size):
            x = inputs[start:start + batch_size].to(device)
            a = _aux_for(target, x, None if aux is None else aux[start:start + batch_size])
            attr = LayerGradCam(target, module).attribute(x, additional_forward_args=None if a is None else (a,), relu_attributions=relu)
            maps.append(LayerAttribution.interpolate(attr.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear").cpu())
    cam = torch.cat(maps)
    if normalize:
        flat = cam.flatten(1)
        lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
        cam = (cam - lo) / (hi - lo).clamp_min(1e-12)
    return cam


# --- comparing importances and maps --------------------------------------------------
def _vec(v) -> np.ndarray:
    return np.asarray(v.detach().cpu().numpy() if isinstance(v, Tensor) else v, dtype=np.float64).ravel()


def top_k(importance, k: int, absolute: bool = True) -> np.ndarray:
    """Indices of the ``k`` most important channels (by magnitude when ``absolute``)."""
    v = _vec(importance)
    if absolute:
        v = np.abs(v)
    return np.argsort(-v, kind="stable")[:k]


def topk_jaccard(a, b, k: int, absolute: bool = True) -> float:
    """Jaccard index |A & B| / |A | B| of the top-``k`` channel sets of two importance vectors."""
    if len(_vec(a)) != len(_vec(b)):
        raise ConfigError(f"importance vectors differ in length: {len(_vec(a))} vs {len(_vec(b))}")
    if not 1 <= k <= len(_vec(a)):
        raise ConfigError(f"k must be in 1..{len(_vec(a))}, got {k}")
    sa, sb = set(top_k(a, k, absolute).tolist()), set(top_k(b, k, absolute).tolist())
    return len(sa & sb) / len(sa | sb)


def chance_topk_jaccard(n: int, k: int) -> float:
    """Expected `topk_jaccard` of two independent random top-``k`` sets out of ``n``."""
    total = math.comb(n, k)
    exp = 0.0
    for i in range(max(0, 2 * k - n), k + 1):
        p = math.comb(k, i) * math.comb(n - k, k - i) / total
        exp += p * i / (2 * k - i)
    return exp


def rank_correlation(a, b, absolute: bool = True) -> float:
    """Spearman rank correlation of two importance vectors (NaN when one is constant)."""
    from scipy.stats import spearmanr

    va, vb = _vec(a), _vec(b)
    if len(va) != len(vb):
        raise ConfigError(f"importance vectors differ in length: {len(va)} vs {len(vb)}")
    if absolute:
        va, vb = np.abs(va), np.abs(vb)
    if np.ptp(va) == 0 or np.ptp(vb) == 0:
        return float("nan")
    return float(spearmanr(va, vb).statistic)


def map_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Per-image Pearson correlation of two stacks of maps (N, ...) (NaN for a flat map)."""
    x = a.detach().flatten(1).double()
    y = b.detach().flatten(1).double()
    if x.shape != y.shape:
        raise ConfigError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    den = x.norm(dim=1) * y.norm(dim=1)
    r = (x * y).sum(1) / den
    return torch.where(den > 0, r, torch.full_like(r, float("nan"))).float()
