"""Paired image/mask transforms for `SODFolder`.

A transform is a callable ``(image, mask) -> (image_tensor, mask_tensor)`` taking an
(H, W, 3) uint8 image and an (H, W) bool mask, returning a normalised float (3, S, S)
tensor and a float (1, S, S) mask in {0, 1}.

Training augmentation follows the usual SOD recipe used by the CSNet authors: a random crop
that trims up to ``crop_border`` of each side's length, a random flip, a resize to the
network size and ImageNet normalisation. Evaluation only resizes (bilinear, without
anti-aliasing, as the authors' test code) and normalises.

Randomness comes from an explicit ``torch.Generator`` when one is given, otherwise from
torch's default generator, which a `DataLoader` seeds per worker from its own generator (and
the trainer re-seeds every epoch): either way the augmentation is reproducible from a seed.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# ImageNet normalisation, which every model here (and the authors') was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _image_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def _mask_tensor(mask: np.ndarray) -> Tensor:
    """(H, W) bool -> (1, H, W) float in {0, 1}."""
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]


def normalize(image: Tensor) -> Tensor:
    """ImageNet mean/std normalisation of a (3, H, W) or (B, 3, H, W) tensor in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype).view(3, 1, 1)
    return (image - mean) / std


def resize_pair(image: Tensor, mask: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Bilinear (no anti-aliasing) resize of both; the mask is re-binarised at 0.5 so that it
    stays in {0, 1}."""
    hw = (size, size)
    img = F.interpolate(image[None], size=hw, mode="bilinear", align_corners=False, antialias=False)[0]
    m = F.interpolate(mask[None], size=hw, mode="bilinear", align_corners=False, antialias=False)[0]
    return img, (m > 0.5).float()


class ToTensor:
    """No resizing or normalisation: image (3, H, W) in [0, 1] and mask (1, H, W) in {0, 1}.
    What `SODFolder` returns when it is given no transform."""

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[Tensor, Tensor]:
        return _image_tensor(image), _mask_tensor(mask)

    def __repr__(self) -> str:
        return "ToTensor()"


class EvalTransform:
    """Resize to ``size`` x ``size`` (bilinear, no anti-aliasing) and normalise."""

    def __init__(self, size: int) -> None:
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.size = int(size)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[Tensor, Tensor]:
        img, m = resize_pair(_image_tensor(image), _mask_tensor(mask), self.size)
        return normalize(img), m

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size})"


class TrainTransform:
    """Random border crop, random flips, resize to ``size`` and normalise.

    ``crop_border``: the crop removes a random amount, up to this fraction of each side's
    length, split randomly between the two opposite borders (0 disables cropping).
    ``hflip``/``vflip``: flip left-right / top-bottom, each with probability 0.5.
    ``rot90``: then turn image and mask together by a random multiple of 90 degrees (the
    classification transform's turn, so the study's twins see the same augmentation).
    ``generator``: the source of randomness (default: torch's default generator).
    """

    def __init__(self, size: int, crop_border: float = 0.1, hflip: bool = True, vflip: bool = False,
                 generator: Optional[torch.Generator] = None, rot90: bool = False) -> None:
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        if not 0.0 <= crop_border < 1.0:
            raise ValueError(f"crop_border must be in [0, 1), got {crop_border}")
        self.size = int(size)
        self.crop_border = float(crop_border)
        self.hflip = bool(hflip)
        self.vflip = bool(vflip)
        self.rot90 = bool(rot90)
        self.generator = generator

    def _randint(self, high: int) -> int:
        """Uniform in [0, high]."""
        return int(torch.randint(0, high + 1, (1,), generator=self.generator)) if high > 0 else 0

    def _coin(self) -> bool:
        return bool(torch.rand((), generator=self.generator) < 0.5)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[Tensor, Tensor]:
        img, m = _image_tensor(image), _mask_tensor(mask)
        h, w = img.shape[1:]
        if self.crop_border > 0:
            cut_h = self._randint(int(h * self.crop_border))
            cut_w = self._randint(int(w * self.crop_border))
            top, left = self._randint(cut_h), self._randint(cut_w)
            img = img[:, top:h - (cut_h - top), left:w - (cut_w - left)]
            m = m[:, top:h - (cut_h - top), left:w - (cut_w - left)]
        if self.hflip and self._coin():
            img, m = img.flip(2), m.flip(2)
        if self.vflip and self._coin():
            img, m = img.flip(1), m.flip(1)
        if self.rot90:
            k = self._randint(3)
            img, m = torch.rot90(img, k, (1, 2)), torch.rot90(m, k, (1, 2))
        img, m = resize_pair(img, m, self.size)
        return normalize(img), m

    def __repr__(self) -> str:
        return (f"TrainTransform(size={self.size}, crop_border={self.crop_border}, "
                f"hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90})")


def train_transform(size: int, crop_border: float = 0.1, hflip: bool = True, vflip: bool = False,
                    generator: Optional[torch.Generator] = None, rot90: bool = False) -> TrainTransform:
    """The training augmentation at ``size`` (see `TrainTransform`)."""
    return TrainTransform(size, crop_border=crop_border, hflip=hflip, vflip=vflip, generator=generator, rot90=rot90)


def eval_transform(size: int) -> EvalTransform:
    """The evaluation transform at ``size``: resize (bilinear, no anti-aliasing), normalise."""
    return EvalTransform(size)
