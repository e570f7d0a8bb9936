"""sodlab.studies experiments (also importable as sodlab.experiments): the scoring helpers exactly, and each experiment end to end on a tiny
generated benchmark (tiny widths, 64x64 images, one or two epochs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sodlab
from sodlab import experiments as ex
from sodlab.studies import verdicts
from sodlab.studies.common import VAL_FRACTION, datasets, train_config, training_table, validation_rows
from sodlab.studies.categories import category_work
from sodlab.studies.twins import recipes_digest
from sodlab.analysis import probes
from sodlab.metrics import SODMetrics, max_f_from_curves
from sodlab.errors import ConfigError


def salmetric_max_f(preds, gts):
    """Direct transcription of the SalMetric definition: thresholds 0..255, prediction > t."""
    ps, rs = [], []
    for p, g in zip(preds, gts):
        p255 = (np.clip(p, 0, 1) * 255).astype(np.uint8)
        g = g > 0.5
        prec, rec = [], []
        for t in range(256):
            pred = p255 > t
            tp = (pred & g).sum()
            prec.append((tp + 1e-4) / (pred.sum() + 1e-4))
            rec.append((tp + 1e-4) / (g.sum() + 1e-4))
        ps.append(prec)
        rs.append(rec)
    p, r = np.mean(ps, 0), np.mean(rs, 0)
    return float(((1.3 * p * r) / (0.3 * p + r + 1e-12)).max())


def per_image_counts(preds: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N, 3, 256) SalMetric counts of float maps in [0, 1] (x255, truncated, as sodlab.predict)
    against masks (foreground > 0.5), kept by a per-image meter."""
    meter = SODMetrics("salmetric", per_image=True)
    for p, g in zip(preds, masks):
        meter.step((np.clip(p, 0, 1) * 255).astype(np.uint8).reshape(p.shape[-2:]), np.asarray(g).reshape(g.shape[-2:]) > 0.5)
    return meter.per_image()["curves"]


def test_max_f_from_per_image_counts_matches_salmetric():
    rng = np.random.default_rng(0)
    gts = (rng.random((4, 1, 9, 9)) > 0.6).astype(np.float32)
    preds = np.clip(gts * 0.6 + rng.random((4, 1, 9, 9)) * 0.5, 0, 1).astype(np.float32)
    preds[1] = 0.0  # an all-black prediction
    gts[2] = 0.0  # an empty mask
    curves = per_image_counts(preds, gts)
    assert curves.shape == (4, 3, 256)
    assert max_f_from_curves(curves) == pytest.approx(salmetric_max_f(preds, gts), rel=1e-9)
    assert max_f_from_curves(curves[[0, 3]]) == pytest.approx(salmetric_max_f(preds[[0, 3]], gts[[0, 3]]), rel=1e-9)


def test_probes_read_out_separable_classes():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 6))
    y = np.repeat(np.arange(3), 20)
    x = centres[y] + rng.normal(0, 0.3, (60, 6))
    assert probes.ncm_accuracy(x[::2], y[::2], x[1::2], y[1::2]) == 1.0
    head = probes.ridge_head(torch.from_numpy(x).float(), y, 3)
    with torch.no_grad():
        assert (head(torch.from_numpy(x).float()).argmax(1).numpy() == y).mean() == 1.0
    assert probes.chance_normalised(0.25, 4) == 0.0 and probes.chance_normalised(1.0, 4) == 1.0


def test_probes_equal_their_closed_forms():
    """scikit-learn's Ridge and NearestCentroid against the formulas written out, on a tiny case."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 1])
    mu, sd = x.mean(0), x.std(0)
    z = (x - mu) / sd
    t = np.eye(3)[y]
    w = np.linalg.solve(z.T @ z + 0.5 * 12 * np.eye(3), z.T @ (t - t.mean(0)))  # ridge on centred targets, alpha per row
    head = probes.ridge_head(torch.from_numpy(x), y, 3, alpha=0.5)
    np.testing.assert_allclose(head.weight.detach().double().numpy(), (w / sd[:, None]).T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.bias.detach().double().numpy(), t.mean(0) - (mu / sd) @ w, rtol=1e-5, atol=1e-6)
    q = rng.normal(size=(20, 3)) * 2
    means = np.stack([z[y == c].mean(0) for c in range(3)])
    nearest = (((q - mu) / sd)[:, None, :] - means[None]) ** 2
    np.testing.assert_array_equal(probes.ncm_predict(x, y, q), nearest.sum(-1).argmin(1))


def test_loo_drop():
    loo = pd.DataFrame(
        {
            "held_out": ["a", "a", "b", "b"],
            "category": ["a", "b", "a", "b"],
            "is_held_out": [True, False, False, True],
            "n_images": [5, 5, 5, 5],
            "max_f": [0.6, 0.9, 0.8, 0.7],
            "mae": [0.1, 0.1, 0.1, 0.1],
        }
    )
    d = ex.loo_drop(loo).set_index("category")
    assert d.loc["a", "drop"] == pytest.approx(0.2) and d.loc["b", "drop"] == pytest.approx(0.2)


def test_anatomy_table_counts_and_skips_unknown_models():
    t = ex.anatomy_table(("csnet-L-x2", ("csnet", {"width": 8}), "no-such-model"), sizes=(64,))
    assert list(t.columns) == ["model", "size", "params", "macs", "gmacs"]
    assert list(t["model"]) == ["csnet-L-x2", "csnet width=8"]
    assert t.loc[0, "params"] == 140_894 and (t["macs"] > 0).all()


def test_channel_explorer_data_shapes():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    sod = sodlab.create_model("csnet", width=4)
    cls = sodlab.create_model("csnet-cls", width=4, num_classes=3)
    for m in (sod, cls):  # batch-norm statistics from x, as after training
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.momentum = None
        m.train()
        with torch.no_grad():
            m(x)
    d = ex.channel_explorer_data(sod, cls, x, "stage3")
    assert d["channels"] == 16
    assert d["activations_sod"].shape == d["activations_cls"].shape == (2, 16, 8, 8)
    assert d["importance_sod"].shape == d["importance_cls"].shape == (2, 16)
    assert d["images"].shape == (2, 32, 32, 3) and d["saliency"].shape == (2, 32, 32) and d["class_pred"].shape == (2,)
    assert np.isfinite(d["importance_sod"]).all() and np.isfinite(d["importance_cls"]).all()


# --- end to end on a tiny benchmark ----------------------------------------------------------
@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from sodlab.data import synthetic

    root = tmp_path_factory.mktemp("bench") / "b"
    synthetic.generate(root, n_train=80, n_test=40, size=64, seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def bench240(tmp_path_factory):
    """A benchmark whose half of the categories still fill a batch of the classifier recipe (64)."""
    from sodlab.data import synthetic

    root = tmp_path_factory.mktemp("bench240") / "b"
    synthetic.generate(root, n_train=240, n_test=48, size=64, seed=0, progress=False)
    return root


TINY = dict(width=4, epochs=1, image_size=64, seed=0, device="cpu")
ONE_SEED = {**{k: v for k, v in TINY.items() if k != "seed"}, "seeds": (0,)}


@pytest.mark.slow
def test_regularizer_study(bench, tmp_path):
    out = ex.regularizer_study(bench, regularizers=("dwd", "none"), batch_size=16, work_dir=tmp_path, keep_fractions=(1.0, 0.5),
                               slim_scratch=(0.5,), **TINY)
    assert set(out) == {"logs", "gammas", "pruning", "allocation", "final", "slim_scratch", "training", "threshold_rule"}
    # the authors' rule beside the keep fractions: every channel under 1e-20 removed; after one epoch none is
    th = out["threshold_rule"].set_index("regularizer")
    assert list(th.index) == ["dwd", "none"] and (th["threshold"] == 1e-20).all() and (th["param_fraction"] == 1.0).all()
    unpruned = out["pruning"].query("keep_fraction == 1.0").set_index("regularizer")["max_f"]
    assert th["max_f"].to_dict() == pytest.approx(unpruned.to_dict(), abs=1e-6)
    t = out["training"]
    assert set(t["model"]) == {"dwd", "none", "slim from scratch at 50%"} and set(t["metric"]) == {"val_max_f"}
    # the slim-from-scratch baseline has the pruned architecture: the parameters of the curve's 50% point
    sc = out["slim_scratch"].iloc[0]
    pr = out["pruning"]
    point = pr[(pr.regularizer == "dwd") & (pr.keep_fraction == 0.5)].iloc[0]
    assert (sc.regularizer, sc.keep_fraction, sc.epochs) == ("dwd", 0.5, TINY["epochs"]) and sc.params == point.params
    assert 0 <= sc.max_f <= 1 and (tmp_path / "slim_scratch_0.5" / "best.pt").is_file()
    assert (pr["finetune_share"] == 0).all()  # not fine-tuned: the verdict's fine-tuning gate fails
    lines = verdicts.pruning(pr, mode="standard", seeds=[0], slim_scratch=out["slim_scratch"], threshold_rule=out["threshold_rule"]).lines
    assert any(line.startswith("- the authors' rule (every channel with |gamma| under the threshold removed, no fine-tuning): "
                               "dwd at 1e-20: 100% of the parameters kept") for line in lines)
    assert any(line.startswith(f"- dwd's slim architecture at 50% trained from scratch ({sc.params:,} parameters, 1 epochs): "
                               f"max-F {sc.max_f:.3f}; pruned to it, max-F {point.max_f:.3f}") for line in lines)
    with pytest.raises(ConfigError, match=r"slim_scratch fractions must be among keep_fractions \[1.0, 0.5\]"):
        ex.regularizer_study(bench, regularizers=("dwd",), keep_fractions=(1.0, 0.5), slim_scratch=(0.3,), work_dir=tmp_path)
    assert t.groupby("model")["selected"].sum().eq(1).all()
    assert set(out["gammas"]["regularizer"]) == {"dwd", "none"} and set(out["gammas"]["epoch"]) == {0, 1}
    # the channels each point of the curve keeps, per block, against the trained model
    blocks = out["allocation"][out["allocation"].kind == "block"]
    kept = blocks.groupby(["regularizer", "keep_fraction"])[["channels", "reference_channels"]].sum()
    assert (kept.loc[("dwd", 1.0)] == kept.loc[("dwd", 1.0), "reference_channels"]).all()
    assert kept.loc[("dwd", 0.5), "channels"] < kept.loc[("dwd", 0.5), "reference_channels"]
    assert (out["gammas"]["abs_gamma"] >= 0).all()
    assert out["final"]["max_f"].between(0, 1).all() and out["final"]["mae"].between(0, 1).all()
    assert set(out["pruning"]["regularizer"]) == {"dwd", "none"}
    # the notebook's tables fit its verdict; one score per point is no interval, so it cannot conclude
    assert verdicts.pruning(out["pruning"], mode="standard", seeds=[0]).reason.startswith("no interval: one score per pruning point")


@pytest.mark.slow
def test_pruning_replicates_pool_seeds_and_images(bench, tmp_path):
    """Two seeds: one study each in its own folder; the pruned-minus-unpruned effect per point
    is the mean of the seeds' differences, from per-image scores that agree with the curve's,
    with an interval over seeds and images that the verdict decides from."""
    kw = dict(regularizers=("dwd", "l2"), batch_size=16, keep_fractions=(1.0, 0.5), thresholds=(), width=4, epochs=1, image_size=64,
              device="cpu", n_boot=50)
    out = ex.pruning_replicates(bench, seeds=(0, 1), work_dir=tmp_path, **kw)
    st = out["pruning_stats"].set_index(["regularizer", "keep_fraction"])
    assert len(st) == 4 and (st.n_seeds == 2).all() and (st.seeds == "0,1").all() and (st.metric == "max_f").all()
    fin = out["final"].set_index(["regularizer", "seed"])["max_f"]  # the unpruned models, SalMetric as the stats
    for reg in ("dwd", "l2"):
        assert st.loc[(reg, 0.5), "ci_low"] <= st.loc[(reg, 0.5), "effect"] <= st.loc[(reg, 0.5), "ci_high"]
    assert (st["protocol"] == "salmetric").all()
    assert st.loc[("dwd", 1.0), "effect"] == pytest.approx(0.0, abs=1e-6)  # keeping everything changes nothing
    # the pooled effect is the mean of the seeds' differences, each the pruned model's score minus its unpruned model's
    from sodlab import prune
    from sodlab.checkpoint import load
    from sodlab.studies.common import sod_scores

    test = datasets(bench, 64)[2]
    per_seed = []
    for s in (0, 1):
        slim, _ = prune.prune(load(tmp_path / f"seed{s}" / "dwd" / "best.pt"), None, keep_fraction=0.5, probe_size=None, warn=False, exact=False)
        per_seed.append(max_f_from_curves(sod_scores(slim, test, torch.device("cpu"))["curves"]) - fin[("dwd", s)])
    assert st.loc[("dwd", 0.5), "effect"] == pytest.approx(np.mean(per_seed), abs=1e-6)
    # one protocol: the curve's point, the final table and the stats score the same model alike
    curve = out["seeds_pruning"].set_index(["regularizer", "seed", "keep_fraction"])
    assert (out["seeds_pruning"]["protocol"] == "salmetric").all() and (out["final"]["protocol"] == "salmetric").all()
    assert curve.loc[("dwd", 0, 1.0), "max_f"] == pytest.approx(fin[("dwd", 0)], abs=1e-12)
    assert curve.loc[("dwd", 1, 0.5), "max_f"] - curve.loc[("dwd", 1, 1.0), "max_f"] == pytest.approx(per_seed[1], abs=1e-12)
    assert (tmp_path / "seed0" / "dwd" / "best.pt").is_file() and (tmp_path / "seed1" / "dwd" / "best.pt").is_file()
    assert set(out["training"]["model"]) == {"dwd:seed0", "l2:seed0", "dwd:seed1", "l2:seed1"}
    assert set(out["gammas"]["seed"]) == {0, 1} and list(out["pruning"].columns) == list(out["seeds_pruning"].drop(columns="seed").columns)
    v = verdicts.pruning(out["pruning"], mode="standard", seeds=[0, 1], gammas=out["gammas"], stats=out["pruning_stats"],
                         final=out["final"], **verdicts.training_evidence(out["training"]))
    assert v.ci == (st.loc[("dwd", 0.5), "ci_low"], st.loc[("dwd", 0.5), "ci_high"]) and not v.reason.startswith("no interval")
    # one seed: an interval over images alone; reruns reuse the models
    one = ex.pruning_replicates(bench, seeds=(0,), work_dir=tmp_path, **kw)
    assert one["pruning_stats"]["n_seeds"].eq(1).all()
    assert one["pruning_stats"].set_index(["regularizer", "keep_fraction"]).loc[("dwd", 0.5), "ci_low"] <= \
        one["pruning_stats"].set_index(["regularizer", "keep_fraction"]).loc[("dwd", 0.5), "ci_high"]
    pd.testing.assert_frame_equal(one["pruning"], out["pruning"])
    with pytest.raises(ConfigError, match=r"pruning seeds must be distinct, at least one, got \[0, 0\]"):
        ex.pruning_replicates(bench, seeds=(0, 0), work_dir=tmp_path)


def test_pruning_schedule_check_is_the_first_seeds_and_gates_every_model(bench, tmp_path):
    """03's plateau evidence: the first seed's models (the regulariser's and the slim one from
    scratch, itself a first-seed condition) again without the last quarter of the epochs, named
    ``<model>:seed0@check``; the loss reaches every run's config."""
    import json

    out = ex.pruning_replicates(bench, seeds=(0, 1), work_dir=tmp_path, regularizers=("dwd",), batch_size=16, keep_fractions=(1.0, 0.5),
                                thresholds=(), width=4, epochs=2, image_size=64, device="cpu", n_boot=20, slim_scratch=(0.5,),
                                schedule_check=True, loss="bce+iou", finetune_epochs=1)
    names = set(out["training"]["model"])
    assert names == {"dwd:seed0", "dwd:seed1", "slim from scratch at 50%:seed0", "dwd:seed0@check", "slim from scratch at 50%:seed0@check"}
    assert out["slim_scratch"]["seed"].tolist() == [0]  # a condition beside the first seed's curve
    checks = out["training"][out["training"]["model"].str.endswith("@check")]
    assert checks.groupby("model")["epoch"].max().eq(1).all()  # check_epochs(2): the run without its last quarter
    assert (tmp_path / "seed0" / "schedule-check" / "dwd" / "best.pt").is_file()
    assert not (tmp_path / "seed1" / "schedule-check").exists()
    assert not (tmp_path / "seed1" / "slim_scratch_0.5").exists()

    def train_config(run: str) -> dict:
        return json.loads((tmp_path / run / "config.json").read_text())["train"]

    for run in ("seed0/dwd", "seed1/dwd", "seed0/slim_scratch_0.5", "seed0/schedule-check/slim_scratch_0.5"):
        assert train_config(run)["loss"] == "bce+iou", run
    # a check is its run without the last quarter: the same config but for the epochs
    for run in ("dwd", "slim_scratch_0.5"):
        main, check = train_config(f"seed0/{run}"), train_config(f"seed0/schedule-check/{run}")
        assert (main["epochs"], check["epochs"]) == (2, 1) and {k: v for k, v in main.items() if k != "epochs"} == \
            {k: v for k, v in check.items() if k != "epochs"}, run
    # the fine-tuning trains with the same loss and batch size
    tuned = train_config("seed0/dwd_prune/keep_fraction_0.5")
    assert (tuned["loss"], tuned["batch_size"]) == ("bce+iou", 16)
    # the gate judges every seed of dwd against the first seed's check
    from sodlab.studies.rules import plateau_gate, schedule_gain

    curves = verdicts.training_evidence(out["training"])["validation_curves"]
    gate = plateau_gate(curves, ["dwd"], "none")
    assert gate.value == pytest.approx(max(schedule_gain(curves[f"dwd:seed{s}"], curves["dwd:seed0@check"]) for s in (0, 1)))


def test_regularizer_study_finetunes_on_a_fixed_subset(bench, tmp_path, monkeypatch):
    from sodlab import prune
    from sodlab.studies import pruning

    seen = []

    def fake_curve(model, data, *, train_data=None, **kw):
        seen.append(list(train_data.indices))
        return pd.DataFrame({"keep_fraction": [1.0], "max_f": [0.5]})

    monkeypatch.setattr(prune, "curve", fake_curve)
    # what is checked is the fine-tuning subset; training is covered by test_regularizer_study
    monkeypatch.setattr(pruning, "train_checked", lambda spec, task, make, *a, **kw: (make(), pd.DataFrame({"epoch": [1]})))
    # an untrained CSNet overflows in eval mode, and sodlab.evaluate refuses its maps
    monkeypatch.setattr(pruning, "sod_scores", lambda model, ds, dev: {"label": np.zeros(2, int), "mae": np.zeros(2),
                                                                      "curves": np.ones((2, 3, 256))})
    out = ex.regularizer_study(bench, regularizers=("none", "l2"), batch_size=16, work_dir=tmp_path, keep_fractions=(1.0,),
                               finetune_epochs=1, finetune_images=12, thresholds=(), **TINY)
    assert len(seen) == 2 and len(seen[0]) == 12 and seen[0] == seen[1]
    assert out["pruning"]["finetune_share"].iloc[0] == pytest.approx(12 / len(datasets(bench, 64)[0]))  # 1 epoch of 12 after 1 of all
    assert len(set(seen[0])) == 12 and max(seen[0]) < 80


@pytest.mark.slow
def test_category_sensitivity(bench240, tmp_path):
    out = ex.category_sensitivity(bench240, n_seen=6, n_boot=50, work_dir=tmp_path, loo=True, loo_max=2, schedule_check=True, **TINY)
    from sodlab.checkpoint import load

    # the study model's twins by default, in a folder named by family, split size and seed
    assert type(load(category_work(tmp_path, "res2net-mini", 6, 0) / "sod" / "best.pt")).__name__ == "CSFNet"  # csf-res2net-mini
    split = out["split"]
    assert split["seen"].sum() == 6 and len(split) >= 10
    s = out["summary"]
    assert set(s["task"]) == {"sod", "classifier", "sod_encoder"}
    assert s[s.metric.isin(["max_f", "mae", "ncm_accuracy"])]["value"].between(0, 1).all()
    g = out["gaps"]
    assert (g["low"] <= g["gap"] + 1e-12).all() and (g["gap"] <= g["high"] + 1e-12).all()
    loo = out["loo"]
    assert loo["held_out"].nunique() == 2 and loo.groupby("held_out")["is_held_out"].sum().eq(1).all()
    assert len(ex.loo_drop(loo)) == 2
    c = out["classifiers"].iloc[0]
    assert c.classes == 6 and c.n_images == int(out["sod_per_category"].query("seen")["n_images"].sum())
    # every model, the leave-one-out ones included, validated on held-out training images of its own categories
    t = out["training"]
    # one epoch leaves no shorter run: the schedule check trains nothing more (no "@check" curves) and the gate lacks its evidence
    assert sorted(t["model"].unique()) == sorted(["sod", "classifier"] + [f"without {h}" for h in loo["held_out"].unique()])
    assert t.groupby("model")["selected"].sum().eq(1).all()
    assert set(t[t.model == "classifier"]["metric"]) == {"val_top1"}
    assert c.above_chance == pytest.approx((c.accuracy - 1 / 6) / (5 / 6))
    assert (g["level"] == 0.9).all()  # the verdict rule's 90% intervals
    ev = verdicts.training_evidence(t)
    assert ev["selected_on_validation"] is True and set(ev["validation_curves"]) == set(t["model"])
    v = verdicts.category_sensitivity(s, g, ex.loo_drop(loo), classifiers=out["classifiers"], mode="standard", seeds=[0], **ev)
    assert v.outcome == "inconclusive" and "plateau" in v.reason  # one epoch is no plateau ...
    assert "selection on validation" not in v.reason  # ... but the models were selected on validation
    # resumable: a second call reuses the finished runs and gives the same numbers
    again = ex.category_sensitivity(bench240, n_seen=6, n_boot=50, work_dir=tmp_path, loo=False, **TINY)
    pd.testing.assert_frame_equal(again["summary"], s)
    # the explorer's tables: per-category scores of every split's model, and examples with their maps
    by_split = ex.scores_by_split(out)
    assert by_split.groupby("split").size().to_dict() == {"random split": len(split), **{f"without {h}": len(split) for h in loo.held_out.unique()}}
    assert by_split.query("split == 'random split'")["trained_on"].sum() == 6
    examples = ex.category_examples(bench240, n_seen=6, seed=0, work_dir=tmp_path, image_size=64, per_category=2, device="cpu")
    assert examples["splits"][0] == "random split" and len(examples["splits"]) == 3
    n = len(examples["categories"])
    assert n == 2 * len(split) and examples["images"].shape == (n, 64, 64, 3) and examples["pred_2"].shape == (n, 64, 64)
    assert 0 <= examples["pred_0"].min() and examples["pred_0"].max() <= 1


@pytest.mark.slow
def test_pretraining_effect(bench, tmp_path):
    out = ex.pretraining_effect(bench, fractions=(0.5, 1.0), work_dir=tmp_path, n_boot=50, **ONE_SEED)
    f = out["final"]
    assert set(zip(f["init"], f["fraction"])) == {(i, fr) for i in ("scratch", "pretrained") for fr in (0.5, 1.0)}
    assert f["max_f"].between(0, 1).all() and f["mae"].between(0, 1).all() and (f["schedule"] == 1).all()
    assert (f[f.fraction == 0.5]["n_train"].to_numpy() < f[f.fraction == 1.0]["n_train"].to_numpy()).all()
    e = out["efficiency"]
    assert (e["low"] <= e["high"]).all() and len(e) == 2
    c = out["classifiers"].iloc[0]
    # without a corpus: pre-trained on the benchmark's categories, scored on its test split, selected on validation
    assert c.model == "pretraining_classifier:seed0" and c.n_images == 40
    assert sorted(out["training"]["model"].unique()) == sorted(["pretraining_classifier:seed0", "scratch at 50%:seed0",
                                                                "scratch at 100%:seed0", "pretrained at 50%:seed0",
                                                                "pretrained at 100%:seed0"])
    assert (e["level"] == 0.9).all()
    v = verdicts.pretraining(f, e, classifiers=out["classifiers"], mode="standard", seeds=[0])
    assert v.ci == (e["low"].iloc[-1], e["high"].iloc[-1]) and v.outcome == "inconclusive" and "plateau" in v.reason
    assert out["controls"].empty


@pytest.mark.slow
def test_pretraining_control_arms(bench, tmp_path):
    from sodlab.studies.pretraining import RelabelledDataset, matched_epochs

    out = ex.pretraining_effect(bench, fractions=(0.5,), work_dir=tmp_path, n_boot=50,
                                arms=("scratch", "pretrained", "random_labels", "scratch_matched"), **ONE_SEED)
    f = out["final"].set_index("init")
    n_all = len(datasets(bench, 64)[0])  # pre-training reads all training images, fine-tuning the fraction
    assert f.loc["scratch_matched", "epochs"] == matched_epochs(TINY["epochs"], TINY["epochs"], n_all, f.loc["scratch", "n_train"])
    assert f.loc["scratch_matched", "epochs"] > f.loc["scratch", "epochs"] == TINY["epochs"]
    c = out["controls"]
    assert list(c["versus"]) == ["random_labels", "scratch_matched"] and (c["low"] <= c["high"]).all()
    fin = out["final"].set_index("init")["max_f"]
    assert c.set_index("versus").loc["scratch_matched", "max_f_gain"] == pytest.approx(fin["pretrained"] - fin["scratch_matched"], abs=1e-9)
    assert (tmp_path / f"res2net-mini_w{TINY['width']}_seed0_{recipes_digest('res2net-mini')}" / "pretrain_random_labels" / "last.pt").is_file()
    assert matched_epochs(5, 5, 2000, 200) == 55 and matched_epochs(5, 5, 2000, 2000) == 10 and matched_epochs(3, 2, 100, 30) == 10
    with pytest.raises(ConfigError, match=r"arms must include 'scratch' and 'pretrained'"):
        ex.pretraining_effect(bench, arms=("scratch",), work_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"'pretrained_with_sod' arm needs corpus_with_sod"):
        ex.pretraining_effect(bench, arms=("scratch", "pretrained", "pretrained_with_sod"), work_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"schedules \[4, 6\]: one positive number of epochs, or two of which the shorter is half"):
        ex.pretraining_effect(bench, schedules=(4, 6), work_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"seeds must be distinct"):
        ex.pretraining_effect(bench, seeds=(1, 1), work_dir=tmp_path)
    with pytest.raises(ConfigError, match="3 labels for 2 items"):
        RelabelledDataset([{"label": 0}, {"label": 1}], [1, 0, 2])
    assert RelabelledDataset([{"label": 0, "image": 5}], [3])[0] == {"label": 3, "image": 5}


def test_guess_gaps_pair_the_model_and_each_guess_image_by_image(bench, tmp_path):
    """01's verdict: per guess, model minus guess max-F under SalMetric, the same numbers as
    `evaluate` and `baseline_metrics` give for the whole set, with an interval over images."""
    from sodlab.baselines import baseline_metrics
    from sodlab.studies.common import sod_model, train_or_resume

    train, val, _ = datasets(bench, 64)
    model, _ = train_or_resume(sod_model(4, 0), train, val, tmp_path / "run", 1, 16, 0, torch.device("cpu"))
    g = ex.guess_gaps(model, bench / "test", size=64, device="cpu", n_boot=100).set_index("guess")
    whole = sodlab.evaluate(model, bench / "test", protocol="salmetric", size=64, device="cpu", progress=False)
    guesses = baseline_metrics(bench / "test", ["centre bias", "contrast + centre"], protocol="salmetric")
    assert list(g.index) == ["centre bias", "contrast + centre"] and (g["protocol"] == "salmetric").all() and (g["n_images"] == 40).all()
    for name in g.index:
        assert g.loc[name, "model_max_f"] == pytest.approx(whole["max_f"], abs=1e-9)
        assert g.loc[name, "guess_max_f"] == pytest.approx(guesses[name]["max_f"], abs=1e-9)
        assert g.loc[name, "gap"] == pytest.approx(whole["max_f"] - guesses[name]["max_f"], abs=1e-9)
        assert g.loc[name, "low"] < g.loc[name, "high"]
    v = verdicts.quickstart({"max_f": 0.9, "mae": 0.05}, {"max_f": 0.5, "mae": 0.3}, contrast={"max_f": 0.6, "mae": 0.2},
                            gaps=g.reset_index(), source="x", params=1, gmacs=0.1, size=64, n_images=40, mode="standard", seeds=[0],
                            validation_curves={"model": [0.7, 0.79, 0.8, 0.8]}, selected_on_validation=True)
    top = g["guess_max_f"].idxmax()
    assert v.effect == pytest.approx(g.loc[top, "gap"]) and v.ci == (g.loc[top, "low"], g.loc[top, "high"])
    assert v.outcome in ("refuted", "inconclusive") and v.lines[-1].startswith("- Under salmetric (the studies' protocol), image by image")
    # two seeds: the gap is the mean of each seed's gap, and the interval resamples seeds as well as images
    other, _ = train_or_resume(sod_model(4, 1), train, val, tmp_path / "run1", 1, 16, 1, torch.device("cpu"))
    two = ex.guess_gaps([model, other], bench / "test", size=64, device="cpu", n_boot=100).set_index("guess")
    alone = ex.guess_gaps(other, bench / "test", size=64, device="cpu", n_boot=100).set_index("guess")
    assert (two["n_seeds"] == 2).all() and (g["n_seeds"] == 1).all()
    for name in two.index:
        assert two.loc[name, "gap"] == pytest.approx((g.loc[name, "gap"] + alone.loc[name, "gap"]) / 2, abs=1e-9)
        assert two.loc[name, "model_max_f"] == pytest.approx((g.loc[name, "model_max_f"] + alone.loc[name, "model_max_f"]) / 2, abs=1e-9)
        assert two.loc[name, "low"] < two.loc[name, "high"]
    with pytest.raises(ConfigError, match="at least one model"):
        ex.guess_gaps([], bench / "test", size=64, device="cpu")


def test_replicates_train_each_seed_and_score_each_checkpoint(bench, tmp_path):
    """01's replicates: one model per seed in its own folder, different weights per seed; the
    metrics table scores each seed's best checkpoint as `evaluate` does, its mean is the seeds'
    mean, and the cached call reads back the same numbers."""
    from sodlab.studies.common import evaluate_checkpoint

    train, val, _ = datasets(bench, 64)
    models, log, rows = ex.train_replicates(train, val, tmp_path, 4, 1, (3, 5), torch.device("cpu"), False, batch_size=16, image_size=64)
    assert sorted(models) == [3, 5] and {r["model"] for r in rows} == {"model:seed3", "model:seed5"}
    assert all((tmp_path / f"csnet_seed{s}" / "best.pt").is_file() for s in (3, 5)) and log is not None
    w3, w5 = (next(models[s].parameters()).detach() for s in (3, 5))
    assert not torch.equal(w3, w5)
    table, mean = ex.replicate_metrics(tmp_path, [3, 5], bench / "test", size=64, device="cpu")
    assert list(table["seed"]) == [3, 5] and (table["model"] == "csnet").all()
    for s in (3, 5):
        want = evaluate_checkpoint(tmp_path / f"csnet_seed{s}" / "best.pt", bench / "test", size=64, device="cpu")
        assert table.set_index("seed").loc[s, "max_f"] == pytest.approx(want["max_f"], abs=1e-12)
    assert mean["max_f"] == pytest.approx(table["max_f"].mean(), abs=1e-12) and "seed" not in mean
    cache = tmp_path / "cache"
    first, _ = ex.replicate_metrics(tmp_path, [3, 5], bench / "test", size=64, device="cpu", cache_dir=cache)
    assert len(list(cache.glob("evaluate_checkpoint-*.json"))) == 2
    again, _ = ex.replicate_metrics(tmp_path, [3, 5], bench / "test", size=64, device="cpu", cache_dir=cache)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, table)
    with pytest.raises(ConfigError, match="distinct"):
        ex.train_replicates(train, val, tmp_path, 4, 1, (3, 3), torch.device("cpu"), False)
    with pytest.raises(ConfigError, match="at least one seed"):
        ex.replicate_metrics(tmp_path, [], bench / "test")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    from sodlab.data import synthetic

    root = tmp_path_factory.mktemp("corpora")
    return {v: synthetic.ensure_corpus(v, root=root, n_classes=12, per_class=6, val_per_class=4, size=32, progress=False)
            for v in ("without-sod", "with-sod")}


@pytest.mark.slow
def test_pretraining_on_corpora_with_seeds_and_schedules(bench, corpora, tmp_path):
    """The standard design in small: pre-training on the corpus (and on its with-sod variant),
    two seeds, two schedules (the shorter a condition, the longer checked by a run without its
    last quarter), every control."""
    from sodlab.studies.pretraining import ARMS, corpus_splits, seed_means, shuffled

    arms = ARMS
    out = ex.pretraining_effect(bench, fractions=(0.5, 1.0), width=4, schedules=(1, 2), image_size=64, seeds=(0, 1), device="cpu",
                                work_dir=tmp_path, pretrain_epochs=2, n_boot=50, arms=arms, corpus=corpora["without-sod"],
                                corpus_with_sod=corpora["with-sod"], schedule_check=True)
    f = out["final"]
    expected = {(a, fr, n, s) for a in arms if a != "scratch_matched" for fr in (0.5, 1.0) for n in (1, 2) for s in (0, 1)}
    expected |= {("scratch_matched", 1.0, 2, s) for s in (0, 1)}  # the matched arm: largest fraction, longest schedule only
    assert set(zip(f["init"], f["fraction"], f["schedule"], f["seed"])) == expected and len(f) == len(expected)
    n_corpus = 12 * 6
    m = f[f.init == "scratch_matched"].iloc[0]
    assert m.epochs == 2 + -(-2 * n_corpus // int(m.n_train))
    # the gain is the mean over seeds of each seed's difference, exactly the final table's numbers
    fin = f.set_index(["init", "fraction", "schedule", "seed"])["max_f"]
    e = out["efficiency"].set_index(["fraction", "schedule"])
    for fr in (0.5, 1.0):
        for n in (1, 2):
            want = np.mean([fin[("pretrained", fr, n, s)] - fin[("scratch", fr, n, s)] for s in (0, 1)])
            assert e.loc[(fr, n), "max_f_gain"] == pytest.approx(want, abs=1e-9)
            assert e.loc[(fr, n), "low"] < e.loc[(fr, n), "high"]
    assert (e["n_seeds"] == 2).all() and (e["protocol"] == "salmetric").all()
    c = out["controls"]
    assert sorted(set(c["versus"])) == ["pretrained_with_sod", "random_labels", "scratch_matched"]
    assert len(c[c.versus == "scratch_matched"]) == 1 and len(c[c.versus == "random_labels"]) == 4
    # classifiers: one per corpus and seed, gated on the held-out half of the corpus's val split
    cl = out["classifiers"]
    assert sorted(cl["model"]) == sorted(f"{n}:seed{s}" for n in ("pretraining_classifier", "pretraining_classifier_with_sod") for s in (0, 1))
    assert (cl["n_images"] == 12 * 2).all() and (cl["classes"] == 12).all()
    names = set(out["training"]["model"])
    assert {"scratch at 100%:seed0", "scratch at 100%:seed0@half", "scratch_matched at 100%:seed0@check", "pretrained at 50%:seed0@check",
            "pretraining_classifier:seed0@check", "pretraining_classifier_with_sod:seed1"} <= names
    # the schedule check: the first seed's longest runs only, without their last quarter (2 epochs: 1)
    assert not any(n.endswith("@check") and ":seed1" in n for n in names) and not any("at 100%:seed0@half@" in n for n in names)
    t = out["training"]
    assert t[t.model == "scratch at 100%:seed0@check"]["epoch"].max() == 1
    assert t[t.model == "pretraining_classifier:seed0@check"]["epoch"].max() == 1  # pretrain_epochs 2
    assert not any(n.startswith("random_labels") and "classifier" in n for n in names)  # shuffled labels: no validation curve
    v = verdicts.pretraining(f, out["efficiency"], classifiers=cl, mode="standard", seeds=[0, 1], controls=c,
                             **verdicts.training_evidence(out["training"]))
    assert v.quantity == "pre-trained minus compute-matched scratch max-F with 100% of the training set, 2 epochs (0-1)"
    assert v.effect == pytest.approx(c[c.versus == "scratch_matched"]["max_f_gain"].iloc[0]) and v.outcome == "inconclusive"
    assert any(line.startswith("- Does scratch catch up with longer training? The gain over scratch at 100% goes from") for line in v.lines)
    shown = seed_means(out)
    assert len(shown["final"]) == (len(arms) - 1) * 2 + 1  # seeds averaged; the matched arm at one fraction
    assert shown["curves"].groupby("init")["epoch"].max().to_dict() == {**{a: 2 for a in arms}, "scratch_matched": m.epochs}
    # the corpus's val split: halves that select and gate, disjoint, every class in both
    tr, sel, gate = corpus_splits(corpora["without-sod"], 32, {"hflip": True})
    assert len(sel) + len(gate) == 12 * 4 and not set(sel.indices) & set(gate.indices) and tr.preloaded
    assert sorted(set(tr.labels[i] for i in range(len(tr)))) == list(range(12))
    sh = shuffled(tr, 0)
    assert sorted(sh.labels) == sorted(tr.labels) and sh.labels != tr.labels and sh.preloaded
    assert sh._pixels is tr._pixels  # the same decoded images, shared
    # conditions on the first seed only (standard: five seeds of the headline arms, three of the
    # rest): the same models, reused; each comparison pairs the seeds both of its arms ran
    few = ex.pretraining_effect(bench, fractions=(0.5, 1.0), width=4, schedules=(1, 2), image_size=64, seeds=(0, 1), device="cpu",
                                work_dir=tmp_path, pretrain_epochs=2, n_boot=50, arms=arms, corpus=corpora["without-sod"],
                                corpus_with_sod=corpora["with-sod"], schedule_check=True, condition_seeds=1)
    ff = few["final"]
    seed1 = set(zip(ff[ff.seed == 1]["init"], ff[ff.seed == 1]["fraction"], ff[ff.seed == 1]["schedule"]))
    assert seed1 == {(a, fr, 2) for a in ("scratch", "pretrained") for fr in (0.5, 1.0)} | {("scratch_matched", 1.0, 2)}
    assert len(ff[ff.seed == 0]) == len(f[f.seed == 0])
    fe = few["efficiency"].set_index(["fraction", "schedule"])
    assert fe["n_seeds"].to_dict() == {(0.5, 1): 1, (0.5, 2): 2, (1.0, 1): 1, (1.0, 2): 2}
    assert fe.loc[(1.0, 2), "max_f_gain"] == pytest.approx(e.loc[(1.0, 2), "max_f_gain"], abs=1e-12)
    assert fe.loc[(1.0, 1), "max_f_gain"] == pytest.approx(fin[("pretrained", 1.0, 1, 0)] - fin[("scratch", 1.0, 1, 0)], abs=1e-9)
    fc = few["controls"].set_index(["versus", "fraction", "schedule"])
    assert fc.loc[("random_labels", 1.0, 2), "n_seeds"] == 1 and fc.loc[("scratch_matched", 1.0, 2), "n_seeds"] == 2
    assert fc.loc[("random_labels", 1.0, 2), "max_f_gain"] == pytest.approx(
        fin[("pretrained", 1.0, 2, 0)] - fin[("random_labels", 1.0, 2, 0)], abs=1e-9)
    assert "pretraining_classifier_with_sod:seed1" not in set(few["classifiers"]["model"])
    with pytest.raises(ConfigError, match=r"condition_seeds must be at least 1 \(or None: every seed\), got 0"):
        ex.pretraining_effect(bench, seeds=(0, 1), condition_seeds=0, work_dir=tmp_path)


@pytest.mark.slow
def test_redundancy_study(bench, tmp_path):
    out = ex.redundancy_study(bench, widths=(4, 6), epochs=2, image_size=64, seeds=(0, 1), device="cpu", work_dir=tmp_path, n_images=8,
                              schedule_check=True, n_boot=100)  # the study model's twins (res2net-mini)
    w = out["width_sweep"]
    assert set(w["task"]) == {"sod", "classification"} and w["value"].between(0, 1).all()
    assert w[(w.task == "sod") & (w.seed == 0)]["params"].is_monotonic_increasing and sorted(w.seed.unique()) == [0, 1]
    layers = out["layers"]
    assert (layers["effective_rank"] <= layers["channels"] + 1e-9).all() and (layers["effective_rank"] >= 1).all()
    assert out["cka_twins"]["cka"].between(0, 1 + 1e-9).all()
    diag = out["cka_layers"].query("task == 'sod' and layer_a == layer_b")["cka"]
    np.testing.assert_allclose(diag, 1.0)
    assert out["pruning"]["frac_channels_below"].between(0, 1).all()
    c = out["classifiers"]
    assert list(zip(c["seed"], c["width"])) == [(0, 4), (0, 6), (1, 4), (1, 6)] and (c["chance"] == c["chance"].iloc[0]).all()
    np.testing.assert_allclose(c["accuracy"], w[w.task == "classification"]["value"])
    # floors: the centre-bias guess on the same test images for SOD, chance for classification
    from sodlab.baselines import baseline_metrics
    # scored under the study's protocol, as the models are
    centre = baseline_metrics(Path(bench) / "test", ["centre bias"], protocol="salmetric")["centre bias"]["max_f"]
    assert set(w[w.metric.isin(["max_f", "mae"])]["protocol"]) == {"salmetric"}
    heads = w[w.metric.isin(["max_f", "accuracy"])].set_index(["task", "width"])["floor"]
    np.testing.assert_allclose(heads.loc["sod"], centre)
    np.testing.assert_allclose(heads.loc["classification"], c["chance"].iloc[0])
    assert w[w.metric == "mae"]["floor"].isna().all()
    # the effect per seed from its own sweep: SOD's share of the widest lead over the floor kept at width 4, minus the classifier's
    scores = w[w.metric.isin(["max_f", "accuracy"])].set_index(["seed", "task", "width"])["value"]
    def kept(s: int, task: str, floor: float) -> float:  # undefined when the widest model is not above its floor
        lead = scores[(s, task, 6)] - floor
        return (scores[(s, task, 4)] - floor) / lead if lead > 0 else np.nan
    r = out["retention"].set_index("seed")
    for s in (0, 1):
        np.testing.assert_allclose(r.loc[s, "sod_kept"], kept(s, "sod", centre))
        np.testing.assert_allclose(r.loc[s, "classification_kept"], kept(s, "classification", 1 / 12))
    st = out["retention_stats"].iloc[0]
    np.testing.assert_allclose(st.effect, r["effect"].mean())  # NaN when tiny models do not beat a floor
    assert st.n_seeds == 2 and st.n_images == c["n_images"].iloc[0]
    f = verdicts.redundancy(out, mode="standard", seeds=[0, 1], **verdicts.training_evidence(out["training"]))
    text = "\n".join(f.lines)
    assert "Width 6 -> 4" in text and "the width-6 classifier top-1" in text and f"max-F {centre:.3f}" in text
    if np.isfinite(st.effect):  # the pooled interval; else the raw share stands in, without one (tests/test_verdicts.py has both)
        assert f.effect == pytest.approx(st.effect) and f.ci == (st.ci_low, st.ci_high) and "- Per seed, SOD's share kept" in text
    else:
        assert f.ci is None and f.reason.startswith("no interval: a seed's widest model is not above its floor")
    assert "the lowest of 2 seeds" in next(g for g in f.gates if g.name.startswith("classifier top-1")).note
    models = set(out["training"]["model"])
    assert {"sod width 4:seed0", "classification width 6:seed1", "sod width 6:seed0@check", "classification width 4:seed0@check"} <= models
    assert not any(m.endswith("seed1@check") for m in models)
    # CKA baselines at the largest width: the twins' row repeats cka_twins; a second seed is another model
    b = out["cka_baselines"]
    assert set(b.width) == {6} and set(b.comparison) == {"twins", "sod_trained_vs_init", "classification_trained_vs_init",
                                                         "sod_seed_vs_seed", "classification_seed_vs_seed"}
    assert b["cka"].between(0, 1 + 1e-9).all()
    tw = out["cka_twins"].query("width == 6").set_index("layer")["cka"]
    np.testing.assert_allclose(b[b.comparison == "twins"].set_index("layer")["cka"].loc[tw.index], tw)
    assert (b[b.comparison == "sod_seed_vs_seed"]["cka"] < 1 - 1e-6).any()
    assert "CKA, mean over layers at width 6: twins" in text and "SOD seed vs seed" in text
    assert all((tmp_path / f"res2net-mini_seed{s}" / f"w{w_}" / m).is_dir() for s in (0, 1) for w_ in (4, 6) for m in ("sod", "classifier"))
    assert (tmp_path / "res2net-mini_seed0" / "w6_check" / "sod").is_dir() and not (tmp_path / "res2net-mini_seed1" / "w6_check").exists()
    assert list(layers.layer.unique()) == ["backbone.maxpool", "backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4"]
    with pytest.raises(ConfigError, match=r"seeds must be distinct and at least one, got \[0, 0\]"):
        ex.redundancy_study(bench, widths=(4,), seeds=(0, 0), work_dir=tmp_path)


def test_bootstrap_retention_pools_seeds_and_images():
    from sodlab.studies.redundancy import bootstrap_retention

    rng = np.random.default_rng(0)
    mask = (rng.random((40, 8, 8)) > 0.5).astype(float)

    def curves(noise: float) -> np.ndarray:  # per-image SalMetric curves of a prediction this far from the mask
        return per_image_counts(np.clip(mask + noise * rng.standard_normal(mask.shape), 0, 1), mask)

    def seed_scores(narrow_acc: float) -> dict:
        return {"sod": {4: curves(0.45), 8: curves(0.05)},
                "classification": {4: np.arange(40) < narrow_acc * 40, 8: np.ones(40, dtype=bool)}}
    per_seed = [seed_scores(0.5), seed_scores(0.75)]
    table, stats = bootstrap_retention(per_seed, [3, 7], sod_floor=0.3, cls_floor=0.1, n_boot=200, seed=0)
    assert list(table.seed) == [3, 7]
    np.testing.assert_allclose(table.classification_kept, [(0.5 - 0.1) / 0.9, (0.75 - 0.1) / 0.9])
    np.testing.assert_allclose(table.effect, table.sod_kept - table.classification_kept)
    st = stats.iloc[0]
    assert st.effect == pytest.approx(table.effect.mean()) and st.ci_low < st.effect < st.ci_high and st.n_seeds == 2
    # the seeds' spread is part of the interval: one seed alone gives a narrower one
    _, one = bootstrap_retention(per_seed[:1], [3], sod_floor=0.3, cls_floor=0.1, n_boot=200, seed=0)
    assert one.ci_high.iloc[0] - one.ci_low.iloc[0] < st.ci_high - st.ci_low
    pd.testing.assert_frame_equal(bootstrap_retention(per_seed, [3, 7], 0.3, 0.1, n_boot=200, seed=0)[1], stats)  # seeded
    with pytest.raises(ConfigError, match=r"one score set per seed, got 2 for seeds \[3\]"):
        bootstrap_retention(per_seed, [3], 0.3, 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["res2net-mini", "csnet"])
def test_mechanisms_study(bench, tmp_path, family):
    first, last = ("stage3", "stage4") if family == "csnet" else ("backbone.layer3", "backbone.layer4")
    out = ex.mechanisms_study(bench, n_images=8, work_dir=tmp_path, layers=(first, last), twins=family, model_store=tmp_path / "store",
                              floor_head_epochs=2, **ONE_SEED)
    o = out["overlap"]
    assert set(o["method"]) == {"grad_x_act", "ablation"} and o["jaccard"].between(0, 1).all()
    assert (o["chance_jaccard"] > 0).all()
    np.testing.assert_allclose(o["excess_jaccard"], o["jaccard"] - o["chance_jaccard"])
    imp = out["importance"]
    assert set(imp["task"]) == {"sod", "classification"}
    channels = 16 if family == "csnet" else 128  # CSNet width 4's last stage; Res2Net-mini's: 8 x 4 planes x expansion 4
    assert len(imp[(imp.layer == last) & (imp.task == "sod") & (imp.method == "ablation")]) == 2 * channels  # two encoders
    assert set(imp.encoder) == set(o.encoder) == set(out["cross_ablation"].encoder) == {"classification_encoder", "sod_encoder"}
    # each encoder's two read-outs beside their floors: chance, the centre-bias guess on the test images
    from sodlab.baselines import baseline_metrics
    r = out["readouts"].set_index(["encoder", "task"])
    assert r.loc[("classification_encoder", "classification"), "model"] == "classifier_twin"
    assert r.loc[("sod_encoder", "classification"), "floor"] == pytest.approx(1 / 12)
    assert r.loc[("sod_encoder", "saliency"), "floor"] == pytest.approx(
        baseline_metrics(Path(bench) / "test", ["centre bias"], protocol="salmetric")["centre bias"]["max_f"])
    assert r.loc[("sod_encoder", "saliency"), "protocol"] == "salmetric" and r.loc[("sod_encoder", "classification"), "protocol"] == "top-1"
    assert r.loc[("sod_encoder", "saliency"), "value"] == pytest.approx(
        out["transfer"].set_index(["encoder", "task", "readout"]).loc[("saliency", "saliency", "own head"), "value"])
    assert r.loc[("classification_encoder", "saliency"), "value"] == pytest.approx(
        out["transfer"].set_index(["encoder", "task", "readout"]).loc[("classification", "saliency", "frozen + new head"), "value"])
    assert set(out["cross_ablation"]["removed"]) == {"sod_top", "classification_top", "random"}
    gc = out["gradcam"]
    assert gc["r_cam_gt"].dropna().between(-1, 1).all()
    c = out["classifiers"]
    assert list(c["model"]) == ["classifier_twin", "sod_encoder_probe"] and c["accuracy"].between(0, 1).all()
    assert (c["n_images"] == c["n_images"].iloc[0]).all() and c["n_images"].iloc[0] > 8  # the whole test split, not the probe images
    st = out["overlap_stats"].query("encoder == 'classification_encoder'").set_index("method")
    for meth in ("grad_x_act", "ablation"):
        r = st.loc[meth]
        # the effect is the overlap table's mean over layers; the interval and null come from per-image attributions
        assert r.excess_jaccard == pytest.approx(o[(o.method == meth) & (o.encoder == "classification_encoder")]["excess_jaccard"].mean())
        assert r.ci_low <= r.ci_high and r.ci_level == 0.9 and r.n_images == 8
        assert 0 < r.p_more_than_chance <= 1 and 0 < r.p_less_than_chance <= 1 and r.null_q05 <= r.null_q95
        assert -1 <= r.split_half_sod <= 1 and -1 <= r.split_half_classification <= 1
    f = verdicts.mechanisms(o, out["cross_ablation"], gc, classifiers=c, mode="standard", seeds=[0], overlap_stats=out["overlap_stats"],
                            readouts=out["readouts"])
    text = "\n".join(f.lines)
    assert f.outcome == "inconclusive" and first in text and last in text and "random channels" in text
    assert f.ci == (st.loc["ablation", "ci_low"], st.loc["ablation", "ci_high"]) and "two halves of the 8 images" in text
    # the transfer matrix: every encoder read out for every task; its two new saliency heads are gated models
    tm = out["transfer"]
    assert sorted(zip(tm.encoder, tm.task, tm.readout)) == sorted([
        ("saliency", "saliency", "own head"), ("classification", "saliency", "frozen + new head"),
        ("untrained", "saliency", "frozen + new head"), ("classification", "classification", "own head"),
        ("saliency", "classification", "frozen + new head"), ("classification", "classification", "frozen + new head"),
        ("untrained", "classification", "frozen + new head")])
    assert tm["value"].between(0, 1).all() and (tm["n_images"] == c["n_images"].iloc[0]).all()
    own = tm.query("readout == 'own head'").set_index("task")["value"]
    assert own["classification"] == pytest.approx(c.set_index("model").loc["classifier_twin", "accuracy"])
    assert {"saliency head on the classification encoder:seed0", "saliency head on the untrained encoder:seed0"} <= set(out["training"]["model"])
    # the floor's head trains its own epochs (floor_head_epochs), the classifier encoder's head_epochs
    last_epoch = out["training"].groupby("model")["epoch"].max()
    assert (last_epoch["saliency head on the untrained encoder:seed0"], last_epoch["saliency head on the classification encoder:seed0"]) == (2, 1)
    f = verdicts.mechanisms(o, out["cross_ablation"], gc, classifiers=c, mode="standard", seeds=[0], overlap_stats=out["overlap_stats"],
                            transfer=tm)
    assert any(line.startswith("- Transfer, saliency (max-F): the saliency model ") for line in f.lines)
    # the twins live in the shared store under their keys, where mechanisms_runs finds them
    runs = ex.mechanisms_runs(bench, twins=family, width=TINY["width"], epochs=1, image_size=64, seed=0, work_dir=tmp_path,
                              model_store=tmp_path / "store")
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == sorted(p.name for p in runs.values())
    assert all((p / "best.pt").is_file() for p in runs.values())


@pytest.mark.slow
def test_mechanisms_study_pools_seeds_and_checks_the_schedule(bench, tmp_path):
    """Two seeds: one pair of twins each, every table with a seed column, one pooled
    overlap_stats row per encoder and method whose effect is the mean of the seeds'; the first
    seed's models are trained again without the last quarter of their epochs (heads on the same
    frozen encoders), their curves named <model>:seed0@check, which the plateau gate reads."""
    kw = dict(n_images=8, work_dir=tmp_path, layers=("stage4",), twins="csnet", model_store=tmp_path / "store", width=4, epochs=2,
              image_size=64, device="cpu", n_boot=50, n_perm=50)
    out = ex.mechanisms_study(bench, seeds=(0, 1), schedule_check=True, transfer=False, **kw)
    for name in ("overlap", "importance", "cross_ablation", "readouts", "classifiers", "gradcam"):
        assert sorted(out[name]["seed"].unique()) == [0, 1], name
    o = out["overlap"]
    st = out["overlap_stats"].set_index(["encoder", "method"])
    assert len(st) == 4 and (st.n_seeds == 2).all() and (st.seeds == "0,1").all()
    per_seed = o[(o.encoder == "sod_encoder") & (o.method == "ablation")].groupby("seed")["excess_jaccard"].mean()
    assert st.loc[("sod_encoder", "ablation"), "excess_jaccard"] == pytest.approx(per_seed.mean())
    assert per_seed.loc[0] != per_seed.loc[1]  # another seed is another pair of twins
    models = set(out["training"]["model"])
    assert {"sod:seed0", "sod:seed1", "classifier_twin:seed1", "sod:seed0@check", "classifier_twin:seed0@check",
            "saliency head on the classification encoder:seed0@check"} <= models and "sod:seed1@check" not in models
    check = out["training"].query("model == 'sod:seed0@check'")
    assert list(check.epoch) == [1]  # 2 epochs less their last quarter
    # two seeds' twins and the first seed's checking twins in the store: six runs
    assert len(list((tmp_path / "store").iterdir())) == 6
    f = verdicts.mechanisms(o, out["cross_ablation"], out["gradcam"], classifiers=out["classifiers"], mode="standard", seeds=[0, 1],
                            overlap_stats=out["overlap_stats"], readouts=out["readouts"], encoder="sod_encoder",
                            **verdicts.training_evidence(out["training"]))
    text = "\n".join(f.lines)
    assert f.effect == pytest.approx(per_seed.mean()) and f"seed 0 {per_seed.loc[0]:+.3f}, seed 1 {per_seed.loc[1]:+.3f}" in text
    assert next(g for g in f.gates if g.name == "plateau").value is not None  # seeded replicates found, check runs not models
    assert "the lowest of 2 seeds" in next(g for g in f.gates if g.name.startswith("classifier top-1")).note
    # a second call finds every model trained: nothing new in the store, the same tables
    again = ex.mechanisms_study(bench, seeds=(0, 1), schedule_check=True, transfer=False, **kw)
    assert len(list((tmp_path / "store").iterdir())) == 6
    pd.testing.assert_frame_equal(again["overlap_stats"], out["overlap_stats"])
    with pytest.raises(ConfigError, match=r"seeds must be distinct and at least one, got \[0, 0\]"):
        ex.mechanisms_study(bench, seeds=(0, 0), **kw)


@pytest.mark.slow
def test_frozen_encoder_stays_as_it_was(bench, tmp_path):
    """A head trained on a frozen encoder changes the head only: encoder weights and BatchNorm
    statistics stay bit for bit (fit() calls model.train(), which must not reach the encoder);
    the untrained encoder gets its BatchNorm statistics from data, seeded and reproducible."""
    from sodlab.models.classifier import encoder_state
    from sodlab.studies.common import seeded, sod_model, train_or_resume
    from sodlab.studies.transfer import freeze_encoder, with_data_statistics

    train, val, _ = datasets(bench, 64)
    source = with_data_statistics(sod_model(4, 0), val, torch.device("cpu"))
    before = {k: v.clone() for k, v in encoder_state(source).items()}
    assert any(k.endswith("running_mean") and v.abs().sum() > 0 for k, v in before.items())  # statistics from data, not 0/1
    model = freeze_encoder(seeded(lambda: sod_model(4, 1), 1))
    model.load_state_dict(encoder_state(source), strict=False)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("csf.")}
    trained, _ = train_or_resume(model, train, val, tmp_path / "head", 1, 16, 0, torch.device("cpu"), fused=False)
    after = encoder_state(trained)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert any(not torch.equal(trained.state_dict()[k], v) for k, v in head_before.items() if v.is_floating_point())
    model.train()
    assert model.training and not model.stage2.training and not any(p.requires_grad for p in model.stage2.parameters())


def test_studies_validate_on_training_images_they_do_not_train_on(bench, tmp_path):
    train, val, test = datasets(bench, 64)
    assert len(train) + len(val) == 80 and len(test) == 40
    assert abs(len(val) - VAL_FRACTION * 80) <= len(set(train.dataset.labels))  # a tenth, rounded per category
    assert not set(train.indices) & set(val.indices)
    # stratified: every category with two or more training images has one in each part
    labels = np.asarray(train.dataset.labels)
    counts = np.bincount(labels)
    in_val = set(labels[val.indices])
    assert all(c in in_val for c in np.flatnonzero(counts >= 2))
    assert set(labels[train.indices]) == set(np.flatnonzero(counts >= 1))
    # validation images get the evaluation transform: the same tensor twice
    assert torch.equal(val[0]["image"], val[0]["image"])
    # drawn once per benchmark: the same split on every call, whatever the model seed
    assert datasets(bench, 64)[1].indices == val.indices
    # a benchmark with its own val/ folder uses it, and trains on all of train/
    import shutil
    own = tmp_path / "own"
    shutil.copytree(bench, own)
    shutil.copytree(bench / "test", own / "val")
    tr, va, _ = datasets(own, 64)
    assert len(tr) == 80 and len(va) == 40


def test_validation_rows_mark_the_epoch_a_run_returns():
    log = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [1.0, 0.8, 0.7, 0.6], "val_max_f": [0.50, 0.62, 0.62, 0.60]})
    rows = validation_rows("sod", log)
    # the trainer keeps the first of equal bests (a strict improvement is needed)
    assert [r["selected"] for r in rows] == [False, True, False, False]
    assert validation_rows("sod", log.drop(columns="val_max_f")) == []  # trained without validation
    cls = pd.DataFrame({"epoch": [1, 2], "val_top1": [0.3, 0.5]})
    t = training_table(rows + validation_rows("cls", cls))
    ev = verdicts.training_evidence(t)
    assert ev == {"validation_curves": {"sod": [0.50, 0.62, 0.62, 0.60], "cls": [0.3, 0.5]}, "selected_on_validation": True}
    # the gates read it: the cls curve gained 0.2 over its last quarter, so no plateau
    gates = {g.name: g for g in verdicts.training_gates(["sod"], **ev)}
    assert gates["plateau"].value == pytest.approx(0.2) and not gates["plateau"].passed
    assert gates["selection on validation"].passed
    t.loc[t.model == "cls", "selected"] = False
    assert verdicts.training_evidence(t)["selected_on_validation"] is False
    assert verdicts.training_evidence(None) == {"validation_curves": None, "selected_on_validation": None}


def test_train_config_is_the_quick_recipe_with_overrides():
    c = train_config(epochs=3, batch_size=4, seed=1)
    assert (c.optimizer, c.lr, c.schedule, c.image_size, c.epochs) == ("adam", 3e-3, "cosine", None, 3)
    assert train_config(epochs=3, image_size=64).image_size == 64


def test_task_scores_are_relative_to_each_tasks_widest_model():
    sweep = pd.DataFrame({"task": ["sod", "sod", "classification", "classification", "sod"],
                          "width": [4, 16, 4, 16, 16], "metric": ["max_f", "max_f", "accuracy", "accuracy", "mae"],
                          "value": [0.4, 0.8, 0.1, 0.5, 0.05]})
    out = ex.task_scores(sweep)
    assert len(out) == 4 and set(out.metric) == {"max_f", "accuracy"}
    np.testing.assert_allclose(out["relative"], [0.5, 1.0, 0.2, 1.0])


@pytest.mark.slow
def test_category_positive_control_finds_the_planted_gap(bench240, tmp_path):
    """Where only the category decides saliency, the category protocol must find a gap
    above the margin, and the verdict's gate says so; the main benchmark's verdict stays
    gated by it."""
    from sodlab.data import synthetic

    control = synthetic.generate(tmp_path / "control", n_train=480, n_test=120, size=64, seed=0, progress=False,
                                 saliency="category")
    out = ex.category_sensitivity(bench240, n_seen=6, n_boot=200, work_dir=tmp_path / "runs", loo=False, control_root=control,
                                  **{**TINY, "width": 8, "epochs": 4})
    g = out["gaps"].set_index(["task", "metric"])
    ctl = g.loc[("control_sod", "max_f")]
    assert ctl.low > verdicts.CATEGORY_MARGIN, ctl  # seen categories clearly better: the rule can refute
    s = out["summary"]
    assert set(s["task"]) == {"sod", "control_sod", "classifier", "sod_encoder"}
    assert set(out["training"]["model"]) == {"sod", "classifier", "control_sod"}
    gate = verdicts.category_control_gate(out["gaps"])
    assert gate.passed and gate.value == pytest.approx(ctl.low)
    assert not verdicts.category_control_gate(out["gaps"][out["gaps"].task != "control_sod"]).passed


@pytest.mark.slow
def test_category_replicates_pool_the_splits(bench240, tmp_path):
    """Two category splits (each its own seed): the pooled gap is the mean of the splits' gaps,
    its interval from splits and images; every split's models are gated; the leave-one-out
    matrix comes from the first split only."""
    out = ex.category_replicates(bench240, splits=(0, 1), n_seen=6, n_boot=50, work_dir=tmp_path, loo=True, loo_max=1, schedule_check=True,
                                 **{**{k: v for k, v in TINY.items() if k != "seed"}, "epochs": 2})
    per = out["splits_gaps"].set_index(["split", "task", "metric"])["gap"]
    g = out["gaps"].set_index(["task", "metric"])
    assert g.loc[("sod", "max_f"), "gap"] == pytest.approx((per[(0, "sod", "max_f")] + per[(1, "sod", "max_f")]) / 2)
    assert g.loc[("sod", "max_f"), "n_replicates"] == 2 and (out["gaps"]["level"] == 0.9).all()
    assert g.loc[("sod", "max_f"), "low"] <= g.loc[("sod", "max_f"), "gap"] <= g.loc[("sod", "max_f"), "high"]
    assert sorted(out["splits"].groupby("split")["seen"].sum()) == [6, 6]
    assert not out["splits"].pivot(index="split", columns="category", values="seen").duplicated().any()  # two different splits
    assert list(out["classifiers"]["model"]) == ["classifier:seed0", "classifier:seed1"]
    held = out["loo"].held_out.iloc[0]
    # every split's models by seed; the schedule check (without the last quarter) with the first split only
    assert set(out["training"]["model"]) == {"sod:seed0", "classifier:seed0", "sod:seed1", "classifier:seed1", f"without {held}:seed0",
                                             "sod:seed0@check", "classifier:seed0@check", f"without {held}:seed0@check"}
    t = out["training"]
    assert t.groupby("model")["epoch"].max().to_dict()["sod:seed0@check"] == 1 and t.query("model == 'sod:seed1'")["epoch"].max() == 2
    s = out["summary"].set_index(["task", "group", "metric"])
    ss = out["splits_summary"].set_index(["split", "task", "group", "metric"])["value"]
    assert s.loc[("sod", "seen", "max_f"), "value"] == pytest.approx((ss[(0, "sod", "seen", "max_f")] + ss[(1, "sod", "seen", "max_f")]) / 2)
    v = verdicts.category_sensitivity(out["summary"], out["gaps"], classifiers=out["classifiers"], mode="standard", seeds=[0, 1],
                                      **verdicts.training_evidence(out["training"]))
    assert "means over 2 category splits" in v.lines[0] and "classifier:seed1" in " ".join(g.name for g in v.gates)
    plateau = next(g for g in v.gates if g.name == "plateau")
    assert "last quarter of the schedule of" in plateau.note  # the first split's check speaks for both seeds
    with pytest.raises(ConfigError, match=r"category splits must be distinct seeds, at least one, got \[0, 0\]"):
        ex.category_replicates(bench240, splits=(0, 0), work_dir=tmp_path)


# ------------------------------------------------------------------------ 05's ImageNet arm (full mode)
@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    """A handful of 32 px images: CSF+Res2Net-50 trains one step an epoch on them."""
    from sodlab.data import synthetic

    root = tmp_path_factory.mktemp("tiny") / "b"
    synthetic.generate(root, n_train=24, n_test=4, size=32, seed=0, progress=False)  # 12 train, 12 val
    return root


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A stand-in for the authors' ``res2net50_v1b_26w_4s-*.pth``: a plain state dict of a
    randomly initialised Res2Net-50 v1b 26w x 4s with its 1000-class ``fc``, saved without BN
    batch counters as old PyTorch wrote it; the BN statistics are moved off their initial
    values so that a copy of them can be told from a fresh model's."""
    from sodlab.models.res2net import res2net50_v1b_26w_4s

    torch.manual_seed(123)
    sd = {k: v for k, v in res2net50_v1b_26w_4s().state_dict().items() if not k.endswith("num_batches_tracked")}
    for k in sd:
        if k.endswith(("running_mean", "running_var")):
            sd[k] = torch.rand_like(sd[k]) + 0.5
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 2048), torch.zeros(1000)
    path = tmp_path_factory.mktemp("imagenet") / "res2net50_v1b_26w_4s-fake.pth"
    torch.save(sd, path)
    return path, sd


@pytest.mark.slow
def test_pretraining_from_imagenet_weights(tiny_bench, imagenet_file, tmp_path, monkeypatch):
    """Full mode's arm: CSF+Res2Net-50 from the user's ImageNet file against the same model from
    scratch (same seed, same head), BatchNorm trained alike; no classifier, and a verdict that
    says the classifier gate cannot be judged without the user's ImageNet top-1."""
    from sodlab.studies import pretraining
    from sodlab.studies.cache import load_result, save_result
    from sodlab.studies.twins import encoder_digest

    path, sd = imagenet_file
    started = {}
    real = pretraining.train_checked

    def spy(spec, task, make, *args, **kw):  # what each arm starts from, then the study's own training
        started[args[6].split(" at ")[0]] = make()  # args: train, val, run_dir, epochs, seed, device, name
        return real(spec, task, make, *args, **kw)

    monkeypatch.setattr(pretraining, "train_checked", spy)
    out = ex.pretraining_effect(tiny_bench, fractions=(1.0,), schedules=(1,), image_size=32, seeds=(0,), device="cpu",
                                work_dir=tmp_path, n_boot=20, arms=("scratch", "pretrained"), imagenet_weights=path)
    pre, scratch = started["pretrained"], started["scratch"]
    ours = pre.backbone.state_dict()
    assert sd.keys() - ours.keys() == {"fc.weight", "fc.bias"}
    for k in ours.keys() & sd.keys():  # the pre-trained arm starts exactly on the file's weights and statistics
        assert torch.equal(ours[k], sd[k]), k
    fresh = scratch.backbone.state_dict()
    assert not torch.equal(fresh["conv1.0.weight"], sd["conv1.0.weight"]) and not torch.equal(fresh["bn1.running_var"], sd["bn1.running_var"])
    heads = [m.head.state_dict() for m in (pre, scratch)]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])  # one head, one seed: only the encoder differs
    # BatchNorm alike: not frozen in either arm, in train mode and learning when training
    for m in (pre, scratch):
        assert (m.backbone.config.freeze_bn, m.backbone.config.frozen_stages) == (False, -1)
        bns = [b for b in m.train().modules() if isinstance(b, nn.BatchNorm2d)]
        assert bns and all(b.training and b.weight.requires_grad for b in bns)
    assert type(pre).__name__ == type(scratch).__name__ == "CSFRes2Net"
    # the tables: two arms, no classifier trained, the weights recorded in their place
    f = out["final"]
    assert sorted(f["init"]) == ["pretrained", "scratch"] and f["max_f"].between(0, 1).all()
    assert out["controls"].empty and out["pretrain_log"].empty
    c = out["classifiers"]
    assert len(c) == 1 and c.iloc[0]["model"] == "imagenet_weights" and c.iloc[0]["weights"] == path.name
    assert c.iloc[0]["accuracy"] is None and c.iloc[0]["digest"] == encoder_digest(pre)
    assert sorted(out["training"]["model"].unique()) == ["pretrained at 100%:seed0", "scratch at 100%:seed0"]
    assert (tmp_path / f"res2net50_seed0_{recipes_digest(pretraining.IMAGENET_TWINS)}" / f"pretrained-{encoder_digest(pre)}_f1_e1" / "best.pt").is_file()
    # the verdict, also from the result cache's copy: the gate says what is missing, and nothing crashes
    save_result(tmp_path / "cache.json", out)
    for res in (out, load_result(tmp_path / "cache.json")):
        v = verdicts.pretraining(res["final"], res["efficiency"], classifiers=res["classifiers"], mode="standard", seeds=[0],
                                 controls=res["controls"], **verdicts.training_evidence(res["training"]))
        gate = next(g for g in v.gates if g.name.startswith("classifier top-1"))
        assert gate.name == f"classifier top-1: ImageNet weights {path.name}" and gate.value is None and not gate.passed
        assert v.outcome == "inconclusive" and gate.name in v.reason
        assert any("no ImageNet top-1 given (imagenet_top1)" in line for line in v.lines)
        assert any("ImageNet pre-training's compute cannot be matched" in line for line in v.lines)


def test_pretraining_imagenet_arm_refuses_what_it_cannot_run(tiny_bench, imagenet_file, tmp_path):
    from sodlab.studies.pretraining import imagenet_design

    path, _ = imagenet_file
    run = dict(work_dir=tmp_path, device="cpu", image_size=32)
    for arm in ("pretrained_with_sod", "random_labels", "scratch_matched"):
        with pytest.raises(ConfigError, match=rf"arms \['{arm}'\] cannot run with imagenet_weights"):
            ex.pretraining_effect(tiny_bench, arms=("scratch", "pretrained", arm), imagenet_weights=path, **run)
    with pytest.raises(ConfigError, match=r"corpus, pretrain_epochs: not with imagenet_weights"):
        ex.pretraining_effect(tiny_bench, corpus=tmp_path, pretrain_epochs=3, imagenet_weights=path, **run)
    with pytest.raises(ConfigError, match=r"twins 'res2net-mini': with imagenet_weights the saliency model is csf-res2net50"):
        ex.pretraining_effect(tiny_bench, twins="res2net-mini", imagenet_weights=path, **run)
    with pytest.raises(ConfigError, match=r"imagenet_top1 1.5: the file's ImageNet val top-1 as a share in \[0, 1\]"):
        ex.pretraining_effect(tiny_bench, imagenet_weights=path, imagenet_top1=1.5, **run)
    with pytest.raises(ConfigError, match=r"imagenet_top1 is the top-1 of the imagenet_weights file; it needs imagenet_weights"):
        ex.pretraining_effect(tiny_bench, imagenet_top1=0.8, **run)
    # 05's notebook: the ImageNet arm in full mode only, the file as a Path so that the cache key sees it change
    with pytest.raises(ConfigError, match=r"imagenet_weights is 05's full-mode arm .* got mode 'standard'"):
        imagenet_design("standard", str(path))
    assert imagenet_design("full", str(path), 0.8) == {"imagenet_weights": path, "imagenet_top1": 0.8, "arms": ("scratch", "pretrained")}


def test_pretraining_imagenet_weights_file_errors_name_the_file(tiny_bench, tmp_path):
    """A missing, garbage, foreign or code-carrying file fails before any training, naming the
    argument and the file; the file is never unpickled beyond tensors."""
    from sodlab.errors import CheckpointError, UnsafePickleError
    from sodlab.models.res2net_family import res2net_mini_config
    from sodlab.models.res2net import Res2Net

    missing = tmp_path / "missing.pth"
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    mini = tmp_path / "mini.pth"
    torch.save(Res2Net(res2net_mini_config()).state_dict(), mini)
    code = tmp_path / "code.pth"
    torch.save({"state_dict": {"conv1.0.weight": torch.zeros(1)}, "hook": Path("x")}, code)
    cases = [(missing, CheckpointError, "no such PyTorch checkpoint file"),
             (garbage, CheckpointError, "not a readable PyTorch checkpoint"),
             (mini, CheckpointError, "Res2Net ImageNet weights"),
             (code, UnsafePickleError, "refusing to load")]
    for path, error, what in cases:
        with pytest.raises(error, match=rf"^imagenet_weights: {path}.*{what}"):
            ex.pretraining_effect(tiny_bench, imagenet_weights=path, work_dir=tmp_path / "runs", device="cpu", image_size=32)
    assert not (tmp_path / "runs").exists()  # nothing trained
