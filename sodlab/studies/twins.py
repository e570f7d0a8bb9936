"""The studies' twins: a saliency model and a classifier with one encoder architecture, one
initialisation, the same images and the same augmentation, so that what differs between
them is the task.

Two families (`TWINS`):

* ``"res2net-mini"``: the paper's study model at CPU size, ``csf-res2net-mini`` (saliency)
  and ``res2net-mini`` (classification), each trained by its own shipped recipe
  (``csf-mini-quick``, ``classify-quick``), both with crops, flips and quarter turns;
* ``"csnet"``: CSNet and its classification twin, both with the studies' short ``quick``
  recipe (what the studies used before the study model existed; kept for comparison).

``width`` is the first stage's channel number (CSNet: its ``width``; Res2Net-mini: the stem
and first stage's ``planes``, the later stages doubling), so a study sweeps capacity the
same way in both families.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..data import SODFolder
from ..data.imagefolder import ImageTransform, labelled_images
from ..errors import ConfigError
from ..models.classifier import ENCODER_PREFIXES, classifier_from_sod, sod_from_classifier, transfer_encoder
from ..models.csnet import CSNet
from ..models.registry import create_model
from ..models.transfer import transfer_backbone
from ..train import load_recipe
from .common import folder_of, seeded, train_or_resume, validation_rows
from .rules import SCHEDULE_CHECK, check_epochs

# The twins' shared augmentation when the family asks for it: the classifier's (shapes have no
# upright), applied to image and mask together for saliency.
TURNS = {"hflip": True, "vflip": True, "rot90": True}


@dataclasses.dataclass(frozen=True)
class TwinSpec:
    """One family of twins: model names, each task's recipe, the layers read by the
    channel analyses, and whether the family trains with `TURNS` augmentation."""

    name: str
    sod_model: str
    cls_model: str
    sod_recipe: str
    cls_recipe: str
    layers: tuple[str, ...]
    turns: bool

    def recipe(self, task: str) -> str:
        return self.sod_recipe if task == "sod" else self.cls_recipe

    def augmentation(self) -> dict[str, bool]:
        """The training flips and turns of both twins (`datasets` and the recipes)."""
        return dict(TURNS) if self.turns else {"hflip": True, "vflip": False, "rot90": False}


TWINS = {
    "res2net-mini": TwinSpec("res2net-mini", "csf-res2net-mini", "res2net-mini", "csf-mini-quick", "classify-quick",
                             ("backbone.layer2", "backbone.layer3", "backbone.layer4"), turns=True),
    "csnet": TwinSpec("csnet", "csnet", "csnet-cls", "quick", "quick", ("stage2", "stage3", "stage4"), turns=False),
}


def twin_spec(name: str | TwinSpec) -> TwinSpec:
    if isinstance(name, TwinSpec):
        return name
    if name not in TWINS:
        raise ConfigError(f"twins {name!r}: expected one of {', '.join(TWINS)}")
    return TWINS[name]


def _res2net_config(width: int) -> dict[str, Any]:
    return {"planes": [width, 2 * width, 4 * width, 8 * width], "stem_width": width}


def sod_model(spec: str | TwinSpec, width: int, seed: int) -> nn.Module:
    """A fresh saliency model of the family, initialised from ``seed``."""
    spec = twin_spec(spec)
    if spec.name == "csnet":
        return seeded(lambda: create_model("csnet", width=width), seed)
    return seeded(lambda: create_model(spec.sod_model, config=_res2net_config(width)), seed)


def cls_model(spec: str | TwinSpec, width: int, num_classes: int, seed: int) -> nn.Module:
    """A fresh classifier of the family whose encoder starts where `sod_model` (same
    arguments) starts: the same initial weights, so the twins differ only by their task."""
    spec = twin_spec(spec)
    if spec.name == "csnet":
        cls = seeded(lambda: create_model("csnet-cls", width=width, num_classes=num_classes), seed)
        transfer_encoder(sod_model(spec, width, seed), cls)
        return cls
    cls = seeded(lambda: create_model(spec.cls_model, num_classes=num_classes, config=_res2net_config(width)), seed)
    transfer_backbone(sod_model(spec, width, seed), cls)
    return cls


def class_readout(sod: nn.Module, num_classes: int) -> nn.Module:
    """A classifier on a copy of ``sod``'s encoder (weights and statistics), with a fresh head."""
    if isinstance(sod, CSNet):
        return classifier_from_sod(sod, num_classes)
    cls = create_model("res2net-mini", num_classes=num_classes, config=sod.backbone.config.to_dict())
    transfer_backbone(sod, cls)
    return cls


def sod_readout(classifier: nn.Module, seed: int) -> nn.Module:
    """A saliency model on a copy of ``classifier``'s encoder, with a fresh head seeded by ``seed``."""
    if not hasattr(classifier, "backbone"):
        return seeded(lambda: sod_from_classifier(classifier), seed)
    sod = seeded(lambda: create_model("csf-res2net-mini", config=classifier.backbone.config.to_dict()), seed)
    transfer_backbone(classifier, sod)
    return sod


def encoder_modules(model: nn.Module) -> list[nn.Module]:
    """The encoder's modules: a family model's ``backbone``, or CSNet's stem and stages."""
    if hasattr(model, "backbone"):
        return [model.backbone]
    names = {p.rstrip(".") for p in ENCODER_PREFIXES}
    return [m for name, m in model.named_children() if name in names]


def encoder_digest(model: nn.Module) -> str:
    """A short hash of the encoder's weights and BatchNorm statistics: what a run trained on
    top of a frozen copy of it is keyed by, so that another encoder (a classifier trained longer,
    say) never reuses a head trained on this one."""
    return modules_digest(encoder_modules(model))


def modules_digest(modules: Sequence[nn.Module]) -> str:
    """`encoder_digest` of the given modules (weights and BatchNorm statistics, in key order)."""
    h = hashlib.sha1()
    for m in modules:
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:10]


def recipe_digest(spec: str | TwinSpec, task: str) -> str:
    """A short hash of the family's shipped recipe for ``task``: part of the name of a run keyed
    by its encoder, so that a recipe changed since (a loss, an optimiser) trains a new run
    instead of meeting the old one's config."""
    return _json_digest(load_recipe(twin_spec(spec).recipe(task)).to_dict())[:6]


def recipes_digest(spec: str | TwinSpec) -> str:
    """A short hash of both of the family's shipped recipes (saliency and classification): part
    of the name of a study folder whose runs are not in a shared store (04's splits, 05's
    arms), so that a recipe changed since trains new runs beside the old ones instead of
    stopping on the resume check."""
    return _json_digest([recipe_digest(spec, task) for task in ("sod", "classification")])[:6]


def _json_digest(obj: Any) -> str:
    """The SHA-1 of ``obj`` as canonical JSON: how run names hash configs (`run_key`, `recipe_digest`)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def encoder_parameters(model: nn.Module) -> int:
    return sum(p.numel() for m in encoder_modules(model) for p in m.parameters())


def recipe_overrides(spec: str | TwinSpec, task: str, epochs: int, batch_size: Optional[int] = None,
                     image_size: Optional[int] = None) -> dict[str, Any]:
    """What a study changes in a twin's recipe: its epochs, the family's flips and turns, and
    for the CSNet family (whose one recipe serves both tasks) the batch size. Res2Net-mini
    keeps each recipe's own batch size and learning rate: they were tuned together.
    ``image_size`` (the side the study's datasets resize to) is recorded in the checkpoint, so
    that ``sodlab eval`` and ``predict`` run the model at the size it was trained at."""
    spec = twin_spec(spec)
    out: dict[str, Any] = {"epochs": int(epochs), **spec.augmentation()}
    if image_size is not None:
        out["image_size"] = int(image_size)
    if spec.name == "csnet" and batch_size is not None:
        out["batch_size"] = int(batch_size)
    # the study builds (and preloads) its datasets itself (`datasets`, `classification_train`);
    # the value is part of `run_key`, so it stays what the stored runs were keyed with
    out["preload"] = False
    return out


def classification_train(spec: str | TwinSpec, data_root: str | Path, train: Dataset, image_size: int,
                         categories: Optional[Sequence[str]] = None, preload: bool = True) -> Dataset:
    """The classifier's training images: the same images as ``train`` (a `SODFolder` of
    ``data_root/train`` or a `Subset` of it) with the classification transform (crop, the
    family's flips and turns) and, for the Res2Net family, decoded once into memory and
    augmented a batch at a time (`LabelledImages.preload`; the images ``train``'s folder holds
    in memory already, when preloaded, are not decoded again). ``categories`` fixes label
    indices (default: the folder's own). The CSNet family trains on ``train`` itself, as before."""
    spec = twin_spec(spec)
    if spec.name == "csnet":
        return train
    parent, indices = base_items(train)
    names = list(categories or getattr(parent, "category_names", None) or [])
    folder = folder_of(parent, Path(data_root) / "train")
    if folder is None or folder.category_names != names:
        folder = SODFolder(Path(data_root) / "train", category_names=names or None)
    ds = labelled_images(folder, ImageTransform(image_size, train=True, **spec.augmentation()))
    if preload:
        ds.preload()
    return ds if indices is None else Subset(ds, indices)


def base_items(ds: Dataset) -> tuple[Dataset, Optional[list[int]]]:
    """The dataset under any `Subset`s of ``ds`` and the indices into it of ``ds``'s items
    (None when ``ds`` is no `Subset`): a subset of a subset (04's seen categories of the
    training split) indexes its parent subset, not the folder."""
    indices = None
    while isinstance(ds, Subset):
        indices = list(ds.indices) if indices is None else [int(ds.indices[i]) for i in indices]
        ds = ds.dataset
    return ds, indices


def run_key(spec: str | TwinSpec, task: str, width: int, seed: int, data: str | Path, overrides: dict[str, Any],
            images: Optional[Sequence[int]] = None, extra: Optional[dict[str, Any]] = None) -> str:
    """A run folder name in a shared model store (`twin_runs`): the family, task, width
    and seed in clear, then a hash of everything else that makes the model what it is (the
    data folder, the recipe with its overrides, which training images, any ``extra``)."""
    spec = twin_spec(spec)
    config = load_recipe(spec.recipe(task)).replace(**{"image_size": None, **overrides}).to_dict()
    digest = _json_digest({"data": str(Path(data).resolve()), "config": config, "extra": extra or {},
                           "images": hashlib.sha1(np.asarray(images if images is not None else [], dtype=np.int64).tobytes()).hexdigest()})
    return f"{spec.name}-{task}-w{width}-seed{seed}-{digest[:10]}"


def train_twin(spec: str | TwinSpec, task: str, model: nn.Module, train: Dataset, val: Optional[Dataset], run_dir: Path,
               epochs: int, seed: int, device: torch.device, batch_size: Optional[int] = None, progress: bool = False,
               image_size: Optional[int] = None, **overrides: Any) -> tuple[nn.Module, Any]:
    """`train_or_resume` with the family's recipe for ``task`` (``"sod"`` or
    ``"classification"``) and `recipe_overrides`; ``overrides`` go to the config last."""
    spec = twin_spec(spec)
    over = {**recipe_overrides(spec, task, epochs, batch_size, image_size), **overrides}
    over.pop("epochs")
    size = over.pop("batch_size", None)
    return train_or_resume(model, train, val, run_dir, epochs, size, seed, device, task=task, recipe=spec.recipe(task),
                           progress=progress, **over)


def train_checked(spec: str | TwinSpec, task: str, make: Callable[[], nn.Module], train: Dataset, val: Optional[Dataset],
                  run_dir: Path, epochs: int, seed: int, device: torch.device, name: str, rows: list[dict[str, Any]],
                  check: bool, batch_size: Optional[int] = None, progress: bool = False, image_size: Optional[int] = None,
                  **overrides: Any) -> tuple[nn.Module, Any]:
    """`train_twin` of a model from ``make`` into ``run_dir``, its validation curve appended to
    ``rows`` under ``name`` (`validation_rows`); with ``check`` (and a validation split) the
    same recipe again without the last quarter of its epochs (`check_epochs`) into
    ``schedule-check/`` beside ``run_dir``, for its curve alone, appended as ``name`` +
    `SCHEDULE_CHECK`: the plateau gate's evidence
    (`sodlab.studies.rules.plateau_gate`). Returns the model and log of the run itself."""
    kw = dict(batch_size=batch_size, progress=progress, image_size=image_size, **overrides)
    model, log = train_twin(spec, task, make(), train, val, Path(run_dir), epochs, seed, device, **kw)
    rows.extend(validation_rows(name, log))
    shorter = check_epochs(epochs) if check and val is not None else None  # None: no check, and the gate lacks its evidence
    if shorter:
        _, check_log = train_twin(spec, task, make(), train, val, Path(run_dir).parent / "schedule-check" / Path(run_dir).name,
                                  shorter[0], seed, device, **kw)
        rows.extend(validation_rows(name + SCHEDULE_CHECK, check_log))
    return model, log


def twin_runs(spec: str | TwinSpec, data_root: str | Path, train: Dataset, width: int, seed: int, epochs: int, cls_epochs: int,
              batch_size: Optional[int], work: Path, model_store: Optional[str | Path] = None, image_size: Optional[int] = None,
              **overrides: Any) -> dict[str, Path]:
    """Where the twins trained on ``train`` live: ``model_store/<run_key>`` when a shared store
    is given (any notebook asking for the same twins finds them there), else ``work/sod`` and
    ``work/classifier``. ``overrides``: what the caller changes in both recipes besides
    `recipe_overrides` (e.g. a regulariser), part of the key."""
    spec = twin_spec(spec)
    if model_store is None:
        return {"sod": Path(work) / "sod", "classification": Path(work) / "classifier"}
    images = base_items(train)[1]
    out = {}
    for task, n in (("sod", epochs), ("classification", cls_epochs)):
        over = {**recipe_overrides(spec, task, n, batch_size, image_size), **overrides}
        out[task] = Path(model_store) / run_key(spec, task, width, seed, data_root, over, images=images)
    return out
