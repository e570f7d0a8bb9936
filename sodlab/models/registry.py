"""The registry's public path (``sodlab.models.registry``), kept for existing imports.

The registry itself lives in `sodlab.models._registry` and imports no model; the model
modules register themselves when ``sodlab.models`` imports them.
"""
from __future__ import annotations

from ._registry import (
    ModelEntry,
    build_from_config,
    create_model,
    list_models,
    model_descriptions,
    model_family,
    register_family,
    register_model,
)
from .csnet import preset_config

__all__ = [
    "ModelEntry", "build_from_config", "create_model", "list_models", "model_descriptions", "model_family",
    "preset_config", "register_family", "register_model",
]
