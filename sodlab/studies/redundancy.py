"""Study 6, redundancy: parameters each task needs, and how redundant its features are."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Subset

from ..analysis import redundancy as red
from ..baselines import baseline_metrics
from ..device import resolve_device
from ..errors import ConfigError
from .common import (bn_gammas, category_names, classifier_row, collapsed_share, datasets, flush_denormals, score_summary, sod_scores,
                     spread, training_table, validation_rows, with_statistics_of)
from .twins import classification_train, cls_model, encoder_parameters, sod_model, train_twin, twin_runs, twin_spec


def _with_statistics_of(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 16) -> nn.Module:
    """`with_statistics_of` the stacked ``images``, ``batch_size`` at a time."""
    return with_statistics_of(model, (images[i:i + batch_size] for i in range(0, len(images), batch_size)), device)


def _gamma_dead_fraction(model: nn.Module, thresholds: Sequence[float]) -> list[dict]:
    g = bn_gammas(model)
    return [{"threshold": t, "frac_channels_below": collapsed_share(g, t)} for t in thresholds]


@flush_denormals
def redundancy_study(
    data_root: str | Path,
    widths: Sequence[int] = (4, 8),
    epochs: int = 3,
    image_size: int = 64,
    seed: int = 0,
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/redundancy",
    n_images: int = 64,
    layers: Optional[Sequence[str]] = None,
    regularizer: Optional[str] = None,
    batch_size: int = 16,
    prune_thresholds: Sequence[float] = (0.01, 0.05, 0.1),
    cka_seed: Optional[int] = None,
    progress: bool = False,
    twins: str = "res2net-mini",
    cls_epochs: Optional[int] = None,
    model_store: Optional[str | Path] = None,
) -> dict[str, pd.DataFrame]:
    """Does SOD need fewer parameters than classification, and use them more redundantly?

    For each width, the twins of family ``twins`` (`sodlab.studies.twins`: one initial
    encoder, the same images and augmentation, each task's recipe; ``epochs`` for saliency,
    ``cls_epochs`` for the classifier, ``batch_size`` for the CSNet family only) are trained
    with ``regularizer`` on their BatchNorm scales (default: ``"dwd"`` for CSNet, whose recipe
    it belongs to, none for Res2Net-mini, whose recipes have none). ``model_store``: a folder
    shared by the notebooks (twins trained alike elsewhere are reused). ``layers``: the stem
    (Res2Net: ``backbone.maxpool``, the stem's last module), the first stage and the family's
    layers. Returns ``width_sweep`` (parameters and
    the task metric), ``layers`` (effective rank, components for 90% variance, channel
    correlation per layer, task and width), ``spectra`` (PCA spectra at the largest width),
    ``cka_layers`` (layer x layer CKA within each twin at the largest width), ``cka_twins``
    (CKA between the SOD and classification encoders, same layer, per width) and
    ``pruning`` (share of regularised channels whose |gamma| falls below a fraction of its
    block's largest, for both tasks) and ``classifiers`` (each width's classifier: test
    accuracy next to chance). Each headline row of ``width_sweep`` carries its task's
    ``floor``, what a model that learnt nothing scores on the same test images: the
    centre-bias guess's max-F for SOD, chance (1 / classes) for classification.

    ``cka_baselines`` puts the twins' CKA (same layer, largest width) beside what it should be
    read against: each trained model against its own initial weights (with BatchNorm statistics
    of the same images; how far training moved the layer; both twins start from one encoder) and, with ``cka_seed``, each task against a
    second model of that task trained from seed ``cka_seed`` (how alike two runs of one task
    are: the twins can only be called different relative to that).
    """
    if cka_seed is not None and cka_seed == seed:
        raise ConfigError(f"cka_seed must differ from seed ({seed}): a second run of the same seed is the same model")
    dev = resolve_device(device)
    spec = twin_spec(twins)
    regularizer = regularizer or ("dwd" if spec.name == "csnet" else "none")
    layers = tuple(layers or (("stem", "stage1") if spec.name == "csnet" else ("backbone.maxpool", "backbone.layer1")) + spec.layers)
    cls_epochs = epochs if cls_epochs is None else cls_epochs
    train, val, test = datasets(data_root, image_size, augmentation=spec.augmentation())
    cls_train = classification_train(spec, data_root, train, image_size, category_names(train))
    names = category_names(train)
    test_sub = Subset(test, spread(len(test), n_images, seed))
    images = torch.stack([test_sub[i]["image"] for i in range(len(test_sub))])
    work = Path(work_dir) / f"{spec.name}_seed{seed}"
    floors = {"max_f": baseline_metrics(Path(data_root) / "test", ["centre bias"])["centre bias"]["max_f"],
              "accuracy": 1.0 / len(names), "mae": float("nan")}
    sweep, layer_rows, spectra, cka_layers, cka_twins, pruning, classifiers, training = [], [], [], [], [], [], [], []
    cka_base: list[dict] = []

    def twins(width: int, s: int, suffix: str = "") -> tuple:
        local = work / f"w{width}{suffix}"
        runs = twin_runs(spec, data_root, train, width, s, epochs, cls_epochs, batch_size, local, model_store, image_size=image_size,
                         regularizer=regularizer)
        sod, sod_log = train_twin(spec, "sod", sod_model(spec, width, s), train, val, runs["sod"], epochs, s, dev, batch_size=batch_size,
                                  regularizer=regularizer, progress=progress, image_size=image_size)
        cls, cls_log = train_twin(spec, "classification", initial_classifier(width, s), cls_train, val, runs["classification"], cls_epochs,
                                  s, dev, batch_size=batch_size, regularizer=regularizer, progress=progress, image_size=image_size)
        return sod, sod_log, cls, cls_log

    def initial_classifier(width: int, s: int) -> nn.Module:
        return cls_model(spec, width, len(names), s)  # the same initial encoder as the SOD model

    for width in widths:
        sod, sod_log, cls, cls_log = twins(width, seed)
        training += validation_rows(f"sod width {width}", sod_log) + validation_rows(f"classification width {width}", cls_log)
        s = score_summary(sod_scores(sod, test, dev))
        classifiers.append(classifier_row(f"classifier_w{width}", cls, test, dev, len(names), width=width))
        acc = classifiers[-1]["accuracy"]
        enc = encoder_parameters
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
            others = {"sod_init": sod_model(spec, width, seed), "classification_init": initial_classifier(width, seed)}
            if cka_seed is not None:
                sod2, log2, cls2, clog2 = twins(width, cka_seed, f"_seed{cka_seed}")
                training += validation_rows(f"sod width {width} seed {cka_seed}", log2) + validation_rows(
                    f"classification width {width} seed {cka_seed}", clog2)
                others.update({"sod_other_seed": sod2, "classification_other_seed": cls2})
            for name in ("sod_init", "classification_init"):
                others[name] = _with_statistics_of(others[name], images, dev)
            acts.update({name: red.collect_activations(model.to(dev).eval(), images, layers, device=dev) for name, model in others.items()})
            # the twins' own row is cka_twins' at this width, computed above
            cka_base += [{"width": width, "layer": row["layer"], "comparison": "twins", "cka": row["cka"]}
                         for row in cka_twins if row["width"] == width]
            pairs = [("sod_trained_vs_init", "sod", "sod_init"), ("classification_trained_vs_init", "classification", "classification_init")]
            if cka_seed is not None:
                pairs += [("sod_seed_vs_seed", "sod", "sod_other_seed"), ("classification_seed_vs_seed", "classification", "classification_other_seed")]
            for comparison, a, b in pairs:
                for layer in layers:
                    cka_base.append({"width": width, "layer": layer, "comparison": comparison,
                                     "cka": red.linear_cka(red.cka_features(acts[a][layer]), red.cka_features(acts[b][layer]))})
    sweep = [{**row, "floor": floors[row["metric"]]} for row in sweep]
    return {
        "width_sweep": pd.DataFrame(sweep),
        "layers": pd.concat(layer_rows, ignore_index=True),
        "spectra": pd.concat(spectra, ignore_index=True),
        "cka_layers": pd.DataFrame(cka_layers),
        "cka_twins": pd.DataFrame(cka_twins),
        "cka_baselines": pd.DataFrame(cka_base),
        "pruning": pd.DataFrame(pruning),
        "classifiers": pd.DataFrame(classifiers),
        "training": training_table(training),
    }


# 2: the width sweep gained each task's ``floor``; 3: ``cka_baselines``; 4: twins
redundancy_study.cache_version = 4  # type: ignore[attr-defined]


def task_scores(sweep: pd.DataFrame) -> pd.DataFrame:
    """The headline metric rows of a ``width_sweep`` (max-F for SOD, accuracy for
    classification) with ``relative``: each value over its task's value at the widest width,
    so that the two tasks share one axis; and, when the sweep has a ``floor`` column,
    ``above_floor``: the share of the widest model's lead over the floor that a width keeps,
    ``(value - floor) / (widest - floor)`` (0 = no better than a model that learnt nothing).
    Why both: SOD's floor is high (a centre blob alone scores a max-F near 0.46 on the
    benchmark), so a share of the raw score credits SOD with what it gets for free."""
    main = sweep[sweep.metric.isin(["max_f", "accuracy"])].copy()
    widest = main.loc[main.groupby("task")["width"].idxmax()].set_index("task")["value"]
    main["relative"] = main["value"] / main["task"].map(widest)
    if "floor" in main:
        lead = main["task"].map(widest) - main["floor"]
        main["above_floor"] = (main["value"] - main["floor"]) / lead.where(lead > 0)
    return main


PLATEAU_SHARE = 0.95


def params_to_reach(scores: pd.DataFrame, share: float = PLATEAU_SHARE, column: str = "above_floor") -> pd.DataFrame:
    """Per task, the parameters a model needs to keep ``share`` of its widest model's lead over
    the floor (`task_scores`' ``above_floor``): linear in log-parameters between the two
    widths around the crossing, the first crossing from the narrow end. ``censored`` is True
    when even the narrowest model keeps ``share`` (the need is at most its parameters); a
    task whose ``column`` is undefined gets NaN."""
    rows = []
    for task, g in scores.groupby("task", sort=False):
        g = g.sort_values("params")
        p, v = g["params"].to_numpy(float), g[column].to_numpy(float)
        if not np.isfinite(v).all():
            rows.append({"task": task, "share": share, "params": float("nan"), "censored": False})
            continue
        if v[0] >= share:
            rows.append({"task": task, "share": share, "params": float(p[0]), "censored": True})
            continue
        i = int(np.argmax(v >= share))  # the widest model keeps 1.0, so a crossing exists
        t = (share - v[i - 1]) / (v[i] - v[i - 1])
        rows.append({"task": task, "share": share, "params": float(np.exp(np.log(p[i - 1]) + t * (np.log(p[i]) - np.log(p[i - 1])))),
                     "censored": False})
    return pd.DataFrame(rows)
