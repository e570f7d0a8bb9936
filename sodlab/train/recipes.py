"""The recipes shipped with sodlab (``recipes/*.json``) and recipe files: a model and a
`TrainConfig`, as plain data."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from .config import TrainConfig


def list_recipes() -> list[str]:
    """Names of the recipes shipped with sodlab."""
    folder = resources.files("sodlab.train") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def read_recipe(name_or_path: str | Path) -> dict:
    """A recipe as plain data: ``{"description", "model": {"name", "args"}, "train": {...}}``.

    ``name_or_path``: a shipped recipe name (see `list_recipes`) or a JSON file, either in
    that form or a flat `TrainConfig` dict.
    """
    path = Path(name_or_path)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: no such recipe file")
        text, source = path.read_text(), str(path)
    else:
        res = resources.files("sodlab.train") / "recipes" / f"{name_or_path}.json"
        if not res.is_file():
            raise ConfigError(f"unknown recipe {str(name_or_path)!r}; shipped: {', '.join(list_recipes())} (or give a .json file)")
        text, source = res.read_text(), f"recipe {name_or_path}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    if "train" not in data:
        data = {"train": data}
    extra = sorted(set(data) - {"description", "model", "train", "notes"})
    if extra:
        raise ConfigError(f"{source}: unknown top-level keys {extra} (use description, model, train, notes)")
    TrainConfig.from_dict(data["train"], source)  # validate early, naming the file
    return data


def load_recipe(name_or_path: str | Path) -> TrainConfig:
    """The `TrainConfig` of a shipped recipe (``csnet-paper``, ``quick``, ...) or a JSON file."""
    data = read_recipe(name_or_path)
    return TrainConfig.from_dict(data["train"], f"recipe {name_or_path}")
