"""Datasets, image I/O, transforms and the built-in synthetic benchmark.

``SODFolder`` reads a folder of images and masks; ``sodlab.data.io`` reads images robustly
and writes PNGs atomically (`write_png_atomic`, through `sodlab.atomic`); ``sodlab.data.transforms`` holds the training and evaluation
transforms; ``sodlab.data.synthetic`` generates the built-in benchmark.

Names are imported lazily so that the generator's worker processes do not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "SODFolder": "sodlab.data.folder",
    "ImageFolder": "sodlab.data.imagefolder",
    "read_categories": "sodlab.data.folder",
    "image_size": "sodlab.data.io",
    "read_gray": "sodlab.data.io",
    "read_image": "sodlab.data.io",
    "read_mask": "sodlab.data.io",
    "write_png_atomic": "sodlab.data.io",
    "generate": "sodlab.data.synthetic",
    "ensure_benchmark": "sodlab.data.synthetic",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sodlab.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
