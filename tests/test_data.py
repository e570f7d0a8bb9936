"""Image reading, atomic writes, SODFolder pairing and error reports, transforms, and the
synthetic benchmark generator."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sodlab.data import SODFolder, read_image, read_mask, write_png_atomic
from sodlab.data import synthetic
from sodlab.data.synthetic import cache as synth_cache
from sodlab.data.synthetic import workers as synth_workers
from sodlab.data import transforms as T
from sodlab.data.io import image_size, read_gray
from sodlab.errors import DataError, ImageReadError


# --- image reading -----------------------------------------------------------------------------
def _rgb(h=6, w=9, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_rgb_and_grayscale(tmp_path):
    rgb = _rgb()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    gray = rgb[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (6, 9, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)
    assert out.flags.writeable


def test_read_rgba_composites_on_black(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[0, :, 3] = 255  # opaque row
    rgba[1, :, 3] = 0    # transparent row
    rgba[2, :, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (4, 4, 3)
    assert (out[0] == 200).all() and (out[1] == 0).all()
    assert (np.abs(out[2].astype(int) - 100) <= 1).all()


def test_read_16_bit_and_palette(tmp_path):
    arr = np.array([[0, 257 * 100], [65535, 257 * 7]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    out = read_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(out[:, :, 0], [[0, 100], [255, 7]])
    assert read_gray(tmp_path / "deep.png").tolist() == [[0, 100], [255, 7]]

    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    out = read_image(tmp_path / "pal.png")
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [0, 0, 255]


def test_read_applies_exif_orientation(tmp_path):
    rgb = _rgb(4, 7, seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise to display upright
    Image.fromarray(rgb).save(tmp_path / "rot.png", exif=exif)
    out = read_image(tmp_path / "rot.png")
    assert out.shape == (7, 4, 3)
    np.testing.assert_array_equal(out, np.rot90(rgb, k=-1))
    assert image_size(tmp_path / "rot.png") == (7, 4)


def test_unreadable_files_raise_image_read_error(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        read_image(bad)
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageReadError, match="missing.png"):
        read_mask(tmp_path / "missing.png")


def test_read_mask_threshold(tmp_path):
    Image.fromarray(np.array([[128, 129], [0, 255]], np.uint8)).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[False, True], [False, True]]


def test_write_png_atomic(tmp_path, monkeypatch):
    arr = _rgb(5, 5)
    path = write_png_atomic(tmp_path / "sub" / "x.png", arr)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), arr)
    write_png_atomic(tmp_path / "mask.png", np.eye(3, dtype=bool))
    assert np.asarray(Image.open(tmp_path / "mask.png")).tolist() == (np.eye(3) * 255).tolist()

    def failing_save(self, fp, *a, **k):
        Path(fp).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError):
        write_png_atomic(tmp_path / "sub" / "x.png", np.zeros((2, 2), np.uint8))
    monkeypatch.undo()
    np.testing.assert_array_equal(np.asarray(Image.open(path)), arr)  # the old file is intact
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.png"]  # no temp left



def test_a_second_ctrl_c_does_not_cut_a_cleanup_short(tmp_path):
    """An interrupt during the removal of a temporary file: the removal still finishes, then
    the interrupt is raised."""
    from sodlab.atomic import finish_cleanup

    calls = []

    def cleanup():
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # arrives in the middle of the first attempt
        (tmp_path / "t").unlink()

    (tmp_path / "t").write_text("x")
    with pytest.raises(KeyboardInterrupt):
        finish_cleanup(cleanup)
    assert len(calls) == 2 and not (tmp_path / "t").exists()
    finish_cleanup(lambda: calls.append(1))  # no interrupt: runs once, raises nothing
    assert len(calls) == 3

# --- SODFolder ---------------------------------------------------------------------------------
def _make_folder(root: Path, stems, size=(12, 10), image_dir="images", mask_dir="GT", categories=None):
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    (root / mask_dir).mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(stems):
        Image.fromarray(_rgb(*size, seed=i)).save(root / image_dir / f"{s}.jpg")
        m = np.zeros(size, np.uint8)
        m[2:6, 3:7] = 200
        Image.fromarray(m).save(root / mask_dir / f"{s}.png")
    if categories:
        (root / "categories.csv").write_text("stem,category\n" + "".join(f"{s},{c}\n" for s, c in categories.items()))
    return root


def test_folder_items_and_categories(tmp_path):
    root = _make_folder(tmp_path / "ds", ["b", "a", "c"], categories={"a": "dog", "b": "cat", "c": "dog"})
    ds = SODFolder(root)
    assert len(ds) == 3 and ds.stems == ["a", "b", "c"]
    assert ds.category_names == ["cat", "dog"] and ds.labels == [1, 0, 1]
    assert ds.categories == ["dog", "cat", "dog"]
    item = ds[0]
    assert set(item) >= {"image", "mask", "label", "stem", "orig_size"}
    assert item["image"].shape == (3, 12, 10) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 12, 10) and set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert item["mask"].sum() == 16 and item["orig_size"] == (12, 10) and item["label"] == 1

    ds = SODFolder(root, transform=T.eval_transform(16), category_names=["dog", "cat", "bird"])
    assert ds.labels == [0, 1, 0]
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["mask"].shape == (3, 1, 16, 16)
    assert batch["label"].tolist() == [0, 1, 0] and batch["stem"] == ["a", "b", "c"]


def test_folder_without_categories_and_duts_layout(tmp_path):
    _make_folder(tmp_path / "DUTS-TE", ["x1", "x2"], image_dir="DUTS-TE-Image", mask_dir="DUTS-TE-Mask")
    ds = SODFolder(tmp_path, split="test")
    assert ds.root.name == "DUTS-TE" and ds.stems == ["x1", "x2"]
    assert ds.labels == [-1, -1] and ds.category_names == [] and ds[1]["label"] == -1
    _make_folder(tmp_path / "ecssd", ["e"], image_dir="Imgs", mask_dir="masks")
    assert len(SODFolder(tmp_path / "ecssd")) == 1


def _broken_folder(root: Path) -> Path:
    _make_folder(root, ["ok1", "ok2", "lonely_img", "bigger"])
    (root / "GT" / "lonely_img.png").unlink()
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(root / "GT" / "lonely_mask.png")
    (root / "images" / "corrupt.jpg").write_bytes(b"not an image at all")
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(root / "GT" / "corrupt.png")
    Image.fromarray(np.zeros((30, 10), np.uint8)).save(root / "GT" / "bigger.png")
    return root


def test_folder_reports_every_problem_in_one_error(tmp_path):
    root = _broken_folder(tmp_path / "ds")
    with pytest.raises(DataError) as info:
        SODFolder(root)
    msg = str(info.value)
    for name in ("lonely_img.jpg", "lonely_mask.png", "corrupt.jpg", "bigger.jpg", "bigger.png"):
        assert name in msg
    assert "4 problem(s)" in msg


def test_folder_lenient_skips_with_warnings(tmp_path):
    root = _broken_folder(tmp_path / "ds")
    with pytest.warns(UserWarning) as rec:
        ds = SODFolder(root, lenient=True)
    assert ds.stems == ["ok1", "ok2"]
    text = " ".join(str(w.message) for w in rec)
    assert "corrupt.jpg" in text and "lonely_mask.png" in text and "bigger" in text


def test_folder_missing_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="mask folder"):
        SODFolder(tmp_path)
    with pytest.raises(DataError, match="no such"):
        SODFolder(tmp_path / "nope")


def test_folder_names_the_split_folders_of_a_benchmark_root(small_bench):
    with pytest.raises(DataError) as info:
        SODFolder(small_bench)
    msg = str(info.value)
    assert msg.startswith(f"{small_bench}: not a dataset folder: missing an image folder")
    assert msg.endswith(f"its sub-folders test, train are dataset folders: pass one of them, e.g. {small_bench / 'test'}")
    assert len(SODFolder(small_bench / "test")) == 12


# --- transforms --------------------------------------------------------------------------------
def test_train_transform_is_seeded():
    image, mask = _rgb(40, 50), np.zeros((40, 50), bool)
    mask[5:20, 10:40] = True

    def run(seed):
        tf = T.train_transform(24, hflip=True, vflip=True, generator=torch.Generator().manual_seed(seed))
        return [tf(image, mask) for _ in range(6)]

    a, b, c = run(1), run(1), run(2)
    for (ia, ma), (ib, mb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ma, mb)
    assert any(not torch.equal(ia, ic) for (ia, _), (ic, _) in zip(a, c))
    for img, m in a:
        assert img.shape == (3, 24, 24) and m.shape == (1, 24, 24)
        assert set(m.unique().tolist()) <= {0.0, 1.0}

    # Without an explicit generator, torch's default generator (seeded per DataLoader worker).
    tf = T.train_transform(24)
    torch.manual_seed(5)
    x = tf(image, mask)
    torch.manual_seed(5)
    assert torch.equal(x[0], tf(image, mask)[0])


def test_train_transform_turns_image_and_mask_together():
    # A square image whose mask marks its top-left corner: after a turn by k quarters the image
    # equals the plain one turned by k, and the mask moved with it, for every k drawn.
    image = _rgb(24, 24)
    mask = np.zeros((24, 24), bool)
    mask[:6, :6] = True
    plain_img, plain_mask = T.train_transform(24, crop_border=0.0, hflip=False)(image, mask)
    turned = T.train_transform(24, crop_border=0.0, hflip=False, rot90=True, generator=torch.Generator().manual_seed(0))
    seen = set()
    for _ in range(16):
        img, m = turned(image, mask)
        k = [j for j in range(4) if torch.equal(img, torch.rot90(plain_img, j, (1, 2)))]
        assert len(k) == 1 and torch.equal(m, torch.rot90(plain_mask, k[0], (1, 2)))
        seen.add(k[0])
    assert seen == {0, 1, 2, 3}
    assert "rot90=True" in repr(turned)


def test_eval_transform_resizes_and_normalises():
    mean = np.array(T.IMAGENET_MEAN)
    image = np.broadcast_to(np.round(mean * 255).astype(np.uint8), (30, 20, 3)).copy()
    img, m = T.eval_transform(16)(image, np.ones((30, 20), bool))
    assert img.shape == (3, 16, 16) and m.shape == (1, 16, 16) and bool((m == 1).all())
    assert img.abs().max() < 0.01  # the ImageNet mean maps to zero


# --- synthetic benchmark -----------------------------------------------------------------------
def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


SMALL = dict(n_train=26, n_test=12, size=40, progress=False)


@pytest.fixture(scope="module")
def small_bench(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("s") / "b0", seed=0, **SMALL)


def test_generator_structure_and_balance(small_bench):
    root = small_bench
    params = json.loads((root / "synth.json").read_text())
    assert params["n_train"] == 26 and params["size"] == 40 and params["seed"] == 0
    assert len(synthetic.CATEGORIES) >= 10 and params["categories"] == list(synthetic.CATEGORIES)
    for split, n in (("train", 26), ("test", 12)):
        ds = SODFolder(root, split=split)
        assert len(ds) == n and len(list((root / split / "images").glob("*.jpg"))) == n
        counts = Counter(ds.categories)
        assert max(counts.values()) - min(counts.values()) <= 1
        image, mask = ds.read(0)
        assert image.shape == (40, 40, 3) and mask.shape == (40, 40)
        # One salient object of sensible size in every image.
        fractions = [ds.read(i)[1].mean() for i in range(len(ds))]
        assert min(fractions) > 0.02 and max(fractions) < 0.7
    assert set(SODFolder(root, split="train").category_names) == set(synthetic.CATEGORIES)


def test_generator_is_deterministic(small_bench, tmp_path):
    same = synthetic.generate(tmp_path / "b1", seed=0, **SMALL)
    other = synthetic.generate(tmp_path / "b2", seed=1, **SMALL)
    a, b, c = _digest(small_bench), _digest(same), _digest(other)
    assert a == b
    differing = [k for k in a if k.endswith(".jpg") and a[k] != c.get(k)]
    assert len(differing) == 26 + 12


def test_generator_parallel_equals_serial(tmp_path):
    kw = dict(n_train=40, n_test=0, size=32, seed=3, progress=False)
    serial = synthetic.generate(tmp_path / "serial", workers=1, **kw)
    parallel = synthetic.generate(tmp_path / "parallel", workers=2, **kw)
    assert _digest(serial) == _digest(parallel)


def test_generator_from_an_unguarded_script_runs_it_once(tmp_path, repo_env):
    """A script calling generate() at its top level, without the __main__ guard: the worker
    processes do not re-run it (multiprocessing's spawn did: the script's output twice more, a
    traceback per worker), and the files are those of a serial run."""
    kw = dict(n_train=40, n_test=0, size=32, seed=3, progress=False)
    script = tmp_path / "unguarded.py"
    script.write_text("print('SCRIPT RAN')\nfrom sodlab.data import synthetic\n"
                      f"synthetic.generate({str(tmp_path / 'out')!r}, workers=2, **{kw!r})\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=repo_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "SCRIPT RAN\n" and proc.stderr == ""
    assert _digest(tmp_path / "out") == _digest(synthetic.generate(tmp_path / "serial", workers=1, **kw))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "serial", "unguarded.py"]


def test_generator_workers_import_this_sodlab_not_one_in_the_working_folder(tmp_path, monkeypatch, caplog):
    """Run from a folder holding another `sodlab` (a checkout of another version, say): the
    workers still run the sodlab the caller imported."""
    (tmp_path / "sodlab").mkdir()
    (tmp_path / "sodlab" / "__init__.py").write_text("raise ImportError('the wrong sodlab')\n")
    monkeypatch.chdir(tmp_path)
    kw = dict(n_train=40, n_test=0, size=32, seed=3, progress=False)
    with caplog.at_level("WARNING", logger="sodlab.data.synthetic"):
        out = synthetic.generate(tmp_path / "out", workers=2, **kw)
    assert caplog.text == ""
    assert _digest(out) == _digest(synthetic.generate(tmp_path / "serial", workers=1, **kw))


def test_generator_writes_in_this_process_what_a_failed_worker_left(tmp_path, monkeypatch, caplog):
    kw = dict(n_train=40, n_test=0, size=32, seed=3, progress=False)
    monkeypatch.setattr(synth_workers, "_WORKER_CODE", "import sys; sys.exit('worker broke')")
    with caplog.at_level("WARNING", logger="sodlab.data.synthetic"):
        out = synthetic.generate(tmp_path / "out", workers=2, **kw)
    assert ("a worker process failed (exit code 1: worker broke; exit code 1: worker broke); "
            "writing the remaining 40 images in this process") in caplog.text
    assert _digest(out) == _digest(synthetic.generate(tmp_path / "serial", workers=1, **kw))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "serial"]


# The generator run by the interrupt test below, in its own process group. SIGINT is set to
# raise KeyboardInterrupt explicitly: a process that starts with SIGINT ignored (pytest run as
# a background job of a non-interactive shell, e.g. `cmd1 & pytest ...`, passes that on to
# its children) gets no KeyboardInterrupt handler from Python, and the generator then ran to
# the end and exited 0. Its workers write one image each and then block until they are killed,
# so the run cannot end before the test interrupts it; its cleanup is interrupted once more as
# it starts (as `timeout -s INT` or an impatient user does) at a point the test fixes.
_INTERRUPTED_GENERATOR = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from sodlab.cli import main
from sodlab.data.synthetic import workers
workers._WORKER_CODE = workers._WORKER_CODE.replace("_worker_main()", (
    "import threading; from sodlab.data.synthetic import workers; real = workers._write_chunk; "
    "workers._write_chunk = lambda *a, on_image: real(*a, on_image=lambda: (on_image(), threading.Event().wait())); "
    "_worker_main()"))
real_stop, stops = workers._stop, []
def stop(started):
    stops.append(1)
    if len(stops) == 1:
        os.kill(os.getpid(), signal.SIGINT)
    real_stop(started)
workers._stop = stop
code = main(['data', 'synth', '--out', sys.argv[1], '--train', '64', '--test', '0', '--size', '32', '--workers', '2',
             '--no-progress'])
print('cleanup attempts:', len(stops))
sys.exit(code)
"""


def test_generator_interrupted_stops_its_workers_and_leaves_nothing(tmp_path, repo_env):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while worker
    processes write, and once more during the cleanup: the command exits 130, no process of
    the group is left, and neither the output folder nor the temporary one exists."""
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED_GENERATOR, str(tmp_path / "big")], env=repo_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # The workers block after their first image: once one is there, the generator is in
        # its worker loop for good.
        while not any(tmp_path.glob(".big.*.tmp/train/images/*.jpg")):
            assert proc.poll() is None and time.monotonic() < deadline, "generation never started"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and err.strip().endswith("sodlab data: interrupted"), err[-2000:]
        assert out == "cleanup attempts: 2\n"  # the second Ctrl-C did not cut the first cleanup short
        with pytest.raises(ProcessLookupError):  # every worker is gone (killed and reaped by the parent)
            os.killpg(proc.pid, 0)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert list(tmp_path.iterdir()) == []


def test_generator_never_overwrites_by_default(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    kw = dict(n_train=3, n_test=2, size=24, seed=0, progress=False)
    with pytest.raises(DataError, match="not empty"):
        synthetic.generate(out, **kw)
    assert (out / "precious.txt").read_text() == "keep"
    synthetic.generate(out, overwrite=True, **kw)
    assert not (out / "precious.txt").exists() and (out / "synth.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temporary folders left
    with pytest.raises(DataError, match="unknown categories"):
        synthetic.generate(tmp_path / "x", categories=["unicorn"], **kw)


def test_generator_interrupted_while_replacing_a_folder_leaves_the_new_one_in_place(tmp_path, monkeypatch):
    """Ctrl-C as the old folder is renamed away (the first of the two renames that swap the
    new one in): the swap finishes, then the interrupt is raised. It cut it in two before: the
    new files deleted, the old ones hidden in a `.old` folder, nothing at the output path."""
    kw = dict(n_train=3, n_test=2, size=24, progress=False)
    out = synthetic.generate(tmp_path / "mine", seed=0, **kw)
    real_replace, renames = os.replace, []

    def replace_interrupted(src, dst):
        renames.append(Path(dst).name)
        if len(renames) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives as the old folder moves away
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # even if pytest runs with it ignored
    try:
        with pytest.raises(KeyboardInterrupt):
            synthetic.generate(out, seed=1, overwrite=True, **kw)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert renames == ["replaced", "mine"]
    assert json.loads((out / "synth.json").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temporary or old folder left


def test_ensure_benchmark_caches(tmp_path, monkeypatch):
    kw = dict(n_train=4, n_test=2, size=24, seed=0, progress=False)
    first = synthetic.ensure_benchmark(tmp_path, **kw)
    assert first.parent == tmp_path and first.name.startswith("synthetic-")
    calls = []
    monkeypatch.setattr(synth_cache, "generate", lambda *a, **k: calls.append(1))
    assert synthetic.ensure_benchmark(tmp_path, **kw) == first and calls == []
    monkeypatch.undo()
    other = synthetic.ensure_benchmark(tmp_path, **{**kw, "difficulty": 0.9})
    assert other != first
    monkeypatch.setenv("SODLAB_DATA", str(tmp_path / "env"))
    assert synthetic.default_data_dir() == tmp_path / "env"


def _contrast_and_clutter(root: Path) -> tuple[float, float]:
    """Mean RGB distance between the object and the ring around it, and the mean gradient
    energy of the background (distractors, clutter)."""
    from scipy import ndimage

    ds = SODFolder(root, split="train")
    contrast, clutter = [], []
    for i in range(len(ds)):
        image, mask = ds.read(i)
        img = image.astype(float) / 255
        ring = ndimage.binary_dilation(mask, iterations=3) & ~mask
        contrast.append(np.linalg.norm(img[mask].mean(0) - img[ring].mean(0)))
        g = np.abs(np.diff(img.mean(2), axis=1))
        clutter.append(g[~mask[:, 1:]].mean())
    return float(np.mean(contrast)), float(np.mean(clutter))


def test_difficulty_knob_changes_the_images(tmp_path):
    kw = dict(n_train=36, n_test=0, size=48, seed=11, progress=False)
    easy = _contrast_and_clutter(synthetic.generate(tmp_path / "easy", difficulty=0.0, **kw))
    hard = _contrast_and_clutter(synthetic.generate(tmp_path / "hard", difficulty=1.0, **kw))
    assert easy[0] > 1.5 * hard[0]  # lower object contrast
    assert hard[1] > easy[1]        # busier background


def test_sample_grid(small_bench):
    import matplotlib

    matplotlib.use("Agg")
    from sodlab.viz.samples import sample_grid

    fig = sample_grid(small_bench, per_category=2)
    assert len(fig.axes) == 2 * len(synthetic.CATEGORIES)
    import matplotlib.pyplot as plt

    plt.close(fig)
