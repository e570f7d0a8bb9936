"""The benchmark cache: `ensure_benchmark` generates a folder per set of parameters once and
reuses it; `default_data_dir` says where; `read_params` reads a folder's parameters back."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from ...errors import DataError
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
                     difficulty: float = DEFAULT_DIFFICULTY, progress: bool = True, workers: Optional[int] = None) -> Path:
    """The folder of the built-in benchmark with these parameters, generated on first use.

    It lives in ``root`` (default `default_data_dir`) as ``synthetic-<hash of the
    parameters>``, so different parameters never share a folder and a finished folder is
    reused as is.
    """
    params = SynthParams(n_train=int(n_train), n_test=int(n_test), size=int(size), seed=int(seed),
                         categories=tuple(categories) if categories else CATEGORIES, difficulty=float(difficulty))
    params.validate()
    base = Path(root).expanduser() if root is not None else default_data_dir()
    out = base / f"synthetic-{params.digest()}"
    if (out / "synth.json").is_file():
        return out
    log.info("generating the built-in benchmark in %s (once)", out)
    try:
        return generate(out, params.n_train, params.n_test, params.size, params.seed, params.categories,
                        params.difficulty, progress=progress, workers=workers)
    except DataError:
        if (out / "synth.json").is_file():  # another process finished it first
            return out
        raise


def read_params(root: str | Path) -> dict[str, Any]:
    """The parameters a benchmark folder was generated with (its ``synth.json``)."""
    path = Path(root) / "synth.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a generated benchmark ({exc})") from None

