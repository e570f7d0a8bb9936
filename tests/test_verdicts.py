"""Verdicts of the study notebooks: each study's effect, interval, margin, rule and gates on
small constructed tables, with the outcome computed by hand."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sodlab.errors import ConfigError
from sodlab.studies import verdicts
from sodlab.studies.common import collapsed_share
from sodlab.studies.rules import VERDICT_KEYS

FLAT = [0.70, 0.79, 0.800, 0.801]  # gain over the last quarter 0.001: at a plateau
GOOD = dict(selected_on_validation=True)  # plus a flat validation curve per model, added by each test


def _classifiers(accuracy, classes=12, model="classifier_twin", **extra):
    chance = 1 / classes
    return pd.DataFrame([{"model": model, **extra, "classes": classes, "n_images": 300, "accuracy": accuracy, "chance": chance,
                          "above_chance": (accuracy - chance) / (1 - chance)}])


def _gates(v):
    return {name: g.passed for name, g in ((g.name, g) for g in v.gates)}


# ------------------------------------------------------------------------ 1: quickstart
def test_quickstart_has_no_interval_so_it_cannot_conclude():
    v = verdicts.quickstart({"max_f": 0.60, "mae": 0.1}, {"max_f": 0.5, "mae": 0.2}, source="m", params=1000, gmacs=0.01, size=64,
                            n_images=30, mode="standard", seeds=[0], validation_curves={"model": FLAT}, **GOOD)
    assert (v.study, v.rule, v.margin, v.effect, v.ci, v.mde) == ("01_quickstart", "greater", 0.05, pytest.approx(0.1), None, None)
    assert v.outcome == "inconclusive" and v.reason.startswith("no interval: the evaluation scores the test set as a whole")
    assert "Test split (30 images)" in v.lines[1] and "1,000 parameters" in v.lines[0] and "stronger guess (centre bias) +0.100" in v.lines[1]
    # without validation curves the training gates fail, never pass by default
    v = verdicts.quickstart({"max_f": 0.6, "mae": 0.1}, {"max_f": 0.5, "mae": 0.2}, source="m", params=1, gmacs=0.0, size=64,
                            n_images=3, mode="standard", seeds=[0])
    assert _gates(v) == {"plateau": False, "selection on validation": False}


def test_quickstart_measures_the_gain_over_the_stronger_model_free_guess():
    # the contrast baseline is the control: a model that only finds "odd colour near the middle" must not pass
    args = dict(source="m", params=1, gmacs=0.0, size=64, n_images=30, mode="standard", seeds=[0])
    v = verdicts.quickstart({"max_f": 0.60, "mae": 0.1}, {"max_f": 0.40, "mae": 0.2}, contrast={"max_f": 0.58, "mae": 0.15}, **args)
    assert v.effect == pytest.approx(0.02)
    assert "contrast + centre: max-F 0.580, MAE 0.1500" in v.lines[1] and "stronger guess (contrast + centre) +0.020" in v.lines[1]
    v = verdicts.quickstart({"max_f": 0.60, "mae": 0.1}, {"max_f": 0.40, "mae": 0.2}, contrast={"max_f": 0.30, "mae": 0.15}, **args)
    assert v.effect == pytest.approx(0.20) and "(centre bias) +0.200" in v.lines[1]


# ------------------------------------------------------------------------ 2: anatomy
def _anatomy_tables(kept_x1):
    models = pd.DataFrame({"model": ["csnet", "csnet-L-x1", "csnet-L-x2", "csf-res2net50"],
                           "params": [900_000, 100_000, 140_000, 36_000_000], "gmacs": [1.0, 0.2, 0.5, 8.0]})
    rows = []
    for b, k in enumerate(kept_x1):
        for model, n in (("csnet", 20), ("csnet-L-x1", round(20 * k)), ("csnet-L-x2", round(40 * k))):
            rows += [{"model": model, "block": f"b{b}", "scale": 0, "channels": n // 2},
                     {"model": model, "block": f"b{b}", "scale": 1, "channels": n - n // 2}]
    return models, pd.DataFrame(rows)


def test_anatomy_is_a_verdict_that_can_fail():
    # kept shares 0.9, 0.5, 0.1, 0.05: mean 0.3875, sample variance 0.471875 / 3, spread 0.3966 > 0.10
    v = verdicts.anatomy(*_anatomy_tables([0.9, 0.5, 0.1, 0.05]), mode="standard")
    assert v.effect == pytest.approx((0.471875 / 3) ** 0.5) and v.ci == (v.effect, v.effect) and v.mde == 0.0
    assert (v.outcome, v.rule, v.margin, v.seeds, v.gates) == ("supported", "greater", 0.10, (), ())
    assert "most in `b0`, fewest in `b3`" in v.lines[3] and "257x the parameters" in v.lines[1]
    # a uniform allocation (every block keeps half) has spread 0: below the margin, refuted
    v = verdicts.anatomy(*_anatomy_tables([0.5, 0.5, 0.5, 0.5]), mode="standard")
    assert (v.outcome, v.effect, v.reason) == ("refuted", 0.0, "the interval [+0.0000, +0.0000] lies below +0.1")
    assert verdicts.anatomy(*_anatomy_tables([0.9, 0.5, 0.1, 0.05]), mode="quick").reason == "quick mode"


# ------------------------------------------------------------------------ 3: pruning
def test_prunable_share_reads_the_curve_within_tolerance():
    curve = pd.DataFrame({"params": [1000, 500, 200, 100], "max_f": [0.80, 0.795, 0.781, 0.70]})
    share, full = verdicts.prunable_share(curve)
    assert share == pytest.approx(0.8) and full == 0.80
    assert verdicts.prunable_share(curve, tol=0.01)[0] == pytest.approx(0.5)
    assert verdicts.prunable_share(curve, reference=0.9) == (0.0, 0.9)


def _curves(dwd_f, l2_f, tuned=None):
    rows = []
    for reg, fs in (("dwd", dwd_f), ("l2", l2_f)):
        for i, (p, f) in enumerate(zip([1000, 500, 200, 100], fs)):
            ft = float("nan") if tuned is None else tuned[reg][i]
            rows.append({"regularizer": reg, "params": p, "max_f": f, "max_f_finetuned": ft})
    return pd.DataFrame(rows)


def _gammas(dwd_small, n=8):
    # per block, n channels: ``dwd_small`` of them near zero, the rest near 1; l2 keeps every channel
    rows = []
    for reg, small in (("dwd", dwd_small), ("l2", 0)):
        for block in ("b1", "b2"):
            for c in range(n):
                rows.append({"regularizer": reg, "epoch": 0, "block": block, "scale": 0, "channel": c, "abs_gamma": 1.0})
                rows.append({"regularizer": reg, "epoch": 4, "block": block, "scale": 0, "channel": c,
                             "abs_gamma": 1e-4 if c < small else 0.5 + 0.1 * c})
    return pd.DataFrame(rows)


def test_pruning_needs_the_gamma_collapse_regime():
    g = verdicts.gamma_collapse_gate(_gammas(4))
    assert (g.value, g.threshold, g.passed) == (0.5, 0.25, True)
    g = verdicts.gamma_collapse_gate(_gammas(1))  # 1 of 8 collapsed: the claim's regime was never reached
    assert g.value == 0.125 and not g.passed
    # the same measure as 06's "channels below" table; a block whose gammas are all zero collapsed whole
    zero = pd.DataFrame({"block": ["b1", "b1", "b2", "b2"], "abs_gamma": [0.0, 0.0, 1.0, 0.005]})
    assert collapsed_share(zero, 0.01) == 0.75
    # only the last epoch counts (at initialisation nothing has collapsed)
    assert verdicts.gamma_collapse_gate(_gammas(4)[lambda d: d.epoch == 0]).value == 0.0
    g = verdicts.gamma_collapse_gate(None)
    assert g.value is None and not g.passed and g.note == "no dwd gammas"
    v = verdicts.pruning(_curves([0.8] * 4, [0.8] * 4), mode="standard", seeds=[0], gammas=_gammas(1))
    assert _gates(v)["gamma collapse (regime reached)"] is False


def test_pruning_effect_is_dwd_at_20_percent_minus_unpruned():
    v = verdicts.pruning(_curves([0.8, 0.8, 0.79, 0.7], [0.8, 0.7, 0.6, 0.5]), mode="standard", seeds=[0])
    assert (v.rule, v.margin, v.ci, v.outcome) == ("equivalent", 0.02, None, "inconclusive")
    assert v.effect == pytest.approx(0.79 - 0.8) and v.quantity.startswith("DWD max-F at 20% of the parameters without fine-tuning")
    assert v.reason == "no interval: one score per pruning point (one seed, no per-image scores)"
    assert v.lines[0] == "- dwd: unpruned max-F 0.800; up to 80% of the parameters removed within 0.02 max-F without fine-tuning"
    assert ("- nearest 18% of the parameters kept, without fine-tuning: dwd 20% kept, max-F 0.790 (-0.010 from unpruned); "
            "l2 20% kept, max-F 0.600 (-0.200 from unpruned)") in v.lines


def _pruning_stats(effect, low, high, kept=(1.0, 0.5, 0.2)):
    return pd.DataFrame([{"regularizer": "dwd", "keep_fraction": k, "kept": k, "metric": "max_f", "effect": e, "ci_low": lo,
                          "ci_high": hi, "ci_level": 0.9, "n_seeds": 3, "seeds": "0,1,2", "n_images": 300, "n_boot": 1000}
                         for k, e, lo, hi in zip(kept, (0.0, -0.05, effect), (0.0, -0.08, low), (0.0, -0.02, high))])


def test_pruning_decides_from_the_pooled_interval_at_the_target_point():
    """With the replicates' stats the effect and interval are those of DWD's point nearest the
    target (20% by default): inside the band supports (in quick mode: never), entirely outside
    refutes; the other points are descriptive."""
    curves = _curves([0.8, 0.8, 0.79, 0.7], [0.8, 0.7, 0.6, 0.5])
    gates = dict(gammas=_gammas(4), validation_curves={"dwd": [0.7, 0.8, 0.8, 0.8], "l2": [0.7, 0.8, 0.8, 0.8]},
                 selected_on_validation=True)
    ok = verdicts.pruning(curves.assign(finetune_share=0.25), mode="standard", seeds=[0, 1, 2], stats=_pruning_stats(-0.004, -0.012, 0.006), **gates)
    assert (ok.effect, ok.ci, ok.outcome) == (-0.004, (-0.012, 0.006), "supported")
    assert ok.quantity.startswith("DWD max-F at 20% of the parameters without fine-tuning") and ok.quantity.endswith("mean over 3 seeds")
    assert ("- DWD pruned to keep 20% (20% of the parameters, mean over 3 seeds): -0.004 max-F from unpruned "
            "(90% interval -0.012 .. +0.006 over seeds and 300 test images; salmetric protocol, as the curve's scores "
            "above).") in ok.lines
    assert any(line.startswith("- Every kept fraction, pruned minus unpruned") and "50% kept -0.050" in line for line in ok.lines)
    bad = verdicts.pruning(curves.assign(finetune_share=0.25), mode="standard", seeds=[0, 1, 2], stats=_pruning_stats(-0.06, -0.09, -0.03), **gates)
    assert bad.outcome == "refuted"
    quick = verdicts.pruning(curves.assign(finetune_share=0.25), mode="quick", seeds=[0, 1], stats=_pruning_stats(-0.004, -0.012, 0.006), **gates)
    assert (quick.outcome, quick.reason) == ("inconclusive", "quick mode")
    # every seed must reach the gamma-collapse regime: the lowest seed's share is the gate's value
    two = pd.concat([_gammas(4).assign(seed=0), _gammas(1).assign(seed=1)])
    g = verdicts.gamma_collapse_gate(two)
    assert g.value == 0.125 and not g.passed and g.note.endswith("the lowest of 2 seeds (seed 1)")
    # the unpruned models' seed-to-seed spread beside the tolerance
    final = pd.DataFrame({"regularizer": ["dwd"] * 3, "seed": [0, 1, 2], "max_f": [0.80, 0.83, 0.81]})
    v = verdicts.pruning(curves, mode="standard", seeds=[0, 1, 2], final=final)
    assert "- Unpruned DWD max-F by seed: seed 0 0.800, seed 1 0.830, seed 2 0.810 (spread 0.030, against the 0.02 tolerance)." in v.lines


def test_pruning_target_is_the_papers_share_for_the_model_size():
    """The released learned models set the targets: x1 (width 20) keeps 93,647 of 210,985
    parameters, x2 (width 40) 140,894 of 788,631; a width-16 model is held to x1's share."""
    from sodlab.models.registry import create_model

    def n(m):
        return sum(p.numel() for p in m.parameters())
    assert verdicts.PAPER_TARGETS[20] == n(create_model("csnet-L-x1")) / n(create_model("csnet", width=20))
    assert verdicts.PAPER_TARGETS[40] == n(create_model("csnet-L-x2")) / n(create_model("csnet", width=40))
    assert verdicts.pruning_target_kept(16) == verdicts.pruning_target_kept(20) == pytest.approx(0.4439, abs=1e-4)
    assert verdicts.pruning_target_kept(48) == verdicts.pruning_target_kept(None) == pytest.approx(0.1787, abs=1e-4)
    assert verdicts.pruning_target_kept(20) > verdicts.pruning_target_kept(28) > verdicts.pruning_target_kept(40)
    # at width 16 the verdict reads the curve's point nearest 44% (here 50%), not 20%
    v = verdicts.pruning(_curves([0.8, 0.8, 0.79, 0.7], [0.8, 0.7, 0.6, 0.5]), mode="standard", seeds=[0], width=16)
    assert v.effect == pytest.approx(0.0) and v.quantity.startswith("DWD max-F at 50% of the parameters")
    assert any(line.startswith("- nearest 44% of the parameters kept (the paper's share for a width-16 CSNet), without fine-tuning: "
                               "dwd 50% kept") for line in v.lines)


def test_pruning_verdict_reads_fine_tuned_curves_against_the_original_model():
    tuned = {"dwd": [0.82, 0.75, 0.7, 0.6], "l2": [0.81, 0.80, 0.79, 0.70]}
    v = verdicts.pruning(_curves([0.8, 0.8, 0.79, 0.7], [0.8, 0.7, 0.6, 0.5], tuned), mode="standard", seeds=[0])
    assert v.effect == pytest.approx(0.7 - 0.8) and "after fine-tuning" in v.quantity
    assert "- after fine-tuning, removable within the same tolerance of the unpruned model: dwd 0%; l2 80%" in v.lines
    assert "- the unpruned model fine-tuned the same way: dwd 0.800 -> 0.820; l2 0.800 -> 0.810" in v.lines
    with pytest.raises(ValueError, match="no 'dwd' curve among regularizers"):
        verdicts.pruning(_curves([0.8] * 4, [0.8] * 4).replace({"dwd": "l1"}), mode="standard", seeds=[0])


def test_pruning_needs_fine_tuning_of_a_fifth_of_training():
    tuned = {"dwd": [0.82, 0.81, 0.8, 0.79], "l2": [0.81, 0.80, 0.79, 0.70]}
    curves = _curves([0.8, 0.8, 0.79, 0.7], [0.8, 0.7, 0.6, 0.5], tuned)
    g = verdicts.finetune_gate(curves)
    assert g.value is None and not g.passed and g.note == "the curves do not record their fine-tuning share"
    assert verdicts.finetune_gate(curves.assign(finetune_share=0.25)).passed
    token = verdicts.finetune_gate(curves.assign(finetune_share=400 / 7200))  # 400 images once after 4 epochs of 1,800
    assert token.value == pytest.approx(0.0556, abs=1e-4) and token.threshold == 0.2 and not token.passed
    v = verdicts.pruning(curves.assign(finetune_share=0.0), mode="standard", seeds=[0], gammas=_gammas(4))
    assert _gates(v)["fine-tuning at least a fifth of training"] is False and _gates(v)["gamma collapse (regime reached)"] is True


# ------------------------------------------------------------------------ 4: categories
def _category_tables(gap, low, high, rel=0.0, cls_low=0.1, level=0.9, control_low=0.15):
    summary = pd.DataFrame([
        {"task": t, "group": g, "metric": m, "value": v}
        for t, m in (("sod", "max_f"), ("sod", "mae"), ("classifier", "ncm_accuracy_vs_chance"), ("sod_encoder", "ncm_accuracy_vs_chance"))
        for g, v in (("seen", 0.8), ("unseen", 0.8 - gap))])
    gaps = pd.DataFrame([
        {"task": "sod", "metric": "max_f", "gap": gap, "low": low, "high": high, "relative_gap": rel},
        {"task": "sod", "metric": "mae", "gap": -0.001, "low": -0.01, "high": 0.01, "relative_gap": -0.01},
        {"task": "classifier", "metric": "ncm_accuracy_vs_chance", "gap": 0.3, "low": cls_low, "high": 0.5, "relative_gap": 0.4},
        {"task": "sod_encoder", "metric": "ncm_accuracy_vs_chance", "gap": 0.0, "low": -0.1, "high": 0.1, "relative_gap": 0.0},
    ] + ([] if control_low is None else [
        {"task": "control_sod", "metric": "max_f", "gap": control_low + 0.05, "low": control_low, "high": control_low + 0.1, "relative_gap": 0.3},
    ])).assign(level=level)
    return summary, gaps


def _category(gap, low, high, accuracy=0.95, control_low=0.15, **kw):
    kw = {"validation_curves": {"sod": FLAT, "classifier": FLAT, "control_sod": FLAT}, **GOOD, **kw}
    return verdicts.category_sensitivity(*_category_tables(gap, low, high, control_low=control_low), classifiers=_classifiers(accuracy, model="classifier"),
                                         mode=kw.pop("mode", "standard"), seeds=[0], **kw)


def test_category_verdict_is_equivalence_within_002():
    v = _category(0.005, -0.01, 0.015)
    assert (v.outcome, v.effect, v.ci, v.ci_level, v.margin, v.rule) == ("supported", 0.005, (-0.01, 0.015), 0.9, 0.02, "equivalent")
    assert v.reason == "the interval [-0.0100, +0.0150] lies inside [-0.02, +0.02]"
    assert v.lines[0].startswith("- SOD max-F: seen 0.800, unseen 0.795; gap +0.005 (90% CI -0.010 .. +0.015")
    assert _category(0.04, 0.03, 0.05).outcome == "refuted"
    # the old verdict read an interval covering zero as support; now a wide one decides nothing
    wide = _category(0.01, -0.03, 0.05)
    assert (wide.outcome, wide.reason) == ("inconclusive", "the interval [-0.0300, +0.0500] lies neither inside nor entirely "
                                                            "outside [-0.02, +0.02]")


def test_category_gates_the_classifier_and_the_training():
    v = _category(0.005, -0.01, 0.015, accuracy=0.24)
    assert (v.outcome, v.reason) == ("inconclusive", "failed gate: classifier top-1: classifier")
    assert "- Classifiers on held-out test images: the classification twin top-1 0.240 on 12 classes (chance 0.083)." in v.lines
    v = verdicts.category_sensitivity(*_category_tables(0.005, -0.01, 0.015), classifiers=None, mode="standard", seeds=[0])
    assert v.reason == "failed gates: classifier top-1: classifier; plateau; selection on validation"
    assert v.to_dict()["gates"]["plateau"] == {"value": None, "threshold": 0.005, "passed": False}
    drops = pd.DataFrame({"category": ["a", "b"], "drop": [0.01, 0.05]})
    v = verdicts.category_sensitivity(*_category_tables(0.01, -0.01, 0.03), drops, mode="quick", seeds=[0])
    assert "largest +0.050, `b`" in v.lines[-1] and v.reason == "quick mode"
    with pytest.raises(ValueError, match="gaps has no 'level' column"):
        verdicts.category_sensitivity(_category_tables(0, 0, 0)[0], _category_tables(0, 0, 0)[1].drop(columns="level"),
                                      mode="standard", seeds=[0])
    # the positive control gates the verdict: not run, or a planted gap it cannot tell from the margin
    ctl = "the protocol finds a planted category gap (positive control)"
    assert _category(0.005, -0.01, 0.015, control_low=None).reason == f"failed gate: {ctl}"
    assert _category(0.04, 0.03, 0.05, control_low=0.02).reason == f"failed gate: {ctl}"  # needs > margin, strictly
    v = _category(0.04, 0.03, 0.05, control_low=0.021)
    assert v.outcome == "refuted" and v.to_dict()["gates"][ctl] == {"value": 0.021, "threshold": 0.02, "passed": True}
    assert any(g.describe().startswith(f"{ctl}: 0.021, needs > 0.02: passed (seen minus unseen max-F where the category decides "
                                       "saliency: +0.071 (CI +0.021 .. +0.121))") for g in v.gates)
    # the control's model is held to the plateau gate like the others
    assert _category(0.005, -0.01, 0.015, validation_curves={"sod": FLAT, "classifier": FLAT}).reason == "failed gate: plateau"


# ------------------------------------------------------------------------ 5: pre-training
def _pretraining_tables(gain, low, high, small_gain=0.0):
    final = pd.DataFrame([{"init": i, "fraction": fr, "max_f": 0.7 + (gain if i == "pretrained" else 0)}
                          for i in ("scratch", "pretrained") for fr in (0.1, 1.0)])
    eff = pd.DataFrame([{"fraction": 1.0, "n_train": 2000, "max_f_gain": gain, "low": low, "high": high, "mae_gain": 0.0, "level": 0.9},
                        {"fraction": 0.1, "n_train": 200, "max_f_gain": small_gain, "low": -1, "high": 1, "mae_gain": 0.0, "level": 0.9}])
    return final, eff


def test_pretraining_reads_the_full_training_set():
    curves = {m: FLAT for m in ("pretraining_classifier", "scratch at 10%", "pretrained at 10%", "scratch at 100%", "pretrained at 100%")}
    v = verdicts.pretraining(*_pretraining_tables(0.05, 0.03, 0.07), classifiers=_classifiers(0.93, model="pretraining_classifier"),
                             mode="standard", seeds=[0], validation_curves=curves, **GOOD)
    assert (v.outcome, v.effect, v.ci, v.margin) == ("refuted", 0.05, (0.03, 0.07), 0.02)
    assert v.reason == "the interval [+0.0300, +0.0700] lies entirely outside [-0.02, +0.02]"
    assert v.lines[0].startswith("- 10% of the training set (200 images)") and "(90% CI +0.030 .. +0.070)" in v.lines[1]
    v = verdicts.pretraining(*_pretraining_tables(0.0, -0.015, 0.01), classifiers=_classifiers(0.93, model="pretraining_classifier"),
                             mode="standard", seeds=[0], validation_curves=curves, **GOOD)
    assert v.outcome == "supported"
    v = verdicts.pretraining(*_pretraining_tables(0.0, -0.015, 0.01), classifiers=_classifiers(0.157, model="pretraining_classifier"),
                             mode="standard", seeds=[0], validation_curves=curves, **GOOD)
    assert v.reason == "failed gate: classifier top-1: pretraining_classifier"


def test_pretraining_judges_against_compute_matched_scratch_when_it_ran():
    """The issue's point: +0.05 from pre-training can be three more epochs. With the compute-matched
    arm the effect is pre-trained minus that arm (here +0.005, inside the margin), and the
    unmatched gain and the shuffled-label control are shown beside it."""
    final, eff = _pretraining_tables(0.05, 0.03, 0.07)
    final = pd.concat([final, pd.DataFrame([{"init": a, "fraction": fr, "max_f": v} for a, v in (("scratch_matched", 0.745),
                                            ("random_labels", 0.70)) for fr in (0.1, 1.0)])], ignore_index=True)
    controls = pd.DataFrame([{"versus": a, "fraction": fr, "n_train": n, "max_f_gain": g, "low": lo, "high": hi, "level": 0.9, "mae_gain": 0.0}
                             for fr, n in ((0.1, 200), (1.0, 2000))
                             for a, g, lo, hi in (("scratch_matched", 0.005, -0.01, 0.015), ("random_labels", 0.05, 0.035, 0.065))])
    arms = ("scratch", "pretrained", "scratch_matched", "random_labels")
    curves = {"pretraining_classifier": FLAT, **{f"{a} at {f}": FLAT for a in arms for f in ("10%", "100%")}}
    v = verdicts.pretraining(final, eff, classifiers=_classifiers(0.93, model="pretraining_classifier"), mode="standard", seeds=[0],
                             validation_curves=curves, controls=controls, **GOOD)
    assert (v.outcome, v.effect, v.ci) == ("supported", 0.005, (-0.01, 0.015))
    assert v.quantity == "pre-trained minus compute-matched scratch max-F with 100% of the training set (0-1)"
    assert "- Pre-trained minus scratch with matched compute (0.745) at 100%: +0.005 (90% CI -0.010 .. +0.015)." in v.lines
    assert "- Pre-trained minus pre-trained on shuffled labels (0.700) at 100%: +0.050 (90% CI +0.035 .. +0.065)." in v.lines
    # every arm's model is gated: a matched arm still climbing leaves the verdict inconclusive
    climbing = {**curves, "scratch_matched at 100%": [0.5, 0.6, 0.7, 0.8]}
    v = verdicts.pretraining(final, eff, classifiers=_classifiers(0.93, model="pretraining_classifier"), mode="standard", seeds=[0],
                             validation_curves=climbing, controls=controls, **GOOD)
    assert v.outcome == "inconclusive" and "plateau" in v.reason
    # without the matched arm: the unmatched gain, and a line saying so
    v = verdicts.pretraining(*_pretraining_tables(0.05, 0.03, 0.07), classifiers=_classifiers(0.93, model="pretraining_classifier"),
                             mode="standard", seeds=[0], validation_curves=curves, **GOOD)
    assert v.effect == 0.05 and any("no compute-matched arm" in line for line in v.lines)


def test_pretraining_reads_the_longest_schedule_and_averages_seeds():
    """Two schedules and two seeds: the headline is the matched arm at the longest schedule (not
    the short one's), the arms' scores are seed means, and the catch-up line reads both schedules."""
    final = pd.DataFrame([{"init": i, "fraction": 1.0, "schedule": n, "seed": s, "max_f": base + 0.01 * s}
                          for i, base in (("scratch", 0.70), ("pretrained", 0.76), ("scratch_matched", 0.75)) for n in (8, 16) for s in (0, 1)
                          if i != "scratch_matched" or n == 16])
    eff = pd.DataFrame([{"fraction": 1.0, "schedule": n, "n_train": 1800, "max_f_gain": g, "low": g - 0.01, "high": g + 0.01,
                         "mae_gain": 0.0, "level": 0.9} for n, g in ((8, 0.08), (16, 0.06))])
    controls = pd.DataFrame([{"versus": "scratch_matched", "fraction": 1.0, "schedule": 16, "n_train": 1800, "max_f_gain": 0.01,
                              "low": 0.0, "high": 0.015, "level": 0.9, "mae_gain": 0.0}])
    curves = {f"{m}:seed{s}": FLAT for s in (0, 1) for m in ("pretraining_classifier", "scratch at 100%", "pretrained at 100%",
                                                            "scratch_matched at 100%")}
    v = verdicts.pretraining(final, eff, classifiers=_classifiers(0.93, model="pretraining_classifier:seed0"), mode="standard",
                             seeds=[0, 1], validation_curves=curves, controls=controls, **GOOD)
    assert (v.outcome, v.effect, v.ci) == ("supported", 0.01, (0.0, 0.015))
    assert v.quantity == "pre-trained minus compute-matched scratch max-F with 100% of the training set, 16 epochs (0-1)"
    assert v.lines[1] == ("- 100% of the training set (1800 images, 16 epochs): scratch max-F 0.705, pre-trained 0.765; "
                          "gain +0.060 (90% CI +0.050 .. +0.070), MAE gain +0.0000")
    assert "- Pre-trained minus scratch with matched compute (0.755) at 100%, 16 epochs: +0.010 (90% CI +0.000 .. +0.015)." in v.lines
    assert ("- Does scratch catch up with longer training? The gain over scratch at 100% goes from +0.080 (8 epochs) "
            "to +0.060 (16 epochs).") in v.lines
    # a climbing matched arm of one seed leaves it inconclusive
    v = verdicts.pretraining(final, eff, classifiers=_classifiers(0.93, model="pretraining_classifier:seed0"), mode="standard",
                             seeds=[0, 1], validation_curves={**curves, "scratch_matched at 100%:seed1": [0.5, 0.6, 0.7, 0.8]},
                             controls=controls, **GOOD)
    assert v.outcome == "inconclusive" and v.reason == "failed gate: plateau"


def test_pretraining_from_imagenet_weights_gates_on_the_users_top1():
    """05's full-mode arm: no classifier trained, so no 'pretraining_classifier' curve is asked
    for; the gate is the user's ImageNet top-1 of the file at 0.75 (0.90 is beyond any
    ImageNet-1k Res2Net-50), not evaluable without it."""
    from sodlab.studies.pretraining import imagenet_row

    curves = {m: FLAT for m in ("scratch at 10%", "pretrained at 10%", "scratch at 100%", "pretrained at 100%")}
    tables = _pretraining_tables(0.0, -0.015, 0.01)

    def verdict(top1):
        cl = pd.DataFrame([imagenet_row("/w/res2net50_v1b_26w_4s-3cf99910.pth", "abc", top1)])
        return verdicts.pretraining(*tables, classifiers=cl, mode="standard", seeds=[0], validation_curves=curves, **GOOD)

    name = "classifier top-1: ImageNet weights res2net50_v1b_26w_4s-3cf99910.pth"
    v = verdict(0.80)
    assert v.outcome == "supported" and _gates(v) == {name: True, "plateau": True, "selection on validation": True}
    gate = v.gates[0]
    assert (gate.value, gate.threshold) == (0.80, verdicts.IMAGENET_MIN_TOP1) and "not checked by sodlab" in gate.note
    assert ("- Pre-trained encoder: the user's ImageNet weights res2net50_v1b_26w_4s-3cf99910.pth, no classifier trained here; "
            "ImageNet val top-1 0.800 on 1000 classes as measured by the user (not checked here).") in v.lines
    assert any("ImageNet pre-training's compute cannot be matched" in line for line in v.lines)
    v = verdict(0.60)
    assert v.outcome == "inconclusive" and v.reason == f"failed gate: {name}"
    v = verdict(None)
    assert v.outcome == "inconclusive" and v.reason == f"failed gate: {name}" and v.gates[0].value is None
    assert "not evaluable" in v.gates[0].describe() and any("no ImageNet top-1 given (imagenet_top1)" in line for line in v.lines)


# ------------------------------------------------------------------------ 6: redundancy
def _redundancy_tables(sod_small, cls_small, er_sod=0.3, er_cls=0.5, dead_sod=0.4, dead_cls=0.1, floors=None, sod_wide=0.8):
    sweep = pd.DataFrame([{"task": t, "width": w, "metric": m, "value": v, "params": w * 1000}
                          for t, m, small, wide in (("sod", "max_f", sod_small, sod_wide), ("classification", "accuracy", cls_small, 0.8))
                          for w, v in ((4, small), (16, wide))])
    if floors is not None:
        sweep["floor"] = sweep["task"].map(floors)
    layers = pd.DataFrame([{"width": 16, "task": t, "layer": l, "effective_rank_ratio": e, "mean_abs_corr": 0.2}
                           for t, e in (("sod", er_sod), ("classification", er_cls)) for l in ("a", "b")])
    prn = pd.DataFrame([{"width": 16, "task": t, "threshold": th, "frac_channels_below": d}
                        for t, d in (("sod", dead_sod), ("classification", dead_cls)) for th in (0.01, 0.1)])
    twins = pd.DataFrame({"width": [16, 16], "layer": ["a", "b"], "cka": [0.9, 0.4]})
    return {"width_sweep": sweep, "layers": layers, "pruning": prn, "cka_twins": twins}


def test_redundancy_effect_is_the_difference_in_kept_share():
    res = _redundancy_tables(0.78, 0.4)
    res["classifiers"] = pd.concat([_classifiers(0.5, model="classifier_w4", width=4), _classifiers(0.95, model="classifier_w16", width=16)])
    v = verdicts.redundancy(res, mode="standard", seeds=[0])
    # 0.78 / 0.8 - 0.4 / 0.8
    assert (v.effect, v.rule, v.margin, v.ci, v.outcome) == (pytest.approx(0.475), "greater", 0.02, None, "inconclusive")
    assert "- CKA between the twins, same layer: a 0.90, b 0.40." in v.lines
    # only the widest classifier is gated; the narrow one's accuracy is the measurement
    assert [g.name for g in v.gates][0] == "classifier top-1: classifier_w16" and v.gates[0].passed
    assert not any("width-4" in line for line in v.lines)
    # without floors the floor gate cannot be evaluated: the raw share stands in, and the outcome stays inconclusive
    floor = next(g for g in v.gates if g.name == "widest model above its floor")
    assert floor.value is None and not floor.passed
    assert any("share of the raw score kept" in line for line in v.lines)


def test_redundancy_effect_is_measured_above_each_tasks_floor():
    """The issue's point: SOD's floor (a centre blob) is high, so a share of the raw score
    flatters it. Raw shares say SOD keeps more (0.55/0.8 against 0.4/0.8); above the floors
    (centre bias 0.46, chance 1/12) it keeps less, and the effect changes sign."""
    res = _redundancy_tables(0.55, 0.4, floors={"sod": 0.46, "classification": 1 / 12})
    res["classifiers"] = _classifiers(0.95, model="classifier_w16", width=16)
    v = verdicts.redundancy(res, mode="standard", seeds=[0])
    sod_above, cls_above = (0.55 - 0.46) / (0.8 - 0.46), (0.4 - 1 / 12) / (0.8 - 1 / 12)
    assert v.effect == pytest.approx(sod_above - cls_above) and v.effect < 0 < 0.55 / 0.8 - 0.4 / 0.8
    floor = next(g for g in v.gates if g.name == "widest model above its floor")
    assert floor.passed and floor.value == pytest.approx(0.8 - 0.46)
    assert any("keeps 26.5% of the widest SOD model's lead and 44.2% of the widest classifier's" in line for line in v.lines)


def test_redundancy_floor_gate_fails_when_the_widest_model_barely_beats_its_floor():
    res = _redundancy_tables(0.47, 0.4, floors={"sod": 0.46, "classification": 1 / 12}, sod_wide=0.49)
    res["classifiers"] = _classifiers(0.95, model="classifier_w16", width=16)
    v = verdicts.redundancy(res, mode="standard", seeds=[0])
    floor = next(g for g in v.gates if g.name == "widest model above its floor")
    assert not floor.passed and floor.value == pytest.approx(0.03)
    assert v.outcome == "inconclusive"


def test_redundancy_with_seeds_reads_the_pooled_interval_and_can_refute():
    """Two seeds' sweeps (their mean is read), a pooled interval in retention_stats: the rule
    `greater` with margin 0.02 is refuted when the whole interval lies below it, supported
    when above; the classifier gate holds for the lowest seed."""
    floors = {"sod": 0.46, "classification": 1 / 12}
    seeds = [_redundancy_tables(0.55, 0.4, floors=floors), _redundancy_tables(0.57, 0.42, floors=floors)]
    res = dict(seeds[0])
    res["width_sweep"] = pd.concat([r["width_sweep"].assign(seed=s) for s, r in enumerate(seeds)], ignore_index=True)
    res["classifiers"] = pd.concat([_classifiers(0.95, model="classifier_w16", width=16).assign(seed=0),
                                    _classifiers(0.93, model="classifier_w16", width=16).assign(seed=1)], ignore_index=True)
    res["retention"] = pd.DataFrame({"seed": [0, 1], "sod_kept": [0.26, 0.32], "classification_kept": [0.44, 0.47],
                                     "effect": [-0.18, -0.15]})
    stats = {"effect": -0.165, "ci_low": -0.21, "ci_high": -0.12, "ci_level": 0.9, "n_seeds": 2, "seeds": "0,1", "n_images": 300,
             "n_boot": 1000, "undefined_resamples": 0}
    res["retention_stats"] = pd.DataFrame([stats])
    curves = {f"{t} width {w}:seed{s}": FLAT for t in ("sod", "classification") for w in (4, 16) for s in (0, 1)}
    v = verdicts.redundancy(res, mode="standard", seeds=[0, 1], validation_curves=curves, **GOOD)
    assert (v.outcome, v.effect, v.ci) == ("refuted", -0.165, (-0.21, -0.12))
    gate = v.gates[0]
    assert gate.value == 0.93 and gate.note.endswith("the lowest of 2 seeds (seed 1)")
    assert ("- Per seed, SOD's share kept minus classification's: seed 0 -0.180 (26.0% vs 44.0%), seed 1 -0.150 (32.0% vs 47.0%); "
            "the effect is their mean, its interval a bootstrap over 2 seeds and 300 test images.") in v.lines
    # the seeds' mean sweep: width 4 SOD max-F 0.56 -> its share above the floor
    assert any(f"keeps {(0.56 - 0.46) / (0.8 - 0.46):.1%} of the widest SOD model's lead" in line for line in v.lines)
    res["retention_stats"] = pd.DataFrame([{**stats, "effect": 0.08, "ci_low": 0.05, "ci_high": 0.11}])
    assert verdicts.redundancy(res, mode="standard", seeds=[0, 1], validation_curves=curves, **GOOD).outcome == "supported"
    # one seed's models still climbing: inconclusive, named
    climbing = {**curves, "classification width 4:seed1": [0.5, 0.6, 0.7, 0.8]}
    v = verdicts.redundancy(res, mode="standard", seeds=[0, 1], validation_curves=climbing, **GOOD)
    assert v.outcome == "inconclusive" and "plateau" in v.reason


# ------------------------------------------------------------------------ 7: mechanisms
def _mechanism_tables(excess, rho, selective=True):
    ov = pd.DataFrame([{"layer": l, "method": "ablation", "k": 4, "channels": 16, "jaccard": 0.14 + excess,
                        "chance_jaccard": 0.14, "excess_jaccard": excess, "spearman": rho} for l in ("s3", "s4")])
    own, other = (0.5, 0.1) if selective else (0.1, 0.5)
    cross = pd.DataFrame([{"layer": l, "removed": r, "sod_rel_drop": a, "classification_rel_drop": b}
                          for l in ("s3", "s4") for r, a, b in (("sod_top", own, other), ("classification_top", other, own),
                                                                 ("random", 0.05, 0.02))])
    gc = pd.DataFrame({"cam_of": ["saliency", "gradcam"], "r_cam_gt": [0.6, 0.1]})
    return ov, cross, gc


def test_mechanisms_effect_is_mean_excess_overlap_and_the_classifier_it_reads_is_gated():
    cls = pd.concat([_classifiers(0.95), _classifiers(0.3, model="sod_encoder_probe")])
    v = verdicts.mechanisms(*_mechanism_tables(-0.02, 0.1), classifiers=cls, mode="standard", seeds=[0])
    assert (v.effect, v.rule, v.margin, v.outcome) == (pytest.approx(-0.02), "equivalent", 0.10, "inconclusive")
    # the classification encoder's class target is the twin: the probe is reported, not gated
    assert _gates(v) == {"classifier top-1: classifier_twin": True, "saliency read-out above the centre-bias guess": False,
                         "ablation beats random channels": True, "a task's channels overlap with themselves (split halves)": False,
                         "plateau": False, "selection on validation": False}
    assert any("the SOD encoder's linear class head top-1 0.300" in line for line in v.lines)
    assert any("gradcam 0.10, saliency 0.60" in line for line in v.lines)
    assert "- No transfer matrix: the encoders were not read out for the other task." in v.lines
    # the random-channel control is part of the evidence shown
    assert v.lines[3].endswith("; as many random channels: saliency +5%, class +2%.")


def _two_encoders(cls_excess, sod_excess):
    ov, cross, gc = _mechanism_tables(cls_excess, 0.1)
    ov2, cross2, _ = _mechanism_tables(sod_excess, 0.1)
    ov = pd.concat([ov.assign(encoder="classification_encoder"), ov2.assign(encoder="sod_encoder")])
    cross = pd.concat([cross.assign(encoder="classification_encoder"), cross2.assign(encoder="sod_encoder")])
    stats = pd.DataFrame([{"encoder": e, "method": "ablation", "n_images": 64, "excess_jaccard": x, "ci_low": x - 0.03, "ci_high": x + 0.03,
                           "ci_level": 0.9, "n_perm": 100, "null_mean": 0.0, "null_q95": 0.05, "p_more_than_chance": 0.5,
                           "p_less_than_chance": 0.5, "split_half_sod": 0.4, "split_half_classification": 0.3}
                          for e, x in (("classification_encoder", cls_excess), ("sod_encoder", sod_excess))])
    readouts = pd.DataFrame([
        {"encoder": "classification_encoder", "task": "classification", "model": "classifier_twin", "metric": "top1", "value": 0.95, "floor": 1 / 12},
        {"encoder": "sod_encoder", "task": "classification", "model": "sod_encoder_probe", "metric": "top1", "value": 0.4, "floor": 1 / 12},
        {"encoder": "classification_encoder", "task": "saliency", "model": "saliency head on the classification encoder", "metric": "max_f",
         "value": 0.70, "floor": 0.45},
        {"encoder": "sod_encoder", "task": "saliency", "model": "sod", "metric": "max_f", "value": 0.86, "floor": 0.45}])
    cls = pd.concat([_classifiers(0.95), _classifiers(0.4, model="sod_encoder_probe")])
    return ov, cross, gc, stats, readouts, cls


def test_mechanisms_reads_the_classification_encoder_and_reports_the_other():
    ov, cross, gc, stats, readouts, cls = _two_encoders(0.30, 0.01)
    good = {"validation_curves": {"sod": FLAT, "classifier_twin": FLAT}, "selected_on_validation": True}
    v = verdicts.mechanisms(ov, cross, gc, classifiers=cls, mode="standard", seeds=[0], overlap_stats=stats, readouts=readouts, **good)
    # its tables alone: overlap +0.30 above chance, interval [0.27, 0.33] outside the margin: refuted
    assert v.effect == pytest.approx(0.30) and v.ci == (pytest.approx(0.27), pytest.approx(0.33))
    assert v.outcome == "refuted" and all(g.passed for g in v.gates)
    sal = next(g for g in v.gates if g.name == "saliency read-out above the centre-bias guess")
    assert sal.value == pytest.approx(0.25) and "max-F 0.700, centre-bias guess 0.450" in sal.note
    assert any(line.startswith("- Beside it, on the sod encoder") and "+0.010 above chance" in line for line in v.lines)
    # read on the saliency model's encoder instead, the probe is the gated classifier (and fails)
    w = verdicts.mechanisms(ov, cross, gc, classifiers=cls, mode="standard", seeds=[0], overlap_stats=stats, readouts=readouts,
                            encoder="sod_encoder", **good)
    assert w.effect == pytest.approx(0.01) and w.outcome == "inconclusive"
    assert _gates(w)["classifier top-1: sod_encoder_probe"] is False and "classifier top-1: classifier_twin" not in _gates(w)
    # a saliency head that finds no more than the centre guess blocks the verdict
    weak = readouts.copy()
    weak.loc[weak.model == "saliency head on the classification encoder", "value"] = 0.49
    u = verdicts.mechanisms(ov, cross, gc, classifiers=cls, mode="standard", seeds=[0], overlap_stats=stats, readouts=weak, **good)
    assert u.outcome == "inconclusive" and _gates(u)["saliency read-out above the centre-bias guess"] is False
    with pytest.raises(ConfigError, match="encoder 'stem': expected one of classification_encoder, sod_encoder"):
        verdicts.mechanisms(ov, cross, gc, mode="standard", seeds=[0], encoder="stem")


def test_mechanisms_needs_an_importance_ranking_that_beats_random_channels():
    ov, cross, gc = _mechanism_tables(-0.02, 0.1)
    g = verdicts.ablation_control_gate(cross)
    # own top channels cost 0.5, random ones 0.05 (saliency) and 0.02 (class): the smaller margin is 0.45
    assert (g.value, g.threshold, g.passed) == (pytest.approx(0.45), 0.05, True)
    # a ranking no better than random fails the gate (the verdict then cannot conclude)
    noise = cross.copy()
    noise.loc[noise.removed == "random", ["sod_rel_drop", "classification_rel_drop"]] = 0.48
    g = verdicts.ablation_control_gate(noise)
    assert g.value == pytest.approx(0.02) and not g.passed
    good = {"validation_curves": {"sod": FLAT, "classifier_twin": FLAT}, "selected_on_validation": True}
    cls = pd.concat([_classifiers(0.95), _classifiers(0.95, model="sod_encoder_probe")])
    v = verdicts.mechanisms(ov, noise, gc, classifiers=cls, mode="standard", seeds=[0], **good)
    assert v.outcome == "inconclusive" and _gates(v)["ablation beats random channels"] is False
    # without the control the gate cannot be evaluated: failed, never passed by default
    g = verdicts.ablation_control_gate(cross[cross.removed != "random"])
    assert g.value is None and not g.passed and g.note == "no random-channel ablation in the cross table"


def test_every_study_writes_the_same_json_schema():
    vs = [verdicts.anatomy(*_anatomy_tables([0.5] * 4), mode="standard"), _category(0.0, -0.01, 0.01),
          verdicts.pruning(_curves([0.8] * 4, [0.8] * 4), mode="quick", seeds=[0])]
    for v in vs:
        assert tuple(json.loads(json.dumps(v.to_dict(), allow_nan=False))) == VERDICT_KEYS


def test_params_to_reach_interpolates_in_log_parameters_and_marks_censoring():
    from sodlab.studies.redundancy import params_to_reach
    scores = pd.DataFrame([{"task": t, "params": p, "above_floor": v}
                           for t, vals in (("a", (0.5, 0.9, 1.0)), ("b", (0.97, 0.99, 1.0)), ("c", (float("nan"), 0.5, 1.0)))
                           for p, v in zip((1000, 4000, 16000), vals)])
    r = params_to_reach(scores).set_index("task")
    assert r.loc["a", "params"] == pytest.approx(8000.0) and not r.loc["a", "censored"]  # halfway in log between 4,000 and 16,000
    assert r.loc["b", "params"] == 1000.0 and r.loc["b", "censored"]
    assert np.isnan(r.loc["c", "params"])
    assert params_to_reach(scores, share=0.9).set_index("task").loc["a", "params"] == pytest.approx(4000.0)
    res = _redundancy_tables(0.55, 0.4, floors={"sod": 0.46, "classification": 1 / 12})
    res["classifiers"] = _classifiers(0.95, model="classifier_w16", width=16)
    line = next(l for l in verdicts.redundancy(res, mode="standard", seeds=[0]).lines if "Parameters to keep 95%" in l)
    sod_need = 4000 * 4 ** ((0.95 - (0.55 - 0.46) / (0.8 - 0.46)) / (1 - (0.55 - 0.46) / (0.8 - 0.46)))
    assert f"SOD {sod_need:,.0f}, classification" in line


def _overlap_stats(low, high, split_sod=0.5, split_cls=0.4, method="ablation"):
    return pd.DataFrame([{"encoder": "classification_encoder", "method": method, "n_images": 64, "excess_jaccard": (low + high) / 2,
                          "ci_low": low, "ci_high": high, "ci_level": 0.9, "n_boot": 1000, "null_mean": 0.0, "null_q05": -0.1,
                          "null_q95": 0.12, "p_more_than_chance": 0.4, "p_less_than_chance": 0.6, "n_perm": 2000,
                          "split_half_sod": split_sod, "split_half_classification": split_cls}])


def test_mechanisms_concludes_from_the_image_bootstrap_behind_the_split_half_control():
    good = {"validation_curves": {"sod": FLAT, "classifier_twin": FLAT}, "selected_on_validation": True,
            "readouts": _two_encoders(0.0, 0.0)[4]}
    cls = pd.concat([_classifiers(0.95), _classifiers(0.95, model="sod_encoder_probe")])
    tables = _mechanism_tables(-0.02, 0.1)
    # no per-image table: no interval, as before
    assert verdicts.mechanisms(*tables, classifiers=cls, mode="standard", seeds=[0], **good).outcome == "inconclusive"
    v = verdicts.mechanisms(*tables, classifiers=cls, mode="standard", seeds=[0], overlap_stats=_overlap_stats(-0.06, 0.04), **good)
    assert (v.outcome, v.ci, v.ci_level) == ("supported", (-0.06, 0.04), 0.9) and all(_gates(v).values())
    assert v.effect == pytest.approx(-0.02)  # the effect stays the overlap table's mean over layers
    assert any(line.startswith("- Positive control, each task against itself on two halves of the 64 images: saliency +0.500, class +0.400")
               for line in v.lines)
    assert any("p = 0.4 for more overlap than chance" in line for line in v.lines)
    # shared channels: the whole interval above the margin refutes "different mechanisms"
    shared = verdicts.mechanisms(*tables, classifiers=cls, mode="standard", seeds=[0], overlap_stats=_overlap_stats(0.2, 0.35), **good)
    assert shared.outcome == "refuted"
    # a ranking that does not even agree with itself across image halves cannot tell: inconclusive
    blind = verdicts.mechanisms(*tables, classifiers=cls, mode="standard", seeds=[0],
                                overlap_stats=_overlap_stats(-0.06, 0.04, split_cls=0.15), **good)
    g = next(g for g in blind.gates if g.name.startswith("a task's channels overlap with themselves"))
    assert blind.outcome == "inconclusive" and g.value == pytest.approx(0.15) and g.threshold == pytest.approx(0.2)
    assert not verdicts.split_half_gate(None).passed
    # the stats of another method are not used for this one
    other = verdicts.mechanisms(*tables, classifiers=cls, mode="standard", seeds=[0],
                                overlap_stats=_overlap_stats(-0.06, 0.04, method="grad_x_act"), **good)
    assert other.ci is None and other.outcome == "inconclusive"


def test_classifier_lines_name_each_replicate_by_its_seed():
    gates, lines = verdicts.classifier_gates(pd.concat([_classifiers(0.95, model="classifier:seed0"),
                                                        _classifiers(0.85, model="classifier:seed1")]), ["classifier"])
    assert [g.passed for g in gates] == [True, False] and gates[1].name == "classifier top-1: classifier:seed1"
    assert "the classification twin (seed 0) top-1 0.950" in lines[0] and "the classification twin (seed 1) top-1 0.850" in lines[0]
