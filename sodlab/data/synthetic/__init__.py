"""The built-in benchmark: synthetic salient object images made from real photographs.

Every image holds one salient object of a known category (``categories.csv``) on a
background cut from one of the photographs scikit-image ships, among distractors. Neither
colour nor texture gives the object away: the object, the distractors and the background
all take their textures from the same pool of photographs. What makes the object salient is
what makes objects salient in real SOD data: it is the largest, most compact shape, it sits
near the centre and it contrasts with its surroundings (``saliency="cues"``, the default).
``saliency="category"`` makes a world where only the category decides which object is
salient (the positive control of the category study, `render._compose_category_rule`). ``difficulty`` (0 = easy, 1 = hard;
values up to 1.5 are allowed) weakens those cues together:

* object/background contrast shrinks (from about 0.45 to 0.1 in RGB distance on a 0..1 scale);
* distractors become more numerous (Poisson mean 1 + 5d), larger (up to ~0.35 + 0.45d of the
  object's side), more contrasted and more often cut from the object's own photograph;
* the object's texture is more often cut from the background's photograph;
* low-contrast clutter strokes, sensor noise and an illumination gradient grow.

Layout written by `generate` (the layout `SODFolder` reads)::

    OUT/synth.json                 generator parameters
    OUT/train/images/train-00000.jpg
    OUT/train/GT/train-00000.png   0 / 255
    OUT/train/categories.csv       stem,category
    OUT/test/...

Image ``i`` of split ``s`` is drawn from its own random stream, seeded by
``(seed, s, i)``: generation is parallel and the same seed gives byte-identical files (for
the same versions of numpy, Pillow and scikit-image). Categories are balanced within each
split (counts differ by at most one).

Distractors are never shapes of a category (``shapes.OBJECT_LIKE_SHAPES``, bars and blobs):
the category label says what the image shows.

The package: ``params`` (what a benchmark is: `SynthParams`, categories, per-image streams),
``shapes`` (the templates of categories, non-category shapes and glyphs), ``render``
(drawing one image), ``workers`` (writing images, in worker processes), ``generation``
(`generate`: a whole folder, atomically), ``corpus`` (`generate_corpus`: the pre-training
classification corpus, disjoint from the benchmark) and ``cache`` (`ensure_benchmark`,
`ensure_corpus`, `default_data_dir`, `read_params`). The figure of samples per category is
`sodlab.viz.samples.sample_grid` (the data package draws nothing).
"""
from __future__ import annotations

from .cache import default_data_dir, ensure_benchmark, ensure_corpus, read_params
from .corpus import ALL_CLASSES, CORPUS_PHOTOS, OTHER_CLASSES, VARIANTS, CorpusParams, corpus_classes, generate_corpus
from .generation import default_workers, generate
from .params import (CATEGORIES, DEFAULT_DIFFICULTY, DEFAULT_SEED, DEFAULT_SIZE, DEFAULT_TEST, DEFAULT_TRAIN,
                     GENERATOR_VERSION, PHOTOS, SALIENCY_RULES, SPLITS, SynthParams, bright_is_salient, image_rng, image_stem, split_categories)
from .render import Rendering, compose, render
from .shapes import EXTRA_SHAPES, GLYPHS, OBJECT_LIKE_SHAPES

__all__ = [
    "ALL_CLASSES", "CORPUS_PHOTOS", "CorpusParams", "EXTRA_SHAPES", "GLYPHS", "OBJECT_LIKE_SHAPES", "OTHER_CLASSES",
    "Rendering", "VARIANTS", "compose", "corpus_classes", "ensure_corpus", "generate_corpus",
    "CATEGORIES", "DEFAULT_DIFFICULTY", "DEFAULT_SEED", "DEFAULT_SIZE", "DEFAULT_TEST", "DEFAULT_TRAIN",
    "GENERATOR_VERSION", "PHOTOS", "SALIENCY_RULES", "SPLITS", "bright_is_salient", "SynthParams", "default_data_dir", "default_workers",
    "ensure_benchmark", "generate", "image_rng", "image_stem", "read_params", "render", "split_categories",
]
