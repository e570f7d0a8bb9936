"""The validation pass at the end of an epoch: loss and max-F/MAE (saliency) or accuracy
(classification), reduced over processes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..metrics import SaliencyStats
from . import distributed as D
from .config import TrainConfig
from .data import unpack, val_loader
from .loss import autocast, first, task_loss


@torch.no_grad()
def validate(model: nn.Module, ds: Dataset, config: TrainConfig, info: D.DistInfo, progress: bool) -> dict[str, float]:
    """``val_loss`` and ``val_max_f``/``val_mae`` or ``val_top1`` (top-1 accuracy; also as
    ``val_acc``, its older name) of ``model`` on ``ds``."""
    task = config.resolved_task
    was_training = model.training
    model.eval()
    dev = info.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.float64, device=dev)
    count = torch.zeros((), dtype=torch.float64, device=dev)
    stats = SaliencyStats(dev)
    try:
        for batch in tqdm(val_loader(ds, config, info), desc="validate", leave=False, disable=not (progress and info.is_main)):
            x, y = unpack(batch, task)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, config):
                out = model(x)
            n = x.shape[0]
            loss_sum += task_loss(out, y, config).double() * n
            count += n
            logits = first(out).float()
            if task == "sod":
                m = y if y.dim() == logits.dim() else y.unsqueeze(1)
                if logits.shape[-2:] != m.shape[-2:]:
                    logits = F.interpolate(logits, size=m.shape[-2:], mode="bilinear", align_corners=False)
                stats.update(torch.sigmoid(logits[:, :1]), m)
            else:
                correct += (logits.argmax(1) == y).sum().double()
    finally:
        model.train(was_training)
    packed = torch.stack([loss_sum, correct, count, *stats.tensors()[1:]])
    D.all_reduce_sum(packed, info)
    D.all_reduce_sum(stats.f_sum, info)
    loss_sum, correct, count, stats.mae_sum, stats.count = packed
    n = float(count)
    res = {"val_loss": float(loss_sum) / n if n else float("nan")}
    if task == "sod":
        r = stats.results()
        res.update({"val_max_f": r["max_f"], "val_mae": r["mae"]})
    else:
        res["val_top1"] = float(correct) / n if n else float("nan")
        res["val_acc"] = res["val_top1"]  # the studies' classifier logs read this name
    return res
