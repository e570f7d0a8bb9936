"""Model registry: name -> constructor, and family -> builder from a saved config.

A *name* (``csnet``, ``csnet-L-x2``, ``csf-res2net50``...) is what users type; a *family*
(``csnet``, ``csf``...) is a class attribute of every sodlab model, recorded by a checkpoint
with the model's plain-data config so that `sodlab.load` can rebuild any model, pruned ones
included.

This module imports no model (timm's pattern): each model module registers its own names
with `register_model` and its class with `register_family`, and ``sodlab.models`` imports
every model module, so that importing anything under ``sodlab.models`` fills the registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from ..errors import ConfigError

@dataclass(frozen=True)
class ModelEntry:
    name: str
    constructor: Callable[..., nn.Module]
    description: str


_MODELS: dict[str, ModelEntry] = {}
_FAMILIES: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {}


def register_model(name: str, description: str = "") -> Callable:
    """Decorator: register ``fn(**kw) -> nn.Module`` under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name].constructor is not fn:
            raise ConfigError(f"model name {name!r} is registered twice")
        _MODELS[name] = ModelEntry(name, fn, description or (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return deco


def register_family(cls_or_family: Any, builder: Callable[[Mapping[str, Any]], nn.Module] | None = None) -> Any:
    """Register how a model family is rebuilt from its saved config.

    As a class decorator, ``@register_family`` on a class with a ``family`` attribute and a
    ``from_config(config_dict)`` classmethod; or ``register_family(family, builder)``.
    """
    if builder is not None:
        _FAMILIES[str(cls_or_family)] = builder
        return builder
    cls = cls_or_family
    family = cls.__dict__.get("family")
    if not isinstance(family, str) or not hasattr(cls, "from_config"):
        raise ConfigError(f"{cls.__name__} needs its own `family` string and a `from_config` classmethod to be registered")
    _FAMILIES[family] = cls.from_config
    return cls


def list_models() -> list[str]:
    """Names accepted by `create_model`."""
    return sorted(_MODELS)


def model_descriptions() -> dict[str, str]:
    """Registered name -> one-line description."""
    return {n: e.description for n, e in sorted(_MODELS.items())}


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model, e.g. ``create_model("csnet", width=40)``."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(_MODELS))}")
    model = _MODELS[name].constructor(**kwargs)
    model.registry_name = name
    return model


def model_family(model: nn.Module) -> str:
    """The ``family`` class attribute of a sodlab model (what a checkpoint records)."""
    family = getattr(type(model), "family", None)
    if family is None or not hasattr(model, "config"):
        raise ConfigError(f"{type(model).__name__} is not a sodlab model (it needs a `family` and a `config`)")
    return family


def build_from_config(family: str, config: Mapping[str, Any]) -> nn.Module:
    """A model of ``family`` rebuilt from its saved plain-data ``config``."""
    if family not in _FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[family](config)
