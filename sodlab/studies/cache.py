"""A study's computed results kept on disk, so that running a notebook again redraws its
figures instead of recomputing them.

`cached_call` stores what an experiment returns (a mapping of names to DataFrames, numpy
arrays or plain values) as one JSON file named after the function and a hash of its
arguments: the data folder, sizes, seed and recipe a notebook passes. Floats are written as
Python's shortest exact representation, so a result read back equals the one computed, bit
for bit, and a rerun writes the same tables and verdicts. JSON, not pickle: reading a cache
never executes code.

A second run of the same cell with the same arguments reads the file; any other argument is
another file. Arguments that do not change the result (``device``, ``progress``) are left out
of the key. The cache knows nothing of code changes: delete the notebook's ``runs/`` folder
(or pass ``refresh=True``) after changing an experiment, unless the experiment declares a
``cache_version`` attribute: it joins the key, so raising it when the tables change (a new
column) makes old results miss instead of being read back without the column.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ..atomic import write_text_atomic
from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
# Arguments that change how or where a result is computed, not the result itself.
NOT_IN_KEY = frozenset({"device", "progress"})


def _plain(value: Any) -> Any:
    """``value`` as JSON-able data for the cache key (paths resolved, tuples as lists; a path
    to a file with its size and modification time, so that a rewritten checkpoint is another
    key)."""
    if isinstance(value, Path):
        path = value.expanduser().resolve()
        if path.is_file():
            st = path.stat()
            return f"{path}@{st.st_size}:{st.st_mtime_ns}"
        return str(path)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ConfigError(f"cannot key a cached result on an argument of type {type(value).__name__} ({value!r})")


def cache_key(fn: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The file stem for ``fn(*args, **kwargs)`` and the arguments it stands for."""
    name = f"{fn.__module__}.{fn.__qualname__}"
    described = {"function": name, "args": _plain(list(args)),
                 "kwargs": _plain({k: v for k, v in kwargs.items() if k not in NOT_IN_KEY}), "format": CACHE_FORMAT}
    if getattr(fn, "cache_version", None) is not None:
        described["version"] = _plain(fn.cache_version)
    digest = hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
    return f"{fn.__name__}-{digest}", described


def _encode_value(value: Any) -> dict[str, Any]:
    if isinstance(value, pd.DataFrame):
        if not all(isinstance(c, str) for c in value.columns):
            raise ConfigError(f"cannot cache a DataFrame whose column names are not all strings: {list(value.columns)}")
        default_index = isinstance(value.index, pd.RangeIndex) and value.index.start == 0 and value.index.step == 1
        dtypes = {str(c): str(t) for c, t in value.dtypes.items()}
        unsupported = [c for c, t in dtypes.items() if not (t in ("bool", "object", "str", "string") or t.startswith(("int", "float", "uint")))]
        if unsupported:
            raise ConfigError(f"cannot cache DataFrame column(s) {', '.join(unsupported)} of type "
                              f"{', '.join(dtypes[c] for c in unsupported)}")
        frame = {"columns": list(value.columns), "dtypes": dtypes, "data": {c: value[c].tolist() for c in value.columns}}
        if not default_index:
            frame["index"] = value.index.tolist()
            frame["index_name"] = value.index.name
        return {"frame": frame}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise ConfigError(f"cannot cache a numpy array of dtype {value.dtype}")
        return {"array": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return {"value": value.item()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return {"value": value}
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return {"list": list(value)}
    raise ConfigError(f"cannot cache a value of type {type(value).__name__}")


def _decode_value(item: Mapping[str, Any], where: str) -> Any:
    if "frame" in item:
        f = item["frame"]
        df = pd.DataFrame({c: f["data"][c] for c in f["columns"]}, columns=f["columns"])
        for c, t in f["dtypes"].items():
            if t != "object" and str(df[c].dtype) != t:
                df[c] = df[c].astype(t)
        if "index" in f:
            df.index = pd.Index(f["index"], name=f.get("index_name"))
        return df
    if "array" in item:
        return np.asarray(item["array"], dtype=item["dtype"]).reshape(item["shape"])
    if "list" in item:
        return list(item["list"])
    if "value" in item:
        return item["value"]
    raise DataError(f"{where}: not a sodlab result cache (an entry has none of frame/array/list/value)")


def save_result(path: str | Path, result: Mapping[str, Any], described: Mapping[str, Any] | None = None) -> Path:
    """Write ``result`` (name -> DataFrame, array or plain value) as a cache file, atomically."""
    body = {"format": CACHE_FORMAT, "call": dict(described or {}),
            "values": {str(k): _encode_value(v) for k, v in result.items()}}
    # Python's float repr round-trips exactly; NaN stays NaN (json's extension, read back by json)
    return write_text_atomic(Path(path), json.dumps(body, allow_nan=True) + "\n")


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a cache file written by `save_result`."""
    path = Path(path)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable result cache ({exc})") from exc
    if not isinstance(body, dict) or body.get("format") != CACHE_FORMAT or not isinstance(body.get("values"), dict):
        raise DataError(f"{path}: not a sodlab result cache of format {CACHE_FORMAT}")
    return {k: _decode_value(v, str(path)) for k, v in body["values"].items()}


_SINGLE = "__result__"  # the key under which a function's lone DataFrame is stored


def cached_call(cache_dir: str | Path, fn: Callable[..., Any], *args: Any, refresh: bool = False, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, read from ``cache_dir`` when the same call was made before,
    else computed and written there. ``fn`` returns a DataFrame or a mapping of names to
    DataFrames, numpy arrays or plain values; ``refresh`` recomputes and overwrites."""
    stem, described = cache_key(fn, args, kwargs)
    path = Path(cache_dir) / f"{stem}.json"
    if path.is_file() and not refresh:
        try:
            result = load_result(path)
        except DataError as exc:  # a damaged file is recomputed, not fatal
            log.warning("%s; recomputing", exc)
        else:
            log.info("%s: read from the cache %s", described["function"], path)
            return result[_SINGLE] if set(result) == {_SINGLE} else result
    computed = fn(*args, **kwargs)
    single = isinstance(computed, pd.DataFrame)
    result = {_SINGLE: computed} if single else dict(computed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_result(path, result, described)
    return computed if single else result

