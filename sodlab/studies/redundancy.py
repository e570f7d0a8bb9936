"""Study 6, redundancy: parameters each task needs, and how redundant its features are."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Subset

from ..analysis import redundancy as red
from ..baselines import baseline_metrics
from ..device import resolve_device
from ..errors import ConfigError
from ..metrics import max_f_from_curves
from .common import (PROTOCOL, bn_gammas, category_names, class_correct, classifier_row, collapsed_share, datasets, flush_denormals, score_summary,
                     sod_scores, spread, study_tables, training_table, validation_rows, with_statistics_of)
from .rules import CI_LEVEL, SCHEDULE_CHECK, check_epochs, seed_name
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
    seeds: Sequence[int] = (0,),
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/redundancy",
    n_images: int = 64,
    layers: Optional[Sequence[str]] = None,
    regularizer: Optional[str] = None,
    batch_size: int = 16,
    prune_thresholds: Sequence[float] = (0.01, 0.05, 0.1),
    progress: bool = False,
    twins: str = "res2net-mini",
    cls_epochs: Optional[int] = None,
    model_store: Optional[str | Path] = None,
    schedule_check: bool = False,
    n_boot: int = 1000,
) -> dict[str, pd.DataFrame]:
    """Does SOD need fewer parameters than classification, and use them more redundantly?

    For each seed of ``seeds`` and each width, the twins of family ``twins``
    (`sodlab.studies.twins`: one initial encoder, the same images and augmentation, each task's
    recipe; ``epochs`` for saliency, ``cls_epochs`` for the classifier, ``batch_size`` for the
    CSNet family only) are trained with ``regularizer`` on their BatchNorm scales (default:
    ``"dwd"`` for CSNet, whose recipe it belongs to, none for Res2Net-mini, whose recipes have
    none). ``model_store``: a folder shared by the notebooks (twins trained alike elsewhere
    are reused). ``layers``: the stem (Res2Net: ``backbone.maxpool``, the stem's last module),
    the first stage and the family's layers.

    Returns ``width_sweep`` (parameters and the task metric per seed, task and width; each
    headline row carries its task's ``floor``, what a model that learnt nothing scores on the
    same test images: the centre-bias guess's max-F for SOD, chance (1 / classes) for
    classification), ``retention`` (per seed: the share of the widest model's lead over the
    floor each task keeps at the narrowest width, and their difference), ``retention_stats``
    (that difference's mean over the seeds with a two-level bootstrap interval over seeds and
    test images, `bootstrap_retention`), ``classifiers`` (each seed's and width's classifier:
    test accuracy next to chance) and ``training`` (validation curves, named `seed_name`;
    with ``schedule_check`` the first seed's twins are trained again without the last quarter
    of their epochs, ``<model>@check``, the plateau gate's evidence for an annealed schedule).

    Of the first seed's models: ``layers`` (effective rank, components for 90% variance,
    channel correlation per layer, task and width), ``spectra`` (PCA spectra at the largest
    width), ``cka_layers`` (layer x layer CKA within each twin at the largest width),
    ``cka_twins`` (CKA between the SOD and classification encoders, same layer, per width) and
    ``pruning`` (share of regularised channels whose |gamma| falls below a fraction of its
    block's largest, for both tasks). ``cka_baselines`` puts the twins' CKA (same layer,
    largest width) beside what it should be read against: each trained model against its own
    initial weights (with BatchNorm statistics of the same images; how far training moved the
    layer; both twins start from one encoder) and, with a second seed, each task's model
    against the second seed's (how alike two runs of one task are: the twins can only be
    called different relative to that).
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {seeds}")
    dev = resolve_device(device)
    spec = twin_spec(twins)
    regularizer = regularizer or ("dwd" if spec.name == "csnet" else "none")
    layers = tuple(layers or (("stem", "stage1") if spec.name == "csnet" else ("backbone.maxpool", "backbone.layer1")) + spec.layers)
    cls_epochs = epochs if cls_epochs is None else cls_epochs
    train, val, test = datasets(data_root, image_size, augmentation=spec.augmentation())
    cls_train = classification_train(spec, data_root, train, image_size, category_names(train))
    names = category_names(train)
    test_sub = Subset(test, spread(len(test), n_images, seeds[0]))
    images = torch.stack([test_sub[i]["image"] for i in range(len(test_sub))])
    floors = {"max_f": baseline_metrics(Path(data_root) / "test", ["centre bias"], protocol=PROTOCOL)["centre bias"]["max_f"],
              "accuracy": 1.0 / len(names), "mae": float("nan")}
    sweep, layer_rows, spectra, cka_layers, cka_twins, pruning, classifiers, training = [], [], [], [], [], [], [], []
    cka_base: list[dict] = []
    per_image: list[dict] = []
    widest = max(widths)
    first_acts: dict[str, dict] = {}

    def twins(width: int, s: int, n_epochs: int, n_cls_epochs: int, checking: bool = False) -> tuple:
        local = Path(work_dir) / f"{spec.name}_seed{s}" / (f"w{width}" + ("_check" if checking else ""))
        runs = twin_runs(spec, data_root, train, width, s, n_epochs, n_cls_epochs, batch_size, local, model_store, image_size=image_size,
                         regularizer=regularizer)
        sod, sod_log = train_twin(spec, "sod", sod_model(spec, width, s), train, val, runs["sod"], n_epochs, s, dev, batch_size=batch_size,
                                  regularizer=regularizer, progress=progress, image_size=image_size)
        cls, cls_log = train_twin(spec, "classification", cls_model(spec, width, len(names), s), cls_train, val, runs["classification"],
                                  n_cls_epochs, s, dev, batch_size=batch_size, regularizer=regularizer, progress=progress, image_size=image_size)
        return sod, sod_log, cls, cls_log

    for i, seed in enumerate(seeds):
        first = i == 0
        scores: dict = {"sod": {}, "classification": {}}
        for width in widths:
            sod, sod_log, cls, cls_log = twins(width, seed, epochs, cls_epochs)
            rows = validation_rows(f"sod width {width}", sod_log) + validation_rows(f"classification width {width}", cls_log)
            shorter = check_epochs(epochs, cls_epochs) if schedule_check and first else None  # None: no check
            if shorter:
                _, hs_log, _, hc_log = twins(width, seed, *shorter, checking=True)
                rows += [{**r, "model": r["model"] + SCHEDULE_CHECK} for r in
                         validation_rows(f"sod width {width}", hs_log) + validation_rows(f"classification width {width}", hc_log)]
            training += [{**r, "model": seed_name(r["model"], seed)} for r in rows]
            sod_s = sod_scores(sod, test, dev)
            summ = score_summary(sod_s)
            correct = class_correct(cls, test, dev)
            scores["sod"][width], scores["classification"][width] = sod_s["curves"], correct
            classifiers.append({"seed": seed, **classifier_row(f"classifier_w{width}", cls, test, dev, len(names), width=width, correct=correct)})
            n_sod, n_cls = sum(p.numel() for p in sod.parameters()), sum(p.numel() for p in cls.parameters())
            sweep += [{"seed": seed, "width": width, "task": "sod", "params": n_sod, "encoder_params": encoder_parameters(sod), "metric": "max_f", "value": summ["max_f"]},
                      {"seed": seed, "width": width, "task": "sod", "params": n_sod, "encoder_params": encoder_parameters(sod), "metric": "mae", "value": summ["mae"]},
                      {"seed": seed, "width": width, "task": "classification", "params": n_cls, "encoder_params": encoder_parameters(cls), "metric": "accuracy",
                       "value": classifiers[-1]["accuracy"]}]
            if first:
                acts = _describe(sod, cls, images, layers, width, widest, regularizer, prune_thresholds, dev, seeds[0],
                                 layer_rows, pruning, cka_twins, spectra, cka_layers)
                if width == widest:
                    first_acts = acts
                    others = {"sod_init": _with_statistics_of(sod_model(spec, width, seed), images, dev),
                              "classification_init": _with_statistics_of(cls_model(spec, width, len(names), seed), images, dev)}
                    acts.update({name: red.collect_activations(model.to(dev).eval(), images, layers, device=dev) for name, model in others.items()})
                    # the twins' own row is cka_twins' at this width, computed above
                    cka_base += [{"width": width, "layer": row["layer"], "comparison": "twins", "cka": row["cka"]}
                                 for row in cka_twins if row["width"] == width]
                    cka_base += _cka_rows(acts, acts, layers, width, [("sod_trained_vs_init", "sod", "sod_init"),
                                                                      ("classification_trained_vs_init", "classification", "classification_init")])
            elif i == 1 and width == widest:
                acts = {task: red.collect_activations(model, images, layers, device=dev) for task, model in (("sod", sod), ("classification", cls))}
                cka_base += _cka_rows(first_acts, acts, layers, width, [("sod_seed_vs_seed", "sod", "sod"),
                                                                        ("classification_seed_vs_seed", "classification", "classification")])
        per_image.append(scores)
    sweep = [{**row, "floor": floors[row["metric"]]} for row in sweep]
    retention, stats = bootstrap_retention(per_image, seeds, floors["max_f"], floors["accuracy"], n_boot=n_boot, seed=seeds[0])
    return study_tables({
        "width_sweep": pd.DataFrame(sweep),
        "retention": retention,
        "retention_stats": stats.assign(protocol=PROTOCOL),  # of the saliency side of the retention effect
        "layers": pd.concat(layer_rows, ignore_index=True),
        "spectra": pd.concat(spectra, ignore_index=True),
        "cka_layers": pd.DataFrame(cka_layers),
        "cka_twins": pd.DataFrame(cka_twins),
        "cka_baselines": pd.DataFrame(cka_base),
        "pruning": pd.DataFrame(pruning),
        "classifiers": pd.DataFrame(classifiers),
        "training": training_table(training),
    })


def _describe(sod: nn.Module, cls: nn.Module, images: torch.Tensor, layers: Sequence[str], width: int, widest: int, regularizer: str,
              prune_thresholds: Sequence[float], dev: torch.device, seed: int, layer_rows: list, pruning: list, cka_twins: list,
              spectra: list, cka_layers: list) -> dict[str, dict]:
    """The descriptive tables of one width's twins (appended to the lists given); returns
    both twins' activations."""
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
    if width == widest:
        for task in ("sod", "classification"):
            sp = red.spectrum_table(acts[task], seed=seed)
            sp.insert(0, "task", task)
            spectra.append(sp)
            m = red.cka_matrix(acts[task])
            cka_layers += [{"task": task, "layer_a": a, "layer_b": b, "cka": float(m.loc[a, b])} for a in m.index for b in m.columns]
        m = red.cka_matrix(acts["sod"], acts["classification"])
        cka_layers += [{"task": "sod_vs_classification", "layer_a": a, "layer_b": b, "cka": float(m.loc[a, b])} for a in m.index for b in m.columns]
    return acts


def _cka_rows(acts_a: dict, acts_b: dict, layers: Sequence[str], width: int, pairs: Sequence[tuple[str, str, str]]) -> list[dict]:
    return [{"width": width, "layer": layer, "comparison": comparison,
             "cka": red.linear_cka(red.cka_features(acts_a[a][layer]), red.cka_features(acts_b[b][layer]))}
            for comparison, a, b in pairs for layer in layers]


def _retention(sod: Mapping[int, np.ndarray], cls: Mapping[int, np.ndarray], sod_floor: float, cls_floor: float,
               rows: Optional[np.ndarray] = None) -> tuple[float, float]:
    """Share of the widest model's lead over the floor each task keeps at the narrowest width,
    from per-image SOD curves and per-image class correctness (the images ``rows``)."""
    lo, hi = min(sod), max(sod)
    pick = (lambda a: a) if rows is None else (lambda a: a[rows])  # noqa: E731

    def kept(value: Mapping[int, float], floor: float) -> float:
        lead = value[hi] - floor
        return float((value[lo] - floor) / lead) if lead > 0 else float("nan")
    return (kept({w: max_f_from_curves(pick(sod[w])) for w in (lo, hi)}, sod_floor),
            kept({w: float(np.mean(pick(cls[w]))) for w in (lo, hi)}, cls_floor))


def bootstrap_retention(per_seed: Sequence[Mapping[str, Mapping[int, np.ndarray]]], seeds: Sequence[int], sod_floor: float,
                        cls_floor: float, n_boot: int = 1000, level: float = CI_LEVEL, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The redundancy study's effect: per seed, the share of its widest model's lead over the
    floor SOD keeps at the narrowest width minus the share classification keeps; and its mean
    over the seeds with a percentile interval at ``level`` from ``n_boot`` two-level resamples
    (the seeds with replacement when there is more than one, then the test images within each,
    the same images for both tasks and every width). ``per_seed``: per seed,
    ``{"sod": {width: per-image curves}, "classification": {width: per-image correctness}}``.
    The floors stay fixed (properties of the benchmark). Returns the per-seed table
    (``retention``) and the pooled row (``retention_stats``)."""
    if not per_seed or len(per_seed) != len(seeds):
        raise ConfigError(f"retention needs one score set per seed, got {len(per_seed)} for seeds {list(seeds)}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    rows = []
    for s, sc in zip(seeds, per_seed):
        sod_kept, cls_kept = _retention(sc["sod"], sc["classification"], sod_floor, cls_floor)
        rows.append({"seed": s, "sod_kept": sod_kept, "classification_kept": cls_kept, "effect": sod_kept - cls_kept})
    table = pd.DataFrame(rows)
    n = [len(next(iter(sc["classification"].values()))) for sc in per_seed]
    rng = np.random.default_rng(seed)
    r = len(per_seed)
    dist = np.empty(int(n_boot))
    for t in range(int(n_boot)):
        drawn = rng.integers(0, r, r) if r > 1 else [0]
        effects = []
        for k in drawn:
            a, b = _retention(per_seed[k]["sod"], per_seed[k]["classification"], sod_floor, cls_floor, rng.integers(0, n[k], n[k]))
            effects.append(a - b)
        dist[t] = np.mean(effects)
    finite = dist[np.isfinite(dist)]
    tail = (1.0 - level) / 2
    low, high = (float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))) if len(finite) else (float("nan"), float("nan"))
    stats = pd.DataFrame([{"effect": float(table["effect"].mean()), "ci_low": low, "ci_high": high, "ci_level": level,
                           "n_seeds": r, "seeds": ",".join(str(s) for s in seeds), "n_images": int(min(n)), "n_boot": int(n_boot),
                           "undefined_resamples": int(len(dist) - len(finite))}])
    return table, stats


# 2: the width sweep gained each task's ``floor``; 3: ``cka_baselines``; 4: twins; 5: seeds, retention, schedule checks
redundancy_study.cache_version = 7  # type: ignore[attr-defined]  # 7: the schedule check is the last quarter's


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
