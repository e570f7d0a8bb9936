"""Masks that are not 0/255: 0/1 masks read with 1 as the foreground (eval scores them as
their 0/255 twins), soft masks reported by `data check`; and `data samples` never replaces a
user's file."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sodlab.cli import main
from sodlab.data import read_mask
from sodlab.data.io import mask_kind

MAX_F = {"standard": 0.8394, "salmetric": 0.8419}  # of the maps of the eval test below


def _masks(n=3, size=16):
    """``n`` (size, size) bool masks, each a different rectangle."""
    out = []
    for i in range(n):
        m = np.zeros((size, size), bool)
        m[2 + i:9 + i, 3:12 - i] = True
        out.append(m)
    return out


def test_read_mask_takes_1_as_foreground_in_0_1_masks_and_warns_once_per_folder(tmp_path):
    m = _masks(1)[0]
    Image.fromarray(m.astype(np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(m.astype(np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(m.astype(np.uint16)).save(tmp_path / "deep.png")  # 16-bit 0/1: scaled, it read as empty
    with pytest.warns(UserWarning) as rec:
        a, b, deep = (read_mask(tmp_path / n) for n in ("a.png", "b.png", "deep.png"))
    assert [str(w.message) for w in rec] == [
        f"{tmp_path}: masks saved as 0/1 (e.g. a.png); reading 1 as the foreground (sodlab writes 0/255)"]
    for got in (a, b, deep):
        np.testing.assert_array_equal(got, m)
    Image.fromarray(np.where(m, 255, 0).astype(np.uint8)).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "c.png"), m)  # 0/255 as before
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "empty.png")
    assert not read_mask(tmp_path / "empty.png").any()


def test_mask_kind():
    assert mask_kind(np.array([[0, 255]], np.uint8)) == "binary"
    assert mask_kind(np.array([[0, 200]], np.uint8)) == "binary"
    assert mask_kind(np.zeros((2, 2), np.uint8)) == "binary"
    assert mask_kind(np.array([[0, 1]], np.uint8)) == "zero_one"
    assert mask_kind(np.array([[0, 128, 255]], np.uint8)) == "soft"  # anti-aliased edge
    assert mask_kind(np.array([[0, 100]], np.uint8)) == "soft"  # its foreground reads as background
    assert mask_kind(np.array([[0, 1, 2]], np.uint8)) == "soft"


def test_eval_scores_0_1_masks_as_their_0_255_twins(tmp_path, capsys):
    """Before, 0/1 masks read as empty: max-F 0.0000 (standard) and 1.0000 (salmetric)."""
    rng = np.random.default_rng(0)
    for d in ("gt01", "gt255", "pred"):
        (tmp_path / d).mkdir()
    for i, m in enumerate(_masks()):
        Image.fromarray(m.astype(np.uint8)).save(tmp_path / "gt01" / f"{i}.png")
        Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / "gt255" / f"{i}.png")
        pred = np.clip(m * 110.0 + rng.normal(70, 45, m.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pred).save(tmp_path / "pred" / f"{i}.png")
    for protocol in ("standard", "salmetric"):
        scores = {}
        for gt in ("gt01", "gt255"):
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter("always")
                assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / gt),
                             "--protocol", protocol, "--json", "--no-progress"]) == 0
            first_read = gt == "gt01" and protocol == "standard"  # one warning per folder and process
            assert [str(w.message).split(":")[0] for w in rec] == ([str(tmp_path / gt)] if first_read else [])
            scores[gt] = json.loads(capsys.readouterr().out)
            assert scores[gt].pop("source")["gt"] == str(tmp_path / gt)
        assert scores["gt01"] == scores["gt255"]
        assert scores["gt01"]["max_f"] == pytest.approx(MAX_F[protocol], abs=1e-4)


def _dataset(root: Path, masks: dict[str, np.ndarray]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "GT").mkdir()
    for stem, levels in masks.items():
        Image.fromarray(np.full(levels.shape + (3,), 90, np.uint8)).save(root / "images" / f"{stem}.jpg")
        Image.fromarray(levels).save(root / "GT" / f"{stem}.png")
    return root


def test_data_check_reports_0_1_and_soft_masks(tmp_path, capsys):
    m = _masks(1)[0].astype(np.uint8)
    soft = m * 255
    soft[2, 3:12] = 128  # an anti-aliased edge
    root = _dataset(tmp_path / "ds", {"a": m * 255, "b": m, "c": m, "d": soft, "e": m * 255})
    assert main(["data", "check", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{root}: 5 image/mask pairs, 0 categories"
    assert lines[-2:] == ["  note: 2 mask(s) saved as 0/1 (e.g. b.png): read with 1 as the foreground",
                          "  warning: 1 soft mask(s) (gray levels other than 0 and one level above 128, e.g. d.png): "
                          "thresholded at 128"]
    assert main(["data", "check", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["masks"] == {
        "binary": 2, "zero_one": 2, "soft": 1, "examples": {"zero_one": "b.png", "soft": "d.png"}}
    clean = _dataset(tmp_path / "clean", {"a": m * 255})
    assert main(["data", "check", str(clean)]) == 0
    assert not any("mask" in ln for ln in capsys.readouterr().out.splitlines()[1:])


def test_data_samples_never_replaces_a_file(tmp_path, capsys, monkeypatch):
    import sodlab.viz.samples

    bench = tmp_path / "bench"
    assert main(["data", "synth", "--out", str(bench), "--train", "4", "--test", "0", "--size", "24",
                 "--categories", "star,ring", "--no-progress"]) == 0
    mine = tmp_path / "existing.png"
    mine.write_bytes(b"the user's figure")
    drawn = []
    real = sodlab.viz.samples.sample_grid
    monkeypatch.setattr(sodlab.viz.samples, "sample_grid", lambda *a, **k: drawn.append(1) or real(*a, **k))
    capsys.readouterr()
    for out in (mine, tmp_path / "existing"):  # `.png` is added to a name without it
        assert main(["data", "samples", str(bench), "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"sodlab data: error: {mine}: file exists; pass --overwrite to replace it\n"
    assert mine.read_bytes() == b"the user's figure" and drawn == []  # refused before drawing
    assert main(["data", "samples", str(bench), "--out", str(mine), "--per-category", "1", "--overwrite"]) == 0
    assert capsys.readouterr().out == f"{mine}\n" and drawn == [1]
    assert Image.open(mine).format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench", "existing.png"]
