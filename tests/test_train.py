"""The trainer: exact resume, run-directory safety, NaN stop, checkpoints, logs, recipes,
gradient accumulation, classification, and the batched validation metrics."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sodlab
from sodlab import create_model
from sodlab.errors import ConfigError
from sodlab.models.csnet import CSNet, csnet_config
from sodlab.metrics import SaliencyStats
from sodlab.train import NonFiniteLossError, TrainConfig, fit, list_recipes, load_recipe, read_recipe

SIZE = 32


class Blobs(torch.utils.data.Dataset):
    """Tiny saliency data: a bright square on noise; ``flip`` draws a random horizontal flip
    from torch's global RNG, as real augmentations do."""

    def __init__(self, n: int, seed: int = 0, flip: bool = False, labels: int = 0, dtype: torch.dtype = torch.float32) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, SIZE, SIZE, generator=g) * 0.3
        self.m = torch.zeros(n, 1, SIZE, SIZE)
        self.labels = torch.randint(0, max(labels, 1), (n,), generator=g)
        for i in range(n):
            r, c = torch.randint(0, SIZE // 2, (2,), generator=g).tolist()
            self.m[i, :, r:r + SIZE // 2, c:c + SIZE // 2] = 1
            self.x[i] += self.m[i] * (1.0 + self.labels[i])
        self.x, self.m = self.x.to(dtype), self.m.to(dtype)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        x, m = self.x[i], self.m[i]
        if self.flip and torch.rand(()) < 0.5:
            x, m = x.flip(-1), m.flip(-1)
        return {"image": x, "mask": m, "label": int(self.labels[i])}


class NaNAfter(Blobs):
    """Serves NaN images once ``after`` items have been read (i.e. in a later epoch)."""

    def __init__(self, n: int, after: int) -> None:
        super().__init__(n)
        self.after, self.reads = after, 0

    def __getitem__(self, i: int) -> dict:
        self.reads += 1
        item = super().__getitem__(i)
        if self.reads > self.after:
            item["image"] = torch.full_like(item["image"], float("nan"))
        return item


class FrozenBNCSNet(CSNet):
    """CSNet whose BatchNorms stay in eval mode while training (a model-side frozen BN)."""

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


def calibrate_bn(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Set BN running statistics from one pass (frozen BN at its initial 0/1 statistics
    would let the x100 depthwise convolutions overflow)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    nn.Module.train(model, True)
    with torch.no_grad():
        model(images)
    return model.train()


def tiny(seed: int = 0, frozen: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    model = (FrozenBNCSNet if frozen else CSNet)(csnet_config(width=4))
    return calibrate_bn(model, Blobs(8, seed=5).x) if frozen else model


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, lr=1e-3, regularizer="dwd", seed=7)
    return TrainConfig(**{**base, **kw})


def same_weights(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    worst = max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].numel())
    assert worst <= atol, f"weights differ by {worst}"
    return worst


def test_resume_after_an_interruption_matches_an_uninterrupted_run(tmp_path):
    train, val = Blobs(12, flip=True), Blobs(4, seed=1)
    full = tiny()
    log_full = fit(full, train, val, cfg(), tmp_path / "full", progress=False)
    part = tiny()
    fit(part, train, val, cfg(epochs=1), tmp_path / "part", progress=False)  # "crash" after epoch 1
    resumed = tiny(seed=99)  # a fresh process: different initial weights, all restored from last.pt
    log_res = fit(resumed, train, val, cfg(), tmp_path / "part", resume=True, progress=False)
    same_weights(full, resumed, atol=1e-6)
    pd.testing.assert_series_equal(log_full["train_loss"], log_res["train_loss"], rtol=1e-6)
    assert list(log_res["epoch"]) == [1, 2, 3]
    saved = sodlab.load(tmp_path / "part" / "last.pt")
    same_weights(saved, full.eval(), atol=1e-6)
    # Resuming a finished run does nothing and returns its log.
    again = fit(tiny(), train, val, cfg(), tmp_path / "part", resume=True, progress=False)
    assert len(again) == 3


def test_run_files_and_checkpoints(tmp_path):
    run = tmp_path / "run"
    log = fit(tiny(), Blobs(8), Blobs(4, seed=1), cfg(epochs=2), run, progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "last.pt", "log.csv"]
    csv = pd.read_csv(run / "log.csv")
    for col in ("epoch", "train_loss", "train_task_loss", "train_reg", "lr", "val_loss", "val_max_f", "val_mae", "time_s"):
        assert col in csv.columns and col in log.columns
    assert (csv["train_reg"] > 0).all()  # DWD is on
    np.testing.assert_allclose(csv["train_loss"], csv["train_task_loss"] + 3.0 * csv["train_reg"], rtol=1e-6)
    doc = json.loads((run / "config.json").read_text())
    assert doc["train"]["regularizer"] == "dwd" and doc["model"]["family"] == "csnet"
    best = sodlab.load(run / "best.pt")
    assert isinstance(best, CSNet)
    raw = torch.load(run / "best.pt", weights_only=True)
    assert raw["train_summary"]["epoch"] == int(csv["val_max_f"].idxmax()) + 1
    state = torch.load(run / "last.pt", weights_only=True)["train_state"]
    assert state["epoch"] == 2 and {"optimizer", "scheduler", "rng", "config", "sampler"} <= set(state)


def test_refuses_a_folder_holding_another_run(tmp_path):
    fit(tiny(), Blobs(4), None, cfg(epochs=1), tmp_path, progress=False)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run.*resume"):
        fit(tiny(), Blobs(4), None, cfg(epochs=1), tmp_path, progress=False)
    assert (tmp_path / "last.pt").read_bytes() == before
    with pytest.raises(ConfigError, match="momentum: run has 0.9, given 0.5"):
        fit(tiny(), Blobs(4), None, cfg(epochs=2, momentum=0.5), tmp_path, resume=True, progress=False)
    with pytest.raises(ConfigError, match="different model"):
        fit(create_model("csnet", width=8), Blobs(4), None, cfg(epochs=2), tmp_path, resume=True, progress=False)


def test_nan_advice_works_in_epoch_one_and_later(tmp_path):
    # Epoch 1 (batch 2 is NaN): nothing finished, nothing named that does not exist, nothing left.
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as err:
        fit(tiny(), NaNAfter(8, after=4), None, cfg(epochs=2), run, progress=False)
    assert str(err.value).endswith("training stopped. No epoch finished, so nothing was saved. Lower the learning rate and start "
                                   "again: the same command with --set lr=0.0001 (fit: lr=0.0001)")
    assert not run.exists()
    log1 = fit(tiny(), Blobs(8), None, cfg(epochs=2, lr=1e-4), run, progress=False)  # the advice, followed
    assert list(log1["epoch"]) == [1, 2]
    # Epoch 2: last.pt (which exists) keeps epoch 1; resuming with the lower rate is allowed.
    run2 = tmp_path / "run2"
    with pytest.raises(NonFiniteLossError) as err:
        fit(tiny(), NaNAfter(8, after=8), None, cfg(epochs=3), run2, progress=False)
    msg = str(err.value)
    assert msg.endswith(f"{run2 / 'last.pt'} keeps the last good epoch (1). Lower the learning rate and resume from it: "
                        "the same command with --resume --set lr=0.0001 (fit: resume=True, lr=0.0001)")
    assert (run2 / "last.pt").is_file()
    log2 = fit(tiny(), Blobs(8), None, cfg(epochs=3, lr=1e-4), run2, resume=True, progress=False)
    assert list(log2["epoch"]) == [1, 2, 3]
    assert list(log2["lr"]) == pytest.approx([1e-3, 1e-4, 1e-4], rel=1e-12)  # the optimizer and schedule follow the new rate
    assert torch.load(run2 / "last.pt", weights_only=True)["train_state"]["config"]["lr"] == 1e-4


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    data = NaNAfter(8, after=8)  # epoch 1 clean, epoch 2 NaN
    model = tiny()
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 1: the loss is nan.*last good epoch \(1\)"):
        fit(model, data, None, cfg(epochs=3), tmp_path, progress=False)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["train_state"]["epoch"] == 1
    good = sodlab.load(tmp_path / "last.pt")
    assert all(torch.isfinite(v).all() for v in good.state_dict().values() if v.is_floating_point())
    assert len(pd.read_csv(tmp_path / "log.csv")) == 1


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    # With BN statistics frozen a batch of 4 and 2 x 2 accumulated give the same gradient;
    # both draw the same permutation per epoch, so each step sees the same four images.
    # In float64: the two gradients differ only in summation order (float32: 1e-6 relative),
    # and this untrained CSNet (x100 depthwise gains) amplifies such rounding about 1e6-fold
    # within four SGD steps (float32: 6e-8 after two steps, 7e-4 after four; float64: 1.3e-9),
    # so float32 cannot tell rounding from a real difference at any useful tolerance.
    data = Blobs(8, dtype=torch.float64)
    a, b, c, init = (tiny(frozen=True).double() for _ in range(4))
    sgd = dict(epochs=2, optimizer="sgd", lr=5e-4)
    fit(a, data, None, cfg(batch_size=4, **sgd), tmp_path / "a", progress=False)
    fit(b, data, None, cfg(batch_size=2, accumulate=2, **sgd), tmp_path / "b", progress=False)
    fit(c, data, None, cfg(batch_size=2, **sgd), tmp_path / "c", progress=False)
    same_weights(a, b, atol=1e-7)  # measured: 1.3e-9
    with pytest.raises(AssertionError):
        same_weights(a, init, atol=1e-2)  # training moved the weights well beyond the tolerance (2e-2)
    with pytest.raises(AssertionError):
        same_weights(a, c, atol=1e-2)  # and twice the steps at half the batch is different (8e-2)


def test_fused_channels_last_training_equals_the_plain_path(tmp_path, monkeypatch):
    """``fused`` (the default) trains through sodlab.fast.optimize_for_training with
    BatchNorm + PReLU in one step. Training-mode BN over a few values (the deepest maps here
    are 1x1) amplifies float rounding, so the yardstick is the plain model's own rounding
    spread: the default layout against channels-last, one SGD step each from the same
    weights. (The exact check, in float64, is in test_fast.) DWD records activations
    through forward hooks, which the fused blocks call; a run resumes across the switch."""
    from sodlab.fast import norm_act

    calls = []
    real = norm_act._BatchNormPReLU.apply
    monkeypatch.setattr(norm_act._BatchNormPReLU, "apply", lambda *a: calls.append(1) or real(*a))
    data = Blobs(8)
    plain, fused, nchw, init = tiny(), tiny(), tiny(), tiny()
    step = dict(epochs=1, batch_size=8, optimizer="sgd", lr=5e-4, regularizer="dwd")
    fit(plain, data, None, cfg(fused=False, channels_last=True, **step), tmp_path / "plain", progress=False)
    fit(nchw, data, None, cfg(channels_last=False, **step), tmp_path / "nchw", progress=False)
    assert not calls  # fused needs channels-last
    fit(fused, data, None, cfg(channels_last=True, **step), tmp_path / "fused", progress=False)
    assert len(calls) == sum(isinstance(m, nn.BatchNorm2d) for m in init.modules())  # every pair, one step
    rounding = same_weights(plain, nchw, atol=1e-2)
    assert 0 < same_weights(plain, fused, atol=5 * rounding)
    with pytest.raises(AssertionError):
        same_weights(plain, init, atol=10 * rounding)  # the step moved the weights well beyond that
    fit(tiny(), data, None, cfg(fused=False, channels_last=True, **{**step, "epochs": 2}), tmp_path / "fused", resume=True,
        progress=False)


def test_classification_task(tmp_path):
    data = Blobs(12, labels=3)
    model = create_model("csnet-cls", width=4, num_classes=3)
    log = fit(model, data, Blobs(6, seed=1, labels=3), TrainConfig(task="classification", epochs=2, batch_size=4, lr=1e-2, regularizer="l2"), tmp_path, progress=False)
    assert {"val_top1", "val_loss"} <= set(log.columns) and "val_max_f" not in log.columns
    assert 0.0 <= log["val_top1"].iloc[-1] <= 1.0 and list(log["val_acc"]) == list(log["val_top1"])
    best = sodlab.load(tmp_path / "best.pt")
    assert type(best).__name__ == "CSNetClassifier" and best.task == "classification"
    bad = Blobs(4)
    bad.labels[:] = -1
    with pytest.raises(sodlab.errors.DataError, match="category label"):
        fit(create_model("csnet-cls", width=4, num_classes=3), bad, None, TrainConfig(task="classification", epochs=1, batch_size=4), tmp_path / "bad", progress=False)


def test_recipes():
    assert set(list_recipes()) >= {"csnet-paper", "quick", "csf-res2net-paper", "csf-res2net-batched"}
    paper = load_recipe("csnet-paper")
    assert (paper.optimizer, paper.lr, paper.betas, paper.eps, paper.weight_decay) == ("adam", 1e-4, [0.9, 0.99], 1e-8, 5e-3)
    assert (paper.epochs, paper.milestones, paper.gamma, paper.batch_size, paper.image_size) == (300, [200, 250], 0.1, 24, 224)
    assert (paper.regularizer, paper.resolved_regularizer_weight, paper.resolved_loss) == ("dwd", 3.0, "bce")
    csf = load_recipe("csf-res2net-paper")
    assert (csf.lr, csf.weight_decay, csf.epochs, csf.milestones, csf.batch_size, csf.accumulate, csf.hflip) == (5e-5, 5e-4, 24, [16], 1, 10, True)
    batched = load_recipe("csf-res2net-batched")
    assert batched.batch_size * batched.accumulate == csf.batch_size * csf.accumulate
    assert read_recipe("quick")["model"]["name"] == "csnet"
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        load_recipe("nope")


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown keys \['lerning_rate'\]"):
        TrainConfig.from_dict({"lerning_rate": 1})
    with pytest.raises(ConfigError, match="'batch_size'"):
        TrainConfig(batch_size=0)
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"train": {"epochs": 2, "optimiser": "adam"}}))
    with pytest.raises(ConfigError, match=r"r.json: unknown keys \['optimiser'\]"):
        load_recipe(p)
    p.write_text(json.dumps({"epochs": 2, "lr": 0.01}))
    assert load_recipe(p).lr == 0.01


@pytest.mark.filterwarnings("ignore:This class will be removed")
def test_validation_metrics_match_pysodmetrics():
    py_sod = pytest.importorskip("py_sod_metrics")
    rng = np.random.default_rng(0)
    prob = torch.from_numpy(rng.random((5, 1, 24, 24))).float()
    prob[1] = 0.25  # a constant map (no min-max normalisation)
    prob[2] = torch.sigmoid(torch.from_numpy(rng.normal(size=(1, 24, 24))).float() * 4)
    mask = torch.from_numpy(rng.random((5, 1, 24, 24)) > 0.6).float()
    mask[3] = 0  # an empty mask
    stats = SaliencyStats(torch.device("cpu"))
    stats.update(prob[:2], mask[:2])
    stats.update(prob[2:], mask[2:])
    fm, mae = py_sod.Fmeasure(), py_sod.MAE()
    for p, m in zip(prob, mask):
        pred = (p[0] * 255).to(torch.uint8).numpy()
        gt = (m[0].numpy() * 255).astype(np.uint8)
        fm.step(pred=pred, gt=gt)
        mae.step(pred=pred, gt=gt)
    ref_f = fm.get_results()["fm"]["curve"].max()
    ref_mae = mae.get_results()["mae"]
    got = stats.results()
    assert got["max_f"] == pytest.approx(ref_f, abs=1e-9)
    assert got["mae"] == pytest.approx(ref_mae, abs=1e-9)


def test_cli_trains_resumes_and_refuses_to_overwrite(tmp_path, capsys):
    synthetic = pytest.importorskip("sodlab.data.synthetic", reason="sodlab.data not available yet")
    from sodlab.cli import main

    root = Path(synthetic.generate(tmp_path / "bench", n_train=8, n_test=4, size=48, seed=0))
    run = tmp_path / "run"
    base = ["train", "--data", str(root / "train"), "--val", str(root / "test"), "--model", "csnet", "--model-arg", "width=4",
            "--recipe", "quick", "--set", "image_size=32", "--set", "batch_size=4", "--out", str(run), "--no-progress"]
    assert main(base + ["--epochs", "1"]) == 0
    assert "best epoch 1" in capsys.readouterr().out
    assert main(base + ["--epochs", "1"]) == 2  # the folder holds a run
    assert "--resume" in capsys.readouterr().err
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    assert list(pd.read_csv(run / "log.csv")["epoch"]) == [1, 2]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2
    best = sodlab.load(run / "best.pt")
    assert isinstance(best, CSNet) and best.input_size == 32  # predict/eval default to the training side


def test_cli_train_interrupted_says_how_to_resume(tmp_path, monkeypatch, capsys):
    from sodlab.cli import main
    from sodlab.data import synthetic

    data = synthetic.generate(tmp_path / "d", n_train=4, n_test=2, size=24, progress=False)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sodlab.train, "fit", interrupted)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data / "train"), "--out", str(run), "--no-progress"]) == 130
    assert capsys.readouterr().err.strip() == (
        f"sodlab train: interrupted; add --resume to the same command to continue {run} from its last finished epoch")


# --- the CLI: bad input is one line and exit 2, with nothing written -----------------------------------
@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    from sodlab.data import synthetic

    return Path(synthetic.generate(tmp_path_factory.mktemp("bench"), n_train=8, n_test=2, size=32, seed=0, progress=False))


def train_args(bench: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(bench / "train"), "--model", "csnet", "--model-arg", "width=4", "--recipe", "quick",
            "--set", "image_size=32", "--set", "batch_size=4", "--set", "epochs=1", "--out", str(out), "--no-progress", *extra]


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_cli_resume_refuses_a_folder_that_is_not_a_run(tmp_path, bench, capsys):
    from sodlab.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "log.csv").write_text("step,value\n1,2\n")
    before = files(mine)
    for extra in (["--resume"], []):
        assert main(train_args(bench, mine, *extra)) == 2
        assert capsys.readouterr().err == (
            f"sodlab train: error: {mine} holds config.json, log.csv that sodlab's training did not write; choose another output folder\n")
        assert files(mine) == before
    (mine / "last.pt").write_bytes(b"my own weights")
    before = files(mine)
    assert main(train_args(bench, mine, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sodlab train: error: {mine} holds a last.pt that is not a sodlab run's (") and err.count("\n") == 1
    assert files(mine) == before


def test_cli_validates_everything_before_writing(tmp_path, bench, capsys):
    from sodlab.cli import main

    out = tmp_path / "run"
    cases = {
        ("--model-arg", "widht=8"): "--model-arg: model 'csnet' does not take (width=4, widht=8): ",
        ("--set", "image_size=30"): "train config key 'image_size': must be a positive multiple of 16, got 30",
        ("--set", "epochs=0"): "train config key 'epochs': must be a positive integer (at least 1), got 0",
    }
    for extra, expected in cases.items():
        assert main(train_args(bench, out, *extra)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"sodlab train: error: {expected}") and err.count("\n") == 1, err
        assert not out.exists()


def test_cli_checks_the_output_folder_first(tmp_path, bench, capsys):
    from sodlab.cli import main

    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for out in (a_file, a_file / "run"):
        assert main(train_args(bench, out)) == 2
        assert capsys.readouterr().err == (
            f"sodlab train: error: {out}: {a_file} is a file, not a folder; choose another output folder\n")
    assert a_file.read_text() == "mine"


def test_cli_refuses_an_unwritable_output_folder(tmp_path, bench, capsys):
    from sodlab.cli import main

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        assert main(train_args(bench, locked / "run")) == 2
        assert capsys.readouterr().err == (
            f"sodlab train: error: {locked / 'run'}: folder {locked} is not writable; choose another output folder\n")
    finally:
        locked.chmod(0o700)


def test_cli_training_is_reproducible(tmp_path, bench):
    from sodlab.cli import main

    def weights(out: Path, *extra: str) -> dict:
        assert main(train_args(bench, out, *extra)) == 0
        return torch.load(out / "last.pt", weights_only=True)["state_dict"]

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = weights(tmp_path / "a")
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG is left as it was
    second = weights(tmp_path / "b")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    other = weights(tmp_path / "c", "--set", "seed=1")
    assert not torch.equal(first["stem.conv.conv.weight"], other["stem.conv.conv.weight"])


def test_cli_resume_may_lower_the_learning_rate(tmp_path, bench):
    from sodlab.cli import main

    out = tmp_path / "run"
    assert main(train_args(bench, out, "--set", "schedule=constant")) == 0
    assert main(train_args(bench, out, "--set", "schedule=constant", "--set", "epochs=2", "--resume", "--set", "lr=0.0003")) == 0
    log = pd.read_csv(out / "log.csv")
    assert list(log["epoch"]) == [1, 2] and list(log["lr"]) == pytest.approx([3e-3, 3e-4], rel=1e-12)


def test_bce_iou_loss_adds_each_images_soft_iou_to_the_bce():
    from sodlab.train.loss import soft_iou_loss, task_loss
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]], [[[-2.0, -2.0], [1.0, 0.5]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 0.0], [1.0, 0.0]]]])
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    # by hand: per image (I + 1) / (U + 1) with U = sum(p) + sum(t) - I, then 1 - that, averaged
    inter = (p * t).sum(1)
    by_hand = (1 - (inter + 1) / (p.sum(1) + t.sum(1) - inter + 1)).mean()
    assert float(soft_iou_loss(logits, target)) == pytest.approx(float(by_hand), rel=1e-6)
    assert float(soft_iou_loss(torch.full((1, 1, 4, 4), 40.0), torch.ones(1, 1, 4, 4))) == pytest.approx(0.0, abs=1e-6)
    bce = task_loss(logits, target, TrainConfig(task="sod", loss="bce"))
    both = task_loss(logits, target, TrainConfig(task="sod", loss="bce+iou"))
    assert float(both - bce) == pytest.approx(float(by_hand), rel=1e-5)
    with pytest.raises(ConfigError, match="'bce\\+iou' is a saliency loss; task 'classification' takes 'ce'"):
        TrainConfig(task="classification", loss="bce+iou")
    with pytest.raises(ConfigError, match="train config key 'loss': use one of 'auto', 'bce', 'bce\\+iou', 'ce'"):
        TrainConfig(task="sod", loss="dice")
