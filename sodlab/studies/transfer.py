"""The transfer matrix of the mechanisms study: each encoder (trained for saliency, trained for
classification, and untrained) frozen and read out for each task by a head trained on top of
it. If saliency and classification used the same features, a classification encoder with a
fresh saliency head would segment about as well as the saliency model, and the other way
round; the untrained encoder says how much any read-out gets from random features alone."""
from __future__ import annotations

import itertools
import types
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from ..analysis import probes
from .common import collect, loader, score_summary, sod_scores, validation_rows, with_statistics_of
from .twins import TwinSpec, encoder_digest, encoder_modules, recipe_digest, sod_readout, train_twin, twin_spec

# `transfer_share` needs the task's own model this far above the untrained encoder's read-out
# (0-1 scores); below it the share divides noise by noise.
MIN_SPAN = 0.05


def _train_head_only(self: nn.Module, mode: bool = True) -> nn.Module:
    nn.Module.train(self, mode)
    for m in encoder_modules(self):
        m.train(False)
    return self


def freeze_encoder(model: nn.Module) -> nn.Module:
    """``model`` with its encoder frozen: no gradients, and BatchNorm in eval mode even while
    the model trains (its running statistics are part of the features read out). Train it
    with ``fused=False``: the fused CPU training twin computes batch statistics everywhere."""
    for m in encoder_modules(model):
        for p in m.parameters():
            p.requires_grad_(False)
    model.train = types.MethodType(_train_head_only, model)  # fit() only calls model.train()
    return model


def with_data_statistics(model: nn.Module, data: Dataset, device: torch.device, batch_size: int = 32,
                         max_images: int = 512) -> nn.Module:
    """`with_statistics_of` the first ``max_images`` (about) images of ``data``."""
    batches = itertools.islice((b["image"] for b in loader(data, batch_size)), max(1, -(-max_images // batch_size)))
    return with_statistics_of(model, batches, device)


def saliency_heads(
    encoders: Mapping[str, nn.Module],
    train: Dataset,
    val: Optional[Dataset],
    work: Path,
    epochs: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    progress: bool = False,
    twins: str | TwinSpec = "csnet",
    image_size: Optional[int] = None,
) -> tuple[dict[str, nn.Module], list[dict]]:
    """For each named encoder (a classifier, or any model whose encoder a classifier can hold,
    `sodlab.studies.twins.class_readout`), a fresh saliency head (seeded by ``seed``) trained for
    ``epochs`` on a frozen copy of it, with the ``twins`` family's saliency recipe (``batch_size``
    for CSNet's), in ``work/transfer_sod_from_<name>_e<epochs>_<encoder_digest>_<recipe_digest>``. Returns the trained models (eval mode)
    and their validation rows (`validation_rows`, model "saliency head on the <name> encoder")."""
    spec = twin_spec(twins)
    models, training = {}, []
    for name, source in encoders.items():
        head = freeze_encoder(sod_readout(source, seed))
        run = work / f"transfer_sod_from_{name}_e{epochs}_{encoder_digest(source)}_{recipe_digest(spec, 'sod')}"
        model, log_df = train_twin(spec, "sod", head, train, val, run, epochs, seed, device,
                                   batch_size=batch_size, progress=progress, fused=False, image_size=image_size)
        training += validation_rows(f"saliency head on the {name} encoder", log_df)
        models[name] = model.eval()
    return models, training


def transfer_matrix(
    sod: nn.Module,
    classifier: nn.Module,
    untrained: nn.Module,
    heads: Mapping[str, nn.Module],
    train_eval: Dataset,
    test: Dataset,
    num_classes: int,
    device: torch.device,
) -> pd.DataFrame:
    """Every encoder read out for every task, scored on ``test``. Saliency read-out: the
    saliency model itself (its own head), or the fresh saliency heads trained on the frozen
    classification and untrained encoders (`saliency_heads`, keys ``"classification"`` and
    ``"untrained"``). Classification read-out: the classifier itself, and for every encoder a
    linear head fitted in closed form on pooled features of ``train_eval`` (the same probe for
    all three, so they compare). ``untrained``: the saliency model's own initialisation with
    BatchNorm statistics from data (`with_data_statistics`).

    Returns the table (``encoder``, ``task``, ``readout`` "own head" or "frozen + new head",
    ``metric``, ``value``, ``n_images``)."""
    rows = []

    def sod_row(encoder: str, readout: str, model: nn.Module) -> None:
        rows.append({"encoder": encoder, "task": "saliency", "readout": readout, "metric": "max_f",
                     **_max_f(score_summary(sod_scores(model, test, device)))})

    sod_row("saliency", "own head", sod)
    for encoder in ("classification", "untrained"):
        sod_row(encoder, "frozen + new head", heads[encoder])
    own = collect(classifier, test, device, what="cls")
    rows.append({"encoder": "classification", "task": "classification", "readout": "own head", "metric": "top1",
                 "value": float((own["out"].argmax(1) == own["label"]).mean()), "n_images": int(len(own["label"]))})
    for encoder, model in (("saliency", sod), ("classification", classifier), ("untrained", untrained)):
        feats = collect(model, train_eval, device, what="embed")
        head = probes.ridge_head(feats["out"], feats["label"], num_classes)
        te = collect(model, test, device, what="embed")
        with torch.no_grad():
            pred = head(torch.as_tensor(te["out"], dtype=torch.float32)).argmax(1).numpy()
        rows.append({"encoder": encoder, "task": "classification", "readout": "frozen + new head", "metric": "top1",
                     "value": float((pred == te["label"]).mean()), "n_images": int(len(te["label"]))})
    return pd.DataFrame(rows, columns=["encoder", "task", "readout", "metric", "value", "n_images"])


def _max_f(summary: Mapping[str, float]) -> dict:
    return {"value": float(summary["max_f"]), "n_images": int(summary["n_images"])}


def transfer_share(matrix: pd.DataFrame) -> dict[str, float]:
    """Per task, how much of the way from the untrained encoder to the task's own model the other
    task's frozen encoder gets with a new head: (other - untrained) / (own - untrained); 1 means
    the other task's features serve as well as the task's own, 0 no better than random ones; NaN
    when the own model is less than `MIN_SPAN` above the untrained read-out."""
    m = matrix.set_index(["encoder", "task", "readout"])["value"]
    out = {}
    for task, other in (("saliency", "classification"), ("classification", "saliency")):
        own = m.get((task, task, "own head"), np.nan)
        base = m.get(("untrained", task, "frozen + new head"), np.nan)
        got = m.get((other, task, "frozen + new head"), np.nan)
        # a task's own model no better than random features leaves no way to measure
        out[task] = float((got - base) / (own - base)) if np.isfinite(own - base) and own - base >= MIN_SPAN else float("nan")
    return out
