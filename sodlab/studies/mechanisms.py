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
from ..models.classifier import classifier_from_sod
from .common import (DEFAULT_LAYERS, category_names, classifier_row, cls_model, collect, datasets, eval_view, flush_denormals,
                     sod_model, spread, train_or_resume, training_table, validation_rows)
from .rules import CI_LEVEL
from .transfer import transfer_matrix


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
    layers: Sequence[str] = DEFAULT_LAYERS,
    method: str = "grad_x_act",
    top_fraction: float = 0.25,
    batch_size: int = 16,
    n_boot: int = 1000,
    n_perm: int = 2000,
    transfer: bool = True,
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

    The overlap's uncertainty and controls come from the per-image attributions
    (`sodlab.analysis.overlap`): a bootstrap over the ``n_images`` images (``n_boot``
    resamples, `CI_LEVEL`), a null with each layer's class channels relabelled at random
    (``n_perm``), and each task's overlap with itself between two halves of the images.

    ``transfer``: the transfer matrix (`sodlab.studies.transfer.transfer_matrix`): each encoder
    (saliency, classification, untrained) frozen and read out for each task by a new head; two
    saliency heads are trained for ``epochs``.

    Returns ``transfer`` (when asked), ``importance``, ``overlap``, ``overlap_stats`` (per method: the effect, its interval,
    the permutation null and the split-half overlaps), ``cross_ablation``, ``concentration``,
    ``gradcam`` and ``classifiers`` (test accuracy next to chance of the twin and of the SOD
    encoder's class head: a class target that has barely left chance makes the channel
    comparison weak).
    """
    dev = resolve_device(device)
    train, val, test = datasets(data_root, image_size)
    names = category_names(train)
    work = Path(work_dir) / f"w{width}_seed{seed}"
    sod, sod_log = train_or_resume(sod_model(width, seed), train, val, work / "sod", epochs, batch_size, seed, dev, progress=progress)
    cls = cls_model(width, len(names), seed)
    cls, cls_log = train_or_resume(cls, train, val, work / "classifier", epochs, batch_size, seed, dev, task="classification", progress=progress)
    sod.eval(), cls.eval()

    # the class read-out of the SOD encoder: a closed-form linear head on pooled features
    feats = collect(sod, eval_view(train, data_root, image_size), dev, what="embed")
    probe = classifier_from_sod(sod, len(names)).to(dev).eval()
    probe.head = probes.ridge_head(feats["out"], feats["label"], len(names)).to(dev)

    idx = spread(len(test), n_images, seed)
    items = [test[i] for i in idx]
    x = torch.stack([it["image"] for it in items])
    gt = torch.stack([it["mask"] for it in items])
    labels = torch.as_tensor([int(it["label"]) for it in items])

    encoders = {
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
    classifiers = [classifier_row("classifier_twin", cls, test, dev, len(names)),
                   classifier_row("sod_encoder_probe", probe, test, dev, len(names))]
    training = validation_rows("sod", sod_log) + validation_rows("classifier_twin", cls_log)
    matrix = pd.DataFrame(columns=["encoder", "task", "readout", "metric", "value", "n_images"])
    if transfer:
        matrix, heads = transfer_matrix(sod, cls, train, val, eval_view(train, data_root, image_size), test, len(names), work,
                                        epochs, batch_size, seed, dev, progress=progress)
        training += heads
    return {
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


mechanisms_study.cache_version = 3  # type: ignore[attr-defined]  # 2: overlap_stats; 3: transfer
