"""`sodlab predict` on real files: odd formats, a broken file, existing outputs, bad --out and weights."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import sodlab
from sodlab.cli import main


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    model = sodlab.create_model("csnet", width=8)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64))
    return sodlab.save(model.eval(), tmp_path_factory.mktemp("w") / "tiny.pt")


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(d / "rgb.jpg")
    Image.fromarray(rng.integers(0, 255, (33, 47), dtype=np.uint8), "L").save(d / "gray.png")
    Image.fromarray(rng.integers(0, 255, (20, 30, 4), dtype=np.uint8), "RGBA").save(d / "rgba.png")
    Image.fromarray(rng.integers(0, 65535, (25, 35), dtype=np.uint16)).save(d / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)).save(d / "rotated.jpg", exif=exif)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (d / "notes.txt").write_text("not an image, ignored")
    return d


def test_folder_with_a_broken_file(folder, weights, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["predict", str(folder), "--weights", str(weights), "--model", "csnet", "--out", str(out), "--size", "64"]
    assert main(args) == 2
    err = capsys.readouterr().err
    # every input's header is read before any work: one line naming the file once, nothing written
    assert err == f"sodlab predict: error: {folder / 'broken.jpg'}: cannot read image (Truncated File Read); nothing was written\n"
    assert not out.exists()
    (folder / "junk.png").write_bytes(b"junk")  # PIL's reason repeats the path: shown once
    assert main(args) == 2
    assert capsys.readouterr().err == (f"sodlab predict: error: {folder / 'broken.jpg'}: cannot read image (Truncated File "
                                       "Read) (and 1 more unreadable input(s)); nothing was written\n")
    (folder / "broken.jpg").unlink()
    assert main(args) == 2
    assert capsys.readouterr().err == (f"sodlab predict: error: {folder / 'junk.png'}: cannot read image (cannot identify "
                                       "image file); nothing was written\n")
    (folder / "junk.png").unlink()
    assert main(args) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["deep16.png", "gray.png", "rgb.png", "rgba.png", "rotated.png"]
    sizes = {p.stem: Image.open(p).size for p in out.iterdir()}
    assert sizes["rgb"] == (60, 40) and sizes["gray"] == (47, 33) and sizes["deep16"] == (35, 25)
    assert sizes["rotated"] == (30, 50)  # EXIF orientation applied: portrait after rotation
    assert Image.open(out / "rgb.png").mode == "L"


def test_damaged_pixel_data_stops_the_run_with_exit_2(folder, weights, tmp_path, capsys):
    (folder / "broken.jpg").unlink()
    good = folder / "rgb.jpg"
    (folder / "zz_cut.jpg").write_bytes(good.read_bytes()[:200])  # header intact, pixels cut
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--weights", str(weights), "--out", str(out), "--size", "64"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"sodlab predict: error: {folder / 'zz_cut.jpg'}: cannot read image")
    assert err[0].count("zz_cut.jpg") == 1


def test_help_says_when_inputs_are_checked(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Before any work, every input's header is read and --out is checked" in text


def _one_image(tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img)
    return img


def test_out_that_is_a_file_is_refused_before_work(weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sodlab.checkpoint.load_weights", lambda *a, **k: pytest.fail("weights loaded before --out was checked"))
    img, afile = _one_image(tmp_path), tmp_path / "afile"
    afile.write_text("user data")
    assert main(["predict", str(img), "--weights", str(weights), "--out", str(afile)]) == 2
    assert capsys.readouterr().err == f"sodlab predict: error: --out {afile}: exists and is not a folder\n"
    assert main(["predict", str(img), "--weights", str(weights), "--out", str(afile / "sub")]) == 2
    assert capsys.readouterr().err == f"sodlab predict: error: --out {afile / 'sub'}: {afile} is a file, not a folder\n"
    assert afile.read_text() == "user data"


def test_out_that_is_not_writable_is_refused_before_work(weights, tmp_path, capsys):
    img, locked = _one_image(tmp_path), tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: the folder stays writable")
        assert main(["predict", str(img), "--weights", str(weights), "--out", str(locked)]) == 2
        assert capsys.readouterr().err == f"sodlab predict: error: --out {locked}: cannot write in this folder (permission denied)\n"
        assert main(["predict", str(img), "--weights", str(weights), "--out", str(locked / "new")]) == 2
        assert "cannot write in" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("n_bytes", [0, 100])
def test_truncated_checkpoint_is_one_line(weights, tmp_path, capsys, n_bytes):
    img, cut = _one_image(tmp_path), tmp_path / "cut.pt"
    cut.write_bytes(weights.read_bytes()[:n_bytes])
    assert main(["predict", str(img), "--weights", str(cut), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (f"sodlab predict: error: {cut}: not a readable checkpoint: truncated or not a "
                                       f"checkpoint ({n_bytes} bytes)\n")
    assert not (tmp_path / "o").exists()


def test_nan_weights_are_refused_naming_file_and_tensor(tmp_path, capsys):
    model = sodlab.create_model("csnet", width=8).eval()
    with torch.no_grad():
        model.csf.fuse.conv.weight[0, 0] = float("nan")
    bad = sodlab.save(model, tmp_path / "nan.pt")
    out = tmp_path / "o"
    assert main(["predict", str(_one_image(tmp_path)), "--weights", str(bad), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"sodlab predict: error: {bad}: weight 'csf.fuse.conv.weight' holds NaN or inf; "
                                       "the checkpoint is unusable (a diverged training run?)\n")
    assert not out.exists()


def test_non_finite_outputs_name_the_weights_and_leave_no_folder(tmp_path, capsys):
    model = sodlab.create_model("csnet", width=8).eval()  # untrained BN: x100 gains overflow to inf
    path = sodlab.save(model, tmp_path / "untrained.pt")
    out = tmp_path / "o"
    assert main(["predict", str(_one_image(tmp_path)), "--weights", str(path), "--out", str(out), "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sodlab predict: error: {path}: the model produced non-finite logits") and err.count("\n") == 1
    assert not out.exists()


def test_existing_outputs_are_kept_unless_overwrite(folder, weights, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "rgb.png").write_bytes(b"precious")
    (folder / "broken.jpg").unlink()
    args = ["predict", str(folder / "rgb.jpg"), "--weights", str(weights), "--out", str(out), "--size", "64"]
    assert main(args) == 2
    assert "already exist" in capsys.readouterr().err
    assert (out / "rgb.png").read_bytes() == b"precious"
    assert main(args + ["--overwrite"]) == 0
    assert Image.open(out / "rgb.png").size == (60, 40)


def test_skip_existing_finishes_an_interrupted_run(folder, weights, tmp_path, capsys, monkeypatch):
    (folder / "broken.jpg").unlink()
    out = tmp_path / "out"
    args = ["predict", str(folder), "--weights", str(weights), "--out", str(out), "--size", "64", "--batch-size", "2"]
    import sodlab.inference

    real, calls = sodlab.inference.predict_batch, []

    def interrupted_after_one_batch(*a, **k):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(sodlab.inference, "predict_batch", interrupted_after_one_batch)
    assert main(args) == 130
    assert capsys.readouterr().err.strip().endswith(
        "sodlab predict: interrupted; add --skip-existing to the same command to write only the maps still missing")
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(first) == 2  # one batch written, nothing partial
    monkeypatch.setattr(sodlab.inference, "predict_batch", real)
    assert main(args) == 2
    assert "pass --overwrite to replace them, or --skip-existing to write only the missing ones" in capsys.readouterr().err
    assert main(args + ["--skip-existing"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["deep16.png", "gray.png", "rgb.png", "rgba.png", "rotated.png"]
    assert all((out / name).read_bytes() == data for name, data in first.items())  # left as they were
    fresh = tmp_path / "fresh"
    assert main(args[:5] + [str(fresh)] + args[6:]) == 0
    for p in fresh.iterdir():  # batches differ between the runs: float rounding may move a level
        a, b = (np.asarray(Image.open(d / p.name), dtype=int) for d in (out, fresh))
        assert a.shape == b.shape and np.abs(a - b).max() <= 1
    assert main(args + ["--skip-existing"]) == 0  # nothing left to do


def test_bad_arguments_are_reported(weights, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nothing.jpg"), "--weights", str(weights), "--out", str(tmp_path / "o")]) == 2
    assert "nothing.jpg: no such file or folder" in capsys.readouterr().err
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img)
    assert main(["predict", str(img), "--weights", str(weights), "--out", str(tmp_path / "o"), "--size", "100"]) == 2
    assert "multiple of 16" in capsys.readouterr().err


def test_predict_matches_the_python_api(weights, tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "x.png"), "--weights", str(weights), "--out", str(tmp_path / "o"), "--size", "64", "--no-optimize"]) == 0
    expected = sodlab.predict(sodlab.load(weights), arr, size=64)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "x.png")), expected)


def test_info_prints_counts(capsys):
    assert main(["info", "csnet-L-x2"]) == 0
    out = capsys.readouterr().out
    assert "140,894" in out and "0.496" in out


def test_untrained_csnet_in_eval_mode_gives_a_clear_error():
    import numpy as np
    import pytest

    import sodlab
    from sodlab.errors import SodlabError

    model = sodlab.create_model("csnet", width=8)  # BN statistics untrained: x100 gains overflow
    with pytest.raises(SodlabError, match="non-finite logits"):
        sodlab.predict(model, np.zeros((32, 48, 3), np.uint8))
