"""What the inference commands (predict, eval, export) share: argument checks made before
any work, loading the weights, and the optimised model.

Outputs are checked before the (slow) work so that a bad ``--out`` is one line and exit 2
rather than a traceback after inference. Imports of torch-heavy modules stay inside the
functions: ``sodlab --help`` must not pay for them.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from ..errors import ConfigError, NonFiniteError, SodlabError


def check_size_arg(size: Optional[int]) -> None:
    """Refuse a ``--size`` CSNet cannot take (``None``, meaning the default, passes)."""
    from ..models.csnet import INPUT_MULTIPLE, is_input_side

    if size is not None and not is_input_side(size):
        raise SodlabError(f"--size must be a positive multiple of {INPUT_MULTIPLE}, got {size}")


def maybe_optimize(model: Any, enabled: bool) -> Any:
    """The inference-optimised equivalent of ``model`` (folded, traced per input shape) when
    sodlab.fast is available."""
    if not enabled:
        return model
    try:
        from ..fast import optimize_for_inference
    except ImportError:
        return model
    return optimize_for_inference(model, jit=True)


def load_model(args: argparse.Namespace) -> Any:
    """The model of ``--weights`` (``--model``/``--layer-config`` for the authors' format),
    in eval mode; unreadable, truncated, unsafe or non-finite weights are a `SodlabError`
    naming the file."""
    from ..checkpoint import load_weights

    return load_weights(args.weights, args.model, args.layer_config).eval()


@contextmanager
def naming_weights(weights: str | Path) -> Iterator[None]:
    """Non-finite model outputs reported with the weights file that produced them."""
    try:
        yield
    except NonFiniteError as exc:
        raise NonFiniteError(f"{weights}: {exc}") from exc


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_creatable(path: Path, flag: str) -> None:
    """``path`` does not exist yet: the folder that would hold it must be a writable folder."""
    anchor = _nearest_existing(path.parent)
    if not anchor.is_dir():
        raise SodlabError(f"{flag} {path}: {anchor} is a file, not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise SodlabError(f"{flag} {path}: cannot write in {anchor} (permission denied)")


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """An output folder that exists and is writable, or can be created; checked before work."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise SodlabError(f"{flag} {path}: exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise SodlabError(f"{flag} {path}: cannot write in this folder (permission denied)")
        return path
    _check_creatable(path, flag)
    return path


def check_output_file(path: str | Path, flag: str, overwrite: bool) -> Path:
    """An output file that can be written (replaced only with ``overwrite``); checked before work."""
    path = Path(path)
    if path.is_dir():
        raise SodlabError(f"{flag} {path}: is a folder, not a file")
    if path.exists() and not overwrite:
        raise SodlabError(f"{path} already exists; pass --overwrite to replace it")
    if path.exists():
        # atomic replacement writes a temporary file beside it, then renames
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise SodlabError(f"{flag} {path}: cannot write in {path.parent} (permission denied)")
        return path
    _check_creatable(path, flag)
    return path


def parse_value(text: str) -> Any:
    """A command-line VALUE: JSON (``true``, ``[1, 2]``, ``{"a": 1}``), else a Python literal
    (``True``, ``(1, 2)``, ``'x'``), else the text itself (a path, a name)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_assignments(pairs: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` arguments of ``flag`` as a dict; dashes in KEY read as underscores, so
    ``--set image-size=64`` and ``--set image_size=64`` are the same key."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE")
        key, raw = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key.isidentifier():
            raise ConfigError(f"{flag} {pair!r}: {key!r} is not a valid name")
        out[key] = parse_value(raw)
    return out
