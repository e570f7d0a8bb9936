"""The studies' experiments: one function per experiment, each returning pandas DataFrames.

Every experiment takes explicit sizes (width, epochs, image size, number of images), so a
notebook picks its quick/standard/full mode by passing numbers, and an explicit ``seed``.
Models are trained with `sodlab.train.fit` into ``work_dir/<run>/`` and reused when that run
is already complete, so an interrupted notebook picks up where it stopped.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from .analysis import categories as cat
from .analysis import importance as imp
from .analysis import probes, redundancy as red
from .errors import ConfigError, DataError
from .device import resolve_device
from .models.classifier import CSNetClassifier, classifier_from_sod, transfer_encoder
from .models.csnet import CSNet, CSNetConfig
from .metrics import max_f_from_curves, per_image_curves
from .models.registry import create_model, list_models

log = logging.getLogger(__name__)

DEFAULT_LAYERS = ("stage2", "stage3", "stage4")


# =============================================================================== helpers
def _flush_denormals(fn):
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


def _device(device: Optional[str | torch.device]) -> torch.device:
    return resolve_device(device)


def _seeded(fn, seed: int):
    """Call ``fn()`` with torch's global RNG seeded, restoring it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def _sod_model(width: int, seed: int) -> CSNet:
    model = _seeded(lambda: create_model("csnet", width=width), seed)
    return model


def _cls_model(width: int, num_classes: int, seed: int) -> CSNetClassifier:
    return _seeded(lambda: create_model("csnet-cls", width=width, num_classes=num_classes), seed)


def _datasets(data_root: str | Path, image_size: int) -> tuple[Dataset, Dataset]:
    """``(train, test)`` folders of a benchmark root (``root/train``, ``root/test``)."""
    from .data import SODFolder
    from .data import transforms as T

    root = Path(data_root)
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DataError(f"{root}: expected a benchmark folder with train/ and test/ (missing {part}/)")
    train = SODFolder(root / "train", transform=T.train_transform(image_size))
    # the test split shares the training split's label indices
    names = train.category_names or None
    test = SODFolder(root / "test", transform=T.eval_transform(image_size), category_names=names)
    return train, test


def _eval_view(dataset: Dataset, data_root: str | Path, image_size: int) -> Dataset:
    """The training images with the evaluation transform (for features and probes)."""
    from .data import SODFolder
    from .data import transforms as T

    parent = dataset.dataset if isinstance(dataset, Subset) else dataset
    base = SODFolder(Path(data_root) / "train", transform=T.eval_transform(image_size), category_names=getattr(parent, "category_names", None) or None)
    if isinstance(dataset, Subset):
        return Subset(base, list(dataset.indices))
    return base


def _category_names(ds: Dataset) -> list[str]:
    names = getattr(ds, "category_names", None) or getattr(getattr(ds, "dataset", None), "category_names", None)
    if not names:
        raise DataError("this study needs category labels (a categories.csv beside the images)")
    return list(names)


def _fit(
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
    **overrides: Any,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train with `sodlab.train.fit` into ``run_dir``; a finished run there is reused as is,
    an interrupted one resumed. Returns the model of the last epoch and the log."""
    from .checkpoint import load
    from .train import fit

    run_dir = Path(run_dir)
    config = _train_config(epochs=epochs, batch_size=batch_size, seed=seed, regularizer=regularizer, task=task, **overrides)
    log_df = fit(model, train, val, config, run_dir, resume=True, device=str(device), progress=progress)
    trained = load(run_dir / "last.pt").to(device)
    return trained, log_df


def _train_config(**kw: Any) -> Any:
    """The studies' short-run recipe: the shipped ``quick`` recipe (Adam 3e-3, cosine schedule,
    no weight decay, channels-last) with the given overrides. The datasets are built by the
    caller, so the recipe's input side is dropped unless given."""
    from .train import load_recipe

    return load_recipe("quick").replace(**{"image_size": None, **kw})


def _loader(ds: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)


@torch.no_grad()
def _collect(model: nn.Module, ds: Dataset, device: torch.device, batch_size: int = 32, what: str = "sod") -> dict[str, np.ndarray]:
    """One pass over ``ds``: labels, and either saliency probabilities + masks ("sod"),
    class logits ("cls") or pooled encoder features ("embed")."""
    model.eval()
    out: dict[str, list] = {"label": [], "out": [], "mask": []}
    for b in _loader(ds, batch_size):
        x = b["image"].to(device)
        if what == "sod":
            out["out"].append(torch.sigmoid(model(x)[:, :1]).cpu())
            out["mask"].append(b["mask"])
        elif what == "cls":
            out["out"].append(model(x).cpu())
        else:
            out["out"].append(model.features(x)[-1].mean(dim=(2, 3)).cpu())
        out["label"].append(torch.as_tensor(b["label"]))
    res = {"label": torch.cat(out["label"]).numpy(), "out": torch.cat(out["out"]).numpy()}
    if out["mask"]:
        res["mask"] = torch.cat(out["mask"]).numpy()
    return res


def _sod_scores(model: nn.Module, ds: Dataset, device: torch.device, batch_size: int = 32) -> dict[str, np.ndarray]:
    r = _collect(model, ds, device, batch_size, "sod")
    pred, mask = r["out"], r["mask"]
    mae = np.abs(pred - (mask > 0.5)).reshape(len(pred), -1).mean(1)
    return {"label": r["label"], "mae": mae, "curves": per_image_curves(pred, mask)}


def _summary(scores: Mapping[str, np.ndarray], idx: Optional[np.ndarray] = None) -> dict[str, float]:
    idx = np.arange(len(scores["mae"])) if idx is None else idx
    if len(idx) == 0:
        return {"n_images": 0, "max_f": float("nan"), "mae": float("nan")}
    return {"n_images": int(len(idx)), "max_f": max_f_from_curves(scores["curves"][idx]), "mae": float(scores["mae"][idx].mean())}


def _classifier_row(name: str, model: nn.Module, ds: Dataset, device: torch.device, n_classes: int, **extra: Any) -> dict[str, Any]:
    """Test accuracy of a classifier next to chance, for the verdicts: a comparison with a
    classifier that has barely left chance says nothing about classification."""
    out = _collect(model, ds, device, what="cls")
    acc = float((out["out"].argmax(1) == out["label"]).mean())
    return {"model": name, **extra, "classes": int(n_classes), "n_images": int(len(out["label"])), "accuracy": acc,
            "chance": 1.0 / n_classes, "above_chance": probes.chance_normalised(acc, n_classes)}


def _log_frame(log_df: pd.DataFrame, **cols: Any) -> pd.DataFrame:
    df = log_df.copy()
    for k, v in cols.items():
        df.insert(0, k, v)
    return df


# ================================================================ 1-2: anatomy and allocation
def anatomy_table(models: Sequence[str | tuple[str, Mapping[str, Any]]] = ("csnet", "csnet-L-x1", "csnet-L-x2", "csf-res2net50"), sizes: Sequence[int] = (224,)) -> pd.DataFrame:
    """Parameters and MACs per model and input size; entries are registry names or
    ``(name, kwargs)``; names that are not registered are skipped (logged)."""
    from .profiling import profile

    known = set(list_models())
    rows = []
    for entry in models:
        name, kw = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
        if name not in known:
            log.info("anatomy_table: %s is not registered, skipped", name)
            continue
        model = create_model(name, **kw).eval()
        label = name + "".join(f" {k}={v}" for k, v in kw.items())
        for size in sizes:
            p = profile(model, size)
            rows.append({"model": label, "size": size, "params": int(p["params"]), "macs": int(p["macs"]), "gmacs": p["macs"] / 1e9})
    return pd.DataFrame(rows, columns=["model", "size", "params", "macs", "gmacs"])


def allocation_table(config: CSNetConfig | nn.Module | str, reference: Optional[CSNetConfig | nn.Module | str] = None) -> pd.DataFrame:
    """Channel allocation of a CSNet configuration (a config, a model or a registry name),
    per block, scale and dilation, optionally against a ``reference`` configuration
    (`sodlab.prune.allocation_table`)."""
    from .prune import allocation_table as _alloc

    if isinstance(config, str):
        config = create_model(config).config
    if isinstance(reference, str):
        reference = create_model(reference).config
    return _alloc(config, reference)


# ================================================================ 3: regularisers and pruning
def _bn_gammas(model: nn.Module) -> pd.DataFrame:
    """|gamma| of every batch norm of the encoder's ILBlock convolutions (the regularised ones)."""
    rows = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and ".conv.norms." in f".{name}" and not name.startswith("csf"):
            block = name.split(".conv.norms.")[0]
            scale = int(name.rsplit(".", 1)[1])
            for c, g in enumerate(mod.weight.detach().abs().cpu().numpy()):
                rows.append({"block": block, "scale": scale, "channel": c, "abs_gamma": float(g)})
    return pd.DataFrame(rows)


@_flush_denormals
def regularizer_study(
    data_root: str | Path,
    regularizers: Sequence[str] = ("dwd", "l2", "l1", "none"),
    width: int = 8,
    epochs: int = 3,
    image_size: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/regularizers",
    keep_fractions: Sequence[float] = (1.0, 0.5, 0.3, 0.2),
    finetune_epochs: int = 0,
    finetune_images: Optional[int] = None,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Train the same CSNet with each regulariser; return ``logs`` (training logs),
    ``gammas`` (|gamma| of every regularised channel at initialisation and after training),
    ``pruning`` (`sodlab.prune.curve` per regulariser) and ``final`` (metrics per regulariser).
    ``finetune_images`` fine-tunes each slim model on that many training images (a fixed random
    subset, the same for every point) instead of all of them: fine-tuning every point of every
    curve on the whole set costs more than training the models."""
    dev = _device(device)
    train, test = _datasets(data_root, image_size)
    tune = train if finetune_images is None else Subset(train, _spread(len(train), finetune_images, seed))
    work = Path(work_dir)
    logs, gammas, curves, finals = [], [], [], []
    for reg in regularizers:
        init = _sod_model(width, seed)
        g0 = _bn_gammas(init)
        g0.insert(0, "epoch", 0)
        model, lg = _fit(init, train, test, work / f"{reg}", epochs, batch_size, seed, dev, regularizer=reg, progress=progress)
        g1 = _bn_gammas(model)
        g1.insert(0, "epoch", epochs)
        for g in (g0, g1):
            g.insert(0, "regularizer", reg)
            gammas.append(g)
        logs.append(_log_frame(lg, regularizer=reg))
        s = _summary(_sod_scores(model, test, dev))
        finals.append({"regularizer": reg, "params": sum(p.numel() for p in model.parameters()), **s})
        from . import prune

        curve = prune.curve(model, test, keep_fractions=list(keep_fractions), finetune_epochs=finetune_epochs, train_data=tune if finetune_epochs else None,
                            size=image_size, macs_size=image_size, seed=seed, device=str(dev), work_dir=work / f"{reg}_prune", progress=progress)
        curves.append(_log_frame(curve, regularizer=reg))
    return {
        "logs": pd.concat(logs, ignore_index=True),
        "gammas": pd.concat(gammas, ignore_index=True),
        "pruning": pd.concat(curves, ignore_index=True),
        "final": pd.DataFrame(finals),
    }


# ================================================================ 4: category sensitivity
@_flush_denormals
def category_sensitivity(
    data_root: str | Path,
    n_seen: int = 6,
    width: int = 8,
    epochs: int = 3,
    image_size: int = 64,
    seed: int = 0,
    loo: bool = True,
    n_boot: int = 500,
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/categories",
    batch_size: int = 16,
    loo_epochs: Optional[int] = None,
    loo_max: Optional[int] = None,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Is saliency category-insensitive, and is classification not?

    SOD: a CSNet trained on the ``n_seen`` seen categories, scored on the test images of seen
    and unseen categories (max-F, MAE), with bootstrap intervals of the seen-minus-unseen gap
    over test images. Classification: the twin classifier trained on the same seen images;
    its head cannot name unseen categories, so both tasks' encoders are read out the same
    way: nearest-class-mean accuracy of pooled encoder features (class means from training
    images, scored on test images) on seen vs on unseen categories, chance-normalised so
    that different numbers of classes compare. Leave-one-category-out (``loo``): one SOD
    model per held-out category (at most ``loo_max``), scored on every test category.

    Returns ``split``, ``sod_per_category``, ``summary`` (task x group), ``gaps`` (one row per
    task/metric: gap, CI, relative gap), ``loo`` (long matrix), ``classifiers`` (the twin's test
    accuracy on the seen categories next to chance) and ``classifier_log``/``sod_log``.
    """
    dev = _device(device)
    train, test = _datasets(data_root, image_size)
    names = _category_names(train)
    seen, unseen = cat.split_categories(names, n_seen, seed)
    work = Path(work_dir) / f"seen{n_seen}_seed{seed}"
    train_seen = cat.subset_by_category(train, seen)
    test_labels = cat.dataset_labels(test)
    seen_ids, unseen_ids = cat.category_ids(train, seen), cat.category_ids(train, unseen)
    is_seen = np.isin(test_labels, seen_ids)
    is_unseen = np.isin(test_labels, unseen_ids)
    test_seen = Subset(test, np.flatnonzero(is_seen).tolist())

    # --- SOD on seen categories
    sod, sod_log = _fit(_sod_model(width, seed), train_seen, test_seen, work / "sod", epochs, batch_size, seed, dev, progress=progress)
    scores = _sod_scores(sod, test, dev)
    per_cat = []
    for c, name in enumerate(names):
        idx = np.flatnonzero(scores["label"] == c)
        per_cat.append({"category": name, "seen": name in seen, **_summary(scores, idx)})
    si, ui = np.flatnonzero(is_seen), np.flatnonzero(is_unseen)
    summary = [
        {"task": "sod", "group": "seen", "metric": "max_f", "value": _summary(scores, si)["max_f"], "n_images": len(si)},
        {"task": "sod", "group": "unseen", "metric": "max_f", "value": _summary(scores, ui)["max_f"], "n_images": len(ui)},
        {"task": "sod", "group": "seen", "metric": "mae", "value": _summary(scores, si)["mae"], "n_images": len(si)},
        {"task": "sod", "group": "unseen", "metric": "mae", "value": _summary(scores, ui)["mae"], "n_images": len(ui)},
    ]
    gaps = [
        {"task": "sod", "metric": "max_f", **cat.bootstrap_gap(scores["curves"][si], scores["curves"][ui], n_boot, seed=seed, statistic=max_f_from_curves)},
        {"task": "sod", "metric": "mae", **cat.bootstrap_gap(scores["mae"][si], scores["mae"][ui], n_boot, seed=seed)},
    ]

    # --- classification twin on the same seen images; NCM read-out for both encoders
    seen_map = {c: i for i, c in enumerate(seen_ids)}
    cls_train = _Relabelled(train_seen, seen_map)
    cls_val = _Relabelled(test_seen, seen_map)
    cls, cls_log = _fit(_cls_model(width, len(seen), seed), cls_train, cls_val, work / "classifier", epochs, batch_size, seed, dev, task="classification", progress=progress)
    train_eval = _eval_view(train, data_root, image_size)
    for task, model in (("classifier", cls), ("sod_encoder", sod)):
        ftr = _collect(model, train_eval, dev, what="embed")
        fte = _collect(model, test, dev, what="embed")
        for group, ids in (("seen", seen_ids), ("unseen", unseen_ids)):
            tr = np.isin(ftr["label"], ids)
            te = np.isin(fte["label"], ids)
            pred = probes.ncm_predict(ftr["out"][tr], ftr["label"][tr], fte["out"][te])
            correct = (pred == fte["label"][te]).astype(float)
            k = len(ids)
            summary.append({"task": task, "group": group, "metric": "ncm_accuracy", "value": float(correct.mean()), "n_images": int(te.sum())})
            summary.append({"task": task, "group": group, "metric": "ncm_accuracy_vs_chance", "value": probes.chance_normalised(correct.mean(), k), "n_images": int(te.sum())})
            if group == "seen":
                seen_correct, k_seen = correct, k
        unseen_correct, k_unseen = correct, k
        # chance-normalise per image so the bootstrap compares like with like
        a = (seen_correct - 1 / k_seen) / (1 - 1 / k_seen)
        b = (unseen_correct - 1 / k_unseen) / (1 - 1 / k_unseen)
        gaps.append({"task": task, "metric": "ncm_accuracy_vs_chance", **cat.bootstrap_gap(a, b, n_boot, seed=seed)})
    summary_df = pd.DataFrame(summary)
    gaps_df = pd.DataFrame(gaps)
    seen_vals = {(r.task, r.metric): r.value for r in summary_df[summary_df.group == "seen"].itertuples()}
    gaps_df["relative_gap"] = [g / seen_vals.get((t, m), float("nan")) if seen_vals.get((t, m)) else float("nan") for t, m, g in zip(gaps_df.task, gaps_df.metric, gaps_df.gap)]

    # --- leave one category out
    loo_rows = []
    if loo:
        held = names if loo_max is None else names[:loo_max]
        for h, rest in cat.leave_one_category_out(names):
            if h not in held:
                continue
            sub = cat.subset_by_category(train, rest)
            m, _ = _fit(_sod_model(width, seed), sub, None, work / f"loo_{_slug(h)}", loo_epochs or epochs, batch_size, seed, dev, progress=progress)
            sc = _sod_scores(m, test, dev)
            for c, name in enumerate(names):
                idx = np.flatnonzero(sc["label"] == c)
                loo_rows.append({"held_out": h, "category": name, "is_held_out": name == h, **_summary(sc, idx)})
    return {
        "split": pd.DataFrame({"category": names, "seen": [n in seen for n in names]}),
        "sod_per_category": pd.DataFrame(per_cat),
        "summary": summary_df,
        "gaps": gaps_df,
        "loo": pd.DataFrame(loo_rows, columns=["held_out", "category", "is_held_out", "n_images", "max_f", "mae"]),
        "classifiers": pd.DataFrame([_classifier_row("classifier", cls, cls_val, dev, len(seen))]),
        "sod_log": sod_log,
        "classifier_log": cls_log,
    }


def loo_drop(loo: pd.DataFrame, metric: str = "max_f") -> pd.DataFrame:
    """Per category: its score when held out vs the mean score of the models that saw it."""
    rows = []
    for c, g in loo.groupby("category", sort=False):
        held = g[g.is_held_out][metric]
        other = g[~g.is_held_out][metric]
        if len(held) and len(other):
            rows.append({"category": c, f"{metric}_held_out": float(held.iloc[0]), f"{metric}_seen": float(other.mean()), "drop": float(other.mean() - held.iloc[0])})
    return pd.DataFrame(rows)


class _Relabelled(Dataset):
    """Items of ``base`` with ``label`` mapped through ``mapping`` (category -> class index)."""

    def __init__(self, base: Dataset, mapping: Mapping[int, int]) -> None:
        self.base, self.mapping = base, dict(mapping)
        self.labels = [self.mapping[int(v)] for v in cat.dataset_labels(base)]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        item["label"] = self.mapping[int(item["label"])]
        return item


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(s))


# ================================================================ 5: pre-training
@_flush_denormals
def pretraining_effect(
    data_root: str | Path,
    fractions: Sequence[float] = (0.25, 1.0),
    width: int = 8,
    epochs: int = 3,
    image_size: int = 64,
    seed: int = 0,
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/pretraining",
    pretrain_epochs: Optional[int] = None,
    batch_size: int = 16,
    n_boot: int = 300,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """SOD from scratch vs from an encoder pre-trained to classify the benchmark's categories
    (the stand-in for ImageNet), on ``fractions`` of the training set (stratified by category).

    Returns ``pretrain_log``, ``curves`` (training logs by init and fraction), ``final``
    (max-F/MAE per init and fraction), ``efficiency`` (pretrained minus scratch per
    fraction with a bootstrap interval over test images) and ``classifiers`` (the
    pre-training classifier's test accuracy next to chance).
    """
    dev = _device(device)
    train, test = _datasets(data_root, image_size)
    names = _category_names(train)
    work = Path(work_dir) / f"w{width}_seed{seed}"
    cls, pre_log = _fit(_cls_model(width, len(names), seed), train, test, work / "pretrain", pretrain_epochs or epochs, batch_size, seed, dev, task="classification", progress=progress)
    curves, finals, eff = [], [], []
    for frac in fractions:
        sub = cat.fraction_subset(train, frac, seed) if frac < 1 else train
        scores = {}
        for init in ("scratch", "pretrained"):
            model = _sod_model(width, seed)
            if init == "pretrained":
                transfer_encoder(cls, model)
            trained, lg = _fit(model, sub, test, work / f"{init}_f{frac:g}", epochs, batch_size, seed, dev, progress=progress)
            curves.append(_log_frame(lg, init=init, fraction=frac))
            scores[init] = _sod_scores(trained, test, dev)
            finals.append({"init": init, "fraction": frac, "n_train": len(sub), **_summary(scores[init])})
        n = len(scores["scratch"]["mae"])
        rng = np.random.default_rng(seed)
        diffs = []
        for _ in range(n_boot):
            i = rng.integers(0, n, n)  # the same images for both inits: a paired bootstrap
            diffs.append(max_f_from_curves(scores["pretrained"]["curves"][i]) - max_f_from_curves(scores["scratch"]["curves"][i]))
        d = max_f_from_curves(scores["pretrained"]["curves"]) - max_f_from_curves(scores["scratch"]["curves"])
        eff.append({"fraction": frac, "n_train": len(sub), "max_f_gain": d, "low": float(np.quantile(diffs, 0.025)), "high": float(np.quantile(diffs, 0.975)),
                    "mae_gain": float(scores["scratch"]["mae"].mean() - scores["pretrained"]["mae"].mean())})
    return {"pretrain_log": pre_log, "curves": pd.concat(curves, ignore_index=True), "final": pd.DataFrame(finals), "efficiency": pd.DataFrame(eff),
            "classifiers": pd.DataFrame([_classifier_row("pretraining_classifier", cls, test, dev, len(names))])}


# ================================================================ 6: redundancy
def _gamma_dead_fraction(model: nn.Module, thresholds: Sequence[float]) -> list[dict]:
    g = _bn_gammas(model)
    rel = g["abs_gamma"] / g.groupby("block")["abs_gamma"].transform("max").clip(lower=1e-30)
    return [{"threshold": t, "frac_channels_below": float((rel < t).mean())} for t in thresholds]


@_flush_denormals
def redundancy_study(
    data_root: str | Path,
    widths: Sequence[int] = (4, 8),
    epochs: int = 3,
    image_size: int = 64,
    seed: int = 0,
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/redundancy",
    n_images: int = 64,
    layers: Sequence[str] = ("stem", "stage1") + DEFAULT_LAYERS,
    regularizer: str = "dwd",
    batch_size: int = 16,
    prune_thresholds: Sequence[float] = (0.01, 0.05, 0.1),
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Does SOD need fewer parameters than classification, and use them more redundantly?

    For each width, a SOD CSNet and its classification twin (same encoder configuration and
    initialisation, same regulariser) are trained. Returns ``width_sweep`` (parameters and
    the task metric), ``layers`` (effective rank, components for 90% variance, channel
    correlation per layer, task and width), ``spectra`` (PCA spectra at the largest width),
    ``cka_layers`` (layer x layer CKA within each twin at the largest width), ``cka_twins``
    (CKA between the SOD and classification encoders, same layer, per width) and
    ``pruning`` (share of regularised channels whose |gamma| falls below a fraction of its
    block's largest, for both tasks) and ``classifiers`` (each width's classifier: test
    accuracy next to chance).
    """
    dev = _device(device)
    train, test = _datasets(data_root, image_size)
    names = _category_names(train)
    test_sub = Subset(test, _spread(len(test), n_images, seed))
    images = torch.stack([test_sub[i]["image"] for i in range(len(test_sub))])
    work = Path(work_dir) / f"seed{seed}"
    sweep, layer_rows, spectra, cka_layers, cka_twins, pruning, classifiers = [], [], [], [], [], [], []
    for width in widths:
        sod, _ = _fit(_sod_model(width, seed), train, test, work / f"sod_w{width}", epochs, batch_size, seed, dev, regularizer=regularizer, progress=progress)
        cls = _cls_model(width, len(names), seed)
        transfer_encoder(_sod_model(width, seed), cls)  # the same initial encoder as the SOD model
        cls, _ = _fit(cls, train, test, work / f"cls_w{width}", epochs, batch_size, seed, dev, task="classification", regularizer=regularizer, progress=progress)
        s = _summary(_sod_scores(sod, test, dev))
        classifiers.append(_classifier_row(f"classifier_w{width}", cls, test, dev, len(names), width=width))
        acc = classifiers[-1]["accuracy"]
        enc = lambda m: sum(v.numel() for k, v in m.named_parameters() if k.startswith(("stem.", "stage")))  # noqa: E731
        sweep.append({"width": width, "task": "sod", "params": sum(p.numel() for p in sod.parameters()), "encoder_params": enc(sod), "metric": "max_f", "value": s["max_f"]})
        sweep.append({"width": width, "task": "sod", "params": sum(p.numel() for p in sod.parameters()), "encoder_params": enc(sod), "metric": "mae", "value": s["mae"]})
        sweep.append({"width": width, "task": "classification", "params": sum(p.numel() for p in cls.parameters()), "encoder_params": enc(cls), "metric": "accuracy", "value": acc})
        acts = {}
        for task, model in (("sod", sod), ("classification", cls)):
            acts[task] = red.collect_activations(model, images, layers, device=dev)
            t = red.layer_redundancy(acts[task], seed=seed)
            t.insert(0, "task", task)
            t.insert(0, "width", width)
            layer_rows.append(t)
            for row in _gamma_dead_fraction(model, prune_thresholds):
                pruning.append({"width": width, "task": task, "regularizer": regularizer, **row})
        for layer in layers:
            cka_twins.append({"width": width, "layer": layer, "cka": red.linear_cka(red.cka_features(acts["sod"][layer]), red.cka_features(acts["classification"][layer]))})
        if width == max(widths):
            for task in acts:
                sp = red.spectrum_table(acts[task], seed=seed)
                sp.insert(0, "task", task)
                spectra.append(sp)
                m = red.cka_matrix(acts[task])
                for a in m.index:
                    for b in m.columns:
                        cka_layers.append({"task": task, "layer_a": a, "layer_b": b, "cka": float(m.loc[a, b])})
            m = red.cka_matrix(acts["sod"], acts["classification"])
            for a in m.index:
                for b in m.columns:
                    cka_layers.append({"task": "sod_vs_classification", "layer_a": a, "layer_b": b, "cka": float(m.loc[a, b])})
    return {
        "width_sweep": pd.DataFrame(sweep),
        "layers": pd.concat(layer_rows, ignore_index=True),
        "spectra": pd.concat(spectra, ignore_index=True),
        "cka_layers": pd.DataFrame(cka_layers),
        "cka_twins": pd.DataFrame(cka_twins),
        "pruning": pd.DataFrame(pruning),
        "classifiers": pd.DataFrame(classifiers),
    }


def task_scores(sweep: pd.DataFrame) -> pd.DataFrame:
    """The headline metric rows of a ``width_sweep`` (max-F for SOD, accuracy for
    classification) with ``relative``: each value over its task's value at the widest width,
    so that the two tasks share one axis."""
    main = sweep[sweep.metric.isin(["max_f", "accuracy"])].copy()
    widest = main.loc[main.groupby("task")["width"].idxmax()].set_index("task")["value"]
    main["relative"] = main["value"] / main["task"].map(widest)
    return main


def _spread(n: int, k: int, seed: int) -> list[int]:
    if k >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())


# ================================================================ 7: mechanisms
def _concentration(v: Tensor, share: float = 0.5) -> float:
    """Fraction of channels that carry ``share`` of the total |importance|."""
    a = np.sort(np.abs(v.numpy()))[::-1]
    if a.sum() == 0:
        return float("nan")
    return float((np.searchsorted(np.cumsum(a) / a.sum(), share - 1e-12) + 1) / len(a))


@_flush_denormals
def mechanisms_study(
    data_root: str | Path,
    width: int = 8,
    epochs: int = 3,
    image_size: int = 64,
    n_images: int = 32,
    seed: int = 0,
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/mechanisms",
    layers: Sequence[str] = DEFAULT_LAYERS,
    method: str = "grad_x_act",
    top_fraction: float = 0.25,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Do saliency and classification rely on the same channels?

    Channel indices only correspond within one network, so the channel-level comparison is
    made on one shared encoder (our protocol): the SOD-trained CSNet's encoder, read out by
    its saliency head (target: mean logit over the ground-truth region) and by a linear
    class head fitted in closed form on its pooled features (target: the true class's
    logit). Per layer: importance (``method`` and channel ablation), top-k Jaccard with
    its chance level, Spearman rank correlation, and cross-ablation (zero the top-k
    channels of one task, measure both targets, against k random channels). The
    independently trained classification twin, whose channels do not correspond, enters
    through permutation-free measures: how concentrated its importance is, and Grad-CAM of
    its class logit against the SOD model's saliency map and the ground truth, per image.

    Returns ``importance``, ``overlap``, ``cross_ablation``, ``concentration``, ``gradcam`` and
    ``classifiers`` (test accuracy next to chance of the twin and of the SOD encoder's class
    head: a class target that has barely left chance makes the channel comparison weak).
    """
    dev = _device(device)
    train, test = _datasets(data_root, image_size)
    names = _category_names(train)
    work = Path(work_dir) / f"w{width}_seed{seed}"
    sod, _ = _fit(_sod_model(width, seed), train, test, work / "sod", epochs, batch_size, seed, dev, progress=progress)
    cls = _cls_model(width, len(names), seed)
    cls, _ = _fit(cls, train, test, work / "classifier", epochs, batch_size, seed, dev, task="classification", progress=progress)
    sod.eval(), cls.eval()

    # the class read-out of the SOD encoder: a closed-form linear head on pooled features
    feats = _collect(sod, _eval_view(train, data_root, image_size), dev, what="embed")
    probe = classifier_from_sod(sod, len(names)).to(dev).eval()
    probe.head = probes.ridge_head(feats["out"], feats["label"], len(names)).to(dev)

    idx = _spread(len(test), n_images, seed)
    items = [test[i] for i in idx]
    x = torch.stack([it["image"] for it in items])
    gt = torch.stack([it["mask"] for it in items])
    labels = torch.as_tensor([int(it["label"]) for it in items])

    encoders = {
        "sod_encoder": (imp.SODTarget(sod), gt, imp.ClassLogitTarget(probe), labels),
    }
    imp_rows, overlap, cross, conc = [], [], [], []
    for enc_name, (t_sod, a_sod, t_cls, a_cls) in encoders.items():
        for layer in layers:
            vals = {}
            for task, t, a in (("sod", t_sod, a_sod), ("classification", t_cls, a_cls)):
                vals[(task, method)] = imp.channel_importance(t, x, layer, method=method, aux=a, batch_size=batch_size)
                vals[(task, "ablation")] = imp.ablation_importance(t, x, layer, aux=a, batch_size=batch_size)
            n = len(vals[("sod", method)])
            k = max(1, int(round(top_fraction * n)))
            for (task, meth), v in vals.items():
                for c, val in enumerate(v.tolist()):
                    imp_rows.append({"encoder": enc_name, "layer": layer, "task": task, "method": meth, "channel": c, "importance": val})
                conc.append({"model": enc_name, "layer": layer, "task": task, "method": meth, "channels_for_half": _concentration(v)})
            for meth in (method, "ablation"):
                a, b = vals[("sod", meth)], vals[("classification", meth)]
                overlap.append({"encoder": enc_name, "layer": layer, "method": meth, "channels": n, "k": k, "jaccard": imp.topk_jaccard(a, b, k),
                                "chance_jaccard": imp.chance_topk_jaccard(n, k), "spearman": imp.rank_correlation(a, b)})
                overlap[-1]["excess_jaccard"] = overlap[-1]["jaccard"] - overlap[-1]["chance_jaccard"]
            # cross-ablation: remove one task's top-k channels, measure both targets
            module_sod = imp.resolve_layer(t_sod, layer)
            module_cls = imp.resolve_layer(t_cls, layer)
            rng = np.random.default_rng(seed)
            sets = {"sod_top": imp.top_k(vals[("sod", method)], k), "classification_top": imp.top_k(vals[("classification", method)], k),
                    "random": rng.choice(n, size=k, replace=False)}
            with torch.no_grad():
                base_s = t_sod(x.to(dev), a_sod.to(dev)).mean().item()
                base_c = t_cls(x.to(dev), a_cls.to(dev)).mean().item()
                for set_name, chans in sets.items():
                    with imp.zero_channels(module_sod, chans.tolist()):
                        s = t_sod(x.to(dev), a_sod.to(dev)).mean().item()
                    with imp.zero_channels(module_cls, chans.tolist()):
                        c = t_cls(x.to(dev), a_cls.to(dev)).mean().item()
                    cross.append({"encoder": enc_name, "layer": layer, "removed": set_name, "k": k, "sod_drop": base_s - s, "classification_drop": base_c - c,
                                  "sod_rel_drop": (base_s - s) / abs(base_s) if base_s else float("nan"),
                                  "classification_rel_drop": (base_c - c) / abs(base_c) if base_c else float("nan")})
    # the independently trained twin: how concentrated its class importance is (permutation-free)
    for layer in layers:
        v = imp.channel_importance(imp.ClassLogitTarget(cls), x, layer, method=method, aux=labels, batch_size=batch_size)
        conc.append({"model": "classifier_twin", "layer": layer, "task": "classification", "method": method, "channels_for_half": _concentration(v)})

    # Grad-CAM of the class logit vs the saliency map (and the ground truth)
    layer = layers[-1]
    with torch.no_grad():
        sal = torch.sigmoid(sod(x.to(dev))[:, :1]).cpu()
    cams = {"classifier_twin": imp.grad_cam(imp.ClassLogitTarget(cls), x, layer, aux=labels), "sod_encoder_probe": imp.grad_cam(imp.ClassLogitTarget(probe), x, layer, aux=labels)}
    gc = []
    for name, cam in cams.items():
        r_sal = imp.map_correlation(cam, sal)
        r_gt = imp.map_correlation(cam, gt)
        for i in range(len(x)):
            gc.append({"image": idx[i], "category": names[int(labels[i])], "cam_of": name, "r_cam_saliency": float(r_sal[i]), "r_cam_gt": float(r_gt[i])})
    r_sg = imp.map_correlation(sal, gt)
    for i in range(len(x)):
        gc.append({"image": idx[i], "category": names[int(labels[i])], "cam_of": "saliency", "r_cam_saliency": 1.0, "r_cam_gt": float(r_sg[i])})
    classifiers = [_classifier_row("classifier_twin", cls, test, dev, len(names)),
                   _classifier_row("sod_encoder_probe", probe, test, dev, len(names))]
    return {
        "classifiers": pd.DataFrame(classifiers),
        "importance": pd.DataFrame(imp_rows),
        "overlap": pd.DataFrame(overlap),
        "cross_ablation": pd.DataFrame(cross),
        "concentration": pd.DataFrame(conc),
        "gradcam": pd.DataFrame(gc),
    }


def channel_explorer_data(sod_model: nn.Module, cls_model: nn.Module, images: Tensor, layer: str = "stage3", labels: Optional[Tensor] = None, masks: Optional[Tensor] = None) -> dict[str, Any]:
    """Everything an image/layer/channel explorer shows, precomputed for ``images`` (N,3,H,W):
    ``activations_sod``/``activations_cls`` (N,C,h,w), ``importance_sod``/``importance_cls``
    (N,C: gradient x activation per image for the SOD target and the class logit),
    ``saliency`` (N,H,W), ``class_pred`` (N,), ``images`` (N,H,W,3 in [0,1]), ``layer``."""
    from .data.transforms import IMAGENET_MEAN, IMAGENET_STD

    dev = next(sod_model.parameters()).device
    x = images.to(dev)
    sod_model.eval(), cls_model.eval()
    a_sod = red.collect_activations(sod_model, x, [layer])[layer]
    a_cls = red.collect_activations(cls_model, x, [layer])[layer]
    if a_sod.shape[1] != a_cls.shape[1]:
        raise ConfigError(f"layer {layer!r} has {a_sod.shape[1]} channels in the SOD model and {a_cls.shape[1]} in the classifier")
    i_sod = imp.channel_attributions(imp.SODTarget(sod_model), x, layer, aux=masks)
    i_cls = imp.channel_attributions(imp.ClassLogitTarget(cls_model), x, layer, aux=labels)
    with torch.no_grad():
        sal = torch.sigmoid(sod_model(x)[:, 0]).cpu()
        pred = cls_model(x).argmax(1).cpu()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = (images.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1)
    return {
        "layer": layer,
        "channels": int(a_sod.shape[1]),
        "images": rgb.numpy(),
        "saliency": sal.numpy(),
        "class_pred": pred.numpy(),
        "activations_sod": a_sod.numpy(),
        "activations_cls": a_cls.numpy(),
        "importance_sod": i_sod.numpy(),
        "importance_cls": i_cls.numpy(),
    }
