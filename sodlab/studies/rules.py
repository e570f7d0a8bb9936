"""The verdict rule of the claim studies, fixed in code before the data (issue 18, items 1, 2, 8).

A claim study measures one quantity (its ``effect``, e.g. seen-minus-unseen max-F) with an
interval at a stated level, and names in advance a ``margin`` and a ``rule``; the outcome
follows from the interval alone, never from the point estimate:

- ``equivalent`` (the claim says the effect is negligible): ``supported`` when the interval
  lies inside the closed band [-margin, +margin]; ``refuted`` when it lies entirely outside it
  (low > margin or high < -margin); otherwise ``inconclusive``.
- ``greater`` (the claim says the effect exceeds the margin): ``supported`` when low > margin;
  ``refuted`` when high < margin; otherwise ``inconclusive``.
- ``less`` (the mirror): ``supported`` when high < -margin; ``refuted`` when low > -margin;
  otherwise ``inconclusive``.

Boundaries: the band of ``equivalent`` is closed (what the claim calls negligible includes its
edge), every "above"/"below" is strict. So an interval end lying exactly on a margin never
decides anything by itself: ``[margin, 2 margin]`` is inconclusive under ``equivalent`` (neither
inside nor entirely outside) and under ``greater`` (low is not above the margin).

Before the rule, in this order: quick mode never concludes (reason exactly ``"quick mode"``); a
design that produced no interval cannot conclude (reason ``"no interval: ..."``); a failed
competence `Gate` makes the outcome ``inconclusive`` and the reason names every failed gate. A
gate that cannot be evaluated (its evidence is missing) counts as failed, never as passed.

The minimum detectable effect (MDE) of a design is read off its interval: the standard error is
the half-width over the normal quantile of the interval's level, and the MDE of a one-sided test
at alpha 0.05 with power 0.8 is ``(z_{0.95} + z_{0.80}) * SE`` (about 1.51 half-widths of a 90%
interval). A margin below the MDE means the design is unlikely to support a true ``greater``
claim; it is reported beside the verdict so that a reader can tell "no effect" from "no power".

Several comparisons at once (issue 18, item 3): a claim decided over k layers, fractions or
widths makes k simultaneous comparisons, and k intervals at 90% each would let about one in ten
of them miss by chance. Such a claim reports its intervals at ``familywise_level(CI_LEVEL, k)``
(Bonferroni: each at ``1 - (1 - CI_LEVEL) / k``), so that all k cover together with probability
at least ``CI_LEVEL``. The studies widen intervals rather than adjust p-values because their
verdicts are decided from intervals; `holm` (Holm-Bonferroni, uniformly more powerful for
reject/keep decisions) is here for the p-values a study reports beside them.

Why this module lives in ``sodlab.studies`` and not ``sodlab.analysis``: it is plain data and
scipy, used only by the studies' verdicts and docs; ``sodlab.analysis`` imports torch and captum
when its package is imported, which the process that writes ``docs/findings.json`` needs not.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping, Optional, Sequence

from scipy.stats import norm

from ..errors import ConfigError
from .paths import MODES

OUTCOMES = ("supported", "refuted", "inconclusive")
RULES = ("equivalent", "greater", "less")
DIRECTIONS = ("at least", "at most", "below", "above")
CI_LEVEL = 0.90  # the level every claim study reports its interval at (issue 18, item 1)
MDE_ALPHA = 0.05
MDE_POWER = 0.80
QUICK_REASON = "quick mode"

# The competence gates (issue 18, item 2).
CLASSIFIER_MIN_TOP1 = 0.90  # a classifier compared with SOD must have learned its classes
# The same gate for ImageNet-1k weights (05's full-mode arm): 1,000 classes, on which a trained
# Res2Net-50 v1b 26w x 4s reaches 0.80 top-1 (the authors' file: 19.73% top-1 error, their
# README) and torchvision's ResNet-50 0.76, so 0.90 is out of reach for any of them. Below 0.75
# a file is not the trained classifier it claims to be (partly trained, damaged, or measured
# with other preprocessing than its own).
IMAGENET_MIN_TOP1 = 0.75
PLATEAU_MAX_GAIN = 0.005  # validation-score gain over the last quarter of the epochs, below which a model has plateaued
# A validation curve named ``<model>@check`` is the same recipe trained for the epochs before
# its last quarter (`check_epochs`): a schedule check of ``<model>`` (`plateau_gate`), not a
# model of the study.
SCHEDULE_CHECK = "@check"
# A curve named ``<model>@half`` is the same recipe trained for half the epochs as a condition of
# a study (05's shorter fine-tuning schedule): short on purpose, so no model the gates judge.
HALF_SCHEDULE = "@half"
SCHEDULE_SUFFIXES = (SCHEDULE_CHECK, HALF_SCHEDULE)
# Replicates of one model trained from several seeds are named ``<model>:seed<k>``.
SEED_SEPARATOR = ":seed"

# The keys of a verdict's JSON object (``findings.json``), in the order written.
VERDICT_KEYS = ("study", "claim", "quantity", "outcome", "reason", "rule", "effect", "ci", "ci_level", "margin", "seeds",
                "mode", "mde", "gates", "lines")
GATE_KEYS = ("value", "threshold", "passed")


# ------------------------------------------------------------------------ rules
def decide(rule: str, low: float, high: float, margin: float) -> str:
    """The outcome of ``rule`` for the interval ``[low, high]`` and ``margin`` (module docstring)."""
    _check_rule(rule)
    _check_interval(low, high)
    _check_margin(margin)
    if rule == "equivalent":
        if -margin <= low and high <= margin:
            return "supported"
        if low > margin or high < -margin:
            return "refuted"
    elif rule == "greater":
        if low > margin:
            return "supported"
        if high < margin:
            return "refuted"
    else:
        if high < -margin:
            return "supported"
        if low > -margin:
            return "refuted"
    return "inconclusive"


def refuted_if(rule: str, margin: float, level: float = CI_LEVEL) -> str:
    """In words, the result that would have refuted a claim judged by ``rule``."""
    _check_rule(rule)
    band = f"{level:.0%} interval"
    if rule == "equivalent":
        return f"the {band} lying entirely outside [{-margin:+.3g}, {margin:+.3g}] (below {-margin:+.3g} or above {margin:+.3g})"
    if rule == "greater":
        return f"the {band} lying entirely below {margin:+.3g}"
    return f"the {band} lying entirely above {-margin:+.3g}"


def minimum_detectable_effect(low: float, high: float, level: float = CI_LEVEL, alpha: float = MDE_ALPHA,
                              power: float = MDE_POWER) -> float:
    """``(z_{1-alpha} + z_{power}) * SE`` with ``SE = (high - low) / 2 / z_{(1+level)/2}``: the
    smallest true effect a one-sided test at ``alpha`` detects with probability ``power``,
    for a design whose interval at ``level`` is ``[low, high]``."""
    _check_interval(low, high)
    _check_level(level)
    se = (high - low) / 2 / norm.ppf((1 + level) / 2)
    return float((norm.ppf(1 - alpha) + norm.ppf(power)) * se)


# ------------------------------------------------------------------------ multiple comparisons
def familywise_level(level: float, k: int) -> float:
    """The level at which each of ``k`` simultaneous intervals is reported so that all of them
    cover together with probability at least ``level`` (Bonferroni: ``1 - (1 - level) / k``).
    A claim decided over k layers, fractions or widths uses ``familywise_level(CI_LEVEL, k)``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"k {k!r}: the number of comparisons must be a whole number >= 1")
    if not 0 < level < 1:
        raise ConfigError(f"level {level!r}: the family-wise level must lie strictly between 0 and 1")
    return 1 - (1 - level) / int(k)


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm-Bonferroni step-down rejections, in the order of ``p_values``: the j-th smallest
    p-value (j from 0) is rejected when it and every smaller one satisfy ``p <= alpha / (m - j)``.
    Keeps the family-wise error rate at ``alpha`` under any dependence, as Bonferroni does, and
    rejects at least what Bonferroni rejects."""
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha {alpha!r}: the family-wise error rate must lie strictly between 0 and 1")
    ps = [float(p) for p in p_values]
    bad = [p for p in ps if not 0 <= p <= 1]  # NaN included
    if bad:
        raise ConfigError(f"p-values must lie in [0, 1], got {bad}")
    m = len(ps)
    rejected = [False] * m
    for j, i in enumerate(sorted(range(m), key=ps.__getitem__)):
        if ps[i] > alpha / (m - j):
            break
        rejected[i] = True
    return rejected


# ------------------------------------------------------------------------ gates
@dataclasses.dataclass(frozen=True)
class Gate:
    """A competence condition checked before a verdict: ``value`` against ``threshold`` in
    ``direction`` ("at least": >=, "at most": <=, "below": <, "above": >). ``value`` None means the gate
    could not be evaluated (``note`` says what is missing); such a gate has not passed."""

    name: str
    value: Optional[float]
    threshold: float
    direction: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"gate {self.name!r}: direction {self.direction!r}, expected one of {DIRECTIONS}")
        if self.value is not None:
            if not math.isfinite(self.value):
                raise ValueError(f"gate {self.name!r}: value {self.value!r} is not finite (use None for a gate that cannot be evaluated)")
            object.__setattr__(self, "value", float(self.value))  # numpy scalars in, JSON numbers out

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        if self.direction == "at least":
            return self.value >= self.threshold
        if self.direction == "at most":
            return self.value <= self.threshold
        if self.direction == "above":
            return self.value > self.threshold
        return self.value < self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "threshold": self.threshold, "passed": self.passed}

    def describe(self) -> str:
        sign = {"at least": ">=", "at most": "<=", "below": "<", "above": ">"}[self.direction]
        got = "not evaluable" if self.value is None else f"{self.value:.4g}"
        note = f" ({self.note})" if self.note else ""
        return f"{self.name}: {got}, needs {sign} {self.threshold:g}: {'passed' if self.passed else 'FAILED'}{note}"


def classifier_gate(model: str, accuracy: Optional[float], note: str = "", threshold: float = CLASSIFIER_MIN_TOP1) -> Gate:
    """Top-1 accuracy of a classifier on held-out images, at least ``threshold``
    (`CLASSIFIER_MIN_TOP1`; `IMAGENET_MIN_TOP1` for ImageNet-1k weights)."""
    return Gate(f"classifier top-1: {model}", accuracy, threshold, "at least",
                note or ("no accuracy recorded" if accuracy is None else "held-out images"))


def plateau_gain(curve: Sequence[float]) -> float:
    """Gain of a per-epoch validation score over the last quarter of the epochs: the last value
    minus the value before the last ``ceil(n / 4)`` epochs (so 8 epochs: epoch 8 minus epoch 6)."""
    values = [float(v) for v in curve]
    if len(values) < 2:
        raise ValueError(f"a plateau needs a validation curve of at least 2 epochs, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"validation curve has non-finite values: {values}")
    quarter = math.ceil(len(values) / 4)
    return values[-1] - values[-1 - quarter]


def schedule_suffix(name: str) -> str:
    """The `SCHEDULE_SUFFIXES` member ``name`` ends in, or ``""``."""
    return next((x for x in SCHEDULE_SUFFIXES if name.endswith(x)), "")


def seed_name(model: str, seed: int) -> str:
    """A replicate's name in a study's ``training`` table: ``model`` trained from ``seed``
    (placed before a schedule suffix, `SCHEDULE_CHECK` or `HALF_SCHEDULE`, when ``model`` ends
    in one)."""
    suffix = schedule_suffix(model)
    return f"{model[: len(model) - len(suffix)]}{SEED_SEPARATOR}{int(seed)}{suffix}"


def model_role(name: str) -> str:
    """The model a curve name stands for, without its seed and schedule suffixes."""
    suffix = schedule_suffix(name)
    return name[: len(name) - len(suffix)].split(SEED_SEPARATOR)[0]


def half_epochs(*epochs: int) -> Optional[tuple[int, ...]]:
    """Each of ``epochs`` halved (rounded down), or None when one of them has no half."""
    if min(epochs) < 2:
        return None
    return tuple(int(n) // 2 for n in epochs)


def check_epochs(*epochs: int) -> Optional[tuple[int, ...]]:
    """The epochs of a schedule check of runs trained for ``epochs``: each without its last
    quarter (``n - ceil(n / 4)``, the point `plateau_gain` measures from: 16 -> 12, 80 -> 60),
    or None when one of them has none left (a one-epoch run, whose check would be itself and
    pass the plateau gate at a gain of exactly 0)."""
    if min(epochs) < 2:
        return None
    return tuple(int(n) - math.ceil(int(n) / 4) for n in epochs)


def schedule_gain(curve: Sequence[float], check: Sequence[float]) -> float:
    """What the last quarter of a run's epochs gained: its best validation score minus the best
    of the same recipe trained for the epochs before that quarter (`check_epochs`; each run's
    selected checkpoint)."""
    full, shorter = [float(v) for v in curve], [float(v) for v in check]
    if not full or not shorter:
        raise ValueError("a schedule check needs two non-empty validation curves")
    if not all(math.isfinite(v) for v in full + shorter):
        raise ValueError(f"validation curves have non-finite values: {full}, {shorter}")
    return max(full) - max(shorter)


def plateau_gate(curves: Optional[Mapping[str, Sequence[float]]], models: Sequence[str], missing: str) -> Gate:
    """Every model in ``models`` trained to a plateau: its gain below `PLATEAU_MAX_GAIN`, the
    worst model's gain is the gate's value. A model without a curve (or a curve too short)
    makes the gate not evaluable; ``missing`` says why the curves are absent. A required name
    is found as itself or as its seeded replicates (`seed_name`), each of which is judged.

    The gain is the last quarter's (`plateau_gain`) unless ``curves`` hold a schedule check
    of the model (``<name>@check``, `SCHEDULE_CHECK`; for one replicate it speaks for every seed
    of that model, since the recipe and data, not the seed, decide how long training takes):
    then it is what the last quarter of the epochs gained over a run of the same recipe without
    it (`schedule_gain`). Why: a schedule that anneals its learning rate to zero (one-cycle,
    cosine) climbs through its last quarter at any length, since that climb is the annealing,
    and a run's own last quarter is not what a shorter run of the recipe reaches. (Until
    2026-12 the check was half the epochs: what doubling the schedule gained, a stricter
    quantity than the issue's last quarter at the same threshold; it is the issue's now.)
    ``@half`` curves (`HALF_SCHEDULE`) are a study's short conditions, neither checks nor judged.
    """
    curves = dict(curves or {})
    checks = {k[: -len(SCHEDULE_CHECK)]: v for k, v in curves.items() if k.endswith(SCHEDULE_CHECK)}
    runs = {k: v for k, v in curves.items() if not schedule_suffix(k)}
    found = {m: [k for k in runs if k == m or k.startswith(m + SEED_SEPARATOR)] for m in models}
    absent = [m for m, names in found.items() if not names]
    if absent:
        return Gate("plateau", None, PLATEAU_MAX_GAIN, "below", f"{missing}: no validation curve for {', '.join(absent)}")
    role_check = {model_role(k): k for k in checks if k in runs}
    gains, how = {}, {}
    try:
        for m, names in found.items():
            for name in names:
                checked = role_check.get(model_role(name))
                if checked is not None:
                    gains[name], how[name] = schedule_gain(runs[checked], checks[checked]), f"last quarter of the schedule of {checked}"
                else:
                    gains[name], how[name] = plateau_gain(runs[name]), "last-quarter gain"
    except ValueError as e:
        return Gate("plateau", None, PLATEAU_MAX_GAIN, "below", str(e))
    worst = max(gains, key=gains.get)
    return Gate("plateau", gains[worst], PLATEAU_MAX_GAIN, "below", f"largest gain: {worst} ({how[worst]})")


def selection_gate(on_validation: Optional[bool], missing: str) -> Gate:
    """Models selected (epochs, checkpoint) on a validation split that is not the test split:
    value 1 when so, 0 when not, None (not evaluable) when unknown; ``missing`` says why."""
    value = None if on_validation is None else float(bool(on_validation))
    note = missing if not on_validation else "validation split, not the test split"
    return Gate("selection on validation", value, 1.0, "at least", note)


# ------------------------------------------------------------------------ the verdict
@dataclasses.dataclass(frozen=True)
class Verdict:
    """One study's finding as plain data: `to_dict` is its ``findings.json`` object.

    ``effect`` is the measured ``quantity`` (in words, with units); ``ci`` its interval at
    ``ci_level`` (None when the design produced none: the outcome is then inconclusive);
    ``mde`` the minimum detectable effect of that interval; ``seeds`` the seeds behind it;
    ``gates`` the competence gates checked; ``lines`` Markdown bullets with this run's numbers.
    Built by `judge`, which applies the rule; the constructor only validates.
    """

    study: str
    claim: str
    quantity: str
    outcome: str
    reason: str
    rule: str
    effect: float
    ci: Optional[tuple[float, float]]
    ci_level: float
    margin: float
    seeds: tuple[int, ...]
    mode: str
    mde: Optional[float]
    gates: tuple[Gate, ...] = ()
    lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r}: expected one of {OUTCOMES}")
        _check_rule(self.rule)
        _check_margin(self.margin)
        _check_level(self.ci_level)
        if not math.isfinite(self.effect):
            raise ValueError(f"effect {self.effect!r}: must be finite")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: expected one of {MODES}")
        if self.ci is not None:
            if len(self.ci) != 2:
                raise ValueError(f"ci {self.ci!r}: expected [low, high]")
            _check_interval(*self.ci)
        elif self.outcome != "inconclusive":
            raise ValueError(f"outcome {self.outcome!r} without an interval: only 'inconclusive' can stand without one")
        names = [g.name for g in self.gates]
        if len(set(names)) != len(names):
            raise ValueError(f"gate names must be unique, got {names}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of issue 18 item 8 (plus ``reason``, ``quantity`` and ``lines``)."""
        d = {
            "study": self.study, "claim": self.claim, "quantity": self.quantity, "outcome": self.outcome,
            "reason": self.reason, "rule": self.rule, "effect": self.effect,
            "ci": None if self.ci is None else [self.ci[0], self.ci[1]], "ci_level": self.ci_level,
            "margin": self.margin, "seeds": list(self.seeds), "mode": self.mode, "mde": self.mde,
            "gates": {g.name: g.to_dict() for g in self.gates}, "lines": list(self.lines),
        }
        return {k: d[k] for k in VERDICT_KEYS}

    @property
    def failed_gates(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]

    def markdown(self) -> str:
        """The "What we found" text: outcome, effect, interval, margin, rule, what would have
        refuted the claim, gates (with why each failed), and this run's numbers."""
        return "\n".join(render(self.to_dict(), {g.name: g.describe() for g in self.gates}))


def render(record: Mapping[str, Any], gate_text: Optional[Mapping[str, str]] = None) -> list[str]:
    """Markdown lines of a verdict's JSON object; ``gate_text`` (name -> description) replaces
    the plain value/threshold of a gate (a `Verdict` passes its gates' notes this way)."""
    ci = record["ci"]
    interval = "no interval" if ci is None else f"{record['ci_level']:.0%} interval [{ci[0]:+.4f}, {ci[1]:+.4f}]"
    mde = "" if record["mde"] is None else f"; minimum detectable effect {record['mde']:.4f}"
    seeds = ", ".join(str(s) for s in record["seeds"]) or "none (nothing is sampled)"
    gate_text = gate_text or {}
    gates = [f"  - {gate_text.get(name) or _plain_gate(name, g)}" for name, g in record["gates"].items()]
    return [
        f"**Outcome: {record['outcome']}** ({record['reason']}).",
        "",
        f"- Effect: {record['quantity']} = {record['effect']:+.4f}, {interval}{mde}.",
        f"- Rule `{record['rule']}`, margin {record['margin']:g} (chosen before the data); the claim would have been "
        f"refuted by {refuted_if(record['rule'], record['margin'], record['ci_level'])}.",
        f"- Seeds: {seeds}; mode {record['mode']}.",
        *(["- Gates:"] + gates if gates else ["- Gates: none apply."]),
        *record["lines"],
    ]


def _plain_gate(name: str, gate: Mapping[str, Any]) -> str:
    got = "not evaluable" if gate["value"] is None else f"{gate['value']:.4g}"
    return f"{name}: {got}, threshold {gate['threshold']:g}: {'passed' if gate['passed'] else 'FAILED'}"


def check_record(record: Any, where: str) -> dict[str, Any]:
    """``record`` when it is a verdict's JSON object with exactly `VERDICT_KEYS` (and gates of
    `GATE_KEYS`); a ValueError naming ``where`` otherwise (e.g. a findings.json of an older run)."""
    if not isinstance(record, dict) or set(record) != set(VERDICT_KEYS):
        got = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{where}: not a verdict record (keys {got}, expected {list(VERDICT_KEYS)}); rerun the notebook")
    for name, gate in record["gates"].items():
        if not isinstance(gate, dict) or set(gate) != set(GATE_KEYS):
            raise ValueError(f"{where}: gate {name!r} should have exactly the keys {list(GATE_KEYS)}")
    if record["outcome"] not in OUTCOMES:
        raise ValueError(f"{where}: outcome {record['outcome']!r}, expected one of {OUTCOMES}")
    return record


def judge(*, study: str, claim: str, quantity: str, effect: float, ci: Optional[tuple[float, float]], margin: float,
          rule: str, mode: str, seeds: Sequence[int], gates: Sequence[Gate] = (), lines: Sequence[str] = (),
          ci_level: float = CI_LEVEL, no_interval: str = "the design produces none") -> Verdict:
    """Apply the rule: quick mode, then a missing interval (``no_interval`` says why), then
    failed gates make the outcome inconclusive; otherwise `decide` on ``ci``."""
    mde = None if ci is None else minimum_detectable_effect(ci[0], ci[1], ci_level)
    failed = [g.name for g in gates if not g.passed]
    if mode == "quick":
        outcome, reason = "inconclusive", QUICK_REASON
    elif ci is None:
        outcome, reason = "inconclusive", f"no interval: {no_interval}"
    elif failed:
        outcome, reason = "inconclusive", f"failed gate{'s' if len(failed) > 1 else ''}: {'; '.join(failed)}"
    else:
        outcome = decide(rule, ci[0], ci[1], margin)
        reason = _rule_reason(outcome, rule, ci, margin)
    return Verdict(study, claim, quantity, outcome, reason, rule, float(effect), None if ci is None else (float(ci[0]), float(ci[1])),
                   ci_level, float(margin), tuple(int(s) for s in seeds), mode, mde, tuple(gates), tuple(lines))


def _rule_reason(outcome: str, rule: str, ci: tuple[float, float], margin: float) -> str:
    low, high = ci
    where = {
        "equivalent": {"supported": f"inside [{-margin:+.3g}, {margin:+.3g}]", "refuted": f"entirely outside [{-margin:+.3g}, {margin:+.3g}]",
                       "inconclusive": f"neither inside nor entirely outside [{-margin:+.3g}, {margin:+.3g}]"},
        "greater": {"supported": f"above {margin:+.3g}", "refuted": f"below {margin:+.3g}", "inconclusive": f"across {margin:+.3g}"},
        "less": {"supported": f"below {-margin:+.3g}", "refuted": f"above {-margin:+.3g}", "inconclusive": f"across {-margin:+.3g}"},
    }[rule][outcome]
    return f"the interval [{low:+.4f}, {high:+.4f}] lies {where}"


# ------------------------------------------------------------------------ validation
def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"rule {rule!r}: expected one of {RULES}")


def _check_interval(low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"ci [{low}, {high}]: both ends must be finite")
    if low > high:
        raise ValueError(f"ci [{low}, {high}]: low must not exceed high")


def _check_margin(margin: float) -> None:
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin {margin}: must be finite and >= 0")


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"ci_level {level}: must lie strictly between 0 and 1")
