"""The pre-training corpus: a classification task that stands in for ImageNet, disjoint from
the SOD benchmark, for studies of what pre-training brings to saliency.

Every image shows one shape or glyph (its class) painted with a photo texture on a photo
background, with clutter, a light gradient and noise: the benchmark's own pieces
(`.render`), but other photographs (`CORPUS_PHOTOS`: none of the benchmark's `PHOTOS`) and,
in the ``without-sod`` variant, no benchmark category among the classes. The ``with-sod``
variant swaps 12 of its classes for the 12 categories, drawn as the benchmark draws them, so
that a study can tell category leakage from generic features. Layout (torchvision's
ImageFolder)::

    OUT/corpus.json                    parameters, the class list
    OUT/train/<class>/<class>-00000.jpg
    OUT/val/<class>/...

Image ``i`` of class ``c`` and split ``s`` has its own random stream, seeded by
``(seed, s, c, i)`` where ``c`` is the class's place in `ALL_CLASSES`: a class shared by two
corpora (both variants, or any number of classes) has the same images in both."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ...errors import DataError
from .generation import pick_workers, write_folder
from .params import CATEGORIES, short_digest
from .render import _Assets, _background, _clutter, _light_and_noise, _paint, _place, _texture
from .shapes import EXTRA_SHAPES, GLYPHS
from .workers import run_tasks, save_image, split_into_tasks

log = logging.getLogger(__name__)

CORPUS_VERSION = 1
VARIANTS: tuple[str, ...] = ("with-sod", "without-sod")
DEFAULT_VARIANT = "without-sod"
DEFAULT_CLASSES = 50
DEFAULT_PER_CLASS = 1000
DEFAULT_VAL_PER_CLASS = 100
DEFAULT_CORPUS_SIZE = 64
# The photographs scikit-image ships offline that the benchmark does not use: four real ones
# (a cell, a retina, a printed page, text on paper), 200 small faces tiled into one picture,
# and four synthetic ones. `cat` is the benchmark's `chelsea`, and `stereo_motorcycle`'s right
# view is its left one, so neither is here.
CORPUS_PHOTOS: tuple[str, ...] = (
    "cell", "microaneurysms", "page", "text", "lfw_subset", "logo", "colorwheel", "checkerboard",
    "shepp_logan_phantom",
)
CORPUS_SPLITS = {"train": 1, "val": 2}
_STREAM = 0xC0A9    # keeps the corpus's random streams apart from the benchmark's
_MAX_CHUNK = 4096   # images per worker task: each task renders every glyph template once
_GLYPH_TURN = math.radians(15)  # glyphs turned further would read as other glyphs (6 and 9)


def _interleave(*groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(x for row in zip_longest(*groups) for x in row if x is not None)


# The classes that are not benchmark categories, in a fixed order that mixes shapes, capitals,
# digits and small letters, so that a corpus of fewer classes still has every kind.
OTHER_CLASSES: tuple[str, ...] = _interleave(
    EXTRA_SHAPES, *([n for n in GLYPHS if n.startswith(kind)] for kind in ("upper_", "digit_", "lower_")))
ALL_CLASSES: tuple[str, ...] = CATEGORIES + OTHER_CLASSES


def corpus_classes(variant: str, n_classes: int) -> tuple[str, ...]:
    """The classes of a corpus: the first ``n_classes`` of `OTHER_CLASSES`, or (``with-sod``)
    the 12 categories and the first ``n_classes - 12`` of them."""
    if variant == "with-sod":
        return CATEGORIES + OTHER_CLASSES[:n_classes - len(CATEGORIES)]
    return OTHER_CLASSES[:n_classes]


@dataclass(frozen=True)
class CorpusParams:
    """Everything that determines a corpus's files (hashed by `ensure_corpus`)."""

    variant: str = DEFAULT_VARIANT
    n_classes: int = DEFAULT_CLASSES
    per_class: int = DEFAULT_PER_CLASS
    val_per_class: int = DEFAULT_VAL_PER_CLASS
    size: int = DEFAULT_CORPUS_SIZE
    seed: int = 0
    image_format: str = "jpg"
    version: int = CORPUS_VERSION
    photos: tuple[str, ...] = field(default=CORPUS_PHOTOS)

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise DataError(f"variant {self.variant!r} (--variant): choose {' or '.join(VARIANTS)}")
        low = len(CATEGORIES) if self.variant == "with-sod" else 2
        high = len(OTHER_CLASSES) + (len(CATEGORIES) if self.variant == "with-sod" else 0)
        if not low <= self.n_classes <= high:
            raise DataError(f"{self.n_classes} classes (--classes): the {self.variant} corpus has {low} to {high}")
        if self.per_class < 1 or self.val_per_class < 0:
            raise DataError(f"need at least 1 training image per class (--per-class, got {self.per_class}) "
                            f"and no negative number of validation images (--val-per-class, got {self.val_per_class})")
        if self.size < 16:
            raise DataError(f"image size (--size) must be at least 16, got {self.size}")
        if self.image_format not in ("jpg", "png"):
            raise DataError(f"image_format (--format) must be jpg or png, got {self.image_format!r}")

    @property
    def classes(self) -> tuple[str, ...]:
        return corpus_classes(self.variant, self.n_classes)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "photos": list(self.photos)}

    @classmethod
    def from_json(cls, pj: dict[str, Any]) -> "CorpusParams":
        return cls(**{**{k: v for k, v in pj.items() if k in cls.__dataclass_fields__}, "photos": tuple(pj["photos"])})

    def digest(self) -> str:
        """A short hash of the parameters (the cache key of `ensure_corpus`)."""
        return short_digest(self.to_json())


def corpus_rng(seed: int, split: str, name: str, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of class ``name`` in ``split``."""
    return np.random.default_rng(np.random.SeedSequence(
        [int(seed), _STREAM, CORPUS_SPLITS[split], ALL_CLASSES.index(name), int(index)]))


def render_sample(assets: _Assets, name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 (size, size, 3) image of class ``name``: a large shape or glyph, contrasting
    with a cluttered photo background (less than the easiest benchmark: this is a task about
    what, not where)."""
    img, _ = _background(assets, rng, size)
    img = _clutter(img, rng, int(rng.poisson(2)), strength=0.25)
    side = size * rng.uniform(0.5, 0.85)
    glyph = name in GLYPHS
    aspect = float(np.exp(rng.uniform(-0.25, 0.25) if glyph else rng.uniform(-0.35, 0.35)))
    centre = tuple(np.clip(rng.normal(size / 2, 0.08 * size, 2), 0.35 * side, size - 0.35 * side))
    alpha = _place(assets, rng, name, size, side, centre, aspect, max_rotation=_GLYPH_TURN if glyph else None)
    tex, _ = _texture(assets, rng, size)
    img = _paint(img, alpha, tex, rng, rng.uniform(0.2, 0.5), rng.uniform(0.5, 1.0))
    return _light_and_noise(img, rng, 0.1, 0.015)


def _write_corpus_chunk(pj: dict[str, Any], out: str, split: str, items: Sequence[tuple[str, int]],
                        on_image: Optional[Callable[[], None]] = None) -> int:
    """Render and write the images ``items`` (class, index) of ``split`` (a `run_tasks` writer)."""
    params = CorpusParams.from_json(pj)
    assets = _Assets(params.photos, shapes=sorted({name for name, _ in items}))
    for name, index in items:
        image = render_sample(assets, name, params.size, corpus_rng(params.seed, split, name, index))
        save_image(image, Path(out) / split / name / f"{name}-{index:05d}", params.image_format)
        if on_image is not None:
            on_image()
    return len(items)


def _write_corpus(params: CorpusParams, tmp: Path, progress: bool, workers: int) -> None:
    splits = []
    for split, n in (("train", params.per_class), ("val", params.val_per_class)):
        for name in params.classes:
            (tmp / split / name).mkdir(parents=True)
        splits.append((split, [(name, i) for name in params.classes for i in range(n)]))
    pj = params.to_json()
    run_tasks(pj, str(tmp), split_into_tasks(splits, workers, _MAX_CHUNK), workers, progress, "pre-training corpus",
              writer=_write_corpus_chunk)
    meta = {"generator": "sodlab.data.synthetic.corpus", **pj, "classes": list(params.classes)}
    (tmp / "corpus.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def generate_corpus(out_dir: str | Path, variant: str = DEFAULT_VARIANT, n_classes: int = DEFAULT_CLASSES,
                    per_class: int = DEFAULT_PER_CLASS, val_per_class: int = DEFAULT_VAL_PER_CLASS,
                    size: int = DEFAULT_CORPUS_SIZE, seed: int = 0, progress: bool = True, overwrite: bool = False,
                    workers: Optional[int] = None, image_format: str = "jpg") -> Path:
    """Write a pre-training corpus to ``out_dir`` (layout in this module's docstring) and
    return it. Written as the benchmark is (`generate`): atomically, never over a non-empty
    folder unless ``overwrite``, in ``workers`` processes (default: the usable cores),
    byte-identical for the same parameters."""
    params = CorpusParams(variant=variant, n_classes=int(n_classes), per_class=int(per_class),
                          val_per_class=int(val_per_class), size=int(size), seed=int(seed), image_format=image_format)
    params.validate()
    n_images = params.n_classes * (params.per_class + params.val_per_class)
    n_workers = pick_workers(workers, n_images)
    out = write_folder(out_dir, overwrite, lambda tmp: _write_corpus(params, tmp, progress, n_workers))
    log.info("wrote a %s corpus of %d classes (%d + %d images each, %dpx, seed %d) to %s", params.variant,
             params.n_classes, params.per_class, params.val_per_class, params.size, params.seed, out)
    return out
