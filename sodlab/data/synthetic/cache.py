"""The cache of generated data: `ensure_benchmark` (and `ensure_corpus`, the pre-training
corpus) generates a folder per set of parameters once and reuses it; `default_data_dir` says
where; `read_params` reads a benchmark folder's parameters back."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ...errors import DataError
from .corpus import (DEFAULT_CLASSES, DEFAULT_CORPUS_SIZE, DEFAULT_PER_CLASS, DEFAULT_VAL_PER_CLASS, DEFAULT_VARIANT,
                     CorpusParams, generate_corpus)
from .generation import generate
from .params import (CATEGORIES, DEFAULT_DIFFICULTY, DEFAULT_SEED, DEFAULT_SIZE, DEFAULT_TEST, DEFAULT_TRAIN,
                     SynthParams)

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """``$SODLAB_DATA`` when set, else the repository's ``data/`` folder (for an editable
    install), else ``~/.cache/sodlab``."""
    env = os.environ.get("SODLAB_DATA")
    if env:
        return Path(env).expanduser()
    repo_data = Path(__file__).resolve().parents[3] / "data"
    if repo_data.is_dir() and os.access(repo_data, os.W_OK):
        return repo_data
    return Path.home() / ".cache" / "sodlab"


def ensure_benchmark(root: Optional[str | Path] = None, n_train: int = DEFAULT_TRAIN, n_test: int = DEFAULT_TEST,
                     size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED, categories: Optional[Sequence[str]] = None,
                     difficulty: float = DEFAULT_DIFFICULTY, progress: bool = True, workers: Optional[int] = None,
                     saliency: str = "cues") -> Path:
    """The folder of the built-in benchmark with these parameters, generated on first use as
    ``synthetic-<hash of the parameters>`` in ``root`` (default `default_data_dir`).
    ``saliency="category"`` is the category study's positive control (`params.SALIENCY_RULES`)."""
    params = SynthParams(n_train=int(n_train), n_test=int(n_test), size=int(size), seed=int(seed),
                         categories=tuple(categories) if categories else CATEGORIES, difficulty=float(difficulty),
                         saliency=saliency)
    params.validate()
    return _cached(root, f"synthetic-{params.digest()}", "synth.json", "the built-in benchmark",
                   lambda out: generate(out, params.n_train, params.n_test, params.size, params.seed, params.categories,
                                        params.difficulty, progress=progress, workers=workers, saliency=params.saliency))


def ensure_corpus(variant: str = DEFAULT_VARIANT, root: Optional[str | Path] = None, n_classes: int = DEFAULT_CLASSES,
                  per_class: int = DEFAULT_PER_CLASS, val_per_class: int = DEFAULT_VAL_PER_CLASS,
                  size: int = DEFAULT_CORPUS_SIZE, seed: int = 0, progress: bool = True,
                  workers: Optional[int] = None) -> Path:
    """The folder of the pre-training corpus (``variant`` ``with-sod`` or ``without-sod``)
    with these parameters, generated on first use as ``corpus-<variant>-<hash of the
    parameters>`` in ``root`` (default `default_data_dir`)."""
    params = CorpusParams(variant=variant, n_classes=int(n_classes), per_class=int(per_class),
                          val_per_class=int(val_per_class), size=int(size), seed=int(seed))
    params.validate()
    return _cached(root, f"corpus-{params.variant}-{params.digest()}", "corpus.json", "the pre-training corpus",
                   lambda out: generate_corpus(out, params.variant, params.n_classes, params.per_class, params.val_per_class,
                                               params.size, params.seed, progress=progress, workers=workers))


def _cached(root: Optional[str | Path], name: str, marker: str, what: str, make: Callable[[Path], Path]) -> Path:
    """``root/name``, made by ``make`` unless ``marker`` (written last) says it is complete.
    Different parameters never share a folder, so a finished one is reused as is."""
    base = Path(root).expanduser() if root is not None else default_data_dir()
    out = base / name
    if (out / marker).is_file():
        return out
    log.info("generating %s in %s (once)", what, out)
    try:
        return make(out)
    except DataError:
        if (out / marker).is_file():  # another process finished it first
            return out
        raise


def read_params(root: str | Path) -> dict[str, Any]:
    """The parameters a benchmark folder was generated with (its ``synth.json``)."""
    path = Path(root) / "synth.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a generated benchmark ({exc})") from None

