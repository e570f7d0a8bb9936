"""The pre-training corpus (`sodlab.data.synthetic.corpus`): determinism, layout, disjointness
from the benchmark, the two variants, the CLI; and the benchmark's label rule (no distractor
is, or looks like, a category)."""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sodlab.cli import main
from sodlab.data import synthetic
from sodlab.data.synthetic import cache as synth_cache
from sodlab.data.synthetic import corpus as synth_corpus
from sodlab.data.synthetic.render import _Assets, _load_photo
from sodlab.data.synthetic.shapes import templates
from sodlab.errors import DataError

SMALL = dict(n_classes=4, per_class=3, val_per_class=1, size=32, progress=False)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    return synthetic.generate_corpus(tmp_path_factory.mktemp("c") / "c0", seed=0, **SMALL)


# --- the corpus ----------------------------------------------------------------------------------
def test_corpus_layout_is_an_image_folder(small_corpus):
    meta = json.loads((small_corpus / "corpus.json").read_text())
    classes = meta["classes"]
    assert meta["variant"] == "without-sod" and meta["size"] == 32 and len(classes) == 4
    for split, n in (("train", 3), ("val", 1)):
        assert sorted(p.name for p in (small_corpus / split).iterdir()) == sorted(classes)
        for name in classes:
            files = sorted((small_corpus / split / name).glob("*.jpg"))
            assert len(files) == n
            with Image.open(files[0]) as im:
                assert im.size == (32, 32) and im.mode == "RGB"
    assert sorted(p.name for p in small_corpus.iterdir()) == ["corpus.json", "train", "val"]


def test_corpus_is_deterministic_serial_or_parallel(small_corpus, tmp_path):
    same = synthetic.generate_corpus(tmp_path / "same", seed=0, workers=2, **SMALL)  # two tasks: train, val
    other = synthetic.generate_corpus(tmp_path / "other", seed=1, **SMALL)
    a, b, c = _digest(small_corpus), _digest(same), _digest(other)
    assert a == b
    images = [k for k in a if k.endswith(".jpg")]
    assert len(images) == 4 * 4 and all(a[k] != c[k] for k in images)


def test_variants_and_their_classes(tmp_path):
    assert not set(synthetic.corpus_classes("without-sod", len(synthetic.OTHER_CLASSES))) & set(synthetic.CATEGORIES)
    assert len(synthetic.OTHER_CLASSES) >= 50 and len(set(synthetic.ALL_CLASSES)) == len(synthetic.ALL_CLASSES)
    default = synthetic.CorpusParams()
    assert default.n_classes >= 48 and default.n_classes * default.per_class >= 50_000
    kw = dict(n_classes=14, per_class=1, val_per_class=0, size=32, progress=False)
    with_sod = synthetic.generate_corpus(tmp_path / "with", variant="with-sod", **kw)
    without = synthetic.generate_corpus(tmp_path / "without", variant="without-sod", **kw)
    w, wo = (set(json.loads((r / "corpus.json").read_text())["classes"]) for r in (with_sod, without))
    assert set(synthetic.CATEGORIES) <= w and len(w) == len(wo) == 14 and not wo & set(synthetic.CATEGORIES)
    assert {p.name for p in (with_sod / "train").iterdir()} == w
    # A class in both variants has the same images in both: only the categories differ.
    a, b = _digest(with_sod), _digest(without)
    shared = [k for k in a if k.endswith(".jpg") and Path(k).parts[1] in w & wo]
    assert shared and all(a[k] == b[k] for k in shared)


def test_corpus_shares_no_photograph_and_no_image_with_the_benchmark(small_corpus, tmp_path):
    assert not set(synthetic.CORPUS_PHOTOS) & set(synthetic.PHOTOS)
    # Not the same picture under another name either (scikit-image's `cat` is `chelsea`).
    bench = {name: np.asarray(_load_photo(name)) for name in synthetic.PHOTOS}
    for name in synthetic.CORPUS_PHOTOS:
        photo = np.asarray(_load_photo(name))
        assert not any(b.shape == photo.shape and np.array_equal(b, photo) for b in bench.values()), name
    cat = np.asarray(_load_photo("cat"))
    assert any(b.shape == cat.shape and np.array_equal(b, cat) for b in bench.values())  # the check can fail
    benchmark = synthetic.generate(tmp_path / "bench", n_train=24, n_test=0, size=32, seed=0, progress=False)
    bench_images = {h for k, h in _digest(benchmark).items() if k.endswith(".jpg")}
    assert not bench_images & {h for k, h in _digest(small_corpus).items() if k.endswith(".jpg")}


def test_corpus_is_written_atomically_and_never_over_a_folder(tmp_path, monkeypatch):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    with pytest.raises(DataError, match="mine: folder exists and is not empty"):
        synthetic.generate_corpus(out, **SMALL)
    assert (out / "precious.txt").read_text() == "keep"
    real, written = synth_corpus._write_corpus_chunk, []

    def failing(pj, out_, split, items, on_image=None):
        written.append(real(pj, out_, split, items[:1], on_image))
        raise OSError("disk full")

    monkeypatch.setattr(synth_corpus, "_write_corpus_chunk", failing)
    with pytest.raises(OSError, match="disk full"):
        synthetic.generate_corpus(tmp_path / "new", workers=1, **SMALL)
    assert written == [1] and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_ensure_corpus_caches_per_variant(tmp_path, monkeypatch):
    kw = dict(root=tmp_path, n_classes=2, per_class=1, val_per_class=1, size=16, progress=False)
    first = synthetic.ensure_corpus(**kw)
    assert first.parent == tmp_path and first.name.startswith("corpus-without-sod-") and (first / "corpus.json").is_file()
    monkeypatch.setattr(synth_cache, "generate_corpus", lambda *a, **k: pytest.fail("generated again"))
    assert synthetic.ensure_corpus(**kw) == first
    monkeypatch.undo()
    other = synthetic.ensure_corpus(variant="with-sod", **{**kw, "n_classes": 12})
    assert other.name.startswith("corpus-with-sod-") and other != first


def test_corpus_params_are_checked():
    for kw, flag in ((dict(variant="some"), "--variant"), (dict(n_classes=1), "--classes"),
                     (dict(variant="with-sod", n_classes=11), "--classes"), (dict(n_classes=999), "--classes"),
                     (dict(per_class=0), "--per-class"), (dict(size=8), "--size")):
        with pytest.raises(DataError, match=flag):
            synthetic.CorpusParams(**kw).validate()


# --- the command line ----------------------------------------------------------------------------
def test_cli_writes_a_corpus(tmp_path, capsys):
    args = ["data", "synth", "--corpus", "pretrain", "--out", str(tmp_path / "c"), "--variant", "with-sod",
            "--classes", "12", "--per-class", "1", "--val-per-class", "0", "--size", "16", "--seed", "3", "--no-progress"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "corpus.json").read_text())
    assert (meta["variant"], meta["n_classes"], meta["per_class"], meta["size"], meta["seed"]) == ("with-sod", 12, 1, 16, 3)
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize("extra, message", [
    (["--corpus", "imagenet"], "--corpus 'imagenet': choose sod"),
    (["--corpus", "pretrain", "--variant", "both"], "--variant"),
    (["--corpus", "pretrain", "--classes", "1"], "--classes"),
    (["--corpus", "pretrain", "--per-class", "0"], "--per-class"),
    (["--corpus", "pretrain", "--difficulty", "0.5", "--train", "3"], "--train, --difficulty: only for --corpus sod"),
    (["--classes", "3"], "--classes: only for --corpus pretrain"),
    (["--saliency", "colour", "--train", "2", "--test", "2"], "saliency must be one of cues, category, got 'colour'"),
    (["--corpus", "pretrain", "--saliency", "category"], "--saliency: only for --corpus sod"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys, extra, message):
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sodlab data: error: ") and message in err
    assert list(tmp_path.iterdir()) == []


# --- the benchmark's labels say what its images show ---------------------------------------------
def test_no_benchmark_distractor_is_a_category():
    """Render benchmark images as the generator does and look at what was drawn as
    distractors: never a category's shape, and still as many as before (difficulty 1)."""
    drawn: Counter = Counter()
    assets = _Assets(synthetic.PHOTOS)
    for d in (0.1, 1.0):
        params = synthetic.SynthParams(size=32, difficulty=d)
        cats = synthetic.split_categories(params, "train", 100)
        for i, category in enumerate(cats):
            r = synthetic.compose(assets, params, category, synthetic.image_rng(0, "train", i))
            drawn.update(r.distractors)
    assert drawn and not set(drawn) & set(synthetic.CATEGORIES)
    assert set(drawn) <= set(synthetic.EXTRA_SHAPES) and len(drawn) >= 10
    assert sum(drawn.values()) > 100 * (1.5 + 6) * 0.8  # Poisson means 1.5 and 6 (1 + 5d)


_SIDE = 32


def _pose(t: np.ndarray, angle: float = 0.0, aspect: float = 1.0, flip: bool = False) -> np.ndarray:
    """A template turned, stretched and mirrored, then centred on its centroid and scaled to
    a fixed area: poses compare shapes, not sizes or positions."""
    im = Image.fromarray(t)
    if flip:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = im.rotate(angle, resample=Image.BILINEAR, expand=True)
    im = im.resize((round(im.width * math.sqrt(aspect)), round(im.height / math.sqrt(aspect))), Image.BILINEAR)
    a = np.asarray(im, np.float64) / 255
    ys, xs = np.indices(a.shape)
    cy, cx = (a * ys).sum() / a.sum(), (a * xs).sum() / a.sum()
    s = math.sqrt(0.2 * _SIDE * _SIDE / a.sum())
    coeffs = (1 / s, 0, cx - _SIDE / 2 / s, 0, 1 / s, cy - _SIDE / 2 / s)
    return np.asarray(im.transform((_SIDE, _SIDE), Image.AFFINE, coeffs, resample=Image.BILINEAR)) > 127


def test_no_distractor_shape_resembles_a_category():
    """The overlap (intersection over union) of a distractor shape with a category, at the
    category's best rotation, stretch (as objects get) and mirroring, stays below that of the
    two most alike categories (the ellipse and the rectangle): a distractor never looks more
    like a category than the categories look like each other."""
    poses = {c: np.stack([_pose(templates(c, 64)[0], angle, aspect, flip) for angle in range(0, 360, 15)
                          for aspect in (0.7, 1.0, 1.4) for flip in (False, True)]) for c in synthetic.CATEGORIES}

    def likeness(name: str, others) -> float:
        return max(float(((poses[c] & p).sum((1, 2)) / (poses[c] | p).sum((1, 2))).max())
                   for c in others for p in map(_pose, templates(name, 64)))

    closest_categories = max(likeness(c, [o for o in synthetic.CATEGORIES if o != c]) for c in synthetic.CATEGORIES)
    assert 0.75 < closest_categories < 0.95
    for name in synthetic.EXTRA_SHAPES:
        assert likeness(name, synthetic.CATEGORIES) < closest_categories - 0.02, name


def test_category_world_makes_the_category_decide_which_copy_is_salient(tmp_path):
    """``saliency="category"``: two copies of the category's shape, equally far from the
    centre; the mask is one of them, brighter than the other for half of the categories and
    darker for the rest; which position gets it is random. The default world's folder and
    digest do not change."""
    assets = _Assets(synthetic.PHOTOS)
    params = synthetic.SynthParams(size=64, saliency="category")
    for i, category in enumerate(synthetic.CATEGORIES * 2):
        r = synthetic.compose(assets, params, category, synthetic.image_rng(0, "train", i))
        assert r.distractors == (category,) and r.mask.any()
        brighter = r.image[r.mask].mean() > r.image[~r.mask].mean()
        assert brighter == synthetic.bright_is_salient(category), (i, category)
    assert [synthetic.bright_is_salient(c) for c in synthetic.CATEGORIES].count(True) == 6
    assert "saliency" not in synthetic.SynthParams().to_json()
    out = tmp_path / "c"
    assert main(["data", "synth", "--out", str(out), "--train", "2", "--test", "2", "--size", "32", "--saliency", "category",
                 "--no-progress"]) == 0
    assert json.loads((out / "synth.json").read_text())["saliency"] == "category"
    assert synthetic.SynthParams().digest() != params.digest()
    with pytest.raises(DataError, match="saliency must be one of cues, category, got 'colour'"):
        synthetic.SynthParams(saliency="colour").validate()
