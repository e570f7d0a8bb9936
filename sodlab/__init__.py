"""sodlab: CSNet, CSF+Res2Net and the semantic studies of salient object detection.

The public face is imported lazily so that `import sodlab` stays cheap (the CLI and the
notebooks import it first thing).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "create_model": "sodlab.models.registry",
    "list_models": "sodlab.models.registry",
    "load": "sodlab.checkpoint",
    "save": "sodlab.checkpoint",
    "load_official_csnet": "sodlab.models.official",
    "predict": "sodlab.inference",
    "predict_batch": "sodlab.inference",
    "evaluate": "sodlab.evaluation",
    "profile": "sodlab.profiling",
    "optimize_for_inference": "sodlab.fast",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sodlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
