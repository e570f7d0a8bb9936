"""Verdicts of the study notebooks: the thresholds decide as documented, on small tables."""
from __future__ import annotations

import pandas as pd
import pytest

from sodlab.studies import verdicts


def test_outcome_is_read_from_the_verdict_and_must_be_known():
    assert verdicts._finding("c", "held, strongly: x", []).outcome == "held"
    assert verdicts._finding("c", "did not hold in this run: x", []).outcome == "did not hold"
    with pytest.raises(ValueError, match="outcome 'maybe'"):
        verdicts.Finding("c", "maybe", "maybe", ())


@pytest.mark.parametrize("model_f,outcome", [(0.60, "held"), (0.52, "did not hold")])
def test_quickstart_needs_a_clear_margin_over_centre_bias(model_f, outcome):
    f = verdicts.quickstart({"max_f": model_f, "mae": 0.1}, {"max_f": 0.5, "mae": 0.2}, source="m", params=1000,
                            gmacs=0.01, size=64, n_images=30)
    assert f.outcome == outcome
    assert "Test split (30 images)" in f.text and "1,000 parameters" in f.text


def _anatomy_tables(kept_x1):
    models = pd.DataFrame({"model": ["csnet", "csnet-L-x1", "csnet-L-x2", "csf-res2net50"],
                           "params": [900_000, 100_000, 140_000, 36_000_000], "gmacs": [1.0, 0.2, 0.5, 8.0]})
    rows = []
    for b, k in enumerate(kept_x1):
        for model, n in (("csnet", 20), ("csnet-L-x1", round(20 * k)), ("csnet-L-x2", round(40 * k))):
            rows += [{"model": model, "block": f"b{b}", "scale": 0, "channels": n // 2},
                     {"model": model, "block": f"b{b}", "scale": 1, "channels": n - n // 2}]
    return models, pd.DataFrame(rows)


def test_anatomy_wants_a_non_uniform_allocation():
    f = verdicts.anatomy(*_anatomy_tables([0.9, 0.5, 0.1, 0.05]))
    assert f.verdict.startswith("held, strongly: CSNet-L-x2 has 140,000 parameters, 257x fewer")
    assert "most in `b0`, fewest in `b3`" in f.text
    assert verdicts.anatomy(*_anatomy_tables([0.5, 0.5, 0.5, 0.5])).outcome == "did not hold"


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


def test_pruning_verdicts_without_fine_tuning():
    held = verdicts.pruning(_curves([0.8, 0.8, 0.79, 0.7], [0.8, 0.7, 0.6, 0.5]))
    assert held.verdict == "held: DWD lets 80% of the parameters go within 0.02 max-F without fine-tuning (L2 0%)"
    assert "after fine-tuning" not in held.text
    assert verdicts.pruning(_curves([0.8, 0.79, 0.7, 0.6], [0.8, 0.7, 0.6, 0.5])).outcome == "held partly"
    assert verdicts.pruning(_curves([0.8, 0.7, 0.6, 0.5], [0.8, 0.79, 0.7, 0.6])).outcome == "did not hold"


def test_pruning_verdict_judges_fine_tuned_curves_against_the_original_model():
    # pruned alone DWD looks best, but after fine-tuning L2 recovers more: the verdict follows fine-tuning
    tuned = {"dwd": [0.82, 0.75, 0.7, 0.6], "l2": [0.81, 0.80, 0.79, 0.70]}
    f = verdicts.pruning(_curves([0.8, 0.8, 0.79, 0.7], [0.8, 0.7, 0.6, 0.5], tuned))
    assert f.verdict == "did not hold in this run: after fine-tuning, DWD 0% of the parameters prunable within 0.02 max-F (L2 80%)"
    assert "removable within the same tolerance of the unpruned model: dwd 0%; l2 80%" in f.text
    assert "fine-tuned the same way: dwd 0.800 -> 0.820; l2 0.800 -> 0.810" in f.text
    # a fine-tuning recipe that damages every model cannot make pruning look free
    hurt = {"dwd": [0.6, 0.6, 0.6, 0.6], "l2": [0.6, 0.6, 0.6, 0.6]}
    assert "(L2 0%)" in verdicts.pruning(_curves([0.8, 0.8, 0.79, 0.7], [0.8, 0.7, 0.6, 0.5], hurt)).verdict


def _category_tables(gap, low, high, rel, cls_low=0.1):
    summary = pd.DataFrame([
        {"task": t, "group": g, "metric": m, "value": v}
        for t, m in (("sod", "max_f"), ("sod", "mae"), ("classifier", "ncm_accuracy_vs_chance"), ("sod_encoder", "ncm_accuracy_vs_chance"))
        for g, v in (("seen", 0.8), ("unseen", 0.8 - gap))])
    gaps = pd.DataFrame([
        {"task": "sod", "metric": "max_f", "gap": gap, "low": low, "high": high, "relative_gap": rel},
        {"task": "sod", "metric": "mae", "gap": -0.001, "low": -0.01, "high": 0.01, "relative_gap": -0.01},
        {"task": "classifier", "metric": "ncm_accuracy_vs_chance", "gap": 0.3, "low": cls_low, "high": 0.5, "relative_gap": 0.4},
        {"task": "sod_encoder", "metric": "ncm_accuracy_vs_chance", "gap": 0.0, "low": -0.1, "high": 0.1, "relative_gap": 0.0},
    ])
    return summary, gaps


def test_category_verdicts():
    f = verdicts.category_sensitivity(*_category_tables(0.01, -0.01, 0.03, 0.0125))
    assert f.verdict == ("held: the SOD gap between seen and unseen categories is indistinguishable from zero, "
                         "while the classifier's gap is clearly positive (strong contrast)")
    assert verdicts.category_sensitivity(*_category_tables(0.024, 0.01, 0.04, 0.03)).outcome == "held weakly"
    assert verdicts.category_sensitivity(*_category_tables(0.08, 0.05, 0.1, 0.1)).outcome == "did not hold"
    drops = pd.DataFrame({"category": ["a", "b"], "drop": [0.01, 0.05]})
    assert "largest +0.050, `b`" in verdicts.category_sensitivity(*_category_tables(0.01, -0.01, 0.03, 0.0125), drops).text


def _pretraining_tables(gain, low, high, small_gain=0.0):
    final = pd.DataFrame([{"init": i, "fraction": fr, "max_f": 0.7 + (gain if i == "pretrained" else 0)}
                          for i in ("scratch", "pretrained") for fr in (0.1, 1.0)])
    eff = pd.DataFrame([{"fraction": 1.0, "n_train": 2000, "max_f_gain": gain, "low": low, "high": high, "mae_gain": 0.0},
                        {"fraction": 0.1, "n_train": 200, "max_f_gain": small_gain, "low": -1, "high": 1, "mae_gain": 0.0}])
    return final, eff


def test_pretraining_verdicts():
    assert verdicts.pretraining(*_pretraining_tables(0.01, -0.01, 0.02)).verdict.startswith(
        "held: with the full training set, pre-training changes max-F by +0.010")
    assert verdicts.pretraining(*_pretraining_tables(-0.03, -0.05, -0.01, small_gain=-0.05)).verdict == (
        "held: with the full training set, scratch is better by 0.030")
    weak = verdicts.pretraining(*_pretraining_tables(0.015, 0.005, 0.025, small_gain=0.05))
    assert weak.outcome == "held weakly" and weak.verdict.endswith("with 10% of the data the gain is larger (+0.050)")
    assert verdicts.pretraining(*_pretraining_tables(0.05, 0.03, 0.07)).outcome == "did not hold"
    assert weak.text.splitlines()[0].startswith("- 10% of the training set (200 images)")


def _redundancy_tables(sod_small, cls_small, er_sod=0.3, er_cls=0.5, dead_sod=0.4, dead_cls=0.1):
    sweep = pd.DataFrame([{"task": t, "width": w, "metric": m, "value": v, "params": w * 1000}
                          for t, m, small in (("sod", "max_f", sod_small), ("classification", "accuracy", cls_small))
                          for w, v in ((4, small), (16, 0.8))])
    layers = pd.DataFrame([{"width": 16, "task": t, "layer": l, "effective_rank_ratio": e, "mean_abs_corr": 0.2}
                           for t, e in (("sod", er_sod), ("classification", er_cls)) for l in ("a", "b")])
    prn = pd.DataFrame([{"width": 16, "task": t, "threshold": th, "frac_channels_below": d}
                        for t, d in (("sod", dead_sod), ("classification", dead_cls)) for th in (0.01, 0.1)])
    twins = pd.DataFrame({"width": [16, 16], "layer": ["a", "b"], "cka": [0.9, 0.4]})
    return {"width_sweep": sweep, "layers": layers, "pruning": prn, "cka_twins": twins}


def test_redundancy_verdicts():
    f = verdicts.redundancy(_redundancy_tables(0.78, 0.4))
    assert f.verdict.startswith("held: shrinking the width keeps 97.5% of SOD's max-F but 50.0% of the classifier's")
    assert "CKA between the twins, same layer: a 0.90, b 0.40." in f.text
    partly = verdicts.redundancy(_redundancy_tables(0.78, 0.4, er_sod=0.6))
    assert partly.outcome == "held partly" and "agree only 2 of 3 ways" in partly.verdict
    assert verdicts.redundancy(_redundancy_tables(0.6, 0.6)).outcome == "did not hold"


def _mechanism_tables(excess, rho, selective=True):
    ov = pd.DataFrame([{"layer": l, "method": "ablation", "k": 4, "channels": 16, "jaccard": 0.14 + excess,
                        "chance_jaccard": 0.14, "excess_jaccard": excess, "spearman": rho} for l in ("s3", "s4")])
    own, other = (0.5, 0.1) if selective else (0.1, 0.5)
    cross = pd.DataFrame([{"layer": l, "removed": r, "sod_rel_drop": a, "classification_rel_drop": b}
                          for l in ("s3", "s4") for r, a, b in (("sod_top", own, other), ("classification_top", other, own))])
    gc = pd.DataFrame({"cam_of": ["saliency", "gradcam"], "r_cam_gt": [0.6, 0.1]})
    return ov, cross, gc


def test_mechanism_verdicts():
    f = verdicts.mechanisms(*_mechanism_tables(-0.02, 0.1))
    assert f.verdict.startswith("held: the tasks' important channels overlap no more than chance")
    assert "gradcam 0.10, saliency 0.60" in f.text
    assert verdicts.mechanisms(*_mechanism_tables(0.05, 0.1, selective=False)).verdict.endswith("is not selective")
    assert verdicts.mechanisms(*_mechanism_tables(0.3, 0.6)).outcome == "did not hold"


def _classifiers(accuracy, classes=12, model="classifier_twin", **extra):
    chance = 1 / classes
    return pd.DataFrame([{"model": model, **extra, "classes": classes, "n_images": 300, "accuracy": accuracy, "chance": chance,
                          "above_chance": (accuracy - chance) / (1 - chance)}])


def test_classifier_check_names_classifiers_near_chance():
    lines, caveat = verdicts.classifier_check(_classifiers(0.157))
    assert lines == ["- Classifiers on the test split: the classification twin accuracy 0.157 on 12 classes (chance 0.083)."]
    assert caveat == ("caveat: the classification twin (0.16, chance 0.08) barely learned the categories, "
                      "so the comparison with classification is weak")
    # (0.27 - 1/12) / (11/12) = 0.204: just past the bar
    assert verdicts.classifier_check(_classifiers(0.27))[1] is None
    assert verdicts.classifier_check(None) == ([], None)
    two = pd.concat([_classifiers(0.1), _classifiers(0.12, model="sod_encoder_probe")])
    assert verdicts.classifier_check(two)[1].startswith(
        "caveat: the classification twin (0.10, chance 0.08) and the SOD encoder's linear class head (0.12, chance 0.08) barely")


def test_a_classifier_near_chance_weakens_the_comparisons_with_classification():
    # mechanisms and redundancy rest on the classification side: "held" becomes "held weakly"
    f = verdicts.mechanisms(*_mechanism_tables(-0.02, 0.1), classifiers=_classifiers(0.157, model="sod_encoder_probe"))
    assert f.outcome == "held weakly"
    assert f.verdict.endswith("; caveat: the SOD encoder's linear class head (0.16, chance 0.08) barely learned the categories, "
                              "so the comparison with classification is weak")
    assert verdicts.mechanisms(*_mechanism_tables(-0.02, 0.1), classifiers=_classifiers(0.6)).outcome == "held"
    res = _redundancy_tables(0.78, 0.4)
    res["classifiers"] = pd.concat([_classifiers(0.6, model="classifier_w4", width=4), _classifiers(0.1, model="classifier_w16", width=16)])
    f = verdicts.redundancy(res)
    assert f.outcome == "held weakly" and "the width-16 classifier (0.10, chance 0.08) barely learned" in f.verdict
    assert "width-4" not in f.text  # only the widest width is judged
    # the category claim is about SOD: the outcome stands, the contrast with classification goes
    f = verdicts.category_sensitivity(*_category_tables(0.01, -0.01, 0.03, 0.0125), classifiers=_classifiers(0.25, classes=5, model="classifier"))
    assert f.outcome == "held" and "strong contrast" not in f.verdict and f.verdict.endswith("comparison with classification is weak")
    f = verdicts.pretraining(*_pretraining_tables(0.05, 0.03, 0.07), classifiers=_classifiers(0.1, model="pretraining_classifier"))
    assert f.outcome == "did not hold" and f.verdict.endswith(
        "the pre-training classifier (0.10, chance 0.08) barely learned the categories, so this measures a barely trained "
        "encoder, not classification features")
