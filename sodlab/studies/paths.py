"""Where the study notebooks and their results live, and which notebooks a run selects."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ConfigError

MODES = ("quick", "standard", "full")
NOTEBOOK_RE = re.compile(r"^(\d+)_([A-Za-z0-9_]+)$")


def repo_root() -> Path:
    """The checkout that holds this package (``sodlab/..``)."""
    return Path(__file__).resolve().parents[2]


def default_notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def default_results_dir() -> Path:
    """``results/`` at the repository root when sodlab runs from a checkout, else in the cwd."""
    root = repo_root()
    return root / "results" if (root / "notebooks").is_dir() else Path.cwd() / "results"


def default_docs_dir() -> Path:
    return repo_root() / "docs"


def discover_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The study scripts ``NN_name.py`` in reading order."""
    d = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    if not d.is_dir():
        raise ConfigError(f"{d}: no notebooks folder (pass --notebooks DIR)")
    found = [p for p in d.glob("*.py") if NOTEBOOK_RE.match(p.stem)]
    return sorted(found, key=lambda p: (int(NOTEBOOK_RE.match(p.stem).group(1)), p.stem))


def select_notebooks(notebooks: Sequence[Path], only: Optional[Sequence[str]] = None) -> list[Path]:
    """Filter by ``only``: full names (``04_category_sensitivity``), numbers (``4``, ``04``) or
    unambiguous name prefixes (``category``)."""
    if not only:
        return list(notebooks)
    chosen: list[Path] = []
    names = [p.stem for p in notebooks]
    for key in only:
        k = key.strip().removesuffix(".py").removesuffix(".ipynb")
        hits = [p for p in notebooks if p.stem == k]
        if not hits and k.isdigit():
            hits = [p for p in notebooks if int(NOTEBOOK_RE.match(p.stem).group(1)) == int(k)]
        if not hits:
            hits = [p for p in notebooks if NOTEBOOK_RE.match(p.stem).group(2).startswith(k) or p.stem.startswith(k)]
        if not hits:
            raise ConfigError(f"no notebook matches {key!r}; available: {', '.join(names)}")
        if len(hits) > 1:
            raise ConfigError(f"{key!r} matches several notebooks: {', '.join(p.stem for p in hits)}")
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return [p for p in notebooks if p in chosen]
