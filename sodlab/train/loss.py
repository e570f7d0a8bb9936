"""The task loss of a forward pass (BCE for saliency, cross-entropy for classification) and
the mixed-precision context it runs in."""
from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from .config import SALIENCY_LOSSES, TrainConfig
from .regularizers import at_least_float32


def task_loss(out: Any, target: Tensor, config: TrainConfig) -> Tensor:
    """The loss of ``out`` (a tensor, or a list of side outputs whose losses add up)."""
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    kind = config.resolved_loss
    total = None
    for o in outs:
        o = at_least_float32(o)
        if kind in SALIENCY_LOSSES:
            t = target.to(o.dtype)
            if t.dim() == o.dim() - 1:
                t = t.unsqueeze(1)
            if o.shape[-2:] != t.shape[-2:]:
                o = F.interpolate(o, size=t.shape[-2:], mode="bilinear", align_corners=False)
            if config.bce_reduction == "mean":
                l = F.binary_cross_entropy_with_logits(o, t)
            else:
                l = F.binary_cross_entropy_with_logits(o, t, reduction="sum") / o.shape[0]
            if kind == "bce+iou":
                l = l + soft_iou_loss(o, t)
        else:
            if (target < 0).any():
                raise DataError("classification needs a category label for every training image (found -1: no categories.csv?)")
            l = F.cross_entropy(o, target.long(), label_smoothing=config.label_smoothing)
        total = l if total is None else total + l
    return total


def soft_iou_loss(logits: Tensor, target: Tensor) -> Tensor:
    """1 - the soft intersection over union of sigmoid(``logits``) and ``target``, per image,
    averaged over the batch. BCE weighs every pixel alike; this term weighs each image's object
    as a whole, so that small objects count as much as large ones."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    union = (p + t - p * t).sum(1)
    return (1.0 - (inter + 1.0) / (union + 1.0)).mean()


def first(out: Any) -> Tensor:
    """The main output of a model that may also return side outputs."""
    return out[0] if isinstance(out, (list, tuple)) else out


def autocast(dev: torch.device, config: TrainConfig) -> contextlib.AbstractContextManager:
    if config.amp and dev.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, config.amp_dtype))
    return contextlib.nullcontext()
