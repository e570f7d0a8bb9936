"""Channel surgery: a new, smaller CSNet with the surviving weights copied and the constants
of removed channels folded in (`slim`), and its report (`prune`, `output_change`).

By default only channels whose removal is exact go (`sodlab.prune.fold.exactly_removable`),
so the slim model computes what the full one computes. ``exact=False`` also removes
channels whose constant enters a zero-padded convolution or whose gamma is small but not
zero (and allows ``keep_fraction`` and ``fold=False``); the report then says where folding
was approximate and how much the output moved. Measured on the authors' released models
(random 224 px probe, `sodlab prune --approximate`): CSNet-L-x1 loses 9 channels (2.6% of
the parameters) and its probability map moves by up to 0.017 (mean 0.0014); CSNet-L-x2
loses 14 (3.2%) and moves by up to 0.10 (mean 0.0065); on the authors' astronaut photo by up
to 0.25 (x1) and 0.34 (x2). None of their gammas is exactly zero, so the exact default removes
nothing from them.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.csnet import CSNet
from ..profiling import count_parameters
from .fold import Folds, cat_index, compute_folds, exactly_removable, offsets
from .select import DEFAULT_THRESHOLD, PrunePlan, check_csnet, csnet_blocks, first_nonfinite, select_channels

logger = logging.getLogger(__name__)


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


def _copy_goct(dst: nn.Module, src: nn.Module, in_keep: Sequence[Tensor], out_keep: Sequence[Tensor], name: str, folds: Folds) -> None:
    rows = cat_index(src.conv.out_channels, out_keep)
    cols = cat_index(src.conv.in_channels, in_keep)
    dst.conv.weight.copy_(src.conv.weight[rows][:, cols])
    if src.conv.bias is not None:
        dst.conv.bias.copy_(src.conv.bias[rows])
    for s, k in enumerate(out_keep):
        if len(k):
            _copy_bn(dst.norms[str(s)], src.norms[str(s)], k, folds.mean_shift.get(f"{name}.norms.{s}"))
            _copy_prelu(dst.acts[str(s)], src.acts[str(s)], k)


@torch.no_grad()
def _surgery(model: CSNet, plan: PrunePlan, folds: Folds) -> CSNet:
    cfg, keep = model.config, plan.keep
    ref = next(model.parameters())
    new = CSNet(copy.deepcopy(plan.config)).to(device=ref.device, dtype=ref.dtype)
    src_blocks, dst_blocks = csnet_blocks(model), csnet_blocks(new)
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
        off = offsets(src.dilation_channels)
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


def slim(
    model: nn.Module,
    threshold: Optional[float] = DEFAULT_THRESHOLD,
    keep_fraction: Optional[float] = None,
    fold: bool = True,
    exact: bool = True,
) -> CSNet:
    """A smaller CSNet without the channels whose BatchNorm scale is below ``threshold``.

    ``exact`` (default): only channels whose removal is exact go (their output is zero, or
    a constant that folds exactly into the next layer; see `sodlab.prune.fold`), so the
    result computes what ``model`` computes. ``exact=False``: every channel below the
    threshold goes (or, with ``keep_fraction``, as many as leave at most that fraction of the
    parameters), constants are folded where they can be (``fold=False`` drops them) and
    `prune` reports how much the output moved.
    """
    return prune(model, threshold, keep_fraction=keep_fraction, fold=fold, probe_size=None, exact=exact)[0]


def prune(
    model: nn.Module,
    threshold: Optional[float] = DEFAULT_THRESHOLD,
    keep_fraction: Optional[float] = None,
    fold: bool = True,
    probe_size: Optional[int] = 128,
    seed: int = 0,
    warn: bool = True,
    exact: bool = True,
) -> tuple[CSNet, dict[str, Any]]:
    """`slim` plus a report: channel and parameter counts, the places where folding is
    approximate (none when ``exact``), and (``probe_size`` not None) the output change on a
    random input. ``warn``: log each note and each approximate fold as a warning (``False``:
    they are only in the report, for callers that summarise them).

    Raises `ConfigError` for a model with a NaN or infinite weight (naming its key), and
    for ``keep_fraction`` or ``fold=False`` with ``exact`` (both are approximate)."""
    full = check_csnet(model)
    bad = first_nonfinite(full)
    if bad is not None:
        raise ConfigError(f"pruning needs finite weights: {bad} holds NaN or inf")
    if exact and keep_fraction is not None:
        raise ConfigError("keep_fraction removes channels whose scale is small but not zero, which is never exact; "
                          "pass exact=False (sodlab prune --approximate)")
    if exact and not fold:
        raise ConfigError("fold=False drops the constants of removed channels, which is not exact; "
                          "pass exact=False (sodlab prune --approximate)")
    removable = exactly_removable(full, threshold) if exact and threshold is not None else None
    plan = select_channels(full, threshold, keep_fraction, removable=removable)
    folds = compute_folds(full, plan) if fold else Folds()
    if exact and folds.inexact:  # exactly_removable and compute_folds disagree: a bug, not bad input
        raise AssertionError(f"exact pruning produced approximate folds: {folds.inexact}")
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
        "exact_mode": bool(exact),
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

