"""`SODFolder`: a salient object detection dataset in a folder of images and masks.

Layouts recognised (the first matching folder name wins):

* images in ``images/``, ``Imgs/``, ``imgs/``, ``DUTS-TR-Image/`` or ``DUTS-TE-Image/``;
* masks in ``GT/``, ``gt/``, ``masks/``, ``ground_truth_mask/``, ``DUTS-TR-Mask/`` or
  ``DUTS-TE-Mask/``;
* an optional ``categories.csv`` with rows ``stem,category`` (a header row
  ``stem,category`` is allowed).

Images and masks are paired by file stem. Problems (unpaired files, undecodable files,
image/mask size mismatches) are all collected and reported together in one `DataError`, or
skipped with a warning each when ``lenient=True``.

`SODFolder.preload` decodes every pair once into memory, so that epochs read no file; items
stay exactly what they were (the same arrays go through the same per-item transform).
"""
from __future__ import annotations

import copy
import csv
import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError, ImageReadError
from .io import image_size, read_image, read_mask
from .preload import PRELOAD_MAX_BYTES, checked_index, decode_all, stacked
from .transforms import ToTensor

log = logging.getLogger(__name__)

IMAGE_DIRS = ("images", "Imgs", "imgs", "DUTS-TR-Image", "DUTS-TE-Image")
MASK_DIRS = ("GT", "gt", "masks", "ground_truth_mask", "DUTS-TR-Mask", "DUTS-TE-Mask")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"})
CATEGORIES_FILE = "categories.csv"
# Split names with the DUTS folder that holds them.
_DUTS_SPLITS = {"train": "DUTS-TR", "test": "DUTS-TE"}
# How many problems a DataError lists before summarising the rest.
_MAX_LISTED = 20

Transform = Callable[[np.ndarray, np.ndarray], tuple]


def _find_dir(root: Path, names: Sequence[str]) -> Optional[Path]:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def split_folders(root: str | Path) -> list[str]:
    """Sub-folders of ``root`` that are dataset folders themselves (a benchmark's ``train/``
    and ``test/``, DUTS's ``DUTS-TR/`` ...), by name."""
    try:
        return sorted(p.name for p in Path(root).iterdir() if is_dataset_folder(p))
    except OSError:  # not a folder, or one we may not list: no split folders to offer
        return []


def is_dataset_folder(root: str | Path) -> bool:
    """Whether ``root`` holds an image folder and a mask folder (see `SODFolder`)."""
    root = Path(root)
    return root.is_dir() and _find_dir(root, IMAGE_DIRS) is not None and _find_dir(root, MASK_DIRS) is not None


def _resolve_root(root: Path, split: Optional[str]) -> Path:
    if split is None:
        return root
    for cand in (root / split, root / _DUTS_SPLITS.get(split, split)):
        if cand.is_dir():
            return cand
    raise DataError(f"{root}: no split folder {split!r}")


def _list_files(folder: Path, problems: list[str]) -> dict[str, Path]:
    """Image files of ``folder`` by stem; two files with one stem are a problem."""
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if f.stem in files:
            problems.append(f"{f.name} and {files[f.stem].name} in {folder.name}/ share the stem {f.stem!r}")
            continue
        files[f.stem] = f
    return files


def read_categories(path: str | Path) -> dict[str, str]:
    """``stem -> category`` from a ``stem,category`` CSV file (header row optional)."""
    path = Path(path)
    out: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if not row or all(not c.strip() for c in row):
                    continue
                if lineno == 1 and [c.strip().lower() for c in row[:2]] == ["stem", "category"]:
                    continue
                if len(row) < 2 or not row[0].strip() or not row[1].strip():
                    raise DataError(f"{path}:{lineno}: expected 'stem,category', got {','.join(row)!r}")
                out[row[0].strip()] = row[1].strip()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read categories ({exc})") from None
    return out


class SODFolder(Dataset):
    """Images and binary masks from a folder (see the module docstring for layouts).

    Items are dicts ``{"image", "mask", "label", "category", "stem", "orig_size"}``:
    ``image`` and ``mask`` as the ``transform`` returns them (without a transform: image
    float (3, H, W) in [0, 1], mask float (1, H, W) in {0, 1}); ``label`` the index of the
    item's category in `category_names` (-1 when it has none), ``category`` its name (""
    when none), ``orig_size`` the image's ``(H, W)``.

    Attributes: ``root`` (the folder actually read), ``stems``, ``image_paths``,
    ``mask_paths``, ``categories`` (per item, None when unknown), ``category_names``
    (sorted unless given) and ``labels`` (per item).

    Args:
        root: the dataset folder, or its parent when ``split`` is given.
        split: a sub-folder of ``root`` (``train`` also finds ``DUTS-TR``, ``test`` ``DUTS-TE``).
        transform: ``(image uint8 HxWx3, mask bool HxW) -> (image, mask)``; see
            `sodlab.data.transforms`.
        lenient: skip problematic items with a warning instead of raising.
        category_names: fix the category order (so that two splits share label indices even
            when one lacks a category); categories in the CSV must be among them.
    """

    def __init__(self, root: str | Path, split: Optional[str] = None, transform: Optional[Transform] = None,
                 lenient: bool = False, category_names: Optional[Sequence[str]] = None) -> None:
        base = Path(root).expanduser()
        if not base.is_dir():
            raise DataError(f"{base}: no such dataset folder")
        self.root = _resolve_root(base, split)
        self.transform: Transform = transform if transform is not None else ToTensor()
        self.lenient = bool(lenient)

        image_dir = _find_dir(self.root, IMAGE_DIRS)
        mask_dir = _find_dir(self.root, MASK_DIRS)
        if image_dir is None or mask_dir is None:
            missing = [f"an image folder ({', '.join(IMAGE_DIRS)})"] if image_dir is None else []
            missing += [f"a mask folder ({', '.join(MASK_DIRS)})"] if mask_dir is None else []
            splits = split_folders(self.root)
            hint = (f"; its sub-folders {', '.join(splits)} are dataset folders: pass one of them, "
                    f"e.g. {self.root / splits[0]}" if splits else "")
            raise DataError(f"{self.root}: not a dataset folder: missing {' and '.join(missing)}{hint}")

        problems: list[str] = []
        images = _list_files(image_dir, problems)
        masks = _list_files(mask_dir, problems)
        for stem in sorted(images.keys() - masks.keys()):
            problems.append(f"{image_dir.name}/{images[stem].name} has no mask in {mask_dir.name}/")
        for stem in sorted(masks.keys() - images.keys()):
            problems.append(f"{mask_dir.name}/{masks[stem].name} has no image in {image_dir.name}/")

        stems, sizes = [], []
        for stem in sorted(images.keys() & masks.keys()):
            try:
                isz, msz = image_size(images[stem]), image_size(masks[stem])
            except ImageReadError as exc:
                problems.append(f"unreadable file: {exc}")
                continue
            if isz != msz:
                problems.append(f"{image_dir.name}/{images[stem].name} is {isz[1]}x{isz[0]} but "
                                f"{mask_dir.name}/{masks[stem].name} is {msz[1]}x{msz[0]} (WxH)")
                continue
            stems.append(stem)
            sizes.append(isz)

        cat_map = read_categories(self.root / CATEGORIES_FILE) if (self.root / CATEGORIES_FILE).is_file() else {}
        self._report(problems)
        if not stems:
            raise DataError(f"{self.root}: no usable image/mask pairs")

        self.stems: list[str] = stems
        self.image_paths: list[Path] = [images[s] for s in stems]
        self.mask_paths: list[Path] = [masks[s] for s in stems]
        self.sizes: list[tuple[int, int]] = sizes
        self.categories: list[Optional[str]] = [cat_map.get(s) for s in stems]
        present = sorted({c for c in self.categories if c is not None})
        if category_names is not None:
            self.category_names = [str(c) for c in category_names]
            unknown = [c for c in present if c not in self.category_names]
            if unknown:
                raise DataError(f"{self.root / CATEGORIES_FILE}: categories not in category_names: {', '.join(unknown)}")
        else:
            self.category_names = present
        index = {c: i for i, c in enumerate(self.category_names)}
        self.labels: list[int] = [index[c] if c is not None else -1 for c in self.categories]
        # once preloaded, pairs of one size: images (N, H, W, 3) uint8 and masks (N, H, W) bool
        self._stacked: Optional[tuple[Tensor, Tensor]] = None
        self._pairs: Optional[list[tuple[np.ndarray, np.ndarray]]] = None  # preloaded pairs of several sizes
        unlabelled = sum(c is None for c in self.categories)
        if cat_map and unlabelled:
            log.warning("%s: %d of %d items have no row in %s (label -1)", self.root, unlabelled, len(stems), CATEGORIES_FILE)
        log.debug("%s: %d items, %d categories", self.root, len(stems), len(self.category_names))

    def _report(self, problems: list[str]) -> None:
        if not problems:
            return
        if self.lenient:
            for p in problems:
                warnings.warn(f"{self.root}: skipped: {p}", stacklevel=3)
            return
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise DataError(f"{self.root}: {len(problems)} problem(s) (pass lenient=True to skip them):\n  {listed}{more}")

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def preloaded(self) -> bool:
        """Whether the images and masks are held in memory (`preload`)."""
        return self._stacked is not None or self._pairs is not None

    def preload(self, max_bytes: int = PRELOAD_MAX_BYTES, progress: bool = False) -> bool:
        """Decode every image and mask into memory (a bar with ``progress``), so that epochs
        read no file. Returns whether it did: pairs that would take more than ``max_bytes`` (4
        bytes a pixel) stay on disk, with a warning. An unreadable file is the error `read`
        raises, naming it. Items do not change, to the bit: `read` returns copies of the decoded
        arrays, which the transform gets as it got them from the files.

        Batches are not augmented at once, as classification's are (`LabelledImages`): on the
        built-in benchmark (128 px pairs to 64 px, 2 busy cores) `sodlab.data.batched`'s matrix
        products ran slower than the per-item crop and resize (1,800-2,300 against 2,400-2,900
        pairs/s), and would have changed values at float rounding."""
        if self.preloaded:
            return True
        pairs = decode_all(self.root, len(self), sum(4 * h * w for h, w in self.sizes), max_bytes, self._decode, progress,
                           what="image/mask pairs")
        if pairs is None:
            return False
        images = stacked([image for image, _ in pairs])
        if images is None:
            self._pairs = pairs
        else:  # a mask has its image's size (`_decode`), so the masks stack too
            self._stacked = images, torch.from_numpy(np.stack([mask for _, mask in pairs]))
        return True

    def preloaded_images(self) -> tuple[Optional[Tensor], Optional[list[np.ndarray]]]:
        """The decoded images (no masks): ``(N, H, W, 3)`` uint8 when of one size, else a list
        of arrays; ``(None, None)`` when not preloaded. Shared, not copied: do not change them."""
        if self._stacked is not None:
            return self._stacked[0], None
        if self._pairs is not None:
            return None, [image for image, _ in self._pairs]
        return None, None

    def with_transform(self, transform: Optional[Transform]) -> "SODFolder":
        """The same items with another ``transform``, sharing this folder's file lists and, when
        preloaded, its decoded pixels (the evaluation view of a training folder, no second decode)."""
        view = copy.copy(self)
        view.transform = transform if transform is not None else ToTensor()
        return view

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(self.image_paths[index])
        mask = read_mask(self.mask_paths[index])
        if image.shape[:2] != mask.shape:
            raise DataError(f"{self.image_paths[index]} is {image.shape[1]}x{image.shape[0]} but "
                            f"{self.mask_paths[index]} is {mask.shape[1]}x{mask.shape[0]} (WxH)")
        return image, mask

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``(image uint8 HxWx3, mask bool HxW)`` of item ``index``, untransformed (copies
        when preloaded: a caller may change them)."""
        if self._stacked is not None:
            images, masks = self._stacked
            return images[index].numpy().copy(), masks[index].numpy().copy()
        if self._pairs is not None:
            image, mask = self._pairs[index]
            return image.copy(), mask.copy()
        return self._decode(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = checked_index(index, len(self))
        image, mask = self.read(index)
        img, m = self.transform(image, mask)
        return {
            "image": img,
            "mask": m,
            "label": self.labels[index],
            "category": self.categories[index] or "",
            "stem": self.stems[index],
            "orig_size": tuple(image.shape[:2]),
        }

    def __repr__(self) -> str:
        return (f"SODFolder({str(self.root)!r}, {len(self)} items, {len(self.category_names)} categories, "
                f"transform={self.transform!r})")
