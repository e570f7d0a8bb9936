"""Which device a computation runs on."""
from __future__ import annotations

from typing import Optional

import torch


def resolve_device(device: Optional[str | torch.device] = None) -> torch.device:
    """``None``/``"auto"``: CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def describe_device(device: Optional[str | torch.device] = None) -> str:
    """The device ``device`` resolves to, in words: ``"cuda:0 (NVIDIA H200)"``, ``"cpu (2 threads)"``."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"{dev.type} ({torch.get_num_threads()} threads)" if dev.type == "cpu" else str(dev)
