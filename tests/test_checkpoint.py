import os

import pytest
import torch

import sodlab
from sodlab.checkpoint import load_weights
from sodlab.errors import CheckpointError
from sodlab.models.official import load_official_csnet


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
    with pytest.raises(CheckpointError, match="evil.pt") as info:
        sodlab.load(path)
    assert not (tmp_path / "SENTINEL").exists()
    # never torch's advice to load with weights_only=False (that would run the code)
    assert str(info.value) == (f"{path}: refusing to load: the file holds objects sodlab will not unpickle "
                               "(posix.system), because unpickling them could run code")
    with pytest.raises(CheckpointError) as official:
        load_official_csnet(path, preset="csnet-L-x2")
    assert str(official.value) == str(info.value)
    assert not (tmp_path / "SENTINEL").exists()


@pytest.mark.parametrize("n_bytes", [0, 100])
def test_truncated_checkpoint_is_named_in_one_line(tmp_path, n_bytes):
    full = sodlab.save(_calibrated(sodlab.create_model("csnet", width=8)), tmp_path / "full.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(full.read_bytes()[:n_bytes])
    with pytest.raises(CheckpointError) as info:
        sodlab.load(cut)
    assert str(info.value) == f"{cut}: not a readable checkpoint: truncated or not a checkpoint ({n_bytes} bytes)"
    with pytest.raises(CheckpointError) as info:
        load_weights(cut)
    assert str(info.value) == f"{cut}: not a readable checkpoint: truncated or not a checkpoint ({n_bytes} bytes)"
    with pytest.raises(CheckpointError) as info:
        load_official_csnet(cut, preset="csnet-L-x2")
    assert str(info.value) == f"{cut}: not a readable PyTorch checkpoint: truncated or not a checkpoint ({n_bytes} bytes)"


def test_load_weights_refuses_non_finite_weights(tmp_path):
    model = _calibrated(sodlab.create_model("csnet", width=8))
    with torch.no_grad():
        model.stage2[0].conv.norms["0"].running_var[3] = float("inf")
    path = sodlab.save(model, tmp_path / "inf.pt")
    assert sodlab.load(path) is not None  # inspecting a diverged run stays possible
    with pytest.raises(CheckpointError) as info:
        load_weights(path)
    assert str(info.value) == (f"{path}: weight 'stage2.0.conv.norms.0.running_var' holds NaN or inf; "
                               "the checkpoint is unusable (a diverged training run?)")


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
