"""`generate`: a whole benchmark folder, written into a temporary folder and renamed into
place (`write_folder`, which the pre-training corpus uses too), its images rendered in
worker processes (`.workers`) when there are enough of them."""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

from ...atomic import current_umask, finish_cleanup
from ...errors import DataError
from .params import (CATEGORIES, DEFAULT_DIFFICULTY, DEFAULT_SEED, DEFAULT_SIZE, DEFAULT_TEST, DEFAULT_TRAIN,
                     SynthParams, image_stem, split_categories)
from .workers import run_tasks, sigint_held, split_into_tasks

log = logging.getLogger(__name__)

_MAX_CHUNK = 256      # images per worker task at most (each task loads the photographs once)


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _write_all(params: SynthParams, tmp: Path, progress: bool, workers: int) -> None:
    splits = []
    for split, n in (("train", params.n_train), ("test", params.n_test)):
        (tmp / split / "images").mkdir(parents=True)
        (tmp / split / "GT").mkdir(parents=True)
        cats = split_categories(params, split, n)
        rows = ["stem,category"] + [f"{image_stem(split, i)},{c}" for i, c in enumerate(cats)]
        (tmp / split / "categories.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        splits.append((split, list(enumerate(cats))))
    pj = params.to_json()
    run_tasks(pj, str(tmp), split_into_tasks(splits, workers, _MAX_CHUNK), workers, progress, "synthetic benchmark")
    (tmp / "synth.json").write_text(json.dumps({"generator": "sodlab.data.synthetic", **pj}, indent=2, sort_keys=True) + "\n",
                                    encoding="utf-8")


def pick_workers(workers: Optional[int], total: int) -> int:
    """``workers``, or by default the usable cores (one for fewer than 256 images: starting
    processes costs more than it saves)."""
    if workers is not None:
        return int(workers)
    return 1 if total < 256 else default_workers()


def write_folder(out_dir: str | Path, overwrite: bool, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` into a temporary folder beside ``out_dir``, then that folder renamed
    into place: ``out_dir`` is either complete or untouched, and an interrupted or failed
    ``write`` leaves nothing. An existing non-empty ``out_dir`` raises `DataError` unless
    ``overwrite``."""
    out = Path(out_dir).expanduser()
    if _is_nonempty_dir(out) and not overwrite:
        raise DataError(f"{out}: folder exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old: Optional[Path] = None
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private
        # Ctrl-C between the two renames left the new files deleted and the old ones hidden.
        with sigint_held():
            if out.is_dir():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
                os.replace(out, old / "replaced")
            os.replace(tmp, out)
    finally:
        finish_cleanup(lambda: _remove_leftovers(tmp, old))
    return out


def generate(out_dir: str | Path, n_train: int = DEFAULT_TRAIN, n_test: int = DEFAULT_TEST, size: int = DEFAULT_SIZE,
             seed: int = DEFAULT_SEED, categories: Optional[Sequence[str]] = None,
             difficulty: float = DEFAULT_DIFFICULTY, progress: bool = True, overwrite: bool = False,
             workers: Optional[int] = None, image_format: str = "jpg", saliency: str = "cues") -> Path:
    """Write a synthetic benchmark to ``out_dir`` (layout in the `sodlab.data.synthetic` docstring).

    The files are written into a temporary folder beside ``out_dir`` and renamed into place
    at the end, so ``out_dir`` is either complete or untouched. An existing non-empty
    ``out_dir`` raises `DataError` unless ``overwrite=True``. ``saliency``: what makes the
    object salient, ``"cues"`` or ``"category"`` (`params.SALIENCY_RULES`). ``workers`` processes render
    in parallel (default: the usable cores; jobs under 256 images run in this process). They
    are fresh interpreters that import only sodlab, so a script needs no ``__main__`` guard; if
    one fails, a warning says why and this process writes its images. Returns ``out_dir``.
    """
    params = SynthParams(n_train=int(n_train), n_test=int(n_test), size=int(size), seed=int(seed),
                         categories=tuple(categories) if categories else CATEGORIES,
                         difficulty=float(difficulty), image_format=image_format, saliency=saliency)
    params.validate()
    n_workers = pick_workers(workers, params.n_train + params.n_test)
    out = write_folder(out_dir, overwrite, lambda tmp: _write_all(params, tmp, progress, n_workers))
    log.info("wrote %d training and %d test images (%dpx, seed %d, difficulty %.2f, saliency by %s) to %s",
             params.n_train, params.n_test, params.size, params.seed, params.difficulty, params.saliency, out)
    return out


def _remove_leftovers(tmp: Path, old: Optional[Path]) -> None:
    """The new files if they were not swapped into place, else the replaced ones (a rename
    that failed leaves those for the user to recover)."""
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    elif old is not None and old.exists():
        shutil.rmtree(old, ignore_errors=True)
