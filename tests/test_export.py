"""sodlab.export and `sodlab export`: ONNX files checked with onnxruntime, TorchScript files
reloaded, and the command line's refusals (existing files, bad sizes, failed exports)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import sodlab
from sodlab.cli import main
from sodlab.export import ExportError, export_onnx, export_torchscript, onnx_session
from sodlab.models.csnet import CSNet

from test_fast import random_config

ATOL = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


# --- helpers ----------------------------------------------------------------------------
def randomise_gently(model: nn.Module, seed: int, calibrate_input: torch.Tensor) -> nn.Module:
    """Random BN affine and PReLU slopes, BN statistics calibrated on one batch and then
    perturbed a little: the logits are of order one and depend on every folded quantity.

    (`test_fast.randomise` perturbs the statistics more; in the 18-block CSNet-L-x2 that
    amplifies float32 rounding until the *plain* PyTorch model is 1e-4 away from its own
    float64 result, which would leave no room for a 1e-4 check of the exported file.)"""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.momentum = 1.0
        model.train()
        model(calibrate_input)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
                m.running_var.mul_(torch.rand(m.running_var.shape, generator=g) * 0.2 + 0.9)
                m.running_mean.add_(torch.randn(m.running_mean.shape, generator=g) * 0.05 * m.running_var.sqrt())
    return model.eval()


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    sess = onnx_session(path, threads=2)
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def plain(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(x).numpy()


def assert_close(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    assert float(ref.std()) > 0.05, "logits nearly constant: the check would prove little"
    err = float(np.abs(got - ref).max())
    assert err <= ATOL, f"max |difference| {err:.3g}"


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- models -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model() -> nn.Module:
    torch.manual_seed(0)
    # Two scales, absent (zero-channel) scales and single-scale blocks, 9,000 parameters.
    return randomise_gently(CSNet(random_config(1)), 1, randn(2, 3, 64, 64))


@pytest.fixture(scope="module")
def large_model() -> nn.Module:
    torch.manual_seed(1)
    return randomise_gently(sodlab.create_model("csnet-L-x2"), 2, randn(2, 3, 96, 96))


@pytest.fixture(scope="module")
def checkpoint(small_model, tmp_path_factory):
    return sodlab.save(small_model, tmp_path_factory.mktemp("ckpt") / "small.pt")


# --- ONNX -----------------------------------------------------------------------------------
def test_small_random_csnet_static_and_dynamic(small_model, tmp_path):
    path = export_onnx(small_model, tmp_path / "small.onnx", size=(48, 80))  # check=True: parity inside
    x = randn(1, 3, 48, 80, seed=3)
    assert_close(run_onnx(path, x), plain(small_model, x))
    with pytest.raises(Exception):  # a static file accepts its export size only
        run_onnx(path, randn(1, 3, 64, 64))

    dyn = export_onnx(small_model, tmp_path / "small_dyn.onnx", size=64, dynamic=True)
    for shape in [(1, 3, 64, 64), (3, 3, 32, 96), (2, 3, 80, 48), (1, 3, 16, 16)]:
        x = randn(*shape, seed=4)
        assert_close(run_onnx(dyn, x), plain(small_model, x))
    assert leftovers(tmp_path) == []


def test_csnet_L_x2_at_export_size(large_model, tmp_path):
    import onnx

    path = export_onnx(large_model, tmp_path / "x2.onnx", size=224, check=False)
    x = randn(1, 3, 224, 224, seed=5)
    assert_close(run_onnx(path, x), plain(large_model, x))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops  # the folded graph is exported


def test_csnet_L_x2_dynamic_at_other_sizes(large_model, tmp_path):
    path = export_onnx(large_model, tmp_path / "x2_dyn.onnx", size=224, dynamic=True, check=False)
    for shape in [(1, 3, 160, 224), (2, 3, 96, 96)]:
        x = randn(*shape, seed=6)
        assert_close(run_onnx(path, x), plain(large_model, x))


def test_export_refuses_existing_file_and_keeps_it(small_model, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"precious")
    with pytest.raises(ExportError, match="m.onnx already exists"):
        export_onnx(small_model, target, size=32)
    with pytest.raises(ExportError, match="m.onnx already exists"):
        export_torchscript(small_model, target, size=32)
    assert target.read_bytes() == b"precious" and leftovers(tmp_path) == []


# --- TorchScript ------------------------------------------------------------------------------
def test_torchscript_reloads_and_matches(small_model, tmp_path):
    model = small_model
    path = export_torchscript(model, tmp_path / "m.pt", size=64)  # check=True: reload parity inside
    loaded = torch.jit.load(str(path))
    for shape in [(1, 3, 64, 64), (2, 3, 96, 48)]:
        x = randn(*shape, seed=7)
        with torch.no_grad():
            got = loaded(x).numpy()
        assert_close(got, plain(model, x))
    assert leftovers(tmp_path) == []


# --- the command line -------------------------------------------------------------------------
def test_cli_writes_onnx_and_torchscript(checkpoint, tmp_path):
    out, ts = tmp_path / "out" / "m.onnx", tmp_path / "out" / "m.pt"
    rc = main(["export", "--weights", str(checkpoint), "--onnx", str(out), "--size", "64", "--dynamic", "--torchscript", str(ts)])
    assert rc == 0 and out.is_file() and ts.is_file()
    model = sodlab.load(checkpoint)
    x = randn(2, 3, 32, 48, seed=8)
    assert_close(run_onnx(out, x), plain(model, x))
    with torch.no_grad():
        assert_close(torch.jit.load(str(ts))(x).numpy(), plain(model, x))
    assert leftovers(out.parent) == []


def test_cli_refuses_to_overwrite(checkpoint, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    args = ["export", "--weights", str(checkpoint), "--onnx", str(out), "--size", "32"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err
    assert out.read_bytes() == b"precious"
    ts = tmp_path / "m.pt"
    ts.write_bytes(b"also precious")
    assert main(["export", "--weights", str(checkpoint), "--torchscript", str(ts), "--size", "32"]) == 2
    assert str(ts) in capsys.readouterr().err and ts.read_bytes() == b"also precious"
    assert main(args + ["--overwrite"]) == 0
    assert out.read_bytes() != b"precious" and run_onnx(out, randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("size", ["100", "0", "-16"])
def test_cli_rejects_size_not_a_multiple_of_16(checkpoint, tmp_path, capsys, size):
    out = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(checkpoint), "--onnx", str(out), f"--size={size}"]) == 2
    err = capsys.readouterr().err
    assert "--size must be a positive multiple of 16" in err and size in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_needs_an_output(checkpoint, capsys):
    assert main(["export", "--weights", str(checkpoint)]) == 2
    assert "--onnx" in capsys.readouterr().err


def test_cli_failed_export_leaves_no_partial_file(checkpoint, tmp_path, capsys, monkeypatch):
    def broken_export(module, args, f, *a, **kw):
        with open(f, "wb") as fh:
            fh.write(b"half an ONNX file")
        raise RuntimeError("exporter crashed")

    out = tmp_path / "m.onnx"
    with monkeypatch.context() as m:
        m.setattr(torch.onnx, "export", broken_export)
        assert main(["export", "--weights", str(checkpoint), "--onnx", str(out), "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert "ONNX export" in err and "exporter crashed" in err
    assert list(tmp_path.iterdir()) == []

    # A file that fails the onnxruntime check is not kept either, and an existing file that
    # --overwrite would have replaced survives the failure.
    out.write_bytes(b"old but good")
    with monkeypatch.context() as m:
        m.setattr("sodlab.export.onnx_parity", lambda *a, **kw: 1.0)
        assert main(["export", "--weights", str(checkpoint), "--onnx", str(out), "--size", "32", "--overwrite"]) == 2
    assert "disagrees with PyTorch" in capsys.readouterr().err
    assert out.read_bytes() == b"old but good" and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def _nan_copy(model: nn.Module) -> nn.Module:
    import copy

    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.classifier.bias.fill_(float("nan"))
    return bad


def test_cli_refuses_a_checkpoint_with_nan_weights(small_model, tmp_path, capsys):
    bad = sodlab.save(_nan_copy(small_model), tmp_path / "nan.pt")
    out = tmp_path / "out" / "m.onnx"
    assert main(["export", "--weights", str(bad), "--onnx", str(out), "--size", "32"]) == 2
    assert capsys.readouterr().err == (f"sodlab export: error: {bad}: weight 'classifier.bias' holds NaN or inf; "
                                       "the checkpoint is unusable (a diverged training run?)\n")
    assert not out.parent.exists()


def test_export_api_refuses_nan_weights_and_parity_never_hides_nan(small_model, tmp_path, monkeypatch):
    from sodlab.export import onnx_parity

    bad = _nan_copy(small_model)
    with pytest.raises(ExportError, match="CSNet weight 'classifier.bias' holds NaN or inf; refusing to export it"):
        export_onnx(bad, tmp_path / "m.onnx", size=32)
    with pytest.raises(ExportError, match="classifier.bias"):
        export_torchscript(bad, tmp_path / "m.pt", size=32)
    assert leftovers(tmp_path) == []
    # A file that computes NaN (here: a good file against a NaN model) is never "0 difference".
    good = export_onnx(small_model, tmp_path / "good.onnx", size=32)
    err = onnx_parity(good, bad, [(1, 32, 32)])
    assert err != err  # NaN
    monkeypatch.setattr("sodlab.export.onnx_parity", lambda *a, **kw: float("nan"))
    with pytest.raises(ExportError, match="ONNX model or PyTorch gives NaN or inf outputs; nothing was written"):
        export_onnx(small_model, tmp_path / "nan.onnx", size=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.onnx"]


@pytest.mark.parametrize("n_bytes", [0, 100])
def test_cli_truncated_checkpoint(checkpoint, tmp_path, capsys, n_bytes):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(checkpoint.read_bytes()[:n_bytes])
    assert main(["export", "--weights", str(cut), "--onnx", str(tmp_path / "m.onnx"), "--size", "32"]) == 2
    assert capsys.readouterr().err == (f"sodlab export: error: {cut}: not a readable checkpoint: truncated or not a "
                                       f"checkpoint ({n_bytes} bytes)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pt"]


def test_cli_output_under_a_file_or_a_folder_is_refused_before_work(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sodlab.checkpoint.load_weights", lambda *a, **k: pytest.fail("weights loaded before outputs were checked"))
    afile = tmp_path / "afile"
    afile.write_text("user data")
    assert main(["export", "--weights", str(checkpoint), "--onnx", str(afile / "m.onnx")]) == 2
    assert capsys.readouterr().err == f"sodlab export: error: --onnx {afile / 'm.onnx'}: {afile} is a file, not a folder\n"
    assert main(["export", "--weights", str(checkpoint), "--torchscript", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"sodlab export: error: --torchscript {tmp_path}: is a folder, not a file\n"
    assert afile.read_text() == "user data"


# --- the authors' released weights -------------------------------------------------------------
def test_cli_exports_the_authors_checkpoint(reference_dir, tmp_path):
    """The default (static, 224x224) export of their released weights reproduces the logits
    their own code computed."""
    out = tmp_path / "x2.onnx"
    weights = reference_dir / "official" / "csnet-L-x2.pth.tar"
    assert main(["export", "--weights", str(weights), "--model", "csnet-L-x2", "--onnx", str(out), "--no-check"]) == 0
    for name in ["csnet-L-x2_random", "csnet-L-x2_astronaut"]:
        data = np.load(reference_dir / f"{name}.npz")
        for x, ref in zip(data["input"], data["logits"]):  # batch 1: the static file's batch
            got = run_onnx(out, torch.from_numpy(x[None]))
            assert float(np.abs(got[0] - ref).max()) < ATOL, name


# --- predict and eval run the optimised model unless --no-optimize ---------------------------
@pytest.mark.parametrize("flag", [[], ["--no-optimize"]])
def test_predict_and_eval_optimise_by_default(checkpoint, tmp_path, monkeypatch, flag):
    from PIL import Image

    from sodlab.fast import TracedModel

    seen: list[nn.Module] = []

    def fake_predict_batch(model, images, **kw):
        seen.append(model)
        return [np.zeros(np.asarray(im).shape[:2], np.uint8) for im in images]

    def fake_evaluate(model, ds, **kw):
        seen.append(model)
        return {"n_images": len(ds)}

    monkeypatch.setattr("sodlab.inference.predict_batch", fake_predict_batch)
    monkeypatch.setattr("sodlab.evaluation.evaluate", fake_evaluate)
    data = tmp_path / "data"
    for sub in ("images", "GT"):
        (data / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(data / "images" / "a.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(data / "GT" / "a.png")
    assert main(["predict", str(data / "images"), "--weights", str(checkpoint), "--out", str(tmp_path / "o"), "--size", "32"] + flag) == 0
    assert main(["eval", "--weights", str(checkpoint), "--data", str(data), "--size", "32", "--json"] + flag) == 0
    expected = CSNet if flag else TracedModel
    assert [type(m) for m in seen] == [expected, expected]
