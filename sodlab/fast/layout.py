"""The outer wrapper of a fast model: inputs go in channels-last layout, outputs come back in
the default one (callers index and compare maps in that layout)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ChannelsLast(nn.Module):
    """Runs ``inner`` on channels-last inputs when ``channels_last``; 4-d outputs come back
    contiguous in the default layout."""

    def __init__(self, inner: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.inner = inner
        self.channels_last = channels_last

    def forward(self, x: Tensor):
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.inner(x)
        if isinstance(y, Tensor) and y.dim() == 4:
            y = y.contiguous()
        return y
