"""Pruning: channel selection, exact surgery (the default) and approximate surgery, constant
folding, checkpoints and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import sodlab
from sodlab.cli import main as cli_main
from sodlab.errors import ConfigError
from sodlab.models.csnet import CSNet, CSNetConfig, csnet_config
from sodlab.models.registry import preset_config
from sodlab.prune import allocation_table, channel_scores, prune, select_channels, slim
from sodlab.prune.select import bn_chain as _chain
from sodlab.prune.select import csnet_blocks as _blocks
from sodlab.viz import plot_allocation

SIZE = 32  # smallest side with a 4x4 stage-4 map; keeps every test in float64 fast


@pytest.fixture(autouse=True)
def _one_thread():
    # Tensors here are tiny: a second OpenMP thread only adds synchronisation, which on a
    # loaded 2-core machine costs up to 100x.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def random_config(seed: int) -> CSNetConfig:
    """A random learned-looking configuration: uneven scales, some absent, uneven dilations."""
    rng = np.random.default_rng(seed)
    cfg = csnet_config(8)
    blocks, prev = [], [3]
    for b, (_, outs) in enumerate(cfg.blocks):
        if len(outs) == 1:
            out = [int(rng.integers(3, 9))]
        else:
            out = [int(rng.integers(0, 7)), int(rng.integers(0, 7))]
            if sum(out) < 2:
                out = [3, int(rng.integers(0, 3))]
        blocks.append([prev, out])
        prev = out
    dil = [[int(v) for v in rng.integers(0, 3, size=5)] for _ in range(3)]
    for d in dil:
        d[int(rng.integers(0, 5))] += 1
    return CSNetConfig(
        blocks=blocks,
        csf_in=[sum(blocks[e][1]) for e in cfg.stage_ends()[1:]],
        csf_mid=[int(v) for v in rng.integers(2, 6, size=3)],
        csf_dilation_channels=dil,
        csf_out=int(rng.integers(4, 10)),
    )


def randomize(model: CSNet, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g, dtype=m.weight.dtype) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g, dtype=m.weight.dtype) * 0.3
        elif isinstance(m, nn.PReLU):
            m.weight.data = torch.rand(m.weight.numel(), generator=g, dtype=m.weight.dtype) * 0.5


@torch.no_grad()
def calibrate(model: CSNet, seed: int) -> CSNet:
    """Running statistics from one batch, so that activations stay O(1) through 18 blocks
    (random statistics with the x100 gains overflow)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    g = torch.Generator().manual_seed(seed)
    model(torch.randn(4, 3, SIZE, SIZE, generator=g, dtype=next(model.parameters()).dtype))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model.eval()


def kill(bn: nn.BatchNorm2d, idx, beta: float = 0.0) -> None:
    bn.weight.data[idx] = 0.0
    bn.bias.data[idx] = beta


def make_model(config: CSNetConfig, seed: int) -> CSNet:
    torch.manual_seed(seed)
    model = CSNet(config).double()
    randomize(model, seed)
    return model


def kill_random(model: CSNet, seed: int, where: str = "chain", beta: float = 0.0) -> None:
    """Zero about a third of the channels everywhere; ``where``: the BatchNorms of an
    ILBlock channel that get gamma = 0 (``chain``: all three, ``dw2``, ``conv``)."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    for b, block in enumerate(_blocks(model)):
        for s, c in enumerate(cfg.blocks[b][1]):
            if c < 2:
                continue
            idx = torch.randperm(c, generator=g)[: c // 3]
            chain = _chain(block, s)
            bns = {"chain": chain, "dw2": chain[2:], "conv": chain[:1]}[where]
            for _, bn, _ in bns:
                kill(bn, idx, beta)


def max_diff(a: nn.Module, b: nn.Module, size: int = SIZE, seed: int = 1) -> float:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


# --- exactness -----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zeroed_channels_are_removed_exactly(seed):
    model = make_model(random_config(seed), seed)
    kill_random(model, seed, "chain")
    # a whole branch, a whole dilation group and part of the head go too
    cfg = model.config
    b = next(b for b, (_, o) in enumerate(cfg.blocks) if len(o) == 2 and o[1] > 0)
    for _, bn, _ in _chain(_blocks(model)[b], 1):
        kill(bn, slice(None))
    s = next(s for s, d in enumerate(cfg.csf_dilation_channels) if sum(1 for v in d if v) >= 2)
    k = next(k for k, v in enumerate(cfg.csf_dilation_channels[s]) if v)
    off = sum(cfg.csf_dilation_channels[s][:k])
    kill(model.csf.ms[str(s)].norm, slice(off, off + cfg.csf_dilation_channels[s][k]))
    kill(model.csf.fuse.norms["0"], [0])
    kill(model.csf.merge.norms["0"], [0, 2])
    calibrate(model, seed)

    small, report = prune(model, probe_size=None)
    assert report["fold_exact"], report["inexact_folds"]
    assert small.config.blocks[b][1][1] == 0
    assert small.config.csf_dilation_channels[s][k] == 0
    assert small.config.csf_out == cfg.csf_out - 2
    assert report["params_slim"] < report["params_full"]
    assert max_diff(model, small) < 1e-9


def test_channel_zeroed_only_at_the_end_of_its_block_is_exact():
    model = make_model(csnet_config(8), 3)
    kill_random(model, 3, "dw2")
    calibrate(model, 3)
    small, report = prune(model, probe_size=None)
    assert report["fold_exact"]
    assert report["channels_removed"] > 30
    assert max_diff(model, small) < 1e-9


def test_whole_csf_scale_and_stage1_branch_removed():
    model = make_model(csnet_config(8), 4)
    kill(model.csf.ms["2"].norm, slice(None))
    for b in range(1, 4):  # stage 1 loses its half-resolution scale
        for _, bn, _ in _chain(_blocks(model)[b], 1):
            kill(bn, slice(None))
    calibrate(model, 4)
    small, report = prune(model, probe_size=None)
    cfg = small.config
    assert [cfg.blocks[b][1][1] for b in range(1, 4)] == [0, 0, 0]
    assert cfg.blocks[4][0] == [4, 0]
    assert cfg.csf_mid[2] == 0 and cfg.csf_dilation_channels[2] == [0] * 5
    assert "2" not in small.csf.ms
    assert report["fold_exact"]
    assert max_diff(model, small) < 1e-9


def test_nonzero_constants_are_folded_exactly_through_1x1_layers():
    model = make_model(csnet_config(8), 5)
    cfg = model.config
    into_3x3 = {b - 1 for b in range(1, len(cfg.blocks)) if cfg.block_stride(b) == 2}
    g = torch.Generator().manual_seed(5)
    for b, block in enumerate(_blocks(model)):
        if b in into_3x3:
            continue
        for s, c in enumerate(cfg.blocks[b][1]):
            kill(block.dw2.norms[str(s)], [0, 2], beta=0.0)
            block.dw2.norms[str(s)].bias.data[[0, 2]] = torch.randn(2, generator=g, dtype=torch.float64)
    kill(model.csf.ms["1"].norm, [1, 3], beta=0.7)
    kill(model.csf.merge.norms["0"], [0, 5], beta=-0.4)
    calibrate(model, 5)
    unfolded = slim(model, fold=False, exact=False)
    small, report = prune(model, probe_size=None)
    assert report["fold_exact"], report["inexact_folds"]
    assert report["channels_removed"] >= 4 + 2 * sum(len(o) for b, (_, o) in enumerate(cfg.blocks) if b not in into_3x3)
    assert max_diff(model, unfolded) > 1e-3  # the constants matter...
    assert max_diff(model, small) < 1e-9  # ...and folding them is exact


def test_inexact_folds_are_reported_and_measured():
    model = make_model(csnet_config(8), 6)
    kill_random(model, 6, "conv")  # the depthwise 3x3 layers then see a constant: borders differ
    kill(model.csf.fuse.norms["1"], [0], beta=0.5)  # a constant into dilated 3x3 convolutions
    calibrate(model, 6)
    _, report = prune(model, probe_size=SIZE, exact=False)
    assert not report["fold_exact"]
    whys = {f["why"] for f in report["inexact_folds"]}
    assert "dilated 3x3 convolution with zero padding" in whys
    assert any(f["into"] == "csf.ms.1" for f in report["inexact_folds"])
    assert report["max_abs_logit_change"] > 0
    _, unfolded = prune(model, fold=False, probe_size=SIZE, exact=False)
    assert report["mean_abs_prob_change"] < unfolded["mean_abs_prob_change"]


def test_float32_model_stays_close():
    model = make_model(csnet_config(8), 7).float()
    kill_random(model, 7, "chain")
    calibrate(model, 7)
    small = slim(model)
    assert next(small.parameters()).dtype == torch.float32
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = torch.sigmoid(model(x)), torch.sigmoid(small(x))
    assert float((a - b).abs().max()) < 1e-4


# --- selection -----------------------------------------------------------------------
def test_selection_rule_and_structure():
    model = make_model(csnet_config(8), 8)
    blk = _blocks(model)[5]
    blk.dw1.norms["0"].weight.data[1] = 1e-6  # any BatchNorm of the chain decides
    scores = channel_scores(model)
    assert float(scores["block5.0"][1]) == pytest.approx(1e-6)
    plan = select_channels(model, threshold=1e-3)
    assert 1 not in plan.keep["block5.0"].tolist()
    assert plan.config.blocks[5][1][0] == model.config.blocks[5][1][0] - 1
    # learned configurations keep the preset's JSON structure
    preset = preset_config("csnet-L-x2").to_dict()
    learned = plan.config.to_dict()
    assert learned.keys() == preset.keys()
    assert [[len(i), len(o)] for i, o in learned["blocks"]] == [[len(i), len(o)] for i, o in preset["blocks"]]
    assert [len(d) for d in learned["csf_dilation_channels"]] == [len(d) for d in preset["csf_dilation_channels"]]


def test_a_block_never_disappears():
    model = make_model(csnet_config(8), 9)
    for s in ("0", "1"):
        kill(_blocks(model)[2].conv.norms[s], slice(None))
    for _, bn, _ in _chain(_blocks(model)[7], 0):  # a stage end
        kill(bn, slice(None))
    plan = select_channels(model)
    assert sum(plan.config.blocks[2][1]) == 1 and plan.config.blocks[7][1] == [1]
    assert len(plan.notes) == 2


def test_keep_fraction_budget():
    model = make_model(csnet_config(8), 10)
    full = sum(p.numel() for p in model.parameters())
    for frac in (0.6, 0.3):
        small = slim(model, threshold=None, keep_fraction=frac, exact=False)
        n = sum(p.numel() for p in small.parameters())
        assert 0.8 * frac * full < n <= frac * full
    with pytest.raises(ConfigError, match="keep_fraction"):
        select_channels(model, None, keep_fraction=1.5)
    # a budget removes channels whose scale is small but not zero: never exact
    with pytest.raises(ConfigError, match=r"^keep_fraction removes channels whose scale is small but not zero, which is never "
                                          r"exact; pass exact=False \(sodlab prune --approximate\)$"):
        slim(model, threshold=None, keep_fraction=0.5)
    with pytest.raises(ConfigError, match=r"^fold=False drops the constants"):
        slim(model, fold=False)


def test_pruning_is_idempotent():
    model = make_model(random_config(11), 11)
    kill_random(model, 11, "chain")
    calibrate(model, 11)
    once = slim(model)
    twice, report = prune(once, probe_size=None)
    assert twice.config == once.config
    assert report["channels_removed"] == 0
    assert max_diff(once, twice) == 0.0


def test_rejects_other_models():
    with pytest.raises(ConfigError, match="CSNet"):
        slim(nn.Conv2d(3, 3, 1))


# --- checkpoints, CLI, allocation ----------------------------------------------------------
def test_slim_model_round_trips_and_cli(tmp_path, capsys):
    model = make_model(csnet_config(8), 12).float()
    kill_random(model, 12, "chain")
    calibrate(model, 12)
    ckpt = sodlab.save(model, tmp_path / "full.pt")
    out, cfg_json = tmp_path / "slim.pt", tmp_path / "slim.json"
    assert cli_main(["prune", str(ckpt), "--out", str(out), "--config-out", str(cfg_json), "--probe-size", "32"]) == 0
    assert "parameters:" in capsys.readouterr().out
    loaded = sodlab.load(out)
    expected = slim(model)
    assert loaded.config == expected.config
    assert CSNetConfig.from_dict(json.loads(cfg_json.read_text())["config"]) == expected.config
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected.eval()(x))
    # never overwrites silently
    assert cli_main(["prune", str(ckpt), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["prune", str(ckpt), "--out", str(out), "--overwrite", "--keep-fraction", "0.5", "--json", "--probe-size", "32"]) == 2
    assert capsys.readouterr().err.strip() == ("sodlab prune: error: --keep-fraction removes channels whose output is not exactly "
                                               "a foldable constant; add --approximate")
    assert sodlab.load(out).config == expected.config  # the refused run left the earlier output alone
    assert cli_main(["prune", str(ckpt), "--out", str(out), "--overwrite", "--keep-fraction", "0.5", "--json", "--probe-size", "32",
                     "--approximate"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["param_fraction"] <= 0.5 and report["exact_mode"] is False
    assert cli_main(["prune", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.pt")]) == 2


def test_allocation_table_and_figure():
    cfg = preset_config("csnet-L-x2")
    df = allocation_table(cfg, reference=csnet_config(40))
    blocks = df[df.kind == "block"]
    assert len(blocks) == sum(len(o) for _, o in cfg.blocks)
    assert blocks[blocks.block == "stage2.3"].channels.tolist() == [51]
    assert df[df.kind == "dilation"].channels.sum() == sum(map(sum, cfg.csf_dilation_channels))
    assert df[df.kind == "csf_merge"].channels.item() == cfg.csf_out
    assert df[(df.kind == "dilation") & (df.scale == 2) & (df.dilation == 16)].channels.item() == 7
    assert df.kept.max() <= 1.0 + 1e-9
    fig = plot_allocation(cfg, reference=csnet_config(40), title="CSNet-L-x2")
    assert fig.axes[0].get_ylabel() == "output channels (count)"
    with pytest.raises(ConfigError, match="structure"):
        allocation_table(cfg, reference=csnet_config(20, split=(0.5, 0.3, 0.2)))


def test_curve_rows(monkeypatch):
    import sodlab.prune as P
    import sodlab.prune.curves

    seen = []
    protocols = []
    monkeypatch.setattr(sodlab.prune.curves, "_evaluate", lambda model, data, size, bs, dev, protocol: seen.append(model)
                        or protocols.append(protocol) or {"max_f": 0.5, "mae": 0.1})
    model = make_model(csnet_config(8), 13).float()
    kill_random(model, 13, "chain")
    calibrate(model, 13)
    df = P.curve(model, data=None, thresholds=[1e-20], keep_fractions=[1.0, 0.4], macs_size=32, progress=False)
    assert list(df.columns[:7]) == ["threshold", "keep_fraction", "params", "param_fraction", "macs", "max_f", "mae"]
    assert df.params.tolist() == [sum(p.numel() for p in m.parameters()) for m in seen]
    assert df.param_fraction.iloc[1] == 1.0 and df.param_fraction.iloc[2] <= 0.4
    assert df.param_fraction.iloc[0] < 1.0  # the zeroed channels go at the authors' threshold
    assert df.macs.iloc[2] < df.macs.iloc[1]
    assert df.max_f_finetuned.isna().all()
    assert (df.protocol == "standard").all() and protocols == ["standard"] * 3
    assert (P.curve(model, None, keep_fractions=[0.5], macs_size=32, progress=False, protocol="salmetric").protocol == "salmetric").all()
    assert protocols[-1] == "salmetric"
    with pytest.raises(ConfigError, match="train_data"):
        P.curve(model, None, keep_fractions=[0.5], finetune_epochs=1)
    with pytest.raises(ConfigError, match="unknown protocol 'pysod'"):
        P.curve(model, None, keep_fractions=[0.5], protocol="pysod")


def test_finetune_defaults_are_gentle_and_overridable(tmp_path, monkeypatch):
    import sodlab.prune.curves

    seen = {}

    def fake_fit(model, train, val, config, run_dir, **kw):
        seen["config"] = config
        sodlab.save(model, run_dir / "last.pt")

    import sodlab.prune as P

    monkeypatch.setattr(sodlab.prune.curves, "fit", fake_fit)
    torch.manual_seed(0)
    model = sodlab.create_model("csnet", width=4)
    P.finetune(model, [], 1, run_dir=tmp_path / "a")
    c = seen["config"]
    assert (c.optimizer, c.lr, c.weight_decay, c.schedule) == ("adam", 3e-4, 0.0, "cosine")
    P.finetune(model, [], 1, run_dir=tmp_path / "b", lr=1e-5, weight_decay=1e-4)
    assert (seen["config"].lr, seen["config"].weight_decay, seen["config"].schedule) == (1e-5, 1e-4, "cosine")


# --- exact by default ------------------------------------------------------------------
def test_exact_default_keeps_constants_that_would_meet_zero_padding():
    """A constant entering a depthwise 3x3 (gamma = 0 at the gOctConv BatchNorm only) or a
    stride-2 block's 3x3 convolution stays by default; ``exact=False`` removes it and reports
    the approximate fold."""
    model = make_model(csnet_config(8), 14)
    kill_random(model, 14, "conv")  # zero after the gOctConv BN, then BN(0) != 0 into dw2's 3x3
    cfg = model.config
    b = next(b for b in range(1, len(cfg.blocks)) if cfg.block_stride(b + 1) == 2)
    kill(_blocks(model)[b].dw2.norms["0"], [1], beta=0.3)  # a nonzero constant into a stride-2 3x3
    calibrate(model, 14)
    small, report = prune(model, probe_size=None)
    assert report["channels_removed"] == 0 and report["fold_exact"] and report["exact_mode"]
    assert small.config == model.config
    assert max_diff(model, small) < 1e-9
    loose, loose_report = prune(model, probe_size=SIZE, exact=False)
    assert loose_report["channels_removed"] > 30 and not loose_report["fold_exact"]
    assert {f["why"] for f in loose_report["inexact_folds"]} == {"3x3 convolution with zero padding", "constant not exact upstream"}
    assert loose_report["max_abs_logit_change"] > 1e-6


def test_exact_default_keeps_small_nonzero_gammas():
    """A gamma below the threshold but not zero still lets a little of the input through: by
    default its channels stay, while the other zeroed channels go."""
    model = make_model(csnet_config(8), 15)
    kill_random(model, 15, "chain")
    calibrate(model, 15)
    _blocks(model)[3].dw2.norms["0"].weight.data[:] = 1e-30
    small, report = prune(model, probe_size=None)
    assert small.config.blocks[3][1][0] == model.config.blocks[3][1][0]
    assert report["channels_removed"] > 30 and report["fold_exact"]
    assert max_diff(model, small) < 1e-9
    assert slim(model, exact=False).config.blocks[3][1][0] == 0  # every channel of the scale is below 1e-20


def test_width40_csnet_with_half_its_batchnorm_channels_zeroed():
    """Every BatchNorm of a width-40 CSNet loses a random half of its channels (gamma = beta
    = 0). Exact pruning removes every channel it can without changing the output: well under
    70% of the parameters remain, and the eval-mode output agrees to 1e-5 relative."""
    torch.manual_seed(40)
    model = sodlab.create_model("csnet", width=40)
    g = torch.Generator().manual_seed(40)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        idx = torch.randperm(bn.num_features, generator=g)[: bn.num_features // 2]
        kill(bn, idx)
    calibrate(model, 40)  # running statistics from a batch: non-trivial, activations O(1)
    assert all(float(bn.running_mean.abs().max()) > 0 and float((bn.running_var - 1).abs().max()) > 0.01 for bn in bns)
    small, report = prune(model, threshold=1e-20, probe_size=None)
    assert report["fold_exact"] and report["exact_mode"]
    assert report["param_fraction"] < 0.1, report["param_fraction"]  # measured: 38,522 of 788,631 (4.9%)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(41))
    with torch.no_grad():
        a, b = model.eval()(x), small.eval()(x)
    assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())


@pytest.fixture(scope="module", params=["x1", "x2"])
def released(request, reference_dir):
    from sodlab.models.official import load_official_csnet

    name = request.param
    official = reference_dir / "official"
    return name, load_official_csnet(official / f"csnet-L-{name}.pth.tar", official / f"csnet-L-{name}.bin").eval()


# --approximate on the released models; max_prob_change: largest change of the probability
# map on the authors' random 224 px reference input (csnet-L-x*_random.npz), measured
RELEASED_APPROXIMATE = {"x1": {"params_slim": 91255, "channels_removed": 9, "max_prob_change": 0.0167},
                        "x2": {"params_slim": 136361, "channels_removed": 14, "max_prob_change": 0.1021}}


def test_released_models_in_both_modes(released, reference_dir):
    """The authors' released models have gammas below 1e-20 but none exactly zero: the exact
    default removes nothing and reproduces the authors' logits; --approximate removes them
    and moves the output measurably (the README's pruning section quotes these numbers)."""
    name, model = released
    ref = np.load(reference_dir / f"csnet-L-{name}_random.npz")
    x, logits = torch.from_numpy(ref["input"]), torch.from_numpy(ref["logits"])
    small, report = prune(model, probe_size=None)
    assert report["channels_removed"] == 0 and report["params_slim"] == report["params_full"]
    with torch.no_grad():
        assert float((small(x) - logits).abs().max()) < 1e-4
    loose, loose_report = prune(model, probe_size=None, exact=False, warn=False)
    expected = RELEASED_APPROXIMATE[name]
    assert (loose_report["params_slim"], loose_report["channels_removed"]) == (expected["params_slim"], expected["channels_removed"])
    assert not loose_report["fold_exact"]
    with torch.no_grad():
        moved = (torch.sigmoid(loose(x)) - torch.sigmoid(logits)).abs()
    assert float(moved.max()) == pytest.approx(expected["max_prob_change"], abs=5e-4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_cli_refuses_non_finite_weights(tmp_path, capsys, bad):
    model = make_model(csnet_config(8), 16).float()
    calibrate(model, 16)
    if bad != bad:
        model.stage2[1].dw1.convs["0"].weight.data[0, 0, 1, 1] = bad
        key = "stage2.1.dw1.convs.0.weight"
    else:
        model.csf.merge.norms["0"].running_var.data[3] = bad
        key = "csf.merge.norms.0.running_var"
    ckpt = sodlab.save(model, tmp_path / "full.pt")
    out = tmp_path / "slim.pt"
    assert cli_main(["prune", str(ckpt), "--out", str(out), "--probe-size", "32"]) == 2
    err = capsys.readouterr().err
    # The checkpoint loader refuses it before pruning starts, with the same words every command uses.
    assert err == (
        f"sodlab prune: error: {ckpt}: weight {key!r} holds NaN or inf; "
        "the checkpoint is unusable (a diverged training run?)\n"
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["full.pt"]
    with pytest.raises(ConfigError, match=f"^pruning needs finite weights: {key} holds NaN or inf$"):
        prune(model)


def test_cli_checks_its_outputs_before_the_work(tmp_path, capsys):
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"mine")
    missing = tmp_path / "missing.pt"  # never read: the output is refused first
    assert cli_main(["prune", str(missing), "--out", str(taken)]) == 2
    assert capsys.readouterr().err == f"sodlab prune: error: {taken} already exists; pass --overwrite to replace it\n"
    assert taken.read_bytes() == b"mine"
    nowhere = tmp_path / "no" / "slim.pt"
    assert cli_main(["prune", str(missing), "--out", str(nowhere)]) == 2
    assert capsys.readouterr().err == f"sodlab prune: error: {nowhere.parent} does not exist (the folder for slim.pt)\n"
    assert cli_main(["prune", str(missing), "--out", str(tmp_path / "a.pt"), "--no-fold"]) == 2
    assert "--no-fold removes channels" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.pt"]
