"""sodlab's own checkpoints: one file with the model's family, plain-data config and weights,
its task (``"sod"`` or ``"classification"``) and, for a classifier trained on named classes,
their names (``class_names``, in label order), which `load` gives back as ``model.task`` and
``model.class_names``.

Files are written atomically (temporary file in the same folder, then rename) and read with
``torch.load(weights_only=True)``, so loading a checkpoint never executes code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from .atomic import atomic_path
from .errors import CheckpointError
from .models._registry import build_from_config, model_family
from .models._weights import first_non_finite, read_torch_file
from .models.csnet import INPUT_MULTIPLE, is_input_side
from .models.official import load_official_csnet

FORMAT = "sodlab-checkpoint"
VERSION = 1
TASKS = {"sod": "sod", "saliency": "sod", "classification": "classification"}
# Families that classify, for models from before every model class declared its `task`.
CLASSIFIER_FAMILIES = frozenset({"csnet-cls"})


def model_task(model: nn.Module) -> str:
    """``"classification"`` or ``"sod"``: the model's ``task`` (a class attribute, or restored
    from its checkpoint), else what its family is known to do (saliency by default)."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    declared = getattr(model, "task", None)
    if isinstance(declared, str) and declared in TASKS:
        return TASKS[declared]
    return "classification" if getattr(type(model), "family", None) in CLASSIFIER_FAMILIES else "sod"


def describe_model(model: nn.Module) -> str:
    """What a model is, for messages: ``a classifier (csnet-cls; 3 classes: a, b, c)``."""
    model = getattr(model, "module", model)
    name = getattr(model, "registry_name", None) or getattr(type(model), "family", type(model).__name__)
    if model_task(model) == "sod":
        return f"a saliency model ({name})"
    names = getattr(model, "class_names", None)
    classes = f"; {len(names)} classes: {', '.join(names)}" if names else ""
    return f"a classifier ({name}{classes})"


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename over it."""
    path = Path(path)
    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, tmp)
    return path


def model_record(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint stores to rebuild ``model``: family, registry name, config, weights."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    family = model_family(model)
    record = {
        "format": FORMAT,
        "version": VERSION,
        "family": family,
        "name": getattr(model, "registry_name", family),
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "task": model_task(model),
    }
    if getattr(model, "class_names", None):
        record["class_names"] = [str(c) for c in model.class_names]
    if getattr(model, "input_size", None) is not None:
        record["input_size"] = int(model.input_size)
    return record


def save(model: nn.Module, path: str | Path, extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model`` (plus optional plain-data ``extra``) to ``path`` atomically."""
    record = model_record(model)
    if extra:
        record["extra"] = dict(extra)
    return atomic_torch_save(record, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw record of a sodlab checkpoint (no code is executed)."""
    path = Path(path)
    record = read_torch_file(path, "checkpoint")
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        hint = " (an authors' checkpoint? use sodlab.load_official_csnet)" if isinstance(record, dict) and "state_dict" in record else ""
        raise CheckpointError(f"{path}: not a sodlab checkpoint{hint}")
    if record.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer sodlab (format version {record['version']})")
    return record


def model_from_record(record: Mapping[str, Any], source: str = "checkpoint") -> nn.Module:
    try:
        model = build_from_config(record["family"], record["config"])
    except Exception as exc:
        raise CheckpointError(f"{source}: cannot rebuild the model ({exc})") from exc
    try:
        model.load_state_dict(record["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: weights do not fit the stored configuration: {str(exc).splitlines()[0]}") from exc
    model.registry_name = record.get("name", record["family"])
    task = record.get("task")
    if task is not None and task not in TASKS:
        raise CheckpointError(f"{source}: unknown task {task!r} (expected one of {', '.join(sorted(TASKS))})")
    model.task = TASKS[task] if task is not None else model_task(model)  # older checkpoints: from the family
    names = record.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise CheckpointError(f"{source}: class_names must be a list of strings")
        model.class_names = list(names)
    size = record.get("input_size")
    if size is not None:
        # the side the model was trained at: predict and eval use it unless told otherwise
        if not is_input_side(size):
            raise CheckpointError(f"{source}: input_size must be a positive multiple of {INPUT_MULTIPLE}, got {size!r}")
        model.input_size = size
    return model


def load(path: str | Path) -> nn.Module:
    """Rebuild a model written by `save` (or a training run's ``last.pt``/``best.pt``), in eval mode."""
    return model_from_record(read_checkpoint(path), str(path)).eval()


def check_finite(model: nn.Module, source: str | Path) -> nn.Module:
    """``model`` unchanged, or a `CheckpointError` naming ``source`` and its first NaN/inf tensor
    (a diverged run's weights: every output would be NaN)."""
    bad = first_non_finite(model.state_dict())
    if bad is not None:
        raise CheckpointError(f"{source}: weight {bad!r} holds NaN or inf; the checkpoint is unusable (a diverged training run?)")
    return model


def load_weights(path: str | Path, model_name: Optional[str] = None, layer_config: Optional[str | Path] = None) -> nn.Module:
    """A model from either a sodlab checkpoint or the authors' CSNet ``.pth.tar``, for
    inference: weights holding NaN or inf are refused (`check_finite`).

    For the authors' format the layer configuration comes from ``layer_config`` (their
    ``.bin`` or JSON) or from the preset ``model_name`` (``csnet-L-x1``/``csnet-L-x2``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        return check_finite(load(path), path)
    except CheckpointError as exc:
        if "authors' checkpoint" not in str(exc):
            raise
    if layer_config is None and model_name is None:
        raise CheckpointError(f"{path}: an authors' checkpoint needs --model (csnet-L-x1 or csnet-L-x2) or --layer-config")
    return check_finite(load_official_csnet(path, layer_config, preset=model_name), path)
