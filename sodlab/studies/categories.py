"""Study 4, category sensitivity: saliency on seen vs unseen categories, against classification."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Subset

from ..analysis import categories as cat
from ..analysis import probes
from ..analysis.stats import bootstrap_gap, bootstrap_replicates_gap
from ..device import resolve_device
from ..metrics import max_f_from_curves
from ..checkpoint import load
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError, DataError
from .common import (PROTOCOL, category_names, classifier_row, collect, datasets, eval_view, flush_denormals, score_summary, slug, sod_scores,
                     study_tables, training_table)
from .rules import CI_LEVEL, seed_name
from .twins import TwinSpec, classification_train, cls_model, recipes_digest, sod_model, train_checked, twin_spec


@flush_denormals
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
    ci: float = CI_LEVEL,
    control_root: Optional[str | Path] = None,
    twins: str | TwinSpec = "res2net-mini",
    cls_epochs: Optional[int] = None,
    schedule_check: bool = False,
) -> dict[str, pd.DataFrame]:
    """Is saliency category-insensitive, and is classification not?

    The twins of family ``twins`` (`sodlab.studies.twins`: one initial encoder, the same images
    and augmentation, each task's recipe), both trained on the ``n_seen`` seen categories'
    images only. SOD: the saliency twin (``epochs``) scored on the test images of seen and
    unseen categories (max-F, MAE), with bootstrap intervals (at level ``ci``) of the
    seen-minus-unseen gap over test images. Classification: the classifier twin
    (``cls_epochs``, default ``epochs``) on the same seen images; its head cannot name unseen
    categories, so both tasks' encoders are read out the same way: nearest-class-mean accuracy
    of pooled encoder features (class means from training images, scored on test images) on
    seen vs on unseen categories, chance-normalised so that different numbers of classes
    compare. Leave-one-category-out (``loo``): one saliency twin per held-out category (at
    most ``loo_max``, ``loo_epochs``), scored on every test category.

    Positive control (``control_root``, a benchmark generated with ``saliency="category"``,
    where only the category decides which object is salient): the same protocol (a split of its
    categories with the same ``n_seen`` and ``seed``, a saliency twin of the same recipe on the
    seen ones, the seen-minus-unseen max-F with its interval) must find a gap there; its rows
    are task ``control_sod`` in ``summary`` and ``gaps``.

    ``schedule_check``: every model is trained again without the last quarter of its epochs,
    for its validation curve alone (``<model>@check`` in ``training``: the plateau gate's
    evidence, see `sodlab.studies.rules.plateau_gate`).

    Returns ``split``, ``sod_per_category``, ``sod_images`` (per test image: label, seen, unseen,
    mae) with ``sod_curves`` (its per-image F-measure counts) and ``ncm_images`` (per test image
    and encoder, chance-normalised nearest-class-mean correctness), for pooling splits; ``summary`` (task x group), ``gaps`` (one row per
    task/metric: gap, CI low/high at ``level``, relative gap), ``loo`` (long matrix),
    ``classifiers`` (the twin's test accuracy on the seen categories next to chance) and ``classifier_log``/``sod_log``.
    """
    spec = twin_spec(twins)
    dev = resolve_device(device)
    train, val, test = datasets(data_root, image_size, augmentation=spec.augmentation())
    names = category_names(train)
    seen, unseen = cat.split_categories(names, n_seen, seed)
    work = category_work(work_dir, spec, n_seen, seed)
    train_seen = cat.subset_by_category(train, seen)
    test_labels = cat.dataset_labels(test)
    seen_ids, unseen_ids = cat.category_ids(train, seen), cat.category_ids(train, unseen)
    is_seen = np.isin(test_labels, seen_ids)
    is_unseen = np.isin(test_labels, unseen_ids)
    test_seen = Subset(test, np.flatnonzero(is_seen).tolist())
    val_seen = cat.subset_by_category(val, seen)
    training: list[dict] = []

    def fit(name: str, task: str, make: Any, train_ds: Dataset, val_ds: Dataset, run: str, n_epochs: int) -> tuple[torch.nn.Module, Any]:
        # the run the study uses, then (schedule_check) the same recipe without its last quarter, for its curve
        return train_checked(spec, task, make, train_ds, val_ds, work / run, n_epochs, seed, dev, name, training, schedule_check,
                             batch_size=batch_size, progress=progress, image_size=image_size)

    def new_sod() -> torch.nn.Module:
        return sod_model(spec, width, seed)

    # --- SOD on seen categories
    sod, sod_log = fit("sod", "sod", new_sod, train_seen, val_seen, "sod", epochs)
    scores = sod_scores(sod, test, dev)
    per_cat = [{"category": name, "seen": name in seen, **score_summary(scores, np.flatnonzero(scores["label"] == c))}
               for c, name in enumerate(names)]
    summary, gaps = _seen_unseen("sod", scores, is_seen, is_unseen, n_boot, ci, seed)

    if control_root is not None:
        ctrain, cval, ctest = datasets(control_root, image_size, augmentation=spec.augmentation())
        cnames = category_names(ctrain)
        cseen, cunseen = cat.split_categories(cnames, n_seen, seed)
        clabels = cat.dataset_labels(ctest)
        ctl, _ = fit("control_sod", "sod", new_sod, cat.subset_by_category(ctrain, cseen), cat.subset_by_category(cval, cseen),
                     f"control_sod_{slug(Path(control_root).name)}", epochs)
        rows, grows = _seen_unseen("control_sod", sod_scores(ctl, ctest, dev), np.isin(clabels, cat.category_ids(ctrain, cseen)),
                                   np.isin(clabels, cat.category_ids(ctrain, cunseen)), n_boot, ci, seed)
        summary += rows
        gaps += grows

    # --- classification twin on the same seen images (labels renumbered 0..n_seen-1); NCM read-out for both encoders
    seen_map = {c: i for i, c in enumerate(seen_ids)}
    cls_train = _Relabelled(classification_train(spec, data_root, train_seen, image_size, names), seen_map)
    cls_test = _Relabelled(test_seen, seen_map)
    cls, cls_log = fit("classifier", "classification", lambda: cls_model(spec, width, len(seen), seed), cls_train,
                       _Relabelled(val_seen, seen_map), "classifier", cls_epochs or epochs)
    train_eval = eval_view(train, data_root, image_size)
    ncm_images: list[dict] = []
    for task, model in (("classifier", cls), ("sod_encoder", sod)):
        ftr = collect(model, train_eval, dev, what="embed")
        fte = collect(model, test, dev, what="embed")
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
        ncm_images += [{"task": task, "group": "seen", "above_chance": v} for v in a]
        ncm_images += [{"task": task, "group": "unseen", "above_chance": v} for v in b]
        gaps.append({"task": task, "metric": "ncm_accuracy_vs_chance", **bootstrap_gap(a, b, n_boot, ci, seed=seed)})
    summary_df = pd.DataFrame(summary)
    gaps_df = _gap_table(gaps, summary_df, ci)

    # --- leave one category out
    loo_rows = []
    if loo:
        held = names if loo_max is None else names[:loo_max]
        for h, rest in cat.leave_one_category_out(names):
            if h not in held:
                continue
            sub = cat.subset_by_category(train, rest)
            m, _ = fit(f"without {h}", "sod", new_sod, sub, cat.subset_by_category(val, rest), f"loo_{slug(h)}", loo_epochs or epochs)
            sc = sod_scores(m, test, dev)
            for c, name in enumerate(names):
                idx = np.flatnonzero(sc["label"] == c)
                loo_rows.append({"held_out": h, "category": name, "is_held_out": name == h, **score_summary(sc, idx)})
    return study_tables({
        "split": pd.DataFrame({"category": names, "seen": [n in seen for n in names]}),
        "sod_per_category": pd.DataFrame(per_cat),
        "summary": summary_df,
        "gaps": gaps_df,
        "loo": pd.DataFrame(loo_rows, columns=["held_out", "category", "is_held_out", "n_images", "max_f", "mae", "protocol"]),
        "classifiers": pd.DataFrame([classifier_row("classifier", cls, cls_test, dev, len(seen))]),
        # per test image, for pooling splits (`category_replicates`)
        "sod_images": pd.DataFrame({"label": scores["label"], "seen": is_seen, "unseen": is_unseen, "mae": scores["mae"]}),
        "sod_curves": scores["curves"],
        "ncm_images": pd.DataFrame(ncm_images, columns=["task", "group", "above_chance"]),
        "training": training_table(training),
        "sod_log": sod_log,
        "classifier_log": cls_log,
    })


# 4: a protocol column in every table of saliency scores, scored as sodlab.evaluate scores
category_sensitivity.cache_version = 5  # type: ignore[attr-defined]  # 3: the twins family, schedule check; 5: the last quarter's


def category_replicates(
    data_root: str | Path,
    splits: Sequence[int] = (0,),
    n_boot: int = 500,
    ci: float = CI_LEVEL,
    loo: bool = True,
    control_root: Optional[str | Path] = None,
    schedule_check: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """`category_sensitivity` once per category split: split ``s`` draws its seen categories
    and seeds its models with ``s``, so the replicates are new splits and new seeds at once.
    The leave-one-out matrix, the positive control (``control_root``) and the schedule check
    (``schedule_check``: its shorter runs speak for every seed of their model, see
    `sodlab.studies.rules.plateau_gate`) run with the first split only: when time is short,
    conditions go, replicates stay.

    Returns the first split's tables under the names `category_sensitivity` uses, except:
    ``gaps``, pooled over splits (the mean over splits of each split's seen-minus-unseen gap,
    with a two-level bootstrap interval over splits and, within each, its images:
    `bootstrap_replicates_gap`; the control's rows from the first split), ``summary`` (each
    value the mean over splits, ``n_images`` the total), ``classifiers`` and ``training`` (every
    split's models, each named with `replicate_name`), and per
    split ``splits_gaps``, ``splits_summary`` and ``splits`` (category, seen, split)."""
    splits = [int(s) for s in splits]
    if not splits or len(set(splits)) != len(splits):
        raise ConfigError(f"category splits must be distinct seeds, at least one, got {splits}")
    runs = [category_sensitivity(data_root, seed=s, n_boot=n_boot, ci=ci, loo=loo and k == 0,
                                 control_root=control_root if k == 0 else None, schedule_check=schedule_check and k == 0, **kwargs)
            for k, s in enumerate(splits)]
    first = runs[0]

    def name(model: str, k: int) -> str:
        return replicate_name(model, splits[k])

    summary_all = pd.concat([r["summary"].assign(split=s) for r, s in zip(runs, splits)], ignore_index=True)
    gaps_all = pd.concat([r["gaps"].assign(split=s) for r, s in zip(runs, splits)], ignore_index=True)
    summary = (summary_all[summary_all.task != "control_sod"].groupby(["task", "group", "metric"], sort=False)
               .agg(value=("value", "mean"), n_images=("n_images", "sum")).reset_index())
    summary = pd.concat([summary, first["summary"][first["summary"].task == "control_sod"]], ignore_index=True)

    pooled = []
    for metric in ("max_f", "mae"):
        groups = []
        for r in runs:
            im = r["sod_images"]
            vals = r["sod_curves"] if metric == "max_f" else im["mae"].to_numpy()
            groups.append((vals[im["seen"].to_numpy(bool)], vals[im["unseen"].to_numpy(bool)]))
        stat = {"statistic": max_f_from_curves} if metric == "max_f" else {}  # else the default, the mean
        pooled.append({"task": "sod", "metric": metric, **bootstrap_replicates_gap(groups, n_boot, ci, seed=splits[0], **stat)})
    for task in ("classifier", "sod_encoder"):
        groups = []
        for r in runs:
            ncm = r["ncm_images"]
            groups.append(tuple(ncm[(ncm.task == task) & (ncm.group == g)]["above_chance"].to_numpy() for g in ("seen", "unseen")))
        pooled.append({"task": task, "metric": "ncm_accuracy_vs_chance", **bootstrap_replicates_gap(groups, n_boot, ci, seed=splits[0])})
    gaps = _gap_table(pooled, summary, ci)
    control = first["gaps"][first["gaps"].task == "control_sod"].assign(n_replicates=1)
    gaps = pd.concat([gaps, control], ignore_index=True)[list(gaps.columns)]

    out = {key: first[key] for key in ("split", "sod_per_category", "loo", "sod_log", "classifier_log")}
    out.update({
        "summary": summary,
        "gaps": gaps,
        "classifiers": pd.concat([r["classifiers"].assign(model=[name(m, k) for m in r["classifiers"]["model"]])
                                  for k, r in enumerate(runs)], ignore_index=True),
        "training": pd.concat([r["training"].assign(model=[name(m, k) for m in r["training"]["model"]])
                               for k, r in enumerate(runs)], ignore_index=True),
        "splits_gaps": gaps_all,
        "splits_summary": summary_all,
        "splits": pd.concat([r["split"].assign(split=s) for r, s in zip(runs, splits)], ignore_index=True),
    })
    return study_tables(out)


category_replicates.cache_version = 4  # type: ignore[attr-defined]  # 2: models named by seed, schedule check; 3: protocols; 4: @check


def replicate_name(model: str, split: int) -> str:
    """The name of a model of category split ``split`` in `category_replicates`' tables: the
    split is its models' seed (`seed_name`), placed before a schedule check's suffix, so that
    the plateau gate finds every split's replicates and the first split's check."""
    return seed_name(model, split)


def category_work(work_dir: str | Path, twins: str | TwinSpec, n_seen: int, seed: int) -> Path:
    """The folder of one category split's models (`category_sensitivity`, `category_examples`),
    keyed by the family's recipes (`recipes_digest`)."""
    return Path(work_dir) / f"{twin_spec(twins).name}_seen{n_seen}_seed{seed}_{recipes_digest(twins)}"


def _gap_table(rows: list[dict], summary: pd.DataFrame, ci: float) -> pd.DataFrame:
    """The ``gaps`` table of ``rows`` with its interval ``level`` and each gap relative to the
    seen group's value in ``summary`` (NaN where that value is zero: a chance-normalised
    accuracy at chance)."""
    gaps = pd.DataFrame(rows)
    gaps["level"] = ci
    seen = {(r.task, r.metric): r.value for r in summary[summary.group == "seen"].itertuples()}
    gaps["relative_gap"] = [g / seen[(t, m)] if abs(seen.get((t, m), 0.0)) > 1e-9 else float("nan")
                            for t, m, g in zip(gaps.task, gaps.metric, gaps.gap)]
    return gaps


def _seen_unseen(task: str, scores: Mapping[str, np.ndarray], is_seen: np.ndarray, is_unseen: np.ndarray, n_boot: int,
                 ci: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Summary rows (max-F and MAE on seen and on unseen test images) and gap rows (seen minus
    unseen, bootstrap interval over images) of one SOD model's ``scores``."""
    si, ui = np.flatnonzero(is_seen), np.flatnonzero(is_unseen)
    seen, unseen = score_summary(scores, si), score_summary(scores, ui)
    summary = [{"task": task, "group": group, "metric": metric, "value": part[metric], "n_images": len(idx)}
               for metric in ("max_f", "mae") for group, part, idx in (("seen", seen, si), ("unseen", unseen, ui))]
    gaps = [
        {"task": task, "metric": "max_f", **bootstrap_gap(scores["curves"][si], scores["curves"][ui], n_boot, ci, seed=seed, statistic=max_f_from_curves)},
        {"task": task, "metric": "mae", **bootstrap_gap(scores["mae"][si], scores["mae"][ui], n_boot, ci, seed=seed)},
    ]
    return summary, gaps


def loo_drop(loo: pd.DataFrame, metric: str = "max_f") -> pd.DataFrame:
    """Per category: its score when held out vs the mean score of the models that saw it."""
    rows = []
    for c, g in loo.groupby("category", sort=False):
        held = g[g.is_held_out][metric]
        other = g[~g.is_held_out][metric]
        if len(held) and len(other):
            rows.append({"category": c, f"{metric}_held_out": float(held.iloc[0]), f"{metric}_seen": float(other.mean()),
                         "drop": float(other.mean() - held.iloc[0]), "protocol": g["protocol"].iloc[0] if "protocol" in g else PROTOCOL})
    # one held-out model alone gives no category both held out and seen: an empty table, its columns named
    return pd.DataFrame(rows, columns=["category", f"{metric}_held_out", f"{metric}_seen", "drop", "protocol"])


MAIN_SPLIT = "random split"


def split_label(held_out: Optional[str] = None) -> str:
    """The name of a category split in `scores_by_split` and `category_examples`."""
    return MAIN_SPLIT if held_out is None else f"without {held_out}"


def scores_by_split(res: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-category SOD scores of every model `category_sensitivity` trained, one row per
    (split, category): ``split`` (`split_label`), ``category``, ``trained_on`` (the model saw
    this category), ``max_f``, ``mae``."""
    main = res["sod_per_category"]
    rows = [main.assign(split=split_label(), trained_on=main["seen"])[["split", "category", "trained_on", "max_f", "mae"]]]
    loo = res["loo"]
    if len(loo):
        rows.append(loo.assign(split=loo["held_out"].map(split_label), trained_on=~loo["is_held_out"].astype(bool))
                    [["split", "category", "trained_on", "max_f", "mae"]])
    return pd.concat(rows, ignore_index=True)


@torch.no_grad()
def category_examples(
    data_root: str | Path,
    n_seen: int,
    seed: int,
    work_dir: str | Path,
    image_size: int,
    per_category: int = 3,
    device: Optional[str] = "auto",
    twins: str | TwinSpec = "res2net-mini",
) -> dict[str, Any]:
    """A few test images of every category with each trained model's saliency maps, for
    the category explorer: ``images`` (N, H, W, 3 in [0, 1]), ``masks`` (N, H, W),
    ``categories`` (N names), ``splits`` (names, `split_label`) and ``pred_<i>`` (N, H, W)
    for the i-th split. Reads the models `category_sensitivity` trained into ``work_dir`` (each at its best validation epoch, as the study used it)."""
    dev = resolve_device(device)
    _, _, test = datasets(data_root, image_size, preload=False)  # a few test images read
    names = category_names(test)
    work = category_work(work_dir, twins, n_seen, seed)
    runs = [(split_label(), work / "sod")] + [(split_label(h), work / f"loo_{slug(h)}") for h in names]
    runs = [(name, run) for name, run in runs if (run / "best.pt").is_file()]
    if not runs:
        raise DataError(f"{work}: no trained models of the category study (run category_sensitivity first)")
    labels = cat.dataset_labels(test)
    pick = [int(i) for c in range(len(names)) for i in np.flatnonzero(labels == c)[:per_category]]
    items = [test[i] for i in pick]
    x = torch.stack([it["image"] for it in items])
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out: dict[str, Any] = {
        "images": (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy(),
        "masks": torch.stack([it["mask"][0] for it in items]).numpy(),
        "categories": [names[int(labels[i])] for i in pick],
        "splits": [name for name, _ in runs],
    }
    for k, (_, run) in enumerate(runs):
        model = load(run / "best.pt").to(dev).eval()
        out[f"pred_{k}"] = torch.sigmoid(model(x.to(dev))[:, 0]).cpu().numpy()
    return out


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

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        # keeps a preloaded base's batched augmentation (`LabelledImages.__getitems__`)
        fetch = getattr(self.base, "__getitems__", None)
        items = fetch(list(indices)) if fetch is not None else [self.base[i] for i in indices]
        return [{**item, "label": self.mapping[int(item["label"])]} for item in items]
