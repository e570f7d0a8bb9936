"""The studies' result cache and the `sodlab lab` command."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sodlab.cli import main
from sodlab.errors import ConfigError, DataError
from sodlab.studies.cache import cached_call, load_result, save_result


def _result(scale: float = 1.0) -> dict:
    return {
        "table": pd.DataFrame({"name": ["a", "b"], "x": [0.1 * scale, float("nan")], "n": [1, 2], "ok": [True, False]}),
        "indexed": pd.DataFrame({"v": [1.5, 2.5]}, index=pd.Index(["p", "q"], name="key")),
        "array": np.arange(6, dtype=np.float32).reshape(2, 3) / 3,
        "names": ["x", "y"],
        "layer": "stage3",
        "channels": 8,
    }


def test_a_rerun_reads_the_same_result_back_exactly(tmp_path: Path):
    calls = []

    def experiment(root: Path, width: int = 8, widths: tuple = (4, 8), device: str = "cpu", progress: bool = False):
        calls.append(width)
        return _result(1 / 3)  # 0.1/3 has no short decimal form: it must come back bit for bit

    first = cached_call(tmp_path / "cache", experiment, tmp_path / "data", width=8, device="cpu")
    again = cached_call(tmp_path / "cache", experiment, tmp_path / "data", width=8, device="cuda", progress=True)
    assert calls == [8]  # neither device nor progress is part of the key
    pd.testing.assert_frame_equal(again["table"], first["table"])
    pd.testing.assert_frame_equal(again["indexed"], first["indexed"])
    assert again["table"]["x"][0] == first["table"]["x"][0] == 0.1 / 3
    assert again["array"].dtype == np.float32 and np.array_equal(again["array"], first["array"])
    assert (again["names"], again["layer"], again["channels"]) == (["x", "y"], "stage3", 8)

    cached_call(tmp_path / "cache", experiment, tmp_path / "data", width=16)
    cached_call(tmp_path / "cache", experiment, tmp_path / "other", width=8)
    cached_call(tmp_path / "cache", experiment, tmp_path / "data", width=8, refresh=True)
    assert calls == [8, 16, 8, 8]  # other sizes or data are other results; refresh recomputes
    assert len(list((tmp_path / "cache").glob("experiment-*.json"))) == 3


def test_a_new_cache_version_misses_the_old_result(tmp_path: Path):
    calls = []

    def experiment(root: Path, width: int = 8):
        calls.append(width)
        return {"table": pd.DataFrame({"v": [float(len(calls))]})}

    first = cached_call(tmp_path / "cache", experiment, tmp_path / "data", width=8)
    experiment.cache_version = 2  # the tables changed: the old file must not be read back
    second = cached_call(tmp_path / "cache", experiment, tmp_path / "data", width=8)
    third = cached_call(tmp_path / "cache", experiment, tmp_path / "data", width=8)
    assert calls == [8, 8] and first["table"]["v"][0] == 1.0 and second["table"]["v"][0] == third["table"]["v"][0] == 2.0


def test_a_damaged_cache_is_recomputed_and_bad_input_is_named(tmp_path: Path):
    calls = []

    def experiment(width: int):
        calls.append(width)
        return {"t": pd.DataFrame({"x": [1.0]})}

    cached_call(tmp_path, experiment, width=1)
    (path,) = tmp_path.glob("experiment-*.json")
    path.write_text("{not json")
    assert cached_call(tmp_path, experiment, width=1)["t"]["x"][0] == 1.0 and calls == [1, 1]
    assert json.loads(path.read_text())["format"] == 1  # rewritten whole
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": 99, "values": {}}))
    with pytest.raises(DataError, match="other.json: not a sodlab result cache"):
        load_result(other)
    table = cached_call(tmp_path, lambda n: pd.DataFrame({"n": [n]}), n=3)  # a lone DataFrame comes back as one
    assert isinstance(table, pd.DataFrame) and table["n"].tolist() == [3]
    assert cached_call(tmp_path, lambda n: pd.DataFrame({"n": [0]}), n=3)["n"].tolist() == [3]  # read, not recomputed
    with pytest.raises(ConfigError, match="cannot key a cached result on an argument of type object"):
        cached_call(tmp_path, experiment, width=object())
    with pytest.raises(ConfigError, match="column\\(s\\) when of type datetime64"):
        save_result(tmp_path / "x.json", {"t": pd.DataFrame({"when": pd.to_datetime(["2026-01-01"])})})


def test_lab_command_line_and_errors(tmp_path: Path, capsys):
    assert main(["lab", "--print-command", "--port", "9999", "--no-browser", "--notebooks", str(tmp_path)]) == 0
    cmd = capsys.readouterr().out
    assert "-m jupyterlab" in cmd and f"--ServerApp.root_dir={tmp_path}" in cmd and "--ServerApp.port=9999" in cmd
    assert "--no-browser" in cmd and "--ServerApp.ip=127.0.0.1" in cmd
    assert main(["lab", "--notebooks", str(tmp_path / "missing")]) == 2
    assert "missing: no notebooks folder" in capsys.readouterr().err
    assert main(["lab", "--print-command"]) == 0
    assert "notebooks" in capsys.readouterr().out  # the repository's notebooks by default


def test_a_study_caches_beside_its_runs_and_names_its_device(tmp_path: Path):
    from sodlab.studies import start_study

    study = start_study("02_x", "quick", {"quick": {}}, device="cpu", results_dir=tmp_path / "res", needs_data=False)
    calls = []

    def table(n: int) -> pd.DataFrame:
        calls.append(n)
        return pd.DataFrame({"n": [n]})

    assert study.cached(table, n=2)["n"].tolist() == study.cached(table, n=2)["n"].tolist() == [2]
    assert calls == [2] and len(list((tmp_path / "res" / "runs" / "quick" / "cache").glob("table-*.json"))) == 1
    assert study.device_note().startswith("training on cpu (") and "threads" in study.device_note()
