"""A BatchNorm in eval mode as a per-channel affine map: the one place its folding arithmetic
is written (used by `sodlab.fast` to fold BatchNorms into convolutions and by `sodlab.prune`
to carry the constants of removed channels through them)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn


def bn_scale_shift(bn: nn.BatchNorm2d, dtype: Optional[torch.dtype] = None) -> tuple[Tensor, Tensor]:
    """Per-channel ``(scale, shift)`` with ``bn(x) == x * scale + shift`` in eval mode (running
    statistics), detached; computed in ``dtype`` when given (``torch.float64`` for folding
    constants exactly), else in the BatchNorm's own."""
    mean, var = bn.running_mean.detach(), bn.running_var.detach()
    weight = None if bn.weight is None else bn.weight.detach()
    bias = None if bn.bias is None else bn.bias.detach()
    if dtype is not None:
        mean, var = mean.to(dtype), var.to(dtype)
        weight = None if weight is None else weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    std = torch.sqrt(var + bn.eps)
    scale = weight / std if weight is not None else 1.0 / std
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    return scale, shift


def is_foldable_bn(m: Optional[nn.Module]) -> bool:
    """A BatchNorm2d with running statistics (so its eval mode is a fixed affine map)."""
    return isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None
