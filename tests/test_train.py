"""The trainer: exact resume, run-directory safety, NaN stop, checkpoints, logs, recipes,
gradient accumulation, classification, and the batched validation metrics."""
from __future__ import annotations

import json
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

    def __init__(self, n: int, seed: int = 0, flip: bool = False, labels: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, SIZE, SIZE, generator=g) * 0.3
        self.m = torch.zeros(n, 1, SIZE, SIZE)
        self.labels = torch.randint(0, max(labels, 1), (n,), generator=g)
        for i in range(n):
            r, c = torch.randint(0, SIZE // 2, (2,), generator=g).tolist()
            self.m[i, :, r:r + SIZE // 2, c:c + SIZE // 2] = 1
            self.x[i] += self.m[i] * (1.0 + self.labels[i])
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
    with pytest.raises(ConfigError, match="lr: run has 0.001, given 0.01"):
        fit(tiny(), Blobs(4), None, cfg(epochs=2, lr=1e-2), tmp_path, resume=True, progress=False)
    with pytest.raises(ConfigError, match="different model"):
        fit(create_model("csnet", width=8), Blobs(4), None, cfg(epochs=2), tmp_path, resume=True, progress=False)


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
    # (A small SGD step: CSNet's x100 depthwise gains amplify float noise at large rates.)
    data = Blobs(8)
    a, b, c, init = (tiny(frozen=True) for _ in range(4))
    sgd = dict(epochs=2, optimizer="sgd", lr=5e-4)
    fit(a, data, None, cfg(batch_size=4, **sgd), tmp_path / "a", progress=False)
    fit(b, data, None, cfg(batch_size=2, accumulate=2, **sgd), tmp_path / "b", progress=False)
    fit(c, data, None, cfg(batch_size=2, **sgd), tmp_path / "c", progress=False)
    same_weights(a, b, atol=1e-4)
    with pytest.raises(AssertionError):
        same_weights(a, init, atol=1e-2)  # training moved the weights well beyond the tolerance
    with pytest.raises(AssertionError):
        same_weights(a, c, atol=1e-3)  # and twice the steps at half the batch is different


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
    assert {"val_acc", "val_loss"} <= set(log.columns) and "val_max_f" not in log.columns
    assert 0.0 <= log["val_acc"].iloc[-1] <= 1.0
    assert type(sodlab.load(tmp_path / "best.pt")).__name__ == "CSNetClassifier"
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
