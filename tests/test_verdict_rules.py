"""The verdict rule of the claim studies (sodlab.studies.rules): each rule on constructed
intervals, its boundaries, gates, quick mode, the minimum detectable effect and the JSON schema.
Margins and interval ends are dyadic fractions so that the boundaries are exact in floating point."""
from __future__ import annotations

import json

import pytest

from sodlab.studies import rules
from sodlab.studies.rules import Gate, Verdict, decide, judge


@pytest.mark.parametrize("rule,low,high,outcome", [
    ("equivalent", -0.125, 0.125, "supported"),
    ("equivalent", 0.375, 0.5, "refuted"),
    ("equivalent", -0.5, -0.375, "refuted"),
    ("equivalent", 0.125, 0.375, "inconclusive"),
    ("equivalent", -0.5, 0.5, "inconclusive"),  # covers zero but is wider than the band: no evidence either way
    ("greater", 0.375, 0.5, "supported"),
    ("greater", -0.125, 0.125, "refuted"),
    ("greater", 0.125, 0.375, "inconclusive"),
    ("less", -0.5, -0.375, "supported"),
    ("less", -0.125, 0.125, "refuted"),
    ("less", -0.375, -0.125, "inconclusive"),
])
def test_each_rule_gives_each_outcome(rule, low, high, outcome):
    assert decide(rule, low, high, margin=0.25) == outcome


@pytest.mark.parametrize("rule,low,high,outcome", [
    # the equivalence band is closed: ends on the margin are inside it
    ("equivalent", -0.25, 0.25, "supported"),
    ("equivalent", 0.25, 0.5, "inconclusive"),  # neither inside nor entirely outside
    ("equivalent", -0.5, -0.25, "inconclusive"),
    ("equivalent", 0.0, 0.0, "supported"),
    # above / below are strict: an end on the margin decides nothing
    ("greater", 0.25, 0.5, "inconclusive"),
    ("greater", 0.0, 0.25, "inconclusive"),
    ("greater", 0.25, 0.25, "inconclusive"),
    ("less", -0.5, -0.25, "inconclusive"),
    ("less", -0.25, 0.0, "inconclusive"),
])
def test_boundaries(rule, low, high, outcome):
    assert decide(rule, low, high, margin=0.25) == outcome


def test_zero_margin_equivalence_needs_a_point_at_zero():
    assert decide("equivalent", 0.0, 0.0, 0.0) == "supported"
    assert decide("equivalent", -0.125, 0.125, 0.0) == "inconclusive"
    assert decide("greater", 0.125, 0.25, 0.0) == "supported"


@pytest.mark.parametrize("args,message", [
    (("bigger", 0.0, 1.0, 0.1), "rule 'bigger': expected one of ('equivalent', 'greater', 'less')"),
    (("greater", 0.2, 0.1, 0.1), "ci [0.2, 0.1]: low must not exceed high"),
    (("greater", float("nan"), 0.1, 0.1), "ci [nan, 0.1]: both ends must be finite"),
    (("greater", 0.0, 0.1, -0.1), "margin -0.1: must be finite and >= 0"),
])
def test_decide_rejects_bad_input_by_name(args, message):
    with pytest.raises(ValueError) as e:
        decide(*args)
    assert str(e.value) == message


def test_refuted_if_says_which_result_would_have_refuted_the_claim():
    assert rules.refuted_if("equivalent", 0.02) == "the 90% interval lying entirely outside [-0.02, +0.02] (below -0.02 or above +0.02)"
    assert rules.refuted_if("greater", 0.05) == "the 90% interval lying entirely below +0.05"
    assert rules.refuted_if("less", 0.05, 0.95) == "the 95% interval lying entirely above -0.05"


# ------------------------------------------------------------------------ gates
def test_gate_directions_and_boundaries():
    assert Gate("g", 0.9, 0.9, "at least").passed and not Gate("g", 0.8999, 0.9, "at least").passed
    assert Gate("g", 0.005, 0.005, "at most").passed and not Gate("g", 0.0051, 0.005, "at most").passed
    assert not Gate("g", 0.005, 0.005, "below").passed and Gate("g", 0.0049, 0.005, "below").passed
    assert not Gate("g", None, 0.9, "at least").passed  # not evaluable is not passed
    assert Gate("g", None, 0.9, "at least", "no accuracy").describe() == "g: not evaluable, needs >= 0.9: FAILED (no accuracy)"
    with pytest.raises(ValueError, match="gate 'g': direction 'over'"):
        Gate("g", 1.0, 0.9, "over")
    with pytest.raises(ValueError, match="gate 'g': value nan is not finite"):
        Gate("g", float("nan"), 0.9, "at least")


def test_classifier_gate_is_top1_at_least_090():
    assert rules.classifier_gate("twin", 0.90).passed
    g = rules.classifier_gate("twin", 0.24)
    assert not g.passed and g.name == "classifier top-1: twin" and g.to_dict() == {"value": 0.24, "threshold": 0.9, "passed": False}


def test_plateau_gain_is_the_last_quarter_of_the_epochs():
    # 8 epochs: the last quarter is epochs 7-8, so the gain is epoch 8 minus epoch 6
    assert rules.plateau_gain([0.5, 0.6, 0.7, 0.71, 0.712, 0.713, 0.714, 0.716]) == pytest.approx(0.716 - 0.713)
    # 5 epochs: ceil(5 / 4) = 2, epoch 5 minus epoch 3
    assert rules.plateau_gain([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(0.2)
    assert rules.plateau_gain([0.69, 0.73]) == pytest.approx(0.04)
    with pytest.raises(ValueError, match="at least 2 epochs, got 1"):
        rules.plateau_gain([0.7])


def test_plateau_gate_takes_the_worst_model_and_never_passes_without_curves():
    flat, climbing = [0.7, 0.8, 0.801, 0.802], [0.6, 0.7, 0.75, 0.80]
    g = rules.plateau_gate({"sod": flat, "cls": flat}, ["sod", "cls"], "why")
    assert g.passed and g.value == pytest.approx(0.001)
    g = rules.plateau_gate({"sod": flat, "cls": climbing}, ["sod", "cls"], "why")
    assert not g.passed and g.value == pytest.approx(0.05) and g.note == "largest gain: cls (last-quarter gain)"
    g = rules.plateau_gate({"sod": flat}, ["sod", "cls"], "no validation split")
    assert g.value is None and not g.passed and g.note == "no validation split: no validation curve for cls"
    g = rules.plateau_gate({"sod": [0.7]}, ["sod"], "why")
    assert g.value is None and "at least 2 epochs" in g.note


def test_plateau_gate_judges_an_annealed_schedule_by_its_last_quarter_against_a_shorter_run():
    # a one-cycle curve climbs through its last quarter (+0.036) although the epochs of that quarter gained little
    annealed, shorter = [0.5, 0.8, 0.9175, 0.9533], [0.6, 0.85, 0.9492]
    g = rules.plateau_gate({"cls": annealed}, ["cls"], "why")
    assert not g.passed and g.value == pytest.approx(0.9533 - 0.9175)
    g = rules.plateau_gate({"cls": annealed, "cls@check": shorter}, ["cls"], "why")
    assert g.passed and g.value == pytest.approx(0.9533 - 0.9492)
    assert g.note == "largest gain: cls (last quarter of the schedule of cls)"
    # a last quarter that still gains fails, and the best epoch of each run is compared
    g = rules.plateau_gate({"cls": annealed, "cls@check": [0.5, 0.905, 0.9]}, ["cls"], "why")
    assert not g.passed and g.value == pytest.approx(0.9533 - 0.905)
    # a short condition (@half) is no check: the run's own last quarter is judged
    g = rules.plateau_gate({"cls": annealed, "cls@half": shorter}, ["cls"], "why")
    assert not g.passed and g.value == pytest.approx(0.9533 - 0.9175) and g.note == "largest gain: cls (last-quarter gain)"


def test_plateau_gate_finds_seeded_replicates_and_one_schedule_check_speaks_for_them():
    name = rules.seed_name
    assert name("sod", 2) == "sod:seed2" and rules.model_role("sod:seed2@check") == "sod" and rules.model_role("sod:seed2@half") == "sod"
    assert name("sod@check", 0) == "sod:seed0@check" and name("sod@half", 1) == "sod:seed1@half"  # the seed goes before the suffix
    # a schedule check drops the last quarter (rounded up, as plateau_gain counts it); a one-epoch run has none left
    assert rules.check_epochs(16, 80, 10) == (12, 60, 7) and rules.check_epochs(3) == (2,) and rules.check_epochs(2) == (1,)
    assert rules.check_epochs(1) is None and rules.check_epochs(16, 1) is None
    assert rules.half_epochs(16, 80, 10) == (8, 40, 5) and rules.half_epochs(1) is None
    flat, climbing = [0.7, 0.8, 0.801, 0.802], [0.6, 0.7, 0.75, 0.80]
    curves = {name("sod", 0): flat, name("sod", 1): climbing}
    g = rules.plateau_gate(curves, ["sod"], "why")
    assert not g.passed and g.note == "largest gain: sod:seed1 (last-quarter gain)"
    # seed 0's run against its check: the recipe's schedule is long enough for every seed
    g = rules.plateau_gate({**curves, name("sod", 0) + "@check": [0.6, 0.7, 0.799]}, ["sod"], "why")
    assert g.passed and g.value == pytest.approx(0.802 - 0.799)
    g = rules.plateau_gate(curves, ["cls"], "why")
    assert g.value is None and g.note == "why: no validation curve for cls"


def test_training_gates_take_schedule_checks_as_evidence_and_short_conditions_as_neither():
    from sodlab.studies import verdicts as v
    curves = {"sod:seed0": [0.5, 0.8, 0.9175, 0.9533], "sod:seed0@check": [0.6, 0.7, 0.9492], "head": [0.1, 0.5, 0.5, 0.501],
              "sod at 10%:seed0@half": [0.1, 0.5]}
    plateau, selection = v.training_gates(["sod"], curves, True)
    assert plateau.passed and plateau.value == pytest.approx(0.9533 - 0.9492) and selection.passed
    plateau, _ = v.training_gates(["sod"], {**curves, "head": [0.1, 0.2, 0.3, 0.4]}, True)
    assert not plateau.passed and plateau.note == "largest gain: head (last-quarter gain)"


def test_selection_gate_is_a_boolean_that_unknown_fails():
    assert rules.selection_gate(True, "why").passed
    assert rules.selection_gate(False, "trained on test").to_dict() == {"value": 0.0, "threshold": 1.0, "passed": False}
    assert rules.selection_gate(None, "unknown").value is None


# ------------------------------------------------------------------------ judge and Verdict
def _judge(**kw):
    args = dict(study="04_x", claim="c", quantity="seen minus unseen max-F", effect=0.0, ci=(-0.125, 0.125), margin=0.25,
                rule="equivalent", mode="standard", seeds=[0, 1, 2], gates=[Gate("g", 1.0, 0.5, "at least")])
    return judge(**(args | kw))


def test_judge_applies_the_rule_when_every_gate_passes():
    v = _judge()
    assert (v.outcome, v.reason) == ("supported", "the interval [-0.1250, +0.1250] lies inside [-0.25, +0.25]")
    v = _judge(ci=(0.375, 0.5), effect=0.4375, rule="greater")
    assert (v.outcome, v.reason) == ("supported", "the interval [+0.3750, +0.5000] lies above +0.25")
    v = _judge(ci=(-0.125, 0.125), rule="greater")
    assert (v.outcome, v.reason) == ("refuted", "the interval [-0.1250, +0.1250] lies below +0.25")


def test_a_failed_gate_makes_the_outcome_inconclusive_and_names_it():
    bad = Gate("classifier top-1: twin", 0.24, 0.9, "at least")
    v = _judge(gates=[Gate("g", 1.0, 0.5, "at least"), bad])
    assert (v.outcome, v.reason) == ("inconclusive", "failed gate: classifier top-1: twin")
    v = _judge(gates=[bad, Gate("plateau", None, 0.005, "below")])
    assert v.reason == "failed gates: classifier top-1: twin; plateau"
    assert v.failed_gates == [bad, v.gates[1]]


@pytest.mark.parametrize("ci", [(-0.125, 0.125), (0.375, 0.5), None])
def test_quick_mode_never_concludes(ci):
    v = _judge(mode="quick", ci=ci)
    assert (v.outcome, v.reason) == ("inconclusive", "quick mode")


def test_no_interval_cannot_conclude():
    v = _judge(ci=None, no_interval="one score per point")
    assert (v.outcome, v.reason, v.mde) == ("inconclusive", "no interval: one score per point", None)
    with pytest.raises(ValueError, match="outcome 'supported' without an interval"):
        Verdict("s", "c", "q", "supported", "r", "greater", 0.1, None, 0.9, 0.05, (0,), "standard", None)


def test_minimum_detectable_effect_against_a_hand_computation():
    # 90% interval [0, 0.2]: half-width 0.1, SE = 0.1 / z_0.95, MDE = (z_0.95 + z_0.80) * SE
    z95, z80 = 1.6448536269514722, 0.8416212335729143
    assert rules.minimum_detectable_effect(0.0, 0.2, 0.90) == pytest.approx(0.1 / z95 * (z95 + z80), rel=1e-12)
    assert rules.minimum_detectable_effect(0.0, 0.2, 0.90) == pytest.approx(0.151166, abs=1e-6)
    # a 95% interval of the same width is a smaller SE: z_0.975 = 1.959963984540054
    assert rules.minimum_detectable_effect(-0.1, 0.1, 0.95) == pytest.approx(0.1 / 1.959963984540054 * (z95 + z80), rel=1e-12)
    assert rules.minimum_detectable_effect(0.3, 0.3) == 0.0
    assert _judge(ci=(0.0, 0.2), effect=0.1).mde == pytest.approx(0.151166, abs=1e-6)


def test_json_schema_is_exact():
    v = _judge(gates=[Gate("g", 1.0, 0.5, "at least"), Gate("plateau", None, 0.005, "below")], lines=["- a line"])
    d = json.loads(json.dumps(v.to_dict(), allow_nan=False))
    assert set(d) == {"study", "claim", "outcome", "rule", "effect", "ci", "ci_level", "margin", "seeds", "mode", "mde", "gates",
                      "reason", "quantity", "lines"}
    assert d["ci"] == [-0.125, 0.125] and d["ci_level"] == 0.9 and d["seeds"] == [0, 1, 2] and d["lines"] == ["- a line"]
    assert d["gates"] == {"g": {"value": 1.0, "threshold": 0.5, "passed": True},
                          "plateau": {"value": None, "threshold": 0.005, "passed": False}}
    assert rules.check_record(d, "f.json") is d


def test_check_record_names_the_file_of_an_old_record():
    with pytest.raises(ValueError, match=r"^old/findings.json: not a verdict record \(keys \['claim', 'verdict'\]"):
        rules.check_record({"claim": "c", "verdict": "held"}, "old/findings.json")
    d = _judge().to_dict()
    d["gates"]["g"]["note"] = "x"
    with pytest.raises(ValueError, match="f: gate 'g' should have exactly the keys"):
        rules.check_record(d, "f")


@pytest.mark.parametrize("change,message", [
    (dict(outcome="held"), "outcome 'held': expected one of ('supported', 'refuted', 'inconclusive')"),
    (dict(rule="two-sided"), "rule 'two-sided': expected one of ('equivalent', 'greater', 'less')"),
    (dict(ci=(0.1, -0.1)), "ci [0.1, -0.1]: low must not exceed high"),
    (dict(margin=-0.02), "margin -0.02: must be finite and >= 0"),
    (dict(ci_level=95), "ci_level 95: must lie strictly between 0 and 1"),
    (dict(ci_level=0.0), "ci_level 0.0: must lie strictly between 0 and 1"),
    (dict(mode="slow"), "mode 'slow': expected one of ('quick', 'standard', 'full')"),
    (dict(effect=float("nan")), "effect nan: must be finite"),
    (dict(gates=(Gate("g", 1.0, 0.5, "at least"), Gate("g", 1.0, 0.5, "at least"))), "gate names must be unique, got ['g', 'g']"),
])
def test_verdict_validation_messages(change, message):
    base = dict(study="s", claim="c", quantity="q", outcome="inconclusive", reason="r", rule="equivalent", effect=0.0,
                ci=(-0.1, 0.1), ci_level=0.9, margin=0.02, seeds=(0,), mode="standard", mde=0.1)
    with pytest.raises(ValueError) as e:
        Verdict(**(base | change))
    assert str(e.value) == message


def test_markdown_states_outcome_effect_interval_rule_refutation_and_gates():
    v = _judge(gates=[Gate("plateau", None, 0.005, "below", "no validation split")], lines=["- numbers of this run"])
    md = v.markdown().splitlines()
    assert md[0] == "**Outcome: inconclusive** (failed gate: plateau)."
    assert md[2] == ("- Effect: seen minus unseen max-F = +0.0000, 90% interval [-0.1250, +0.1250]; "
                     "minimum detectable effect 0.1890.")
    assert md[3] == ("- Rule `equivalent`, margin 0.25 (chosen before the data); the claim would have been refuted by "
                     "the 90% interval lying entirely outside [-0.25, +0.25] (below -0.25 or above +0.25).")
    assert md[4:] == ["- Seeds: 0, 1, 2; mode standard.", "- Gates:",
                      "  - plateau: not evaluable, needs < 0.005: FAILED (no validation split)", "- numbers of this run"]
    # docs render the JSON object the same way, the gates without their notes
    assert rules.render(v.to_dict())[-2] == "  - plateau: not evaluable, threshold 0.005: FAILED"
