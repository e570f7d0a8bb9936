"""Study 7, mechanisms: do saliency and classification rely on the same channels?"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..analysis import importance as imp
from ..analysis import probes
from ..analysis.overlap import LayerAttributions, bootstrap_overlap, permutation_null, split_half_overlap
from ..device import resolve_device
from ..baselines import baseline_metrics
from .common import (category_names, classifier_row, collect, datasets, eval_view, flush_denormals, score_summary, sod_scores, spread,
                     training_table, validation_rows)
from .rules import CI_LEVEL
from .transfer import saliency_heads, transfer_matrix, with_data_statistics
from .twins import class_readout, classification_train, cls_model, sod_model, train_twin, twin_runs, twin_spec


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
    seed: int = 0,
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
) -> dict[str, pd.DataFrame]:
    """Do saliency and classification rely on the same channels?

    The twins (`sodlab.studies.twins`, family ``twins``) are a saliency model trained for
    ``epochs`` and a classifier trained for ``cls_epochs`` (default ``epochs``), each by its
    family's recipe (``batch_size`` applies to the CSNet family only), from one initial encoder
    on the same images. ``layers``: the family's by default. ``model_store``: a folder shared by
    the notebooks, where the twins are kept under a key of everything that makes them (so a
    notebook that needs the same twins reuses them); by default they live in ``work_dir``.

    Channel indices only correspond within one network, so the channel-level comparison is
    made within one encoder read out for both tasks (our protocol), for two encoders (column
    ``encoder``): ``classification_encoder``, the classifier's, read out by its own class head
    (target: the true class's logit) and by a saliency head trained on it frozen for
    ``head_epochs`` (target: mean saliency logit over the ground-truth region); and
    ``sod_encoder``, the saliency model's, read out by its own saliency head and by a linear
    class head fitted in closed form on its pooled features. Each read-out's test score beside
    its floor (chance; the centre-bias guess) is in ``readouts``. Per encoder and layer:
    importance (``method`` and channel ablation), top-k Jaccard with its chance level,
    Spearman rank correlation, and cross-ablation (zero the top-k channels of one task,
    measure both targets, against k random channels); how concentrated the classifier's
    importance is; Grad-CAM of its class logit against the SOD model's saliency map and the
    ground truth, per image.

    The overlap's uncertainty and controls come from the per-image attributions
    (`sodlab.analysis.overlap`): a bootstrap over the ``n_images`` images (``n_boot``
    resamples, `CI_LEVEL`), a null with each layer's class channels relabelled at random
    (``n_perm``), and each task's overlap with itself between two halves of the images.

    ``transfer``: the transfer matrix (`sodlab.studies.transfer.transfer_matrix`): each encoder
    (saliency, classification, untrained) frozen and read out for each task by a new head (a
    second saliency head, on the untrained encoder, is trained for it).

    Returns ``readouts``, ``transfer`` (when asked), ``importance``, ``overlap``, ``overlap_stats`` (per method: the effect, its interval,
    the permutation null and the split-half overlaps), ``cross_ablation``, ``concentration``,
    ``gradcam`` and ``classifiers`` (test accuracy next to chance of the twin and of the SOD
    encoder's class head: a class target that has barely left chance makes the channel
    comparison weak).
    """
    dev = resolve_device(device)
    spec = twin_spec(twins)
    layers = tuple(layers or spec.layers)
    cls_epochs = epochs if cls_epochs is None else cls_epochs
    train, val, test = datasets(data_root, image_size, augmentation=spec.augmentation())
    names = category_names(train)
    work = _work(work_dir, spec.name, width, seed)
    runs = twin_runs(spec, data_root, train, width, seed, epochs, cls_epochs, batch_size, work, model_store, image_size=image_size)
    sod, sod_log = train_twin(spec, "sod", sod_model(spec, width, seed), train, val, runs["sod"], epochs, seed, dev,
                              batch_size=batch_size, progress=progress, image_size=image_size)
    cls, cls_log = train_twin(spec, "classification", cls_model(spec, width, len(names), seed),
                              classification_train(spec, data_root, train, image_size, names), val,
                              runs["classification"], cls_epochs, seed, dev, batch_size=batch_size, progress=progress,
                              image_size=image_size)
    sod.eval(), cls.eval()

    # the class read-out of the SOD encoder: a closed-form linear head on pooled features
    train_eval = eval_view(train, data_root, image_size)
    feats = collect(sod, train_eval, dev, what="embed")
    probe = class_readout(sod, len(names)).to(dev).eval()
    probe.head = probes.ridge_head(feats["out"], feats["label"], len(names)).to(dev)
    # the saliency read-out of the classifier's encoder: a saliency head trained on it, frozen
    # (and, for the transfer matrix, one on the untrained encoder)
    untrained = with_data_statistics(sod_model(spec, width, seed), train_eval, dev) if transfer else None
    sources = {"classification": cls, **({"untrained": class_readout(untrained, len(names))} if transfer else {})}
    heads, head_rows = saliency_heads(sources, train, val, work, epochs if head_epochs is None else head_epochs, batch_size, seed, dev,
                                      progress=progress, twins=spec, image_size=image_size)
    centre = baseline_metrics(Path(data_root) / "test", ["centre bias"])["centre bias"]["max_f"]

    idx = spread(len(test), n_images, seed)
    items = [test[i] for i in idx]
    x = torch.stack([it["image"] for it in items])
    gt = torch.stack([it["mask"] for it in items])
    labels = torch.as_tensor([int(it["label"]) for it in items])

    # one encoder, two read-outs: the classifier's (its own class head, a saliency head trained
    # on it frozen) and the saliency model's (its own saliency head, a linear class probe)
    encoders = {
        "classification_encoder": (imp.SODTarget(heads["classification"]), gt, imp.ClassLogitTarget(cls), labels),
        "sod_encoder": (imp.SODTarget(sod), gt, imp.ClassLogitTarget(probe), labels),
    }
    imp_rows, overlap, cross, conc, stats = [], [], [], [], []
    for enc_name, (t_sod, a_sod, t_cls, a_cls) in encoders.items():
        per_image: dict[str, list[LayerAttributions]] = {method: [], "ablation": []}
        for layer in layers:
            per = {}
            for task, t, a in (("sod", t_sod, a_sod), ("classification", t_cls, a_cls)):
                per[(task, method)] = imp.channel_attributions(t, x, layer, method=method, aux=a, batch_size=batch_size)
                per[(task, "ablation")] = imp.ablation_attributions(t, x, layer, aux=a, batch_size=batch_size)
            vals = {key: v.mean(0) for key, v in per.items()}
            n = len(vals[("sod", method)])
            k = max(1, int(round(top_fraction * n)))
            for meth in per_image:
                per_image[meth].append(LayerAttributions(layer, per[("sod", meth)], per[("classification", meth)], k))
            for (task, meth), v in vals.items():
                for c, score in enumerate(v.tolist()):
                    imp_rows.append({"encoder": enc_name, "layer": layer, "task": task, "method": meth, "channel": c, "importance": score})
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
        for meth, las in per_image.items():
            low, high = bootstrap_overlap(las, n_boot=n_boot, level=CI_LEVEL, seed=seed)
            null = permutation_null(las, n_perm=n_perm, seed=seed)
            stats.append({"encoder": enc_name, "method": meth, "n_images": len(x), "excess_jaccard": null.observed,
                          "ci_low": low, "ci_high": high, "ci_level": CI_LEVEL, "n_boot": n_boot,
                          "null_mean": null.null_mean, "null_q05": null.null_q05, "null_q95": null.null_q95,
                          "p_more_than_chance": null.p_greater, "p_less_than_chance": null.p_less, "n_perm": n_perm,
                          "split_half_sod": split_half_overlap(las, "a", seed), "split_half_classification": split_half_overlap(las, "b", seed)})
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
    classifiers = [classifier_row("classifier_twin", cls, test, dev, len(names)),
                   classifier_row("sod_encoder_probe", probe, test, dev, len(names))]
    readouts = [{"encoder": "classification_encoder", "task": "classification", "model": "classifier_twin", "metric": "top1",
                 "value": classifiers[0]["accuracy"], "floor": classifiers[0]["chance"], "n_images": classifiers[0]["n_images"]},
                {"encoder": "sod_encoder", "task": "classification", "model": "sod_encoder_probe", "metric": "top1",
                 "value": classifiers[1]["accuracy"], "floor": classifiers[1]["chance"], "n_images": classifiers[1]["n_images"]}]
    for enc_name, model_name, model in (("classification_encoder", "saliency head on the classification encoder", heads["classification"]),
                                        ("sod_encoder", "sod", sod)):
        summ = score_summary(sod_scores(model, test, dev))
        readouts.append({"encoder": enc_name, "task": "saliency", "model": model_name, "metric": "max_f", "value": summ["max_f"],
                         "floor": centre, "n_images": summ["n_images"]})
    training = validation_rows("sod", sod_log) + validation_rows("classifier_twin", cls_log) + head_rows
    matrix = pd.DataFrame(columns=["encoder", "task", "readout", "metric", "value", "n_images"])
    if transfer:
        matrix = transfer_matrix(sod, cls, untrained, heads, train_eval, test, len(names), dev)
    return {
        "readouts": pd.DataFrame(readouts),
        "transfer": matrix,
        "classifiers": pd.DataFrame(classifiers),
        "importance": pd.DataFrame(imp_rows),
        "overlap": pd.DataFrame(overlap),
        "overlap_stats": pd.DataFrame(stats),
        "cross_ablation": pd.DataFrame(cross),
        "concentration": pd.DataFrame(conc),
        "gradcam": pd.DataFrame(gc),
        "training": training_table(training),
    }


def mechanisms_runs(data_root: str | Path, twins: str = "res2net-mini", width: int = 8, epochs: int = 3,
                    cls_epochs: Optional[int] = None, image_size: int = 64, seed: int = 0, batch_size: int = 16,
                    work_dir: str | Path = "runs/mechanisms", model_store: Optional[str | Path] = None) -> dict[str, Path]:
    """The run folders (``"sod"``, ``"classification"``, each with ``best.pt``) where
    `mechanisms_study` with these arguments keeps its twins."""
    spec = twin_spec(twins)
    train, _, _ = datasets(data_root, image_size, augmentation=spec.augmentation())
    return twin_runs(spec, data_root, train, width, seed, epochs, epochs if cls_epochs is None else cls_epochs, batch_size,
                     _work(work_dir, spec.name, width, seed), model_store, image_size=image_size)


def _work(work_dir: str | Path, family: str, width: int, seed: int) -> Path:
    """The study's own folder (frozen-encoder heads; the twins without a shared store)."""
    return Path(work_dir) / f"{family}_w{width}_seed{seed}"


# 2: overlap_stats; 3: transfer; 4: twins; 5: the classification encoder, readouts
mechanisms_study.cache_version = 5  # type: ignore[attr-defined]
