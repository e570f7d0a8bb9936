"""Scoring saliency maps: a model on a dataset folder, or a folder of saved maps.

`evaluate` predicts with the authors' test pipeline (`sodlab.inference.predict_batch`:
resize to ``size``, normalise, sigmoid, resize back to the image's original size, x255,
truncate) and scores every map against its mask at the original resolution.
`evaluate_folders` scores maps already on disk. Both return the flat scalars of
`sodlab.metrics.SODMetrics.get_results` plus ``"protocol"`` and, under ``"curves"``, the PR and
F-threshold curves as pandas DataFrames (for plotting; drop them before writing JSON).

`evaluate_classifier` scores a classifier on labelled images (an `ImageFolder`, or a
`SODFolder` with ``categories.csv``): `sodlab.metrics.ClassificationMetrics` (top-1, per-class
accuracy, confusion matrix), labels matched to the model's classes by name. `evaluate` given a
classifier does the same.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm
from torch import nn
from torch.utils.data import Dataset, Subset

from .checkpoint import model_task
from .data.folder import IMAGE_SUFFIXES, MASK_DIRS, SODFolder
from .data.imagefolder import ImageFolder, ImageTransform, LabelledImages, is_image_folder, labelled_images
from .data.io import read_gray, read_mask
from .device import resolve_device
from .errors import DataError
from .inference import input_side, predict_batch
from .metrics import ClassificationMetrics, SODMetrics

log = logging.getLogger(__name__)
_MAX_LISTED = 20


def _resolve(dataset: Dataset | str | Path) -> tuple[SODFolder, list[int]]:
    """The `SODFolder` under ``dataset`` and the indices of its items to score."""
    if isinstance(dataset, (str, Path)):
        ds = SODFolder(dataset)
        return ds, list(range(len(ds)))
    if isinstance(dataset, SODFolder):
        return dataset, list(range(len(dataset)))
    if isinstance(dataset, Subset):
        base, idx = _resolve(dataset.dataset)
        return base, [idx[int(i)] for i in dataset.indices]
    raise DataError(f"evaluate() needs a SODFolder, a Subset of one, or a folder path; got {type(dataset).__name__}")


def evaluate(model: nn.Module, dataset: Dataset | str | Path, protocol: str = "standard", batch_size: int = 8,
             size: Optional[int] = None, device: Optional[str] = "auto", progress: bool = True,
             per_image: bool = False) -> dict[str, Any]:
    """Metrics of ``model`` on every item of ``dataset`` (a `SODFolder`, a `Subset` of one,
    or a dataset folder path), maps predicted at each image's original size.

    The dataset's own transform is not used: images are read raw and go through the
    inference pipeline at ``size`` (default: the side the model was trained at, else 224; see
    `sodlab.inference.input_side`). Returns the scalars of `SODMetrics.get_results`, plus
    ``"protocol"``, ``"size"`` and ``"curves"`` (DataFrames). A classifier is scored by
    `evaluate_classifier` instead (``protocol`` does not apply).

    ``per_image`` (salmetric protocol only): also ``"per_image"``, the scores of every item in
    dataset order (`SODMetrics.per_image`: ``curves`` and ``mae``), from which the max-F and
    MAE of any subset of the images follow (the studies' bootstraps over images).
    """
    if model_task(model) == "classification":
        return evaluate_classifier(model, dataset, batch_size=batch_size, size=size, device=device, progress=progress)
    size = input_side(size, model)
    ds, indices = _resolve(dataset)
    if not indices:
        raise DataError(f"{ds.root}: nothing to evaluate")
    meter = SODMetrics(protocol, per_image=per_image)
    with tqdm(total=len(indices), unit="img", desc="evaluate", disable=not progress) as bar:
        for start in range(0, len(indices), batch_size):
            pairs = [ds.read(i) for i in indices[start:start + batch_size]]
            maps = predict_batch(model, [img for img, _ in pairs], size=size, device=device, batch_size=batch_size)
            for sal, (_, mask) in zip(maps, pairs):
                meter.step(np.asarray(sal, dtype=np.uint8), mask)
            bar.update(len(pairs))
    out = {**meter.get_results(), "protocol": protocol, "size": int(size), "curves": meter.curves()}
    if per_image:
        out["per_image"] = meter.per_image()
    return out


def _mask_dir(gt_dir: Path) -> Path:
    """``gt_dir`` itself, or its mask sub-folder when it is a dataset folder."""
    for name in MASK_DIRS:
        if (gt_dir / name).is_dir():
            return gt_dir / name
    return gt_dir


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    dupes = []
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES:
            if f.stem in files:
                dupes.append(f"{files[f.stem].name} and {f.name}")
            files[f.stem] = f
    if dupes:
        raise DataError(f"{folder}: several files share a stem: {'; '.join(dupes[:_MAX_LISTED])}")
    return files


def _listing(names: Sequence[str]) -> str:
    more = f" ... and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, protocol: str = "standard",
                     progress: bool = False) -> dict[str, Any]:
    """Metrics of the saved maps in ``pred_dir`` against the masks in ``gt_dir`` (a mask
    folder, or a dataset folder with ``GT/``/``masks/``), paired by file stem.

    Every mask needs a map and every map a mask, else a `DataError` names the missing
    ones. A map whose size differs from its mask's is resized bilinearly, with a warning.
    """
    pred_dir, gt_dir = Path(pred_dir).expanduser(), Path(gt_dir).expanduser()
    for p, what in ((pred_dir, "prediction"), (gt_dir, "ground-truth")):
        if not p.is_dir():
            raise DataError(f"{p}: no such {what} folder")
    masks = _by_stem(_mask_dir(gt_dir))
    preds = _by_stem(pred_dir)
    if not masks:
        raise DataError(f"{gt_dir}: no mask files")
    missing = sorted(masks.keys() - preds.keys())
    extra = sorted(preds.keys() - masks.keys())
    if missing or extra:
        parts = [f"{len(missing)} mask(s) without a prediction in {pred_dir}: {_listing([masks[s].name for s in missing])}"] if missing else []
        parts += [f"{len(extra)} prediction(s) without a mask in {_mask_dir(gt_dir)}: {_listing([preds[s].name for s in extra])}"] if extra else []
        raise DataError("; ".join(parts))
    meter = SODMetrics(protocol)
    resized = []
    for stem in tqdm(sorted(masks), unit="img", desc="evaluate", disable=not progress):
        gt = read_mask(masks[stem])
        pred = read_gray(preds[stem])
        if pred.shape != gt.shape:
            resized.append(preds[stem].name)
            pred = np.asarray(Image.fromarray(pred).resize((gt.shape[1], gt.shape[0]), Image.BILINEAR))
        meter.step(pred, gt)
    if resized:
        warnings.warn(f"{len(resized)} prediction(s) differ in size from their masks and were resized bilinearly: "
                      f"{_listing(resized)}", stacklevel=2)
    return {**meter.get_results(), "protocol": protocol, "curves": meter.curves()}


def labelled_dataset(data: Dataset | str | Path) -> LabelledImages:
    """The labelled images of ``data``: an `ImageFolder` (given, or a folder of class
    sub-folders) or the images of a `SODFolder` labelled by its ``categories.csv``."""
    if isinstance(data, LabelledImages):
        return data
    if isinstance(data, SODFolder):
        return labelled_images(data)
    if isinstance(data, (str, Path)):
        return ImageFolder(data) if is_image_folder(data) else labelled_images(SODFolder(data))
    raise DataError(f"a classifier is scored on an ImageFolder, a SODFolder with categories.csv or a folder path; got {type(data).__name__}")


def _label_map(data_names: Sequence[str], model_names: Sequence[str], root: Path) -> list[int]:
    """The model's label for each of the data's labels, matched by class name."""
    unknown = [c for c in data_names if c not in model_names]
    if unknown:
        raise DataError(f"{root}: classes {', '.join(unknown)} are not among the model's classes ({', '.join(model_names)}); "
                        "a classifier is scored only on the classes it was trained on")
    absent = [c for c in model_names if c not in data_names]
    if absent:
        log.warning("%s: no images of the model's classes %s", root, ", ".join(absent))
    return [list(model_names).index(c) for c in data_names]


@torch.no_grad()
def evaluate_classifier(model: nn.Module, dataset: Dataset | str | Path, class_names: Optional[Sequence[str]] = None,
                        batch_size: int = 8, size: Optional[int] = None, device: Optional[str] = "auto",
                        progress: bool = True) -> dict[str, Any]:
    """Top-1, per-class accuracy and confusion matrix of a classifier on labelled images.

    ``dataset``: an `ImageFolder`, a `SODFolder` with ``categories.csv`` (its masks are not
    read) or a folder path of either. Images are resized to ``size`` (default: the side the
    model was trained at, else 224) and normalised (`ImageTransform`, no augmentation).
    ``class_names``: the model's classes in label order (default ``model.class_names``, which a
    checkpoint restores); the data's labels are matched to them by name, and a class the model
    does not know is a `DataError`. Without names the data's own label order is trusted.
    Returns `ClassificationMetrics.get_results` plus ``"task"`` and ``"size"``.
    """
    size = input_side(size, model)
    ds = labelled_dataset(dataset)
    if not len(ds):
        raise DataError(f"{ds.root}: nothing to evaluate")
    names = list(class_names if class_names is not None else getattr(model, "class_names", None) or [])
    if names:
        to_model = _label_map(ds.class_names, names, ds.root)
    else:
        log.warning("the model does not record its class names: trusting %s's label order (%s)", ds.root, ", ".join(ds.class_names))
        names, to_model = list(ds.class_names), list(range(len(ds.class_names)))
    meter = ClassificationMetrics(names)
    transform = ImageTransform(size)
    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    try:
        with tqdm(total=len(ds), unit="img", desc="evaluate", disable=not progress) as bar:
            for start in range(0, len(ds), batch_size):
                idx = range(start, min(start + batch_size, len(ds)))
                x = torch.stack([transform(ds.read(i)) for i in idx]).to(dev)
                out = model(x)
                logits = (out[0] if isinstance(out, (list, tuple)) else out).float()
                meter.step(logits, [to_model[ds.labels[i]] for i in idx])
                bar.update(len(idx))
    finally:
        model.train(was_training)
    return {**meter.get_results(), "task": "classification", "size": int(size)}
