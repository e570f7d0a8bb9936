"""Classification as a task: ImageFolder, the image transform, ClassificationMetrics, the
one-cycle schedule, recipes, and `sodlab train`/`eval`/`predict` on classifiers (checkpoints
that remember their task and class names; clear errors when a command gets the other task)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import sodlab
from sodlab import create_model
from sodlab.cli import main
from sodlab.data import ImageFolder
from sodlab.data.imagefolder import ImageTransform, is_image_folder, labelled_images
from sodlab.data.transforms import eval_transform
from sodlab.errors import ConfigError, DataError
from sodlab.metrics import ClassificationMetrics, format_confusion
from sodlab.train import TrainConfig, fit, read_recipe
from sodlab.train.optim import onecycle_factor

SIZE = 32


def write_png(path: Path, value: int, size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def image_folder(root: Path, counts: dict[str, int]) -> Path:
    for c, n in counts.items():
        for i in range(n):
            write_png(root / c / f"{i:02d}.png", sum(map(ord, c)) * 10 + i)
    return root


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    from sodlab.data import synthetic

    return Path(synthetic.generate(tmp_path_factory.mktemp("bench"), n_train=8, n_test=4, size=SIZE, seed=0, progress=False))


def constant_classifier(path: Path, class_names: list[str], favourite: int) -> Path:
    """A csnet-cls checkpoint that always predicts label ``favourite`` (zero head weights,
    one positive bias): exact expected scores on any data."""
    model = create_model("csnet-cls", width=4, num_classes=len(class_names))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[favourite] = 1.0
    model.class_names = class_names
    model.input_size = SIZE
    return sodlab.save(model, path)


# --- ImageFolder ---------------------------------------------------------------------------------
def test_image_folder_reads_classes_sorted_and_shares_indices(tmp_path):
    root = image_folder(tmp_path / "train", {"star": 2, "ring": 3})
    ds = ImageFolder(root)
    assert ds.class_names == ["ring", "star"] and ds.labels == [0, 0, 0, 1, 1]
    assert ds.stems == ["ring/00", "ring/01", "ring/02", "star/00", "star/01"]
    item = ds[4]
    assert item["label"] == 1 and item["category"] == "star" and item["image"].shape == (3, SIZE, SIZE)
    assert set(item) == {"image", "label", "category", "stem", "orig_size"}
    assert is_image_folder(root) and not is_image_folder(tmp_path / "nope")
    val = ImageFolder(image_folder(tmp_path / "val", {"star": 1}), class_names=ds.class_names)
    assert val.labels == [1] and val.class_names == ["ring", "star"]
    with pytest.raises(DataError, match=r"classes star are not among the expected classes \(ring\)$"):
        ImageFolder(root, class_names=["ring"])


def test_image_folder_errors_name_the_files(tmp_path):
    with pytest.raises(DataError, match=r"no class folders \(an ImageFolder holds one sub-folder of images per class\)"):
        ImageFolder((tmp_path / "empty").mkdir() or tmp_path / "empty")
    root = image_folder(tmp_path / "d", {"a": 1})
    (root / "b").mkdir()
    (root / "a" / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError) as exc:
        ImageFolder(root)
    msg = str(exc.value)
    assert msg.startswith(f"{root}: 2 problem(s):")
    assert "class folder b/ holds no images" in msg and "unreadable image" in msg and "bad.jpg" in msg


def test_labelled_images_of_a_sod_folder(bench, tmp_path):
    ds = labelled_images(sodlab.data.SODFolder(bench / "train"))
    assert len(ds) == 8 and ds.class_names == sorted(set(ds.class_names)) and min(ds.labels) >= 0
    bare = tmp_path / "bare"
    shutil.copytree(bench / "test", bare)
    (bare / "categories.csv").unlink()
    with pytest.raises(DataError, match="no categories.csv, so its images have no class labels"):
        labelled_images(sodlab.data.SODFolder(bare))


def test_image_transform():
    img = np.random.default_rng(0).integers(0, 256, (40, 24, 3), dtype=np.uint8)
    ref = eval_transform(SIZE)(img, np.zeros((40, 24), bool))[0]
    assert torch.equal(ImageTransform(SIZE)(img), ref)  # evaluation: the saliency pipeline's resize + normalise
    square = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    plain = ImageTransform(SIZE)(square)
    seen = set()
    g = torch.Generator().manual_seed(0)
    aug = ImageTransform(SIZE, train=True, crop_border=0.0, hflip=False, rot90=True, generator=g)
    for _ in range(24):
        out = aug(square)
        k = [j for j in range(4) if torch.equal(out, torch.rot90(plain, j, dims=(1, 2)))]
        assert len(k) == 1
        seen.add(k[0])
    assert seen == {0, 1, 2, 3}


# --- metrics -------------------------------------------------------------------------------------
def test_classification_metrics_exact():
    m = ClassificationMetrics(["a", "b", "c", "d"])
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 1.0, 0, 0]])
    m.step(logits, torch.tensor([0, 0, 1]))  # arg-max: 0, 1, 1
    m.step(np.array([2, 0, 2, 1]), [2, 2, 2, 1])  # predicted labels
    r = m.get_results()
    assert r["n"] == 7 and r["top1"] == 5 / 7
    assert r["per_class"] == {"a": 0.5, "b": 1.0, "c": 2 / 3, "d": None}
    assert r["confusion"] == {"classes": ["a", "b", "c", "d"],
                              "matrix": [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]}
    assert format_confusion(r["confusion"]).splitlines() == [
        "true \\ predicted  a  b  c  d",
        "a                 1  1  0  0",
        "b                 0  2  0  0",
        "c                 1  0  2  0",
        "d                 0  0  0  0",
    ]
    with pytest.raises(DataError, match=r"target labels must lie in \[0, 4\); got 0..4"):
        m.step(np.array([0, 1]), np.array([0, 4]))
    with pytest.raises(DataError, match="no images were scored"):
        ClassificationMetrics(["a"]).get_results()


# --- training config, schedule, recipes ----------------------------------------------------------
def test_onecycle_matches_torch():
    total = 20
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total, cycle_momentum=False)
    for step in range(total):
        assert 0.1 * onecycle_factor(step, total) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        opt.step()
        ref.step()


def test_config_keys_are_validated():
    with pytest.raises(ConfigError, match=r"key 'nesterov': needs optimizer 'sgd' with momentum > 0 \(got optimizer 'adam', momentum 0.9\)"):
        TrainConfig(nesterov=True)
    with pytest.raises(ConfigError, match=r"key 'label_smoothing': must be a number in \[0, 1\), got 1.5"):
        TrainConfig(task="classification", label_smoothing=1.5)
    with pytest.raises(ConfigError, match="key 'label_smoothing': applies to the cross-entropy of classification only"):
        TrainConfig(label_smoothing=0.1)
    assert TrainConfig(rot90=True).rot90  # saliency turns image and mask together
    with pytest.raises(ConfigError, match="key 'schedule': use one of 'step', 'cosine', 'onecycle', 'constant', got 'cyclic'"):
        TrainConfig(schedule="cyclic")


def test_recipes_load_and_validate():
    cls = read_recipe("classify-quick")
    assert cls["model"]["name"] == "res2net-mini"
    c = TrainConfig.from_dict(cls["train"])
    assert (c.resolved_task, c.epochs, c.batch_size, c.image_size, c.optimizer, c.nesterov, c.schedule, c.label_smoothing) == (
        "classification", 20, 64, 64, "sgd", True, "onecycle", 0.1)
    assert c.hflip and c.vflip and c.rot90 and c.preload
    csf = read_recipe("csf-mini-quick")
    assert csf["model"]["name"] == "csf-res2net-mini"
    s = TrainConfig.from_dict(csf["train"])
    assert (s.resolved_task, s.optimizer, s.lr, s.schedule, s.image_size, s.epochs, s.resolved_loss) == (
        "sod", "adam", 3e-3, "cosine", 64, 25, "bce+iou")
    # both run channels-last: the measured CPU speed-up of the Res2Net family
    assert c.channels_last and s.channels_last


def test_fit_refuses_a_model_of_the_other_task(tmp_path, bench):
    model = create_model("csnet", width=4)
    with pytest.raises(ConfigError, match=r"the model is a saliency model \(csnet\) but the train config's task is 'classification'"):
        fit(model, bench / "train", None, TrainConfig(task="classification", image_size=SIZE, epochs=1, batch_size=4), tmp_path / "r",
            progress=False)
    assert not (tmp_path / "r").exists()
    data = image_folder(tmp_path / "if", {"ring": 4, "star": 4})
    with pytest.raises(ConfigError, match=r"^the model has 1 outputs but the training data has 2 classes \(ring, star\)$"):
        fit(create_model("csnet-cls", width=4, num_classes=1), data, None,
            TrainConfig(task="classification", image_size=SIZE, epochs=1, batch_size=4), tmp_path / "r", progress=False)


# --- the CLI -------------------------------------------------------------------------------------
def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--model", "csnet-cls", "--model-arg", "width=4", "--recipe", "classify-quick",
            "--set", f"image_size={SIZE}", "--set", "batch_size=4", "--set", "lr=0.01", "--epochs", "1", "--out", str(out),
            "--no-progress", *extra]


def test_cli_trains_a_classifier_on_categories_csv(tmp_path, bench, capsys):
    run = tmp_path / "run"
    assert main(train_args(bench / "train", run, "--val", str(bench / "test"))) == 0
    assert "best epoch 1: val_top1" in capsys.readouterr().out
    model = sodlab.load(run / "best.pt")
    names = sodlab.data.SODFolder(bench / "train").category_names
    assert (model.task, model.class_names, model.config.num_classes, model.input_size) == ("classification", names, len(names), SIZE)
    log = pd.read_csv(run / "log.csv")
    assert 0.0 <= log["val_top1"].iloc[0] <= 1.0
    assert torch.load(run / "best.pt", weights_only=True)["train_summary"]["metrics"]["val_top1"] == log["val_top1"].iloc[0]
    assert main(train_args(bench / "train", tmp_path / "r2", "--model-arg", "num_classes=2")) == 2
    assert capsys.readouterr().err.strip().startswith(f"sodlab train: error: --model-arg num_classes=2: {bench / 'train'} has {len(names)} classes (")


def test_cli_trains_a_classifier_on_an_image_folder(tmp_path, capsys):
    data = image_folder(tmp_path / "train", {"ring": 4, "star": 4})
    run = tmp_path / "run"
    assert main(train_args(data, run, "--model-arg", "num_classes=3")) == 0
    rec = torch.load(run / "best.pt", weights_only=True)
    assert (rec["task"], rec["class_names"], rec["config"]["num_classes"]) == ("classification", ["ring", "star"], 3)
    assert main(["train", "--data", str(data), "--model", "csnet", "--model-arg", "width=4", "--recipe", "quick",
                 "--out", str(tmp_path / "sod"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().startswith(
        f"sodlab train: error: {data}: an ImageFolder (one sub-folder per class, no masks); saliency training needs images/ and GT/")


def test_eval_json_exact_and_labels_matched_by_name(tmp_path, capsys):
    data = image_folder(tmp_path / "test", {"a": 2, "b": 3})
    # stored class order differs from the folder's sorted order: label 0 is "b"
    weights = constant_classifier(tmp_path / "cls.pt", ["b", "a"], favourite=0)
    assert main(["eval", "--weights", str(weights), "--data", str(data), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res == {"top1": 0.6, "n": 5, "per_class": {"b": 1.0, "a": 0.0},
                   "confusion": {"classes": ["b", "a"], "matrix": [[3, 0], [2, 0]]},
                   "task": "classification", "size": SIZE, "source": {"weights": str(weights), "data": str(data)}}
    assert main(["eval", "--weights", str(weights), "--data", str(data), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"task: classification   images: 5   size: {SIZE}",
        "  top-1 accuracy       0.6000",
        "per-class accuracy:",
        "  b  1.0000",
        "  a  0.0000",
        "confusion matrix (rows: true class, columns: predicted class):",
        "true \\ predicted  b  a",
        "b                 3  0",
        "a                 2  0",
    ]
    image_folder(data, {"c": 1})
    assert main(["eval", "--weights", str(weights), "--data", str(data), "--json"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sodlab eval: error: {data}: classes c are not among the model's classes (b, a); "
        "a classifier is scored only on the classes it was trained on")


def test_task_errors_are_one_line(tmp_path, bench, capsys):
    weights = constant_classifier(tmp_path / "cls.pt", ["x", "y"], favourite=1)
    what = f"{weights} is a classifier (csnet-cls; 2 classes: x, y)"
    assert main(["predict", str(bench / "test" / "images"), "--weights", str(weights), "--out", str(tmp_path / "maps")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sodlab predict: error: {what}; sodlab predict writes saliency maps and needs a saliency model "
        f"(score a classifier with sodlab eval --weights {weights} --data DIR)")
    assert not (tmp_path / "maps").exists()
    bare = tmp_path / "bare"
    shutil.copytree(bench / "test", bare)
    (bare / "categories.csv").unlink()
    assert main(["eval", "--weights", str(weights), "--data", str(bare)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sodlab eval: error: {what}; eval of a classifier needs class labels, but {bare} has masks and no categories.csv "
        "(give a folder with categories.csv, or an ImageFolder: one sub-folder per class)")
    sod = sodlab.save(create_model("csnet", width=4), tmp_path / "sod.pt")
    folder = image_folder(tmp_path / "if", {"x": 1})
    assert main(["eval", "--weights", str(sod), "--data", str(folder)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sodlab eval: error: {sod} is a saliency model (csnet); eval of a saliency model needs images/ and masks (GT/), "
        f"but {folder} is an ImageFolder (class sub-folders, no masks)")


def test_checkpoints_remember_their_task(tmp_path):
    cls = sodlab.load(constant_classifier(tmp_path / "c.pt", ["x", "y"], favourite=0))
    assert (cls.task, cls.class_names) == ("classification", ["x", "y"])
    rec = torch.load(tmp_path / "c.pt", weights_only=True)
    del rec["task"], rec["class_names"]  # a checkpoint from before tasks were recorded
    torch.save(rec, tmp_path / "old.pt")
    old = sodlab.load(tmp_path / "old.pt")
    assert old.task == "classification" and not hasattr(old, "class_names")  # from its family
    sod = sodlab.load(sodlab.save(create_model("csnet", width=4), tmp_path / "s.pt"))
    assert sod.task == "sod"
