"""Study 7, mechanisms: do saliency and classification rely on the same channels?"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..analysis import importance as imp
from ..analysis import probes
from ..analysis.overlap import LayerAttributions, pooled_bootstrap_overlap, pooled_permutation_null, pooled_split_half_overlap
from ..baselines import baseline_metrics
from ..device import resolve_device
from ..errors import ConfigError
from .common import (PROTOCOL, category_names, classifier_row, collect, datasets, eval_view, flush_denormals, score_summary, sod_scores, spread,
                     study_tables, training_table, validation_rows)
from .rules import CI_LEVEL, SCHEDULE_CHECK, check_epochs, seed_name
from .transfer import saliency_heads, transfer_matrix, with_data_statistics
from .twins import TwinSpec, class_readout, classification_train, cls_model, sod_model, train_twin, twin_runs, twin_spec


def _concentration(v: Tensor, share: float = 0.5) -> float:
    """Fraction of channels that carry ``share`` of the total |importance|."""
    a = np.sort(np.abs(v.numpy()))[::-1]
    if a.sum() == 0:
        return float("nan")
    return float((np.searchsorted(np.cumsum(a) / a.sum(), share - 1e-12) + 1) / len(a))


@flush_denormals
def mechanisms_study(
    data_root: str | Path,
    width: int = 8,
    epochs: int = 3,
    image_size: int = 64,
    n_images: int = 32,
    seeds: Sequence[int] = (0,),
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/mechanisms",
    layers: Optional[Sequence[str]] = None,
    method: str = "grad_x_act",
    top_fraction: float = 0.25,
    batch_size: int = 16,
    n_boot: int = 1000,
    n_perm: int = 2000,
    transfer: bool = True,
    progress: bool = False,
    twins: str = "res2net-mini",
    cls_epochs: Optional[int] = None,
    head_epochs: Optional[int] = None,
    model_store: Optional[str | Path] = None,
    schedule_check: bool = False,
    floor_head_epochs: Optional[int] = None,
) -> dict[str, pd.DataFrame]:
    """Do saliency and classification rely on the same channels?

    The twins (`sodlab.studies.twins`, family ``twins``) are a saliency model trained for
    ``epochs`` and a classifier trained for ``cls_epochs`` (default ``epochs``), each by its
    family's recipe (``batch_size`` applies to the CSNet family only), from one initial encoder
    on the same images; one pair per seed of ``seeds``, every table carrying a ``seed`` column.
    ``layers``: the family's by default. ``model_store``: a folder shared by the notebooks,
    where the twins are kept under a key of everything that makes them (so a notebook that
    needs the same twins reuses them); by default they live in ``work_dir``.

    Channel indices only correspond within one network, so the channel-level comparison is
    made within one encoder read out for both tasks (our protocol), for two encoders (column
    ``encoder``): ``classification_encoder``, the classifier's, read out by its own class head
    (target: the true class's logit) and by a saliency head trained on it frozen for
    ``head_epochs`` (target: mean saliency logit over the ground-truth region; the transfer
    matrix's head on the untrained encoder, its floor, trains ``floor_head_epochs``, default
    ``head_epochs``: a head on random features climbs longer); and
    ``sod_encoder``, the saliency model's, read out by its own saliency head and by a linear
    class head fitted in closed form on its pooled features. Each read-out's test score beside
    its floor (chance; the centre-bias guess) is in ``readouts``. Per encoder and layer:
    importance (``method`` and channel ablation), top-k Jaccard with its chance level,
    Spearman rank correlation, and cross-ablation (zero the top-k channels of one task,
    measure both targets, against k random channels); how concentrated the classifier's
    importance is; Grad-CAM of its class logit against the SOD model's saliency map and the
    ground truth, per image. Every seed is read on the same ``n_images`` test images.

    The overlap's uncertainty and controls come from the per-image attributions
    (`sodlab.analysis.overlap`), pooled over the seeds: a two-level bootstrap over seeds and
    the images (``n_boot`` resamples, `CI_LEVEL`), a null with each layer's class channels
    relabelled at random (``n_perm``), and each task's overlap with itself between two halves
    of the images.

    ``transfer``: the transfer matrix of the first seed's twins
    (`sodlab.studies.transfer.transfer_matrix`): each encoder (saliency, classification,
    untrained) frozen and read out for each task by a new head (a second saliency head, on the
    untrained encoder, is trained for it). ``schedule_check``: the first seed's models are also
    trained without the last quarter of their epochs (in the store beside them), and their
    validation curves join ``training`` as ``<model>@check``: the plateau gate's evidence for an
    annealed schedule
    (`sodlab.studies.rules.plateau_gate`).

    Returns ``readouts``, ``transfer`` (when asked), ``importance``, ``overlap``,
    ``overlap_stats`` (per encoder and method, pooled over the seeds: the effect, its interval,
    the permutation null and the split-half overlaps), ``cross_ablation``, ``concentration``,
    ``gradcam``, ``classifiers`` (test accuracy next to chance of the twin and of the SOD
    encoder's class head: a class target that has barely left chance makes the channel
    comparison weak) and ``training`` (validation curves, named `seed_name`).
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {seeds}")
    dev = resolve_device(device)
    spec = twin_spec(twins)
    layers = tuple(layers or spec.layers)
    cls_epochs = epochs if cls_epochs is None else cls_epochs
    head_epochs = epochs if head_epochs is None else head_epochs
    floor_head_epochs = head_epochs if floor_head_epochs is None else floor_head_epochs
    train, val, test = datasets(data_root, image_size, augmentation=spec.augmentation())
    names = category_names(train)
    train_eval = eval_view(train, data_root, image_size)
    centre = baseline_metrics(Path(data_root) / "test", ["centre bias"], protocol=PROTOCOL)["centre bias"]["max_f"]
    idx = spread(len(test), n_images, seeds[0])
    items = [test[i] for i in idx]
    x = torch.stack([it["image"] for it in items])
    gt = torch.stack([it["mask"] for it in items])
    labels = torch.as_tensor([int(it["label"]) for it in items])
    ctx = _Context(spec, Path(data_root), train, val, test, train_eval, names, width, epochs, cls_epochs, head_epochs, floor_head_epochs,
                   image_size, batch_size, work_dir, model_store, dev, progress)

    tables: dict[str, list[dict]] = {k: [] for k in ("readouts", "classifiers", "importance", "overlap", "cross_ablation",
                                                     "concentration", "gradcam", "training")}
    per_image: dict[tuple[str, str], list[list[LayerAttributions]]] = {}
    matrix = pd.DataFrame(columns=["encoder", "task", "readout", "metric", "value", "n_images"])
    for i, seed in enumerate(seeds):
        first = i == 0
        sod, cls, heads, untrained, probe = _twins_and_readouts(ctx, seed, tables["training"], transfer and first,
                                                                 schedule_check and first)
        encoders = {
            "classification_encoder": (imp.SODTarget(heads["classification"]), imp.ClassLogitTarget(cls)),
            "sod_encoder": (imp.SODTarget(sod), imp.ClassLogitTarget(probe)),
        }
        for enc_name, (t_sod, t_cls) in encoders.items():
            found = _read_encoder(t_sod, t_cls, x, gt, labels, layers, method, top_fraction, batch_size, dev, seed)
            for key, rows in found.tables.items():
                tables[key] += [{"seed": seed, "encoder": enc_name, **r} for r in rows]
            for meth, las in found.attributions.items():
                per_image.setdefault((enc_name, meth), []).append(las)
        tables["gradcam"] += _gradcam(sod, cls, probe, x, gt, labels, idx, names, layers[-1], dev, seed)
        classifiers = [classifier_row("classifier_twin", cls, test, dev, len(names)),
                       classifier_row("sod_encoder_probe", probe, test, dev, len(names))]
        tables["classifiers"] += [{"seed": seed, **c} for c in classifiers]
        tables["readouts"] += _readouts(classifiers, heads["classification"], sod, test, centre, dev, seed)
        if transfer and first:
            matrix = transfer_matrix(sod, cls, untrained, heads, train_eval, test, len(names), dev)
    stats = []
    for (enc_name, meth), reps in per_image.items():
        low, high = pooled_bootstrap_overlap(reps, n_boot=n_boot, level=CI_LEVEL, seed=seeds[0])
        null = pooled_permutation_null(reps, n_perm=n_perm, seed=seeds[0])
        stats.append({"encoder": enc_name, "method": meth, "n_images": len(x), "n_seeds": len(reps),
                      "seeds": ",".join(str(s) for s in seeds), "excess_jaccard": null.observed,
                      "ci_low": low, "ci_high": high, "ci_level": CI_LEVEL, "n_boot": n_boot,
                      "null_mean": null.null_mean, "null_q05": null.null_q05, "null_q95": null.null_q95,
                      "p_more_than_chance": null.p_greater, "p_less_than_chance": null.p_less, "n_perm": n_perm,
                      "split_half_sod": pooled_split_half_overlap(reps, "a", seeds[0]),
                      "split_half_classification": pooled_split_half_overlap(reps, "b", seeds[0])})
    out = {name: pd.DataFrame(rows) for name, rows in tables.items() if name != "training"}
    return study_tables({**out, "transfer": matrix, "overlap_stats": pd.DataFrame(stats), "training": training_table(tables["training"])})


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every seed of one `mechanisms_study` call shares."""

    spec: TwinSpec
    data_root: Path
    train: Dataset
    val: Dataset
    test: Dataset
    train_eval: Dataset
    names: list[str]
    width: int
    epochs: int
    cls_epochs: int
    head_epochs: int
    floor_head_epochs: int
    image_size: int
    batch_size: int
    work_dir: str | Path
    model_store: Optional[str | Path]
    device: torch.device
    progress: bool


def _twins_and_readouts(ctx: _Context, seed: int, training: list[dict], transfer: bool, schedule_check: bool):
    """One seed's twins, the saliency heads on the frozen classification (and, for the
    transfer matrix, untrained) encoder and the SOD encoder's linear class probe; appends
    their validation curves to ``training``. With ``schedule_check`` each is trained again
    without the last quarter of its epochs (`check_epochs`; the heads on the same frozen
    encoders), for its curve alone."""
    spec, dev, n_cls = ctx.spec, ctx.device, len(ctx.names)
    work = _work(ctx.work_dir, spec.name, ctx.width, seed)
    untrained = with_data_statistics(sod_model(spec, ctx.width, seed), ctx.train_eval, dev) if transfer else None
    found: dict[int, tuple] = {}
    full = (ctx.epochs, ctx.cls_epochs, ctx.head_epochs, ctx.floor_head_epochs)
    shorter = check_epochs(*full) if schedule_check else None  # None: no check, and the gate lacks its evidence
    for checking, (epochs, cls_epochs, head_epochs, floor_epochs) in ((False, full), (True, shorter)) if shorter else ((False, full),):
        # without a shared store the twins live in the work folder: the check's beside them
        local = work / "schedule-check" if checking else work
        runs = twin_runs(spec, ctx.data_root, ctx.train, ctx.width, seed, epochs, cls_epochs, ctx.batch_size, local, ctx.model_store,
                         image_size=ctx.image_size)
        sod, sod_log = train_twin(spec, "sod", sod_model(spec, ctx.width, seed), ctx.train, ctx.val, runs["sod"], epochs, seed, dev,
                                  batch_size=ctx.batch_size, progress=ctx.progress, image_size=ctx.image_size)
        cls, cls_log = train_twin(spec, "classification", cls_model(spec, ctx.width, n_cls, seed),
                                  classification_train(spec, ctx.data_root, ctx.train, ctx.image_size, ctx.names), ctx.val,
                                  runs["classification"], cls_epochs, seed, dev, batch_size=ctx.batch_size, progress=ctx.progress,
                                  image_size=ctx.image_size)
        sod.eval(), cls.eval()
        # the saliency read-out of the classifier's encoder: a saliency head trained on it, frozen
        # (and, for the transfer matrix, one on the untrained encoder)
        encoder = found[False][1] if checking else cls
        heads, head_rows = {}, []
        for sources, n in (({"classification": encoder}, head_epochs),
                           ({"untrained": class_readout(untrained, n_cls)} if transfer else {}, floor_epochs)):
            h, r = saliency_heads(sources, ctx.train, ctx.val, work, n, ctx.batch_size, seed, dev, progress=ctx.progress, twins=spec,
                                  image_size=ctx.image_size)
            heads, head_rows = {**heads, **h}, head_rows + r
        suffix = SCHEDULE_CHECK if checking else ""
        rows = validation_rows("sod", sod_log) + validation_rows("classifier_twin", cls_log) + head_rows
        training += [{**r, "model": seed_name(r["model"], seed) + suffix} for r in rows]
        found[checking] = (sod, cls, heads)
    sod, cls, heads = found[False]
    # the class read-out of the SOD encoder: a closed-form linear head on pooled features
    feats = collect(sod, ctx.train_eval, dev, what="embed")
    probe = class_readout(sod, n_cls).to(dev).eval()
    probe.head = probes.ridge_head(feats["out"], feats["label"], n_cls).to(dev)
    return sod, cls, heads, untrained, probe


@dataclasses.dataclass
class _EncoderReading:
    tables: dict[str, list[dict]]
    attributions: dict[str, list[LayerAttributions]]


def _read_encoder(t_sod: nn.Module, t_cls: nn.Module, x: Tensor, gt: Tensor, labels: Tensor, layers: Sequence[str], method: str,
                  top_fraction: float, batch_size: int, dev: torch.device, seed: int) -> _EncoderReading:
    """One encoder read out for both tasks (targets ``t_sod`` on ``gt``, ``t_cls`` on
    ``labels``): per layer, channel importance by ``method`` and by ablation, their top-k
    overlap, how concentrated each is, and cross-ablation against ``k`` random channels."""
    imp_rows, overlap, cross, conc = [], [], [], []
    per_image: dict[str, list[LayerAttributions]] = {method: [], "ablation": []}
    for layer in layers:
        per = {}
        for task, t, a in (("sod", t_sod, gt), ("classification", t_cls, labels)):
            per[(task, method)] = imp.channel_attributions(t, x, layer, method=method, aux=a, batch_size=batch_size)
            per[(task, "ablation")] = imp.ablation_attributions(t, x, layer, aux=a, batch_size=batch_size)
        vals = {key: v.mean(0) for key, v in per.items()}
        n = len(vals[("sod", method)])
        k = max(1, int(round(top_fraction * n)))
        for meth in per_image:
            per_image[meth].append(LayerAttributions(layer, per[("sod", meth)], per[("classification", meth)], k))
        for (task, meth), v in vals.items():
            imp_rows += [{"layer": layer, "task": task, "method": meth, "channel": c, "importance": score} for c, score in enumerate(v.tolist())]
            conc.append({"layer": layer, "task": task, "method": meth, "channels_for_half": _concentration(v)})
        for meth in (method, "ablation"):
            a, b = vals[("sod", meth)], vals[("classification", meth)]
            row = {"layer": layer, "method": meth, "channels": n, "k": k, "jaccard": imp.topk_jaccard(a, b, k),
                   "chance_jaccard": imp.chance_topk_jaccard(n, k), "spearman": imp.rank_correlation(a, b)}
            overlap.append({**row, "excess_jaccard": row["jaccard"] - row["chance_jaccard"]})
        # cross-ablation: remove one task's top-k channels, measure both targets
        module_sod, module_cls = imp.resolve_layer(t_sod, layer), imp.resolve_layer(t_cls, layer)
        rng = np.random.default_rng(seed)
        sets = {"sod_top": imp.top_k(vals[("sod", method)], k), "classification_top": imp.top_k(vals[("classification", method)], k),
                "random": rng.choice(n, size=k, replace=False)}
        with torch.no_grad():
            base_s = t_sod(x.to(dev), gt.to(dev)).mean().item()
            base_c = t_cls(x.to(dev), labels.to(dev)).mean().item()
            for set_name, chans in sets.items():
                with imp.zero_channels(module_sod, chans.tolist()):
                    s = t_sod(x.to(dev), gt.to(dev)).mean().item()
                with imp.zero_channels(module_cls, chans.tolist()):
                    c = t_cls(x.to(dev), labels.to(dev)).mean().item()
                cross.append({"layer": layer, "removed": set_name, "k": k, "sod_drop": base_s - s, "classification_drop": base_c - c,
                              "sod_rel_drop": (base_s - s) / abs(base_s) if base_s else float("nan"),
                              "classification_rel_drop": (base_c - c) / abs(base_c) if base_c else float("nan")})
    return _EncoderReading({"importance": imp_rows, "overlap": overlap, "cross_ablation": cross, "concentration": conc}, per_image)


def _gradcam(sod: nn.Module, cls: nn.Module, probe: nn.Module, x: Tensor, gt: Tensor, labels: Tensor, idx: Sequence[int],
             names: Sequence[str], layer: str, dev: torch.device, seed: int) -> list[dict]:
    """Grad-CAM of each class logit against the saliency map and the ground truth, per image."""
    with torch.no_grad():
        sal = torch.sigmoid(sod(x.to(dev))[:, :1]).cpu()
    cams = {"classifier_twin": imp.grad_cam(imp.ClassLogitTarget(cls), x, layer, aux=labels),
            "sod_encoder_probe": imp.grad_cam(imp.ClassLogitTarget(probe), x, layer, aux=labels)}
    rows = []
    for name, cam in cams.items():
        r_sal, r_gt = imp.map_correlation(cam, sal), imp.map_correlation(cam, gt)
        rows += [{"seed": seed, "image": idx[i], "category": names[int(labels[i])], "cam_of": name, "r_cam_saliency": float(r_sal[i]),
                  "r_cam_gt": float(r_gt[i])} for i in range(len(x))]
    r_sg = imp.map_correlation(sal, gt)
    rows += [{"seed": seed, "image": idx[i], "category": names[int(labels[i])], "cam_of": "saliency", "r_cam_saliency": 1.0,
              "r_cam_gt": float(r_sg[i])} for i in range(len(x))]
    return rows


def _readouts(classifiers: list[dict], head: nn.Module, sod: nn.Module, test: Dataset, centre: float, dev: torch.device,
              seed: int) -> list[dict]:
    """Each encoder's two read-outs (test top-1, test max-F) beside their floors."""
    rows = [{"seed": seed, "encoder": enc, "task": "classification", "model": c["model"], "metric": "top1", "value": c["accuracy"],
             "floor": c["chance"], "n_images": c["n_images"]} for enc, c in zip(("classification_encoder", "sod_encoder"), classifiers)]
    for enc_name, model_name, model in (("classification_encoder", "saliency head on the classification encoder", head), ("sod_encoder", "sod", sod)):
        summ = score_summary(sod_scores(model, test, dev))
        rows.append({"seed": seed, "encoder": enc_name, "task": "saliency", "model": model_name, "metric": "max_f", "value": summ["max_f"],
                     "floor": centre, "n_images": summ["n_images"]})
    return rows


def mechanisms_runs(data_root: str | Path, twins: str = "res2net-mini", width: int = 8, epochs: int = 3,
                    cls_epochs: Optional[int] = None, image_size: int = 64, seed: int = 0, batch_size: int = 16,
                    work_dir: str | Path = "runs/mechanisms", model_store: Optional[str | Path] = None) -> dict[str, Path]:
    """The run folders (``"sod"``, ``"classification"``, each with ``best.pt``) where
    `mechanisms_study` with these arguments keeps its twins."""
    spec = twin_spec(twins)
    train, _, _ = datasets(data_root, image_size, augmentation=spec.augmentation(), preload=False)  # its indices alone
    return twin_runs(spec, data_root, train, width, seed, epochs, epochs if cls_epochs is None else cls_epochs, batch_size,
                     _work(work_dir, spec.name, width, seed), model_store, image_size=image_size)


def _work(work_dir: str | Path, family: str, width: int, seed: int) -> Path:
    """The study's own folder (frozen-encoder heads; the twins without a shared store)."""
    return Path(work_dir) / f"{family}_w{width}_seed{seed}"


# 2: overlap_stats; 3: transfer; 4: twins; 5: the classification encoder, readouts; 6: seeds, schedule checks
mechanisms_study.cache_version = 8  # type: ignore[attr-defined]  # 8: the schedule check is the last quarter's
