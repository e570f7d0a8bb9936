"""Saliency maps with the authors' test pipeline.

Image (H, W, 3) uint8 -> resize to size x size (bilinear, no anti-aliasing) -> [0, 1] ->
ImageNet mean/std -> model logits -> sigmoid -> resize back to (H, W) (bilinear, no
anti-aliasing) -> x255, truncated to uint8.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data.io import read_image
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .device import resolve_device
from .errors import NonFiniteError

ImageLike = "np.ndarray | PIL.Image.Image | str | Path"


def as_rgb_array(image) -> np.ndarray:
    """An (H, W, 3) uint8 array from an array, a PIL image or a path."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if not isinstance(image, np.ndarray):  # PIL image
        from PIL import Image

        if isinstance(image, Image.Image):
            return np.asarray(image.convert("RGB"))
        raise TypeError(f"expected an image array, a PIL image or a path, got {type(image).__name__}")
    arr = image
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3])


def to_input(images: Sequence[np.ndarray], size: int | tuple[int, int] = 224) -> Tensor:
    """A normalised (N, 3, size, size) float batch from uint8 (H, W, 3) images."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    batch = []
    for img in images:
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
        batch.append(F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=False))
    return (torch.cat(batch) - mean) / std


def logits_to_map(logits: Tensor, out_hw: tuple[int, int]) -> np.ndarray:
    """One (1, H', W') logit map -> an (H, W) uint8 saliency map."""
    prob = torch.sigmoid(logits[None].float())
    prob = F.interpolate(prob, size=out_hw, mode="bilinear", align_corners=False, antialias=False)
    return (prob[0, 0] * 255.0).to(torch.uint8).cpu().numpy()


def _batches(items: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


DEFAULT_SIDE = 224  # CSNet's published input side


def input_side(size: Optional[int], model: nn.Module) -> int:
    """``size`` when given, else the side ``model`` was trained at (``model.input_size``,
    restored from a training checkpoint), else 224."""
    if size is not None:
        return int(size)
    return int(getattr(model, "input_size", None) or DEFAULT_SIDE)


@torch.no_grad()
def predict_batch(
    model: nn.Module,
    images: Sequence,
    size: Optional[int] = None,
    device: Optional[str | torch.device] = None,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """Saliency maps (H, W) uint8 for many images, ``batch_size`` at a time, each computed
    at ``size`` x ``size`` (default: `input_side`) and resized back to its image."""
    size = input_side(size, model)
    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    out: list[np.ndarray] = []
    try:
        for chunk in _batches(list(images), batch_size):
            arrays = [as_rgb_array(im) for im in chunk]
            logits = model(to_input(arrays, size).to(dev))
            if not torch.isfinite(logits).all():
                # Typical cause: an untrained CSNet in eval mode; its x100-gain convolutions
                # overflow with untrained BatchNorm statistics.
                raise NonFiniteError("the model produced non-finite logits (NaN or inf); is it trained? "
                                  "A freshly created CSNet needs training or loaded weights before prediction")
            out += [logits_to_map(l[:1], a.shape[:2]) for l, a in zip(logits, arrays)]
    finally:
        model.train(was_training)
    return out


def predict(model: nn.Module, image, size: Optional[int] = None, device: Optional[str | torch.device] = None) -> np.ndarray:
    """The (H, W) uint8 saliency map of one image (array, PIL image or path)."""
    return predict_batch(model, [image], size=size, device=device, batch_size=1)[0]
