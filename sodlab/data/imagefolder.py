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
from .batched import Geometry, crop_flip_turn_resize
from .folder import CATEGORIES_FILE, IMAGE_DIRS, MASK_DIRS, IMAGE_SUFFIXES, SODFolder
from .io import image_size, read_image
from .preload import PRELOAD_MAX_BYTES, checked_index, decode_all, stacked
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
                 transform: Optional[ImageOnlyTransform] = None, sizes: Optional[Sequence[tuple[int, int]]] = None) -> None:
        self.root = Path(root)
        self.image_paths = [Path(p) for p in image_paths]
        self.labels = [int(v) for v in labels]
        self.class_names = [str(c) for c in class_names]
        self.transform = transform
        self.stems = [p.stem for p in self.image_paths]
        # (H, W) per image when known from the headers; `preload` reads them otherwise.
        self.sizes: Optional[list[tuple[int, int]]] = [tuple(s) for s in sizes] if sizes is not None else None
        self._pixels: Optional[Tensor] = None  # (N, H, W, 3) uint8 once preloaded, images of one size
        self._arrays: Optional[list[np.ndarray]] = None  # preloaded images of several sizes

    @property
    def category_names(self) -> list[str]:
        """`SODFolder`'s name for ``class_names``."""
        return self.class_names

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def preloaded(self) -> bool:
        """Whether the images are held in memory (`preload`)."""
        return self._pixels is not None or self._arrays is not None

    def relabelled(self, labels: Sequence[int]) -> "LabelledImages":
        """The same images with ``labels`` instead (one per image); decoded images, when
        preloaded, are shared, not decoded again."""
        if len(labels) != len(self):
            raise ValueError(f"{self.root}: {len(labels)} labels for {len(self)} images")
        out = LabelledImages(self.root, self.image_paths, labels, self.class_names, self.transform, sizes=self.sizes)
        out._pixels, out._arrays = self._pixels, self._arrays
        return out

    def preload(self, max_bytes: int = PRELOAD_MAX_BYTES, progress: bool = False) -> bool:
        """Decode every image into memory, so epochs read no file and (images of one size,
        an `ImageTransform`) augment whole batches at once (`__getitems__`). Returns whether
        it did: images that would take more than ``max_bytes`` stay on disk, with a warning.
        An unreadable image is an `ImageReadError` naming the file, as when read later."""
        if self.preloaded:
            return True
        if self.sizes is None:
            self.sizes = [image_size(p) for p in self.image_paths]
        arrays = decode_all(self.root, len(self), sum(3 * h * w for h, w in self.sizes), max_bytes,
                            lambda i: read_image(self.image_paths[i]), progress)
        if arrays is None:
            return False
        self._pixels = stacked(arrays)
        self._arrays = arrays if self._pixels is None else None
        return True

    def read(self, index: int) -> np.ndarray:
        """The raw (H, W, 3) uint8 image of item ``index`` (a copy when preloaded)."""
        if self._pixels is not None:
            return self._pixels[index].numpy().copy()
        if self._arrays is not None:
            return self._arrays[index].copy()
        return read_image(self.image_paths[index])

    def _item(self, index: int, image: Tensor, orig_size: tuple[int, int]) -> dict[str, Any]:
        label = self.labels[index]
        return {"image": image, "label": label, "category": self.class_names[label] if label >= 0 else "",
                "stem": self.stems[index], "orig_size": orig_size}

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = checked_index(index, len(self))
        image = self.read(index)
        x = self.transform(image) if self.transform is not None else _image_tensor(image)
        return self._item(index, x, tuple(image.shape[:2]))

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The items at ``indices`` (what a `DataLoader` fetches for one batch): preloaded
        images of one size go through `ImageTransform.batch` together, the rest one by one."""
        if self._pixels is None or not isinstance(self.transform, ImageTransform):
            return [self[i] for i in indices]
        idx = [checked_index(int(i), len(self)) for i in indices]
        x = self.transform.batch(self._pixels[torch.tensor(idx, dtype=torch.int64)])
        size = tuple(self._pixels.shape[1:3])
        return [self._item(i, x[k], size) for k, i in enumerate(idx)]

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
        sizes: dict[Path, tuple[int, int]] = {}
        for d in dirs:
            files = _images_in(d)
            if not files:
                problems.append(f"class folder {d.name}/ holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
                continue
            for f in files:
                try:
                    sizes[f] = image_size(f)
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
        super().__init__(root, paths, labels, names, transform, sizes=[sizes[p] for p in paths])
        # Two images of different classes may share a file stem: keep the class in the stem.
        self.stems = [f"{p.parent.name}/{p.stem}" for p in self.image_paths]
        log.debug("%s: %d images in %d classes", root, len(paths), len(found))


def labelled_images(ds: SODFolder, transform: Optional[ImageOnlyTransform] = None) -> LabelledImages:
    """The images of ``ds`` labelled by its ``categories.csv`` (masks are not read). Items
    without a category are a `DataError` naming them: every image needs a label. When ``ds``
    is preloaded, so are they: its decoded images are shared, not decoded again."""
    if not ds.category_names:
        raise DataError(f"{ds.root}: no {CATEGORIES_FILE}, so its images have no class labels")
    missing = [ds.stems[i] for i, v in enumerate(ds.labels) if v < 0]
    if missing:
        more = f" ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise DataError(f"{ds.root / CATEGORIES_FILE}: {len(missing)} image(s) have no category: {', '.join(missing[:_MAX_LISTED])}{more}")
    out = LabelledImages(ds.root, ds.image_paths, ds.labels, ds.category_names, transform, sizes=ds.sizes)
    out._pixels, out._arrays = ds.preloaded_images()
    return out


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

    def draw(self, height: int, width: int) -> Optional[Geometry]:
        """The random geometry of the next training image of ``height`` x ``width`` (None in
        evaluation); `__call__` and `batch` draw it alike, so both see the same augmentation."""
        if not self.train:
            return None
        top, left, h, w = 0, 0, height, width
        if self.crop_border > 0:
            cut_h, cut_w = self._randint(int(height * self.crop_border)), self._randint(int(width * self.crop_border))
            top, left = self._randint(cut_h), self._randint(cut_w)
            h, w = height - cut_h, width - cut_w
        hflip = bool(self.hflip and self._randint(1))
        vflip = bool(self.vflip and self._randint(1))
        turns = self._randint(3) if self.rot90 else 0
        return Geometry(top, left, h, w, hflip, vflip, turns)

    def __call__(self, image: np.ndarray) -> Tensor:
        img = _image_tensor(image)
        geo = self.draw(*img.shape[1:])
        if geo is not None:
            img = img[:, geo.top:geo.top + geo.height, geo.left:geo.left + geo.width]
            if geo.hflip:
                img = img.flip(2)
            if geo.vflip:
                img = img.flip(1)
            if geo.quarter_turns:
                img = torch.rot90(img, geo.quarter_turns, dims=(1, 2))
        return normalize(self._resize(img[None])[0])

    def _resize(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 3, size, size): bilinear, no anti-aliasing (as `EvalTransform`)."""
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=False)

    def batch(self, images: Tensor) -> Tensor:
        """`__call__` on each of ``images`` ((B, H, W, 3) uint8, one size), in one pass
        (`sodlab.data.batched`): the same random draws in the same order, the same values up
        to float summation order."""
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (B, H, W, 3) uint8 images, got {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        if self.train:
            x = crop_flip_turn_resize(x, [self.draw(h, w) for _ in range(x.shape[0])], self.size)
        elif (h, w) != (self.size, self.size):
            x = self._resize(x)
        return normalize(x)

    def __repr__(self) -> str:
        if not self.train:
            return f"ImageTransform(size={self.size})"
        return (f"ImageTransform(size={self.size}, train=True, crop_border={self.crop_border}, hflip={self.hflip}, "
                f"vflip={self.vflip}, rot90={self.rot90})")
