"""Study 7's explorer: per image, layer and channel, what the two tasks' models see."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..analysis import importance as imp
from ..analysis import redundancy as red
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError


def channel_explorer_data(sod_model: nn.Module, cls_model: nn.Module, images: Tensor, layer: str = "stage3", labels: Optional[Tensor] = None, masks: Optional[Tensor] = None) -> dict[str, Any]:
    """Everything an image/layer/channel explorer shows, precomputed for ``images`` (N,3,H,W):
    ``activations_sod``/``activations_cls`` (N,C,h,w), ``importance_sod``/``importance_cls``
    (N,C: gradient x activation per image for the SOD target and the class logit),
    ``saliency`` (N,H,W), ``class_pred`` (N,), ``images`` (N,H,W,3 in [0,1]), ``layer``."""
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
