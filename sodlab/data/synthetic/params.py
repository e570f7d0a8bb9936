"""What a benchmark is: its parameters (`SynthParams`, hashed by the cache), its categories
and photographs, and the random stream and name of every image. Rendering, writing and
caching all read these; nothing here draws or writes."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ...errors import DataError

GENERATOR_VERSION = 2  # 2: distractors are never category shapes (labels say what the image shows)
DEFAULT_DIFFICULTY = 0.1
DEFAULT_SIZE = 128
DEFAULT_TRAIN = 2000
DEFAULT_TEST = 300
DEFAULT_SEED = 0

CATEGORIES: tuple[str, ...] = (
    "ellipse", "triangle", "rectangle", "star", "cross", "ring",
    "crescent", "heart", "arrow", "gear", "letter_A", "horse",
)
# Real photographs and textures bundled with scikit-image (no download needed). Grey ones
# are tinted when used.
PHOTOS: tuple[str, ...] = (
    "astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
    "retina", "stereo_motorcycle", "camera", "coins", "moon", "grass", "gravel", "brick", "clock",
)
SPLITS = {"train": 1, "test": 2}  # stream ids in the per-image seed
# What makes the object salient: "cues" (contrast, size, compactness, the centre: as in real
# SOD data) or "category" (the positive control of the category study: two equally
# contrasting copies of the category's shape, one brighter and one darker than the
# background; which copy is the salient one depends on the category, `bright_is_salient`).
SALIENCY_RULES = ("cues", "category")


def bright_is_salient(category: str) -> bool:
    """In the ``saliency="category"`` world: is the brighter copy the salient one?"""
    return CATEGORIES.index(category) % 2 == 0

@dataclass(frozen=True)
class SynthParams:
    """Everything that determines the generated files (hashed by `ensure_benchmark`)."""

    n_train: int = DEFAULT_TRAIN
    n_test: int = DEFAULT_TEST
    size: int = DEFAULT_SIZE
    seed: int = DEFAULT_SEED
    categories: tuple[str, ...] = CATEGORIES
    difficulty: float = DEFAULT_DIFFICULTY
    image_format: str = "jpg"
    version: int = GENERATOR_VERSION
    photos: tuple[str, ...] = field(default=PHOTOS)
    saliency: str = "cues"

    def validate(self) -> None:
        if self.n_train < 0 or self.n_test < 0 or self.n_train + self.n_test == 0:
            raise DataError(f"need a positive number of images (train {self.n_train}, test {self.n_test})")
        if self.size < 16:
            raise DataError(f"image size must be at least 16, got {self.size}")
        if not 0.0 <= self.difficulty <= 1.5:
            raise DataError(f"difficulty must be in [0, 1.5], got {self.difficulty}")
        unknown = [c for c in self.categories if c not in CATEGORIES]
        if unknown or not self.categories:
            raise DataError(f"unknown categories {unknown or '(none given)'}; choose from {', '.join(CATEGORIES)}")
        if len(set(self.categories)) != len(self.categories):
            raise DataError(f"categories repeat: {', '.join(self.categories)}")
        if self.image_format not in ("jpg", "png"):
            raise DataError(f"image_format must be jpg or png, got {self.image_format!r}")
        if self.saliency not in SALIENCY_RULES:
            raise DataError(f"saliency must be one of {', '.join(SALIENCY_RULES)}, got {self.saliency!r}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["categories"], d["photos"] = list(self.categories), list(self.photos)
        if d["saliency"] == "cues":
            del d["saliency"]  # benchmarks made before the rule existed keep their digest and folder
        return d

    def digest(self) -> str:
        """A short hash of the parameters (the cache key of `ensure_benchmark`)."""
        return short_digest(self.to_json())


def short_digest(params: dict[str, Any]) -> str:
    """10 hex digits of the SHA-256 of ``params`` as sorted JSON: a cache folder's key."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]



def split_categories(params: SynthParams, split: str, n: int) -> list[str]:
    """The balanced, shuffled category of every image of a split."""
    cats = np.arange(n) % len(params.categories)
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, SPLITS[split], 0xCA7]))
    return [params.categories[int(i)] for i in rng.permutation(cats)]


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of ``split``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], int(index)]))




def image_stem(split: str, index: int) -> str:
    """The file name (without suffix) of image ``index`` of ``split``."""
    return f"{split}-{index:05d}"
