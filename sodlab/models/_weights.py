"""Reading weight files safely, and copying foreign weights into a model through key rules.

Every architecture keeps its own key rules (official key -> ours) beside its model; this
module holds what they share. Nothing here executes code from a file: PyTorch files go
through ``torch.load(..., weights_only=True)`` and plain pickles through an unpickler that
only reconstructs numpy arrays.
"""
from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, UnsafePickleError

PathLike = str | Path
KeyRules = Sequence[tuple[str, str]]

# The only globals a numpy-only pickle may name: numpy array reconstruction.
_NUMPY_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
# torch's weights_only refusal names the global it blocked; its advice (to load with
# weights_only=False) would run the file's code, so only the global's name is kept.
_BLOCKED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str, what: str) -> None:
        super().__init__(file)
        self._source, self._what = source, what

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refusing to load: the pickle asks for {module}.{name}, "
            f"but {self._what} may only contain numpy arrays and numbers"
        )


def unpickle_numpy_only(raw: bytes, source: str, what: str) -> Any:
    """Unpickle ``raw`` allowing numpy arrays and plain data only (`UnsafePickleError` otherwise)."""
    return _NumpyOnlyUnpickler(io.BytesIO(raw), source, what).load()


def unreadable_torch_file(path: Path, exc: BaseException, what: str) -> CheckpointError:
    """One line naming ``path`` for any ``torch.load`` failure, never torch's own advice.

    An interrupted download ends in ``EOFError`` (no message) or a zip without its central
    directory; torch's weights_only refusal reads as an invitation to run the file's code.
    """
    size = path.stat().st_size if path.exists() else 0
    if isinstance(exc, pickle.UnpicklingError):
        blocked = _BLOCKED_GLOBAL.search(str(exc))
        if blocked:
            return UnsafePickleError(
                f"{path}: refusing to load: the file holds objects sodlab will not unpickle "
                f"({blocked.group(1)}), because unpickling them could run code"
            )
    if size == 0 or isinstance(exc, (EOFError, pickle.UnpicklingError)) or "central directory" in str(exc):
        return CheckpointError(f"{path}: not a readable {what}: truncated or not a checkpoint ({size:,} bytes)")
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return CheckpointError(f"{path}: not a readable {what} ({type(exc).__name__}{': ' + first if first else ''})")


def read_torch_file(path: PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure a `CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what} file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file fails in many ways; all mean the same to a user
        raise unreadable_torch_file(path, exc, what) from exc


def read_foreign_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a foreign PyTorch checkpoint (a dict of tensors, or one under ``"state_dict"``)."""
    ck = read_torch_file(path, "PyTorch checkpoint")
    sd = ck.get("state_dict", ck) if isinstance(ck, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: expected a dict with a 'state_dict' of tensors (the authors' format)")
    return sd


def first_non_finite(tensors: Mapping[str, Any]) -> str | None:
    """The name of the first floating tensor holding NaN or inf, or None."""
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def rename(key: str, rules: KeyRules) -> str:
    """``key`` after every ``(pattern, replacement)`` of ``rules``, in order."""
    for pat, rep in rules:
        key = re.sub(pat, rep, key)
    return key


def strip_module_prefix(key: str) -> str:
    """DataParallel saves every key under ``module.``."""
    return key[7:] if key.startswith("module.") else key


def _as_tensor(v: Any, key: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    try:
        return torch.as_tensor(np.asarray(v))
    except Exception as exc:
        raise CheckpointError(f"official weight {key!r} is not an array ({type(v).__name__})") from exc


def load_mapped_state(
    model: nn.Module,
    official: Mapping[str, Any],
    key_map: Callable[[str], str],
    what: str,
    ignore: Sequence[str] = (),
) -> nn.Module:
    """Copy ``official`` weights into ``model`` through ``key_map`` (official key -> ours),
    raising a `CheckpointError` that names the layer when anything does not fit."""
    ours = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for k, v in official.items():
        if any(re.search(p, k) for p in ignore):
            continue
        nk = key_map(k)
        if nk not in ours:
            unexpected.append(k)
            continue
        t = _as_tensor(v, k)
        if tuple(t.shape) != tuple(ours[nk].shape):
            raise CheckpointError(
                f"{what}: layer {k!r} (ours: {nk}) has shape {tuple(t.shape)} in the checkpoint but "
                f"{tuple(ours[nk].shape)} in the model built from the configuration: "
                "the weights and the layer configuration do not belong together"
            )
        mapped[nk] = t.to(ours[nk].dtype)
    missing = [k for k in ours if k not in mapped]
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"missing for {len(missing)} layers, first {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown keys, first {unexpected[:3]}")
        raise CheckpointError(f"{what}: weights do not fit the configuration: " + "; ".join(parts))
    model.load_state_dict(mapped, strict=True)
    return model

