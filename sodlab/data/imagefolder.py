"""Labelled images for classification: `ImageFolder` (one sub-folder per class), the images of
a `SODFolder` labelled by its ``categories.csv`` (`labelled_images`), and the image-only
transforms classification trains and evaluates with (`ImageTransform`).

Items are dicts ``{"image", "label", "category", "stem", "orig_size"}``, the keys of a
`SODFolder` item without the mask, so the trainer reads both the same way.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError, ImageReadError
from .folder import CATEGORIES_FILE, IMAGE_DIRS, MASK_DIRS, IMAGE_SUFFIXES, SODFolder
from .io import image_size, read_image
from .transforms import _image_tensor, normalize

log = logging.getLogger(__name__)
_MAX_LISTED = 20

ImageOnlyTransform = Callable[[np.ndarray], Tensor]


def _images_in(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_image_folder(root: str | Path) -> bool:
    """Whether ``root`` looks like an ImageFolder: class sub-folders holding images, and not a
    saliency dataset folder (no image/mask folder names)."""
    root = Path(root)
    if not root.is_dir():
        return False
    dirs = _class_dirs(root)
    if not dirs or any(d.name in IMAGE_DIRS or d.name in MASK_DIRS for d in dirs):
        return False
    return any(_images_in(d) for d in dirs)


class LabelledImages(Dataset):
    """Image files with class labels. ``class_names[label]`` names each label.

    ``transform``: ``image uint8 HxWx3 -> tensor`` (default: float (3, H, W) in [0, 1], not
    resized or normalised); see `ImageTransform`.
    """

    def __init__(self, root: str | Path, image_paths: Sequence[Path], labels: Sequence[int], class_names: Sequence[str],
                 transform: Optional[ImageOnlyTransform] = None) -> None:
        self.root = Path(root)
        self.image_paths = [Path(p) for p in image_paths]
        self.labels = [int(v) for v in labels]
        self.class_names = [str(c) for c in class_names]
        self.transform = transform
        self.stems = [p.stem for p in self.image_paths]

    @property
    def category_names(self) -> list[str]:
        """`SODFolder`'s name for ``class_names``."""
        return self.class_names

    def __len__(self) -> int:
        return len(self.image_paths)

    def read(self, index: int) -> np.ndarray:
        """The raw (H, W, 3) uint8 image of item ``index``."""
        return read_image(self.image_paths[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        image = self.read(index)
        x = self.transform(image) if self.transform is not None else _image_tensor(image)
        label = self.labels[index]
        return {"image": x, "label": label, "category": self.class_names[label] if label >= 0 else "",
                "stem": self.stems[index], "orig_size": tuple(image.shape[:2])}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, {len(self)} images, {len(self.class_names)} classes)"


class ImageFolder(LabelledImages):
    """A classification dataset laid out as ``root/<class>/<image>`` (torchvision's layout).

    Classes are the sub-folder names, sorted, unless ``class_names`` fixes them (so that
    training and validation share label indices): the folder's classes must then be among
    them. Every image's header is read up front; an empty class folder, an unreadable image
    or a folder without classes is a `DataError` naming the files (all problems at once).
    """

    def __init__(self, root: str | Path, transform: Optional[ImageOnlyTransform] = None,
                 class_names: Optional[Sequence[str]] = None) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"{root}: no such folder")
        dirs = _class_dirs(root)
        if not dirs:
            raise DataError(f"{root}: no class folders (an ImageFolder holds one sub-folder of images per class)")
        problems: list[str] = []
        paths: list[Path] = []
        found: list[str] = []
        per_class: list[list[Path]] = []
        for d in dirs:
            files = _images_in(d)
            if not files:
                problems.append(f"class folder {d.name}/ holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
                continue
            for f in files:
                try:
                    image_size(f)
                except ImageReadError as exc:
                    problems.append(f"unreadable image: {exc}")
            found.append(d.name)
            per_class.append(files)
        if problems:
            listed = "\n  ".join(problems[:_MAX_LISTED])
            more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
            raise DataError(f"{root}: {len(problems)} problem(s):\n  {listed}{more}")
        names = list(found) if class_names is None else [str(c) for c in class_names]
        unknown = [c for c in found if c not in names]
        if unknown:
            raise DataError(f"{root}: classes {', '.join(unknown)} are not among the expected classes ({', '.join(names)})")
        index = {c: i for i, c in enumerate(names)}
        labels: list[int] = []
        for name, files in zip(found, per_class):
            paths += files
            labels += [index[name]] * len(files)
        super().__init__(root, paths, labels, names, transform)
        # Two images of different classes may share a file stem: keep the class in the stem.
        self.stems = [f"{p.parent.name}/{p.stem}" for p in self.image_paths]
        log.debug("%s: %d images in %d classes", root, len(paths), len(found))


def labelled_images(ds: SODFolder, transform: Optional[ImageOnlyTransform] = None) -> LabelledImages:
    """The images of ``ds`` labelled by its ``categories.csv`` (masks are not read). Items
    without a category are a `DataError` naming them: every image needs a label."""
    if not ds.category_names:
        raise DataError(f"{ds.root}: no {CATEGORIES_FILE}, so its images have no class labels")
    missing = [ds.stems[i] for i, v in enumerate(ds.labels) if v < 0]
    if missing:
        more = f" ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise DataError(f"{ds.root / CATEGORIES_FILE}: {len(missing)} image(s) have no category: {', '.join(missing[:_MAX_LISTED])}{more}")
    return LabelledImages(ds.root, ds.image_paths, ds.labels, ds.category_names, transform)


class ImageTransform:
    """Image-only transform for classification: ``image uint8 HxWx3 -> normalised (3, S, S)``.

    Evaluation (``train=False``) resizes bilinearly without anti-aliasing (as `EvalTransform`)
    and normalises. Training first crops a random part trimming up to ``crop_border`` of each
    side's length, flips left-right (``hflip``) and top-bottom (``vflip``) with probability 0.5
    each, and with ``rot90`` turns by a random multiple of 90 degrees (shapes have no upright).
    Randomness: ``generator``, else torch's default generator (seeded per epoch by the trainer).
    """

    def __init__(self, size: int, train: bool = False, crop_border: float = 0.1, hflip: bool = True, vflip: bool = False,
                 rot90: bool = False, generator: Optional[torch.Generator] = None) -> None:
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        if not 0.0 <= crop_border < 1.0:
            raise ValueError(f"crop_border must be in [0, 1), got {crop_border}")
        self.size, self.train = int(size), bool(train)
        self.crop_border, self.hflip, self.vflip, self.rot90 = float(crop_border), bool(hflip), bool(vflip), bool(rot90)
        self.generator = generator

    def _randint(self, high: int) -> int:
        """Uniform in [0, high]."""
        return int(torch.randint(0, high + 1, (1,), generator=self.generator)) if high > 0 else 0

    def __call__(self, image: np.ndarray) -> Tensor:
        img = _image_tensor(image)
        if self.train:
            h, w = img.shape[1:]
            if self.crop_border > 0:
                cut_h, cut_w = self._randint(int(h * self.crop_border)), self._randint(int(w * self.crop_border))
                top, left = self._randint(cut_h), self._randint(cut_w)
                img = img[:, top:h - (cut_h - top), left:w - (cut_w - left)]
            if self.hflip and self._randint(1):
                img = img.flip(2)
            if self.vflip and self._randint(1):
                img = img.flip(1)
            if self.rot90:
                img = torch.rot90(img, self._randint(3), dims=(1, 2))
        img = F.interpolate(img[None], size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=False)[0]
        return normalize(img)

    def __repr__(self) -> str:
        if not self.train:
            return f"ImageTransform(size={self.size})"
        return (f"ImageTransform(size={self.size}, train=True, crop_border={self.crop_border}, hflip={self.hflip}, "
                f"vflip={self.vflip}, rot90={self.rot90})")
