"""Parameters and multiply-accumulates (MACs) of a model.

MACs come from ``torch.utils.flop_counter`` (one MAC = two FLOPs, convolutions and matrix
products only): they count what the model actually computes, so a gOctConv block that
max-pools before convolving is counted at the pooled resolution. Papers often report other
conventions; `profile` reports ours, and says so in its ``convention`` field.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: nn.Module, size: int | tuple[int, int] = 224, batch: int = 1) -> int:
    """MACs of one forward pass on ``batch`` images of ``size`` (eval mode, CPU)."""
    h, w = (size, size) if isinstance(size, int) else size
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(batch, 3, h, w, device=device)
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def profile(model: nn.Module, size: int | tuple[int, int] = 224) -> dict[str, Any]:
    """``{"params", "macs", "gmacs", "size", "convention"}`` for one image of ``size``."""
    macs = count_macs(model, size)
    return {
        "params": count_parameters(model),
        "macs": int(macs),
        "gmacs": macs / 1e9,
        "size": size,
        "convention": "torch.utils.flop_counter: multiply-accumulates of convolutions and matmuls actually executed",
    }
