import os

import pytest
import torch

import sodlab
from sodlab.checkpoint import load_weights
from sodlab.errors import CheckpointError


def _calibrated(model):
    # One training-mode pass gives BatchNorm real statistics, so eval outputs are finite.
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64))
    return model.eval()


def test_save_load_round_trip(tmp_path):
    model = _calibrated(sodlab.create_model("csnet", width=8, split=(0.75, 0.25)))
    path = sodlab.save(model, tmp_path / "m.pt")
    again = sodlab.load(path)
    assert again.config == model.config and again.registry_name == "csnet"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_input_size_round_trip_and_validation(tmp_path):
    model = _calibrated(sodlab.create_model("csnet", width=4))
    assert sodlab.load(sodlab.save(model, tmp_path / "plain.pt")).__dict__.get("input_size") is None
    model.input_size = 96
    assert sodlab.load(sodlab.save(model, tmp_path / "m.pt")).input_size == 96
    record = torch.load(tmp_path / "m.pt", weights_only=True)
    for bad in (100, "96", 0):
        record["input_size"] = bad
        torch.save(record, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=r"bad\.pt: input_size must be a positive multiple of 16"):
            sodlab.load(tmp_path / "bad.pt")


def test_save_replaces_atomically_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    sodlab.save(sodlab.create_model("csnet", width=8), path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        sodlab.save(sodlab.create_model("csnet", width=16), path)
    assert path.read_bytes() == before and len(os.listdir(tmp_path)) == 1


def test_load_refuses_other_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00\x01junk")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        sodlab.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="other.pt: not a sodlab checkpoint .an authors' checkpoint"):
        sodlab.load(other)
    with pytest.raises(CheckpointError, match="missing.pt: no such"):
        sodlab.load(tmp_path / "missing.pt")


def test_checkpoint_with_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'SENTINEL'}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "sodlab-checkpoint", "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        sodlab.load(path)
    assert not (tmp_path / "SENTINEL").exists()


def test_load_weights_accepts_the_authors_format(reference_dir):
    model = load_weights(reference_dir / "official/csnet-L-x1.pth.tar", "csnet-L-x1")
    assert sum(p.numel() for p in model.parameters()) == 93_647
    with pytest.raises(CheckpointError, match="needs --model"):
        load_weights(reference_dir / "official/csnet-L-x1.pth.tar")


def test_profile_counts():
    p = sodlab.profile(sodlab.create_model("csnet-L-x2"), 224)
    assert p["params"] == 140_894
    # Convolutions actually executed at 224x224, counted by torch.utils.flop_counter.
    assert p["macs"] == 496_355_104
