"""evaluate / evaluate_folders and the `sodlab eval` and `sodlab data` commands on tiny
generated data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Subset

from sodlab.cli import main
from sodlab.data import SODFolder, synthetic, write_png_atomic
from sodlab.errors import DataError
from sodlab.evaluation import evaluate, evaluate_folders
from sodlab.inference import predict_batch
from sodlab.metrics import SODMetrics


class Brightness(nn.Module):
    """A stand-in saliency model: logits from a fixed 1x1 convolution of the input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-0.5)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("e") / "b", n_train=4, n_test=6, size=40, seed=2, progress=False)


def _by_hand(model, ds, indices, protocol, size):
    meter = SODMetrics(protocol)
    pairs = [ds.read(i) for i in indices]
    for sal, (_, mask) in zip(predict_batch(model, [p[0] for p in pairs], size=size, device="cpu"), pairs):
        meter.step(sal, mask)
    return meter.get_results()


@pytest.mark.parametrize("protocol", ["standard", "salmetric"])
def test_evaluate_matches_predict_then_score(bench, protocol):
    model = Brightness()
    ds = SODFolder(bench, split="test")
    res = evaluate(model, ds, protocol=protocol, batch_size=4, size=32, device="cpu", progress=False)
    expected = _by_hand(model, ds, range(len(ds)), protocol, 32)
    assert {k: res[k] for k in expected} == expected
    assert res["n_images"] == 6 and res["protocol"] == protocol
    assert list(res["curves"]["pr"].columns) == ["threshold", "precision", "recall"]
    # A path and a Subset work too.
    assert evaluate(model, bench / "test", protocol=protocol, size=32, device="cpu", progress=False)["max_f"] == res["max_f"]
    sub = evaluate(model, Subset(ds, [5, 1]), protocol=protocol, size=32, device="cpu", progress=False)
    assert sub["n_images"] == 2 and sub["mae"] == _by_hand(model, ds, [5, 1], protocol, 32)["mae"]


def test_evaluate_per_image_is_the_subsets_score(bench):
    """``per_image``: every item's SalMetric counts and MAE in dataset order, from which any
    subset's max-F and MAE are those `evaluate` gives that subset."""
    from sodlab.metrics import max_f_from_curves

    model, ds = Brightness(), SODFolder(bench, split="test")
    res = evaluate(model, ds, protocol="salmetric", size=32, device="cpu", progress=False, per_image=True)
    kept = res["per_image"]
    assert kept["curves"].shape == (6, 3, 256)
    assert max_f_from_curves(kept["curves"]) == pytest.approx(res["max_f"], rel=1e-12)
    sub = evaluate(model, Subset(ds, [5, 1]), protocol="salmetric", size=32, device="cpu", progress=False)
    assert max_f_from_curves(kept["curves"][[5, 1]]) == pytest.approx(sub["max_f"], rel=1e-12)
    assert kept["mae"][[5, 1]].mean() == pytest.approx(sub["mae"], rel=1e-12)
    with pytest.raises(DataError, match="salmetric protocol only"):
        evaluate(model, ds, protocol="standard", size=32, device="cpu", progress=False, per_image=True)


def test_evaluate_folders(bench, tmp_path):
    ds = SODFolder(bench, split="test")
    preds = tmp_path / "pred"
    rng = np.random.default_rng(0)
    maps = {}
    for stem in ds.stems:
        maps[stem] = rng.integers(0, 256, (40, 40), dtype=np.uint8)
        write_png_atomic(preds / f"{stem}.png", maps[stem])
    meter = SODMetrics("salmetric")
    for i, stem in enumerate(ds.stems):
        meter.step(maps[stem], ds.read(i)[1])
    res = evaluate_folders(preds, bench / "test", protocol="salmetric")
    assert {k: res[k] for k in ("mae", "max_f", "mean_f")} == {k: meter.get_results()[k] for k in ("mae", "max_f", "mean_f")}

    # A map of another size is resized, with a warning naming it.
    Image.fromarray(maps[ds.stems[0]]).resize((20, 20)).save(preds / f"{ds.stems[0]}.png")
    with pytest.warns(UserWarning, match=ds.stems[0]):
        evaluate_folders(preds, bench / "test" / "GT")

    # Missing and extra maps are named.
    (preds / f"{ds.stems[1]}.png").unlink()
    write_png_atomic(preds / "stray.png", np.zeros((40, 40), np.uint8))
    with pytest.raises(DataError) as info:
        evaluate_folders(preds, bench / "test")
    assert f"{ds.stems[1]}.png" in str(info.value) and "stray.png" in str(info.value)


def test_eval_cli_on_maps_json(bench, tmp_path, capsys):
    ds = SODFolder(bench, split="test")
    for i, stem in enumerate(ds.stems):
        write_png_atomic(tmp_path / "pred" / f"{stem}.png", ds.read(i)[1])  # perfect maps
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(bench / "test"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON object
    assert out["max_f"] == pytest.approx(1.0) and out["mae"] == 0.0 and out["n_images"] == 6
    assert {"mean_f", "s_measure", "max_e", "weighted_f"} <= set(out)

    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(bench / "test"), "--protocol", "salmetric"]) == 0
    text = capsys.readouterr().out
    assert "max F-measure" in text and "salmetric" in text

    # Bad input: a clean message and exit status 2.
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(bench / "train"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "without a prediction" in captured.err and "Traceback" not in captured.err


def test_eval_cli_with_weights(bench, tmp_path, capsys):
    import sodlab

    torch.manual_seed(0)
    model = sodlab.create_model("csnet", width=4)
    # BN statistics from one batch, as after training: an untrained CSNet overflows in eval mode
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.randn(4, 3, 32, 32))
    ckpt = sodlab.save(model.eval(), tmp_path / "m.pt")
    rc = main(["eval", "--weights", str(ckpt), "--data", str(bench), "--split", "test", "--size", "32",
               "--protocol", "salmetric", "--json", "--no-optimize", "--device", "cpu"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    expected = _by_hand(sodlab.load(ckpt), SODFolder(bench, split="test"), range(6), "salmetric", 32)
    assert out["max_f"] == pytest.approx(expected["max_f"]) and out["mae"] == pytest.approx(expected["mae"])
    assert out["size"] == 32

    # A checkpoint that records its training side is evaluated at that side without --size.
    model.input_size = 32
    sized = sodlab.save(model, tmp_path / "sized.pt")
    assert main(["eval", "--weights", str(sized), "--data", str(bench), "--split", "test",
                 "--protocol", "salmetric", "--json", "--no-optimize", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["size"] == 32 and out["max_f"] == pytest.approx(expected["max_f"])
    # the inference-optimised model keeps the side too
    assert main(["eval", "--weights", str(sized), "--data", str(bench), "--split", "test",
                 "--protocol", "salmetric", "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["size"] == 32 and out["max_f"] == pytest.approx(expected["max_f"], abs=1e-3)

    assert main(["eval", "--weights", str(ckpt), "--json"]) == 2
    assert "go together" in capsys.readouterr().err


def test_data_cli(tmp_path, capsys):
    out = tmp_path / "syn"
    args = ["data", "synth", "--out", str(out), "--train", "3", "--test", "2", "--size", "24",
            "--categories", "star,ring", "--no-progress"]
    assert main(args) == 0
    assert SODFolder(out, split="train").category_names == ["ring", "star"]
    assert json.loads((out / "synth.json").read_text())["categories"] == ["star", "ring"]
    capsys.readouterr()
    assert main(args) == 2  # never overwrites without --overwrite
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "check", str(out), "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 2
    # the benchmark root itself: every split checked
    assert main(["data", "check", str(out), "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert {k: v["items"] for k, v in both["splits"].items()} == {"test": 2, "train": 3}
    assert both["splits"]["train"]["root"] == str(out / "train")
    assert main(["data", "check", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{out / 'test'}: 2 image/mask pairs" in text and f"{out / 'train'}: 3 image/mask pairs" in text
    assert main(["data", "check", str(tmp_path)]) == 2  # no dataset and no split folders
    assert "not a dataset folder" in capsys.readouterr().err


def _copy_split(bench, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(bench / "test", data)
    return data


def test_eval_cli_bad_image_exit_2_before_the_model_loads(bench, tmp_path, capsys, monkeypatch):
    data = _copy_split(bench, tmp_path)
    victim = sorted((data / "images").iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:60])  # an interrupted copy
    monkeypatch.setattr("sodlab.checkpoint.load_weights", lambda *a, **k: pytest.fail("weights loaded before the data was checked"))
    assert main(["eval", "--weights", str(tmp_path / "any.pt"), "--data", str(data), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert f"{victim}: cannot read image" in captured.err and captured.err.count(victim.name) == 1


def test_eval_cli_nan_weights_named(bench, tmp_path, capsys):
    import sodlab

    model = sodlab.create_model("csnet", width=4).eval()
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    ckpt = sodlab.save(model, tmp_path / "nan.pt")
    assert main(["eval", "--weights", str(ckpt), "--data", str(bench), "--split", "test", "--size", "32", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"sodlab eval: error: {ckpt}: weight 'classifier.weight' holds NaN or inf; "
                            "the checkpoint is unusable (a diverged training run?)\n")


def test_eval_cli_non_finite_outputs_name_the_weights(bench, tmp_path, capsys):
    import sodlab

    ckpt = sodlab.save(sodlab.create_model("csnet", width=4).eval(), tmp_path / "untrained.pt")  # x100 gains overflow
    assert main(["eval", "--weights", str(ckpt), "--data", str(bench), "--split", "test", "--size", "32", "--json",
                 "--no-optimize", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sodlab eval: error: {ckpt}: the model produced non-finite logits") and err.count("\n") == 1
