"""The notebooks' sources: jupytext percent scripts read as notebooks, their parameters,
the injection of a run's parameters (as papermill does), and the paired ``.ipynb`` files."""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Any, Mapping, Optional

import jupytext
import nbformat

from ..atomic import write_text_atomic
from ..errors import ConfigError, DataError
from .paths import discover_notebooks

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
_JUPYTEXT_HEADER = {"formats": "ipynb,py:percent"}


def read_notebook(path: str | Path):
    """A notebook (nbformat v4) from a jupytext percent script or an ``.ipynb``."""
    import nbformat

    path = Path(path)
    try:
        if path.suffix == ".ipynb":
            nb = nbformat.read(str(path), as_version=4)
        else:
            nb = jupytext.read(str(path), fmt="py:percent")
    except Exception as exc:  # jupytext/nbformat raise many types for a broken file
        raise DataError(f"{path}: cannot read notebook: {exc}") from exc
    _stable_ids(nb, path.stem)
    return nb


def _stable_ids(nb, name: str) -> None:
    # jupytext draws random cell ids; deterministic ones keep the paired .ipynb diff-free.
    for i, cell in enumerate(nb.cells):
        cell["id"] = hashlib.sha1(f"{name}:{i}".encode()).hexdigest()[:8]


def parameter_names(nb) -> list[str]:
    """Names assigned in the cell tagged ``parameters`` (empty when there is none)."""
    cell = _parameters_cell(nb)
    if cell is None:
        return []
    try:
        tree = ast.parse(nb.cells[cell].source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _parameters_cell(nb) -> Optional[int]:
    for i, cell in enumerate(nb.cells):
        if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def inject_parameters(nb, params: Mapping[str, Any]):
    """Insert a cell tagged ``injected-parameters`` assigning ``params`` right after the cell
    tagged ``parameters`` (at the top when there is none), replacing an earlier injection."""

    for name, value in params.items():
        if not name.isidentifier():
            raise ConfigError(f"parameter name {name!r} is not a Python identifier")
        try:
            ast.literal_eval(repr(value))
        except (ValueError, SyntaxError):
            raise ConfigError(f"parameter {name}={value!r} is not a plain literal") from None
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    lines = ["# Parameters (injected by sodlab studies)"] + [f"{k} = {v!r}" for k, v in params.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    cell["id"] = "injected-parameters"
    at = _parameters_cell(nb)
    nb.cells.insert(0 if at is None else at + 1, cell)
    return nb


def notebook_title(path: Path) -> str:
    """The first markdown heading of a notebook, without the leading ``#``."""
    for cell in read_notebook(path).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def _cell_signature(nb) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.cell_type, c.source.strip(), tuple(c.get("metadata", {}).get("tags", []))) for c in nb.cells]


def paired_notebook_text(script: str | Path) -> str:
    """The ``.ipynb`` text paired with a percent script: same cells, no outputs."""

    nb = read_notebook(script)
    nb.metadata["jupytext"] = dict(_JUPYTEXT_HEADER)  # no jupytext version: stable across releases
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nbformat.writes(nb) + "\n"


def out_of_sync(notebooks_dir: str | Path | None = None) -> list[str]:
    """Names of scripts whose paired ``.ipynb`` is missing or has different cells."""
    stale = []
    for script in discover_notebooks(notebooks_dir):
        ipynb = script.with_suffix(".ipynb")
        if not ipynb.exists() or _cell_signature(read_notebook(ipynb)) != _cell_signature(read_notebook(script)):
            stale.append(script.stem)
    return stale


def sync_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """Rewrite each script's paired ``.ipynb`` when it differs; returns the files written."""
    written = []
    for script in discover_notebooks(notebooks_dir):
        ipynb = script.with_suffix(".ipynb")
        text = paired_notebook_text(script)
        if not ipynb.exists() or ipynb.read_text(encoding="utf-8") != text:
            write_text_atomic(ipynb, text)
            written.append(ipynb)
    return written
