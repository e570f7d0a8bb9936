"""What every study experiment shares: data, seeded models, training that resumes, scoring.

Every experiment takes explicit sizes (width, epochs, image size, number of images), so a
notebook picks its quick/standard/full mode by passing numbers, and an explicit ``seed``.
Models are trained with `sodlab.train.fit` into ``work_dir/<run>/`` and reused when that run
is already complete, so an interrupted notebook picks up where it stopped.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..analysis import probes
from ..analysis.categories import dataset_labels, stratified_draw
from ..analysis.stats import bootstrap_ci, bootstrap_seeds_images_gap
from ..checkpoint import load
from ..data import SODFolder
from ..data import transforms as T
from ..errors import DataError
from ..evaluation import evaluate
from ..metrics import max_f_from_curves
from ..models.classifier import CSNetClassifier
from ..models.csnet import CSNet
from ..models.registry import create_model
from ..train import fit, load_recipe
from ..train.trainer import SELECTION_METRICS

log = logging.getLogger(__name__)

# How the studies score saliency on test images: the authors' SalMetric (`sodlab.metrics`), the
# protocol of the CSNet papers' numbers, whose per-image counts a bootstrap over images can sum.
# The trainer's validation curves (model selection, the plateau gate) use the standard protocol
# at the training size (`sodlab.metrics.SaliencyStats`): `VALIDATION_PROTOCOL`. Every study
# table that holds a saliency score names its protocol in a ``protocol`` column.
PROTOCOL = "salmetric"
VALIDATION_PROTOCOL = "standard"
# A classifier's validation curve (top-1 accuracy) has no saliency protocol.
CLASSIFICATION_PROTOCOL = "top-1"
# Columns that hold a saliency score (or a number made from one), also as the values of a
# table's ``metric`` column: a study table with any of them names its protocol in a
# ``protocol`` column (`with_protocol`; `sodlab.studies.Study.save_table` refuses one without).
SALIENCY_SCORES = ("max_f", "mae", "max_f_finetuned", "mae_finetuned", "val_max_f", "val_mae", "max_f_gain", "mae_gain",
                   "max_f_held_out", "max_f_seen", "sod_drop", "sod_rel_drop", "sod_kept")

DEFAULT_LAYERS = ("stage2", "stage3", "stage4")


def flush_denormals(fn):
    """Run an experiment with denormal floats flushed to zero on the CPU.

    Regularisers that drive BN scales to zero (dynamic weight decay, L1) leave activations
    in the denormal range, where CPU arithmetic is some 30x slower (measured: CSNet width 8
    at 64x64 trains at 0.8 instead of 36 images/s). Zeroing them changes nothing visible.
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        torch.set_flush_denormal(True)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_flush_denormal(False)

    return wrapper


def seeded(fn, seed: int):
    """Call ``fn()`` with torch's global RNG seeded, restoring it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def sod_model(width: int, seed: int) -> CSNet:
    """A fresh CSNet of ``width``, initialised from ``seed``."""
    return seeded(lambda: create_model("csnet", width=width), seed)


def cls_model(width: int, num_classes: int, seed: int) -> CSNetClassifier:
    return seeded(lambda: create_model("csnet-cls", width=width, num_classes=num_classes), seed)


# A tenth of the training images, drawn once per benchmark (not per model seed), so that every
# model of every seed is selected on the same images and none trains on them.
VAL_FRACTION = 0.1
VAL_SEED = 2020


def datasets(data_root: str | Path, image_size: int, val_fraction: float = VAL_FRACTION,
             augmentation: Optional[Mapping[str, bool]] = None, preload: bool = True) -> tuple[Dataset, Dataset, Dataset]:
    """``(train, val, test)`` of a benchmark root (``root/train``, ``root/test``).
    ``augmentation``: the training transform's ``hflip``/``vflip``/``rot90`` (default: left-right
    flips only; the twins' family gives its own, `sodlab.studies.twins.TwinSpec.augmentation`).

    Models are selected and their plateau judged on ``val``, never on the test split: a
    ``root/val`` folder when the benchmark has one, else ``val_fraction`` of the training
    images (stratified by category, drawn by `VAL_SEED`) with the evaluation transform, which
    ``train`` then leaves out. All three share the training split's label indices.

    ``preload``: decode every folder's images and masks into memory first
    (`SODFolder.preload`; ``val`` shares the training folder's), so that epochs read no file;
    the items, and so every trained model, stay the same to the bit. A benchmark too large for
    memory (`sodlab.data.preload.PRELOAD_MAX_BYTES`) stays on disk, with a warning.
    """
    root = Path(data_root)
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DataError(f"{root}: expected a benchmark folder with train/ and test/ (missing {part}/)")
    train = SODFolder(root / "train", transform=T.train_transform(image_size, **dict(augmentation or {})))
    names = train.category_names or None
    test = SODFolder(root / "test", transform=T.eval_transform(image_size), category_names=names)
    val_folder = SODFolder(root / "val", transform=T.eval_transform(image_size), category_names=names) if (root / "val").is_dir() else None
    if preload:
        for folder in (train, test, val_folder):
            if folder is not None:
                folder.preload()
    if val_folder is not None:
        return train, val_folder, test
    held = stratified_draw(dataset_labels(train), val_fraction, VAL_SEED, leave_one=True)
    if not len(held):
        raise DataError(f"{root / 'train'}: too few images to hold out a validation split")
    rest = np.setdiff1d(np.arange(len(train)), held)
    val = Subset(train.with_transform(T.eval_transform(image_size)), held.tolist())
    return Subset(train, rest.tolist()), val, test


def folder_of(ds: Dataset, root: str | Path) -> Optional[SODFolder]:
    """``ds`` when it is the `SODFolder` of ``root`` (whose decoded pixels, when preloaded, a
    view of the same images can share instead of reading the folder again), else None."""
    return ds if isinstance(ds, SODFolder) and ds.root.resolve() == Path(root).resolve() else None


def eval_view(dataset: Dataset, data_root: str | Path, image_size: int) -> Dataset:
    """The training images with the evaluation transform (for features and probes)."""
    parent = dataset.dataset if isinstance(dataset, Subset) else dataset
    train_root = Path(data_root) / "train"
    own = folder_of(parent, train_root)
    if own is not None:
        base = own.with_transform(T.eval_transform(image_size))
    else:
        base = SODFolder(train_root, transform=T.eval_transform(image_size), category_names=getattr(parent, "category_names", None) or None)
    if isinstance(dataset, Subset):
        return Subset(base, list(dataset.indices))
    return base


def category_names(ds: Dataset) -> list[str]:
    names = getattr(ds, "category_names", None) or getattr(getattr(ds, "dataset", None), "category_names", None)
    if not names:
        raise DataError("this study needs category labels (a categories.csv beside the images)")
    return list(names)


def train_or_resume(
    model: nn.Module,
    train: Dataset,
    val: Optional[Dataset],
    run_dir: Path,
    epochs: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    regularizer: str = "none",
    task: str = "sod",
    progress: bool = False,
    recipe: str = "quick",
    **overrides: Any,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train with `sodlab.train.fit` into ``run_dir``; a finished run there is reused as is,
    an interrupted one resumed. Returns the model of the best epoch on ``val`` (``best.pt``;
    the last epoch without ``val``) and the log. ``recipe``: the shipped recipe the run starts
    from (`train_config`); ``batch_size=None`` keeps the recipe's."""
    run_dir = Path(run_dir)
    sized = {} if batch_size is None else {"batch_size": batch_size}
    config = train_config(recipe, epochs=epochs, seed=seed, regularizer=regularizer, task=task, **sized, **overrides)
    log_df = fit(model, train, val, config, run_dir, resume=True, device=str(device), progress=progress)
    trained = load(run_dir / ("best.pt" if val is not None else "last.pt")).to(device)
    return trained, log_df


def validation_rows(model: str, log_df: pd.DataFrame) -> list[dict[str, Any]]:
    """The validation curve of one training log, as rows of a study's ``training`` table
    (``model``, ``epoch``, ``metric``, ``value``, ``selected``: the epoch `train_or_resume`
    returned: the first best, as the trainer keeps). Empty when the run had no validation split."""
    metric = next((m for m in SELECTION_METRICS.values() if m in log_df), None)
    if metric is None:
        return []
    vals = log_df[["epoch", metric]].dropna()
    if not len(vals):
        return []
    best = int(vals.loc[vals[metric].idxmax(), "epoch"])
    return [{"model": model, "epoch": int(e), "metric": metric, "value": float(v), "selected": int(e) == best,
             "protocol": protocol_of(metric)} for e, v in zip(vals["epoch"], vals[metric])]


def training_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A study's ``training`` table from `validation_rows` of all its models."""
    return pd.DataFrame(rows, columns=["model", "epoch", "metric", "value", "selected", "protocol"])


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, size: Optional[int] = None,
                        device: Optional[str] = "auto") -> dict[str, Any]:
    """The scalar metrics (`sodlab.evaluate`, standard protocol) of the model saved in
    ``checkpoint`` on the test folder ``data``: a call `Study.cached` can key, since the
    checkpoint file (with its size and time) stands for the model."""
    scores = evaluate(load(checkpoint), data, size=size, device=device, progress=False)
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in scores.items() if np.isscalar(v)}


def train_config(recipe: str = "quick", **kw: Any) -> Any:
    """A study's training config: a shipped recipe (by default ``quick``: Adam 3e-3, cosine
    schedule, no weight decay, channels-last) with the given overrides. The datasets are
    built by the caller, so the recipe's input side is dropped unless given."""
    return load_recipe(recipe).replace(**{"image_size": None, **kw})


@torch.no_grad()
def with_statistics_of(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> nn.Module:
    """``model`` in eval mode with its BatchNorm running statistics recomputed on the image
    ``batches`` (cumulative means, weights untouched). An untrained network's stored statistics
    (mean 0, variance 1) normalise nothing: in eval mode its activations grow without bound
    layer after layer, so a comparison with it would compare with overflow, not a network."""
    model = model.to(device)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for x in batches:
        model(x.to(device))
    return model.eval()


def loader(ds: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)


@torch.no_grad()
def collect(model: nn.Module, ds: Dataset, device: torch.device, batch_size: int = 32, what: str = "cls") -> dict[str, np.ndarray]:
    """One pass over ``ds``: labels, and either class logits ("cls") or pooled encoder
    features ("embed"). Saliency is scored by `sod_scores`."""
    if what not in ("cls", "embed"):
        raise ValueError(f"collect() reads 'cls' or 'embed', not {what!r} (saliency: sod_scores)")
    model.eval()
    out: dict[str, list] = {"label": [], "out": []}
    for b in loader(ds, batch_size):
        x = b["image"].to(device)
        out["out"].append(model(x).cpu() if what == "cls" else model.features(x)[-1].mean(dim=(2, 3)).cpu())
        out["label"].append(torch.as_tensor(b["label"]))
    return {"label": torch.cat(out["label"]).numpy(), "out": torch.cat(out["out"]).numpy()}


def sod_scores(model: nn.Module, ds: Dataset, device: torch.device, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Every test image's score under `PROTOCOL`, as `sodlab.evaluate` scores a model (maps
    predicted at the side ``ds`` is transformed to, resized back to each image and scored
    against its mask at full size): ``label`` (category index, -1 when none), ``mae`` (N,)
    and ``curves`` (N, 3, 256), whose `score_summary` over all images is the `sodlab.evaluate`
    result of the same model (the ``salmetric`` protocol, as ``sodlab eval --protocol salmetric``)."""
    res = evaluate(model, ds, protocol=PROTOCOL, batch_size=batch_size, size=input_size(ds), device=str(device),
                   progress=False, per_image=True)
    return {"label": dataset_labels(ds), **res["per_image"]}


def input_size(ds: Dataset) -> int:
    """The side a study dataset resizes its images to (its `EvalTransform`)."""
    base = ds
    while isinstance(base, Subset):
        base = base.dataset
    size = getattr(getattr(base, "transform", None), "size", None)
    if size is None:
        raise DataError(f"{getattr(base, 'root', type(base).__name__)}: cannot tell the input size of a dataset "
                        "without an evaluation transform (sodlab.data.transforms.eval_transform)")
    return int(size)


def score_summary(scores: Mapping[str, np.ndarray], idx: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Max-F and MAE of the images ``idx`` (default all) of `sod_scores`, with their ``protocol``."""
    idx = np.arange(len(scores["mae"])) if idx is None else idx
    if len(idx) == 0:
        return {"n_images": 0, "max_f": float("nan"), "mae": float("nan"), "protocol": PROTOCOL}
    return {"n_images": int(len(idx)), "max_f": max_f_from_curves(scores["curves"][idx]), "mae": float(scores["mae"][idx].mean()),
            "protocol": PROTOCOL}


def class_correct(model: nn.Module, ds: Dataset, device: torch.device) -> np.ndarray:
    """Per image of ``ds``, whether the classifier's top class is its label (booleans)."""
    out = collect(model, ds, device, what="cls")
    return out["out"].argmax(1) == out["label"]


def classifier_row(name: str, model: nn.Module, ds: Dataset, device: torch.device, n_classes: int,
                   correct: Optional[np.ndarray] = None, **extra: Any) -> dict[str, Any]:
    """Test accuracy of a classifier next to chance, for the verdicts: a comparison with a
    classifier that has barely left chance says nothing about classification. ``correct``:
    `class_correct` of ``model`` on ``ds`` when the caller has it already."""
    correct = class_correct(model, ds, device) if correct is None else np.asarray(correct)
    acc = float(correct.mean())
    return {"model": name, **extra, "classes": int(n_classes), "n_images": int(len(correct)), "accuracy": acc,
            "chance": 1.0 / n_classes, "above_chance": probes.chance_normalised(acc, n_classes)}


def saliency_scores(df: pd.DataFrame) -> list[str]:
    """The saliency scores a table holds: `SALIENCY_SCORES` among its columns or among the
    values of its ``metric`` column."""
    found = [c for c in df.columns if c in SALIENCY_SCORES]
    if "metric" in df.columns:
        found += [m for m in dict.fromkeys(map(str, df["metric"].dropna())) if m in SALIENCY_SCORES and m not in found]
    return found


def protocol_of(score: str) -> str:
    """The protocol a study's number named ``score`` was scored under: `VALIDATION_PROTOCOL`
    for the trainer's validation scores, `PROTOCOL` for other saliency scores, top-1 for an
    accuracy, ``"n/a"`` for anything else (a CKA, a rank)."""
    if score in ("val_max_f", "val_mae"):
        return VALIDATION_PROTOCOL
    if score in SALIENCY_SCORES:
        return PROTOCOL
    if "accuracy" in score or "top1" in score:
        return CLASSIFICATION_PROTOCOL
    return "n/a"


def with_protocol(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``protocol`` column when it holds saliency scores (`saliency_scores`) and
    has none: per row from its ``metric`` column when it has one (`protocol_of`), else the
    protocol of its saliency columns. For the tables of a study, whose every test score is
    `PROTOCOL`'s (`sod_scores`, baselines and pruning curves scored alike)."""
    found = saliency_scores(df)
    if not found or "protocol" in df.columns:
        return df
    if "metric" in df.columns:
        return df.assign(protocol=[protocol_of(str(m)) for m in df["metric"]])
    kinds = {protocol_of(c) for c in found}
    if len(kinds) > 1:
        raise ValueError(f"a table with saliency scores of several protocols ({', '.join(found)}) needs its own protocol column")
    return df.assign(protocol=kinds.pop())


def study_tables(out: Mapping[str, Any]) -> dict[str, Any]:
    """A study's results with `with_protocol` applied to each table."""
    return {k: with_protocol(v) if isinstance(v, pd.DataFrame) else v for k, v in out.items()}


def log_frame(log_df: pd.DataFrame, **cols: Any) -> pd.DataFrame:
    """A training log (or any table) with ``cols`` inserted first; a trainer's log that holds
    validation saliency scores gains their ``protocol`` (`VALIDATION_PROTOCOL`)."""
    df = log_df.copy()
    for k, v in cols.items():
        df.insert(0, k, v)
    return with_protocol(df)


def bn_gammas(model: nn.Module) -> pd.DataFrame:
    """|gamma| of every batch norm of the encoder (the regularised ones): CSNet's ILBlock
    convolutions (``block``: the ILBlock, ``scale``: its octave), or every BatchNorm of a
    family model's ``backbone`` (``block``: the BatchNorm's name, ``scale`` 0)."""
    rows = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.modules.batchnorm._BatchNorm):
            continue
        if ".conv.norms." in f".{name}" and not name.startswith("csf"):
            block = name.split(".conv.norms.")[0]
            scale = int(name.rsplit(".", 1)[1])
        elif name.startswith("backbone."):
            block, scale = name, 0
        else:
            continue
        for c, g in enumerate(mod.weight.detach().abs().cpu().numpy()):
            rows.append({"block": block, "scale": scale, "channel": c, "abs_gamma": float(g)})
    return pd.DataFrame(rows)


def collapsed_share(gammas: pd.DataFrame, threshold: float) -> float:
    """Share of the channels of a `bn_gammas` table whose |gamma| is under ``threshold`` times
    the largest of their block (a block whose gammas are all zero has collapsed whole)."""
    largest = gammas.groupby("block")["abs_gamma"].transform("max").clip(lower=1e-30)
    return float((gammas["abs_gamma"] / largest < threshold).mean())


def seeds_max_f(curves: np.ndarray) -> float:
    """Mean over seeds of each seed's max-F: ``curves`` (S, N, 3, 256), per-image counts of S
    seeds' models on the same N images (the statistic of a seeds-and-images bootstrap)."""
    return float(np.mean([max_f_from_curves(c) for c in curves]))


def max_f_gain(a: Sequence[np.ndarray], b: Sequence[np.ndarray], n_boot: int, ci: float, seed: int) -> dict[str, float]:
    """Max-F of arm ``a`` minus arm ``b``, each a list over seeds of per-image counts (N, 3, 256)
    on the same test images: the mean over seeds of each seed's difference, with a paired
    percentile interval from resampling seeds and then images (one seed: images alone)."""
    x, y = np.stack(a), np.stack(b)
    if len(x) > 1:
        g = bootstrap_seeds_images_gap(x, y, n_boot, ci, seed=seed, statistic=seeds_max_f)
        return {"gap": float(g["gap"]), "low": float(g["low"]), "high": float(g["high"])}
    paired = np.stack([x[0], y[0]], 1)
    g = bootstrap_ci(paired, n_boot, ci, seed=seed, statistic=lambda v: max_f_from_curves(v[:, 0]) - max_f_from_curves(v[:, 1]))
    return {"gap": float(g["estimate"]), "low": float(g["low"]), "high": float(g["high"])}


def spread(n: int, k: int, seed: int) -> list[int]:
    """``k`` of the indices ``0..n-1`` drawn by ``seed``, sorted (all of them when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())


def seed_mean(table: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``table``'s numeric columns averaged over its seeds within each group of ``by`` (in the
    table's order): what a plot of a several-seed study shows."""
    cols = [c for c in table.select_dtypes("number").columns if c not in (*by, "seed")]
    return table.groupby(list(by), sort=False, as_index=False)[cols].mean()


def slug(s: str) -> str:
    """``s`` with every character that is not a letter or digit replaced by ``_`` (a folder name)."""
    return "".join(ch if ch.isalnum() else "_" for ch in str(s))
