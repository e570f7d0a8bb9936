"""The authors' released checkpoints and reference outputs, reproduced."""
import json
import pickle

import numpy as np
import pytest
import torch

import sodlab
from sodlab.errors import CheckpointError, UnsafePickleError
from sodlab.models.official import csnet_from_official, csnet_to_official, load_official_csnet, read_layer_config

ATOL = 1e-4


@pytest.fixture(scope="module", params=["x1", "x2"])
def released(request, reference_dir):
    name = request.param
    model = load_official_csnet(
        reference_dir / "official" / f"csnet-L-{name}.pth.tar", reference_dir / "official" / f"csnet-L-{name}.bin"
    )
    return name, model


@pytest.mark.parametrize("inputs", ["random", "astronaut", "chelsea"])
def test_released_logits(released, reference_dir, inputs):
    name, model = released
    ref = np.load(reference_dir / f"csnet-L-{name}_{inputs}.npz")
    with torch.no_grad():
        y = model(torch.from_numpy(ref["input"]))
    assert y.shape == ref["logits"].shape
    assert (y - torch.from_numpy(ref["logits"])).abs().max().item() < ATOL


@pytest.mark.parametrize("photo", ["astronaut", "chelsea"])
def test_released_predict_maps(released, reference_dir, photo):
    name, model = released
    ref = np.load(reference_dir / f"csnet-L-{name}_{photo}.npz")
    sal = sodlab.predict(model, ref["image"])
    assert sal.shape == ref["saliency"].shape and sal.dtype == np.uint8
    assert np.abs(sal.astype(np.float64) - ref["saliency"]).mean() / 255.0 < 1e-3


def test_preset_replaces_the_bin(reference_dir):
    a = load_official_csnet(reference_dir / "official/csnet-L-x2.pth.tar", preset="csnet-L-x2")
    assert sum(p.numel() for p in a.parameters()) == 140_894
    assert a.config == sodlab.create_model("csnet-L-x2").config


def test_bin_and_json_configs_agree(reference_dir):
    for name in ("x1", "x2"):
        a = read_layer_config(reference_dir / f"official/csnet-L-{name}.bin")
        b = read_layer_config(reference_dir / f"csnet-L-{name}_layer_config.json")
        assert [np.asarray(x, dtype=object).tolist() if isinstance(x, np.ndarray) else x for x in a] is not None
        from sodlab.models.official import csnet_config_from_official

        assert csnet_config_from_official(a) == csnet_config_from_official(b)


def test_any_configuration_w20(reference_dir):
    cfg = json.loads((reference_dir / "csnet_w20_s50-50_config.json").read_text())
    state = dict(np.load(reference_dir / "csnet_w20_s50-50_state.npz"))
    io = np.load(reference_dir / "csnet_w20_s50-50_io.npz")
    model = csnet_from_official(state, cfg["layer_config"])
    assert sum(p.numel() for p in model.parameters()) == cfg["params"]
    with torch.no_grad():
        y = model(torch.from_numpy(io["input"]))
    assert y.shape == (2, 1, 160, 224)
    assert (y - torch.from_numpy(io["logits"])).abs().max().item() < ATOL


def test_round_trip_to_the_authors_format(reference_dir):
    model = load_official_csnet(reference_dir / "official/csnet-L-x1.pth.tar", preset="csnet-L-x1")
    sd, lc = csnet_to_official(model)
    official = torch.load(reference_dir / "official/csnet-L-x1.pth.tar", map_location="cpu", weights_only=True)["state_dict"]
    assert set(sd) == set(official)
    again = csnet_from_official(sd, lc)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_mismatched_pair_names_the_layer(reference_dir):
    with pytest.raises(CheckpointError, match=r"csnet-L-x1\.pth\.tar: .*layer 'stage0\.0\.conv1x1\.conv\.weight'.*do not belong together"):
        load_official_csnet(reference_dir / "official/csnet-L-x1.pth.tar", reference_dir / "official/csnet-L-x2.bin")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch SENTINEL",))


def test_malicious_bin_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps([_Evil()]))
    with pytest.raises(UnsafePickleError, match=r"evil\.bin: refusing to load: the pickle asks for (posix|os)\.system"):
        read_layer_config(evil)
    assert not (tmp_path / "SENTINEL").exists()


def test_corrupt_files_are_named(tmp_path):
    bad = tmp_path / "broken.pth.tar"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth.tar: not a readable PyTorch checkpoint"):
        load_official_csnet(bad, preset="csnet-L-x2")
    badbin = tmp_path / "broken.bin"
    badbin.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="broken.bin: not a readable layer configuration"):
        read_layer_config(badbin)
