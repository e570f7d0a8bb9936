"""Model registry: name -> constructor, and family -> builder from a saved config.

A *name* (``csnet``, ``csnet-L-x2``, ``csf-res2net50``...) is what users type; a *family*
(``csnet``, ``csf``...) is what a checkpoint records with the model's plain-data config, so
that `sodlab.load` can rebuild any model, pruned ones included.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

from torch import nn

from ..errors import ConfigError
from .csnet import CSNet, CSNetConfig, csnet_config


@dataclass(frozen=True)
class ModelEntry:
    name: str
    constructor: Callable[..., nn.Module]
    description: str


_MODELS: dict[str, ModelEntry] = {}
_FAMILIES: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {}
# Modules that register further models when imported (kept explicit, no import magic).
_MODEL_MODULES = ("sodlab.models.csf_res2net", "sodlab.models.classifier")
_loaded = False


def register_model(name: str, description: str = "") -> Callable:
    """Decorator: register ``fn(**kw) -> nn.Module`` under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = ModelEntry(name, fn, description or (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return deco


def register_family(family: str, builder: Callable[[Mapping[str, Any]], nn.Module]) -> None:
    """``builder(config_dict) -> model`` rebuilds a model of ``family`` from its saved config."""
    _FAMILIES[family] = builder


def _load_model_modules() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def list_models() -> list[str]:
    """Names accepted by `create_model`."""
    _load_model_modules()
    return sorted(_MODELS)


def model_descriptions() -> dict[str, str]:
    _load_model_modules()
    return {n: e.description for n, e in sorted(_MODELS.items())}


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model, e.g. ``create_model("csnet", width=40)``."""
    _load_model_modules()
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(_MODELS))}")
    model = _MODELS[name].constructor(**kwargs)
    model.registry_name = name
    return model


def model_family(model: nn.Module) -> str:
    family = getattr(type(model), "family", None)
    if family is None or not hasattr(model, "config"):
        raise ConfigError(f"{type(model).__name__} is not a sodlab model (it needs a `family` and a `config`)")
    return family


def build_from_config(family: str, config: Mapping[str, Any]) -> nn.Module:
    _load_model_modules()
    if family not in _FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[family](config)


# --- CSNet -------------------------------------------------------------------------
CSNet.family = "csnet"
register_family("csnet", lambda cfg: CSNet(CSNetConfig.from_dict(dict(cfg))))


def preset_config(name: str) -> CSNetConfig:
    """A learned channel configuration shipped with sodlab (``csnet-L-x1``, ``csnet-L-x2``)."""
    path = resources.files("sodlab.models") / "presets" / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"no CSNet preset named {name!r}")
    return CSNetConfig.from_dict(json.loads(path.read_text())["config"])


@register_model("csnet", "CSNet, unpruned: base width and split between scales (authors: 20, 0.5/0.5)")
def _csnet(width: int = 20, split: tuple[float, ...] = (0.5, 0.5), config: Any = None, num_classes: int = 1) -> CSNet:
    if config is not None:
        if isinstance(config, (str, Path)):
            config = CSNetConfig.from_json(config)
        elif isinstance(config, Mapping):
            config = CSNetConfig.from_dict(dict(config))
        if not isinstance(config, CSNetConfig):
            raise ConfigError(f"config must be a CSNetConfig, a dict or a JSON path, got {type(config).__name__}")
    else:
        config = csnet_config(width, split)
    if num_classes != config.num_classes:
        config = CSNetConfig.from_dict({**config.to_dict(), "num_classes": num_classes})
    return CSNet(config)


@register_model("csnet-L-x1", "CSNet-L-x1: the authors' learned channel numbers, 93,647 parameters")
def _csnet_l_x1(num_classes: int = 1) -> CSNet:
    return _csnet(config=preset_config("csnet-L-x1"), num_classes=num_classes)


@register_model("csnet-L-x2", "CSNet-L-x2: the authors' learned channel numbers, 140,894 parameters")
def _csnet_l_x2(num_classes: int = 1) -> CSNet:
    return _csnet(config=preset_config("csnet-L-x2"), num_classes=num_classes)
