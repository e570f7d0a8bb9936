"""The "What we found" of each study notebook: from a study's result tables to a `Verdict` on
the paper's claim, by the rule of `sodlab.studies.rules` fixed before the data.

Each function names the quantity its study measures (``effect``), reads its interval from the
study's tables (90% bootstrap intervals where the study computes one; none where the design has
none, which leaves the outcome inconclusive), and applies the margin and rule chosen here in
advance, each with its reason, after the competence gates that apply: every classifier in a
comparison at `CLASSIFIER_MIN_TOP1` top-1 on held-out images, every trained model at a plateau
on a validation split, and models selected on that split. The studies hold a validation split
out of the training images (`sodlab.studies.common.datasets`) and return a ``training`` table
of every model's validation curve; `training_evidence` turns it into the ``validation_curves``
and ``selected_on_validation`` arguments. Without them the plateau and selection gates are not
evaluable (failed): a gate is never passed by default.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .common import collapsed_share, seed_mean
from .pretraining import IMAGENET_CLASSES, IMAGENET_CLASSIFIER, arm_name
from .redundancy import PLATEAU_SHARE, params_to_reach, task_scores
from .rules import (CI_LEVEL, CLASSIFIER_MIN_TOP1, HALF_SCHEDULE, IMAGENET_MIN_TOP1, SCHEDULE_CHECK, SEED_SEPARATOR, Gate,  # noqa: F401
                    Verdict, classifier_gate, judge, plateau_gate, schedule_suffix, selection_gate)

Curves = Optional[Mapping[str, Sequence[float]]]

# Why the training gates cannot be evaluated on today's tables.
NO_VALIDATION_SPLIT = "no validation curves were given (the study's training table)"

_CLASSIFIER_NAMES = {"classifier": "the classification twin", "classifier_twin": "the classification twin",
                     "pretraining_classifier": "the pre-training classifier",
                     "pretraining_classifier_with_sod": "the with-sod corpus's classifier",
                     "sod_encoder_probe": "the SOD encoder's linear class head"}


def _classifier_name(model: str) -> str:
    base, sep, seed = model.partition(SEED_SEPARATOR)
    if sep:  # a replicate (`seed_name`): its model's name and the seed
        return f"{_classifier_name(base)} (seed {seed})"
    if model.startswith("classifier_w"):
        return f"the width-{model[len('classifier_w'):]} classifier"
    return _CLASSIFIER_NAMES.get(model, model)


def classifier_gates(classifiers: Optional[pd.DataFrame], expected: Sequence[str]) -> tuple[list[Gate], list[str]]:
    """One gate per classifier of a ``classifiers`` table (model, classes, n_images, accuracy,
    chance; as the experiments return it) and its Markdown line; a gate per ``expected``
    model, not evaluable, when the table is missing."""
    if classifiers is None or not len(classifiers):
        return [classifier_gate(m, None) for m in expected], []
    gates = [classifier_gate(r.model, float(r.accuracy), f"{int(r.classes)} classes, {int(r.n_images)} held-out images")
             for r in classifiers.itertuples()]
    lines = ["- Classifiers on held-out test images: " + "; ".join(
        f"{_classifier_name(r.model)} top-1 {r.accuracy:.3f} on {int(r.classes)} classes (chance {r.chance:.3f})"
        for r in classifiers.itertuples()) + "."]
    return gates, lines


def training_gates(models: Sequence[str], validation_curves: Curves, selected_on_validation: Optional[bool]) -> list[Gate]:
    """The plateau and selection gates for the trained ``models`` and for every other model
    that has a validation curve (a study's side models must be competent too; a schedule check,
    ``<model>@check``, is evidence about its model, and a ``<model>@half`` condition is short on
    purpose: neither is a model judged here)."""
    others = [k for k in (validation_curves or {}) if not schedule_suffix(k)
              and not any(k.startswith(m + SEED_SEPARATOR) for m in models)]
    models = list(dict.fromkeys([*models, *others]))
    return [plateau_gate(validation_curves, models, NO_VALIDATION_SPLIT),
            selection_gate(selected_on_validation, NO_VALIDATION_SPLIT)]


def training_evidence(training: Optional[pd.DataFrame]) -> dict:
    """The ``validation_curves`` and ``selected_on_validation`` arguments of a verdict from a
    study's ``training`` table (`sodlab.studies.common.validation_rows`): one validation curve
    per model, by epoch, and True when every model was returned at its best validation epoch.
    An absent or empty table gives neither (the gates are then not evaluable)."""
    if training is None or not len(training):
        return {"validation_curves": None, "selected_on_validation": None}
    curves = {str(m): g.sort_values("epoch")["value"].tolist() for m, g in training.groupby("model", sort=False)}
    selected = bool(training.groupby("model", sort=False)["selected"].any().all())
    return {"validation_curves": curves, "selected_on_validation": selected}


# ------------------------------------------------------------------------ 1: quickstart
QUICKSTART_CLAIM = "The model detects salient objects better than model-free guesses (centre bias; contrast near the centre)."
# A model must beat the stronger guess by more than max-F differs between runs of a small model.
QUICKSTART_MARGIN = 0.05


def quickstart(metrics: Mapping[str, float], centre: Mapping[str, float], source: str, params: int, gmacs: float,
               size: int, n_images: int, *, mode: str, seeds: Sequence[int], validation_curves: Curves = None,
               selected_on_validation: Optional[bool] = None, contrast: Optional[Mapping[str, float]] = None,
               gaps: Optional[pd.DataFrame] = None) -> Verdict:
    """``metrics``/``centre``/``contrast``: scalar metrics (max_f, mae, ...) of the model, of the
    centre-bias guess and of the contrast + centre baseline (`sodlab.baselines`) on the same
    test images. Rule ``greater``: the model's max-F minus the stronger guess's exceeds
    `QUICKSTART_MARGIN`; the control is the contrast baseline, which a model that learned only
    "odd colour near the middle" would not beat. ``gaps`` (`sodlab.studies.quickstart.guess_gaps`:
    per guess, the gap under SalMetric, the mean over seeds, with a paired interval that
    resamples seeds and then test images; over images alone for one model) gives the
    effect and its interval, against the guess that scores higher there; without it the set
    is scored as a whole, so there is no interval and the outcome stays inconclusive."""
    guesses = {"centre bias": centre, **({"contrast + centre": contrast} if contrast is not None else {})}
    strongest = max(guesses, key=lambda k: guesses[k]["max_f"])
    gain = metrics["max_f"] - guesses[strongest]["max_f"]
    lines = [
        f"- Model: {source}; {params:,} parameters, {gmacs:.3f} GMACs at {size}x{size}.",
        f"- Test split ({n_images} images): max-F {metrics['max_f']:.3f}, mean-F {metrics.get('mean_f', float('nan')):.3f}, "
        f"MAE {metrics['mae']:.4f}; " + "; ".join(f"{k}: max-F {g['max_f']:.3f}, MAE {g['mae']:.4f}" for k, g in guesses.items())
        + f"; gain over the stronger guess ({strongest}) {gain:+.3f}.",
    ]
    ci, level = None, CI_LEVEL
    if gaps is not None and len(gaps):
        top = gaps.loc[gaps["guess_max_f"].idxmax()]
        strongest, gain, ci, level = str(top.guess), float(top.gap), (float(top.low), float(top.high)), float(top.level)
        lines.append(f"- Under {top.protocol} (the studies' protocol), image by image: model max-F {top.model_max_f:.3f}; "
                     + "; ".join(f"minus {r.guess} ({r.guess_max_f:.3f}) {r.gap:+.3f} ({r.level:.0%} CI {r.low:+.3f} .. {r.high:+.3f})"
                                 for r in gaps.itertuples()) + ".")
    return judge(study="01_quickstart", claim=QUICKSTART_CLAIM,
                 quantity="model max-F minus the stronger model-free guess's max-F (0-1)",
                 effect=gain, ci=ci, ci_level=level, margin=QUICKSTART_MARGIN, rule="greater", mode=mode, seeds=seeds,
                 gates=training_gates(["model"], validation_curves, selected_on_validation), lines=lines,
                 no_interval="the evaluation scores the test set as a whole, with no per-image scores to bootstrap")


# ------------------------------------------------------------------------ 2: anatomy
ANATOMY_CLAIM = "SOD can be done with about 100K parameters; CSNet's channel numbers are learned, not uniform."
# A uniform width multiplier keeps the same share of every block (spread 0, plus rounding to
# whole channels, a few hundredths); a learned allocation must spread its blocks by more than 0.10.
ANATOMY_MARGIN = 0.10


def anatomy(models: pd.DataFrame, blocks: pd.DataFrame, big: Optional[str] = "csf-res2net50", *, mode: str) -> Verdict:
    """``models``: one row per model at 224x224 (``model``, ``params``, ``gmacs``); ``blocks``:
    the per-block allocation (``model``, ``block``, ``scale``, ``channels``) with rows for
    ``csnet`` (unpruned), ``csnet-L-x1`` and ``csnet-L-x2``.

    Not descriptive only: the "learned, not uniform" clause can fail. The effect is the spread
    of the share of each block's channels CSNet-L-x1 keeps, rule ``greater`` with
    `ANATOMY_MARGIN`. The released configurations are counted, not sampled, so the interval
    is the point itself (exact, no seeds, minimum detectable effect 0) and no gate applies; the
    parameter counts are reported beside it."""
    p = models.set_index("model")["params"]
    g = models.set_index("model")["gmacs"]
    big = big if big in p else None
    share = blocks.groupby(["model", "scale"])["channels"].sum().unstack()
    half = (share[1] / share.sum(axis=1)) if 1 in share else pd.Series(0.0, index=share.index)
    per_block = blocks.pivot_table(index="block", columns="model", values="channels", aggfunc="sum", sort=False)
    kept = per_block["csnet-L-x1"] / per_block["csnet"]
    lines = ["- At 224x224: " + "; ".join(f"{m} {p[m]:,} parameters / {g[m]:.3f} GMACs" for m in p.index) + "."]
    if big:
        lines.append(f"- CSF+Res2Net needs {p[big] / p['csnet-L-x2']:.0f}x the parameters and {g[big] / g['csnet-L-x2']:.0f}x "
                     "the MACs of CSNet-L-x2.")
    else:
        lines.append("- CSF+Res2Net is not in the table, so the comparison with it is missing.")
    lines += [
        f"- Half-resolution share of encoder channels: unpruned {half.get('csnet', float('nan')):.0%}, "
        f"CSNet-L-x1 {half.get('csnet-L-x1', float('nan')):.0%}, CSNet-L-x2 {half.get('csnet-L-x2', float('nan')):.0%}.",
        f"- CSNet-L-x1 keeps between {kept.min():.0%} and {kept.max():.0%} of a block's unpruned channels "
        f"(spread {kept.std():.2f}): most in `{kept.idxmax()}`, fewest in `{kept.idxmin()}`.",
        "- Exact: the released configurations are counted, so the interval is the point itself.",
    ]
    spread_ = float(kept.std())
    return judge(study="02_anatomy", claim=ANATOMY_CLAIM,
                 quantity="standard deviation over encoder blocks of the share of channels CSNet-L-x1 keeps (fraction)",
                 effect=spread_, ci=(spread_, spread_), margin=ANATOMY_MARGIN, rule="greater", mode=mode, seeds=(), lines=lines)


# ------------------------------------------------------------------------ 3: pruning
PRUNING_CLAIM = ("Dynamic weight decay lets CSNet be pruned to the paper's sizes (about 55% of the parameters removed "
                 "at x1, 80% at x2) with little loss, better than L2/L1.")
# "Little loss", read as the paper's: the slim model within 0.02 max-F of the unpruned one (equivalent).
PRUNING_TOLERANCE = 0.02
# The paper's own targets, from the released learned models: CSNet-L-x1 keeps 93,647 of the
# 210,985 parameters of the unpruned x1 (width 20), CSNet-L-x2 140,894 of x2's 788,631 (width 40).
PAPER_TARGETS = {20: 93_647 / 210_985, 40: 140_894 / 788_631}
PRUNING_TARGET_KEPT = PAPER_TARGETS[40]  # "about 80% pruned", the x2 figure


def pruning_target_kept(width: Optional[int]) -> float:
    """The share of parameters the paper keeps for a CSNet of base ``width``: x1's (0.444) at
    width 20 or less, x2's (0.179) at 40 or more, in between interpolated in log width. A
    width-16 study model is held to x1's target, not to x2's 80% (``None``: x2's, as before)."""
    if width is None:
        return PRUNING_TARGET_KEPT
    (w1, k1), (w2, k2) = sorted(PAPER_TARGETS.items())
    if width <= w1 or width >= w2:
        return float(k1 if width <= w1 else k2)
    t = (math.log(width) - math.log(w1)) / (math.log(w2) - math.log(w1))
    return float(k1 + t * (k2 - k1))
# The regime the claim is about: DWD drives gammas to collapse, and pruning removes the collapsed
# channels. A channel has collapsed when its |gamma| is under 1% of its block's largest. Keeping
# 20% of the parameters needs roughly half the channels gone (conv parameters scale with the
# product of in and out widths), so a run where under a quarter collapsed never reached it.
GAMMA_COLLAPSE_REL = 0.01
GAMMA_COLLAPSE_MIN_SHARE = 0.25


def gamma_collapse_gate(gammas: Optional[pd.DataFrame], regularizer: str = "dwd") -> Gate:
    """The share of ``regularizer``'s regularised channels whose |gamma| (at the last epoch of
    ``gammas``, `sodlab.studies.pruning.regularizer_study`'s table) is under `GAMMA_COLLAPSE_REL`
    of their block's largest, against `GAMMA_COLLAPSE_MIN_SHARE`. Missing evidence fails the gate."""
    name = "gamma collapse (regime reached)"
    if gammas is None or not len(gammas) or regularizer not in set(gammas["regularizer"]):
        return Gate(name, None, GAMMA_COLLAPSE_MIN_SHARE, "at least", f"no {regularizer} gammas")
    g = gammas[gammas.regularizer == regularizer]
    what = f"{regularizer} channels with |gamma| under {GAMMA_COLLAPSE_REL:g} of their block's largest"
    if "seed" in g and g["seed"].nunique() > 1:  # every seed must reach the regime: the lowest seed's share decides
        shares = {int(k): collapsed_share(gs[gs.epoch == gs.epoch.max()], GAMMA_COLLAPSE_REL) for k, gs in g.groupby("seed")}
        low = min(shares, key=shares.get)
        return Gate(name, shares[low], GAMMA_COLLAPSE_MIN_SHARE, "at least", f"{what}; the lowest of {len(shares)} seeds (seed {low})")
    share = collapsed_share(g[g.epoch == g.epoch.max()], GAMMA_COLLAPSE_REL)
    return Gate(name, share, GAMMA_COLLAPSE_MIN_SHARE, "at least", what)


# The paper prunes, then fine-tunes. A slim model fine-tuned for a token number of steps is
# judged mostly on what pruning left, so fine-tuning must take at least a fifth of the steps the
# model was trained for (issue 18, item 5).
FINETUNE_MIN_SHARE = 0.20


def finetune_gate(curves: pd.DataFrame) -> Gate:
    """Fine-tuning steps as a share of training steps (the curve's ``finetune_share`` column,
    written by `sodlab.studies.pruning.regularizer_study`), at least `FINETUNE_MIN_SHARE`.
    Curves that were not fine-tuned have a share of 0; curves without the column cannot be
    evaluated."""
    name = "fine-tuning at least a fifth of training"
    if "finetune_share" not in curves or curves["finetune_share"].isna().all():
        return Gate(name, None, FINETUNE_MIN_SHARE, "at least", "the curves do not record their fine-tuning share")
    share = float(curves["finetune_share"].min())
    return Gate(name, share, FINETUNE_MIN_SHARE, "at least", "fine-tuning images seen / training images seen")


def prunable_share(curve: pd.DataFrame, tol: float = PRUNING_TOLERANCE, metric: str = "max_f",
                   reference: Optional[float] = None) -> tuple[float, float]:
    """``(share of parameters removable, reference score)``: the largest share removed among the
    curve's points whose ``metric`` stays within ``tol`` of ``reference`` (by default the
    largest, unpruned, model's ``metric``). Limited by the points tried."""
    g = curve.sort_values("params", ascending=False)
    full = g.iloc[0]
    ref = float(full[metric]) if reference is None else float(reference)
    ok = g[g[metric] >= ref - tol]
    if ok.empty:
        return 0.0, ref
    return float(1 - ok["params"].min() / full["params"]), ref


def _at_target(curve: pd.DataFrame, metric: str, target: float = PRUNING_TARGET_KEPT) -> pd.Series:
    """The curve's point whose share of the unpruned parameters (``kept``, added) is nearest
    ``target``."""
    g = curve.dropna(subset=[metric])
    kept = g["params"] / curve["params"].max()
    i = (kept - target).abs().idxmin()
    row = g.loc[i].copy()
    row["kept"] = kept[i]
    return row


def _slim_scratch_lines(curves: pd.DataFrame, slim_scratch: Optional[pd.DataFrame]) -> list[str]:
    """The slim-from-scratch baseline beside the pruned model of the same architecture."""
    if slim_scratch is None or not len(slim_scratch):
        return ["- No slim architecture was trained from scratch: pruning is not compared with simply training the small model."]
    out = []
    for r in slim_scratch.itertuples():
        g = curves[(curves.regularizer == r.regularizer) & np.isclose(curves.keep_fraction, r.keep_fraction)]
        pruned = ""
        if len(g):
            p = g.iloc[0]
            pruned = f"; pruned to it, max-F {p.max_f:.3f}"
            if "max_f_finetuned" in g and not pd.isna(p.max_f_finetuned):
                pruned += f", {p.max_f_finetuned:.3f} after fine-tuning"
        out.append(f"- {r.regularizer}'s slim architecture at {r.keep_fraction:.0%} trained from scratch ({r.params:,} parameters, "
                   f"{r.epochs} epochs): max-F {r.max_f:.3f}{pruned}.")
    return out


def pruning(curves: pd.DataFrame, *, mode: str, seeds: Sequence[int], validation_curves: Curves = None,
            selected_on_validation: Optional[bool] = None, gammas: Optional[pd.DataFrame] = None,
            slim_scratch: Optional[pd.DataFrame] = None, width: Optional[int] = None,
            threshold_rule: Optional[pd.DataFrame] = None, stats: Optional[pd.DataFrame] = None,
            final: Optional[pd.DataFrame] = None) -> Verdict:
    """``curves``: `sodlab.prune.curve` rows with a ``regularizer`` column. The effect is DWD's
    max-F at the point nearest the paper's kept share for a CSNet of ``width``
    (`pruning_target_kept`; without ``width``, x2's `PRUNING_TARGET_KEPT`) minus its unpruned
    model's, after fine-tuning when the curves were fine-tuned (``max_f_finetuned``, the
    paper's prune-then-fine-tune protocol), rule ``equivalent`` with `PRUNING_TOLERANCE`. The
    interval comes from ``stats`` (`sodlab.studies.pruning.pruning_replicates`'
    ``pruning_stats``: the effect as the mean over seeds, its interval over seeds and images,
    the point nearest the target by the seeds' mean kept share); without it the curves carry
    one score per point and there is no interval. ``final`` with a ``seed`` column (the
    unpruned models of every seed) reports the seed-to-seed spread beside the tolerance.
    ``gammas`` (the study's gamma table) feeds `gamma_collapse_gate`: without it that gate fails.
    ``slim_scratch`` (the study's table) adds the pruned architecture trained from scratch as a
    reported baseline, and its model to the training gates. ``threshold_rule`` (the study's
    table) reports the authors' rule, every channel under their |gamma| threshold removed,
    beside the keep-fraction points."""
    tol = PRUNING_TOLERANCE
    target = pruning_target_kept(width)
    groups = dict(list(curves.groupby("regularizer")))
    rows = {r: prunable_share(g, tol) for r, g in groups.items()}
    lines = [f"- {r}: unpruned max-F {mf:.3f}; up to {share:.0%} of the parameters removed within {tol:g} max-F "
             "without fine-tuning" for r, (share, mf) in rows.items()]
    smallest = {r: g.sort_values("params").iloc[0] for r, g in groups.items()}
    lines.append("- at the smallest kept fraction: " + "; ".join(
        f"{r} {g['params']:,.0f} parameters, max-F {g['max_f']:.3f}" for r, g in smallest.items()))
    tuned = "max_f_finetuned" in curves and curves["max_f_finetuned"].notna().any()
    metric = "max_f_finetuned" if tuned else "max_f"
    if tuned:
        shares = {r: prunable_share(g.dropna(subset=["max_f_finetuned"]).assign(max_f=lambda d: d.max_f_finetuned), tol,
                                    reference=rows[r][1])[0] for r, g in groups.items()}
        lines.append("- after fine-tuning, removable within the same tolerance of the unpruned model: "
                     + "; ".join(f"{r} {s:.0%}" for r, s in shares.items()))
        # the unpruned point fine-tuned alike tells whether the fine-tuning recipe itself helps or harms
        full = {r: g.sort_values("params", ascending=False).iloc[0] for r, g in groups.items()}
        lines.append("- the unpruned model fine-tuned the same way: " + "; ".join(
            f"{r} {f['max_f']:.3f} -> {f['max_f_finetuned']:.3f}" for r, f in full.items() if not pd.isna(f["max_f_finetuned"])))
    when = "after fine-tuning" if tuned else "without fine-tuning"
    points = {r: _at_target(g, metric, target) for r, g in groups.items()}
    size = "" if width is None else f" (the paper's share for a width-{width} CSNet)"
    lines.append(f"- nearest {target:.0%} of the parameters kept{size}, {when}: " + "; ".join(
        f"{r} {p.kept:.0%} kept, max-F {p[metric]:.3f} ({p[metric] - rows[r][1]:+.3f} from unpruned)" for r, p in points.items()))
    if "dwd" not in points:
        raise ValueError(f"pruning verdict: no 'dwd' curve among regularizers {sorted(points)}")
    effect, ci, level, kept = float(points["dwd"][metric] - rows["dwd"][1]), None, CI_LEVEL, float(points["dwd"].kept)
    pooled = ""
    if stats is not None and len(stats) and "dwd" in set(stats["regularizer"]):
        d = stats[stats.regularizer == "dwd"]
        st = d.loc[(d["kept"] - target).abs().idxmin()]
        effect, ci, level, kept = float(st["effect"]), (float(st["ci_low"]), float(st["ci_high"])), float(st["ci_level"]), float(st["kept"])
        pooled = f", mean over {int(st['n_seeds'])} seeds"
        lines.append(f"- DWD pruned to keep {st['keep_fraction']:.0%} ({kept:.0%} of the parameters{pooled}): "
                     f"{effect:+.3f} max-F from unpruned ({level:.0%} interval {ci[0]:+.3f} .. {ci[1]:+.3f} over seeds and "
                     f"{int(st['n_images'])} test images; {st.get('protocol', 'salmetric')} protocol, as the curve's scores above).")
        if len(d) > 1:
            lines.append("- Every kept fraction, pruned minus unpruned (mean over seeds; descriptive, only the point above is "
                         "decided): " + "; ".join(f"{r.kept:.0%} kept {r.effect:+.3f}" for r in d.sort_values("kept").itertuples()))
    if final is not None and "seed" in final and final["seed"].nunique() > 1:
        f = final[final.regularizer == "dwd"].sort_values("seed")
        lines.append("- Unpruned DWD max-F by seed: " + ", ".join(f"seed {int(r.seed)} {r.max_f:.3f}" for r in f.itertuples())
                     + f" (spread {f.max_f.max() - f.max_f.min():.3f}, against the {tol:g} tolerance).")
    if threshold_rule is not None and len(threshold_rule):
        lines.append("- the authors' rule (every channel with |gamma| under the threshold removed, no fine-tuning): " + "; ".join(
            f"{r.regularizer} at {r.threshold:g}: {r.param_fraction:.0%} of the parameters kept, max-F {r.max_f:.3f} "
            f"({r.max_f - rows[r.regularizer][1]:+.3f} from unpruned)" for r in threshold_rule.itertuples() if r.regularizer in rows))
    # beside the first seed's curve (the figures'), that seed's slim models; every seed's are gated
    first_slim = slim_scratch
    if slim_scratch is not None and "seed" in slim_scratch and len(slim_scratch):
        first_slim = slim_scratch[slim_scratch["seed"] == slim_scratch["seed"].iloc[0]]
    lines += _slim_scratch_lines(curves, first_slim)
    models = sorted(groups) + ([f"slim from scratch at {f:.0%}" for f in dict.fromkeys(slim_scratch["keep_fraction"])]
                               if slim_scratch is not None and len(slim_scratch) else [])
    return judge(study="03_pruning", claim=PRUNING_CLAIM,
                 quantity=f"DWD max-F at {kept:.0%} of the parameters {when} minus unpruned DWD max-F (0-1){pooled}",
                 effect=effect, ci=ci, ci_level=level, margin=tol, rule="equivalent", mode=mode, seeds=seeds,
                 gates=[gamma_collapse_gate(gammas), finetune_gate(curves)] + training_gates(models, validation_curves, selected_on_validation),
                 lines=lines, no_interval="one score per pruning point (one seed, no per-image scores)")


# ------------------------------------------------------------------------ 4: categories
CATEGORY_CLAIM = "SOD models are category-insensitive: trained on some categories, they segment unseen categories about as well."
# 0.02 max-F is below what separates two published SOD models and above the gap rounding makes (equivalent).
CATEGORY_MARGIN = 0.02


def category_control_gate(gaps: pd.DataFrame) -> Gate:
    """The positive control of the category study: on the benchmark where only the category
    decides saliency (``saliency="category"``), the same protocol's seen-minus-unseen max-F
    interval must lie above `CATEGORY_MARGIN`, the result that refutes the claim on the main
    benchmark. The gate's value is that interval's low end; without the control's rows
    (task ``control_sod``) it cannot be evaluated, so it fails."""
    name = "the protocol finds a planted category gap (positive control)"
    rows = gaps[(gaps["task"] == "control_sod") & (gaps["metric"] == "max_f")] if len(gaps) else gaps
    if not len(rows):
        return Gate(name, None, CATEGORY_MARGIN, "above", "no positive-control model in the gaps table")
    r = rows.iloc[0]
    if not (np.isfinite(r["low"]) and np.isfinite(r["gap"])):
        return Gate(name, None, CATEGORY_MARGIN, "above", "the positive control's gap is not finite")
    return Gate(name, float(r["low"]), CATEGORY_MARGIN, "above",
                f"seen minus unseen max-F where the category decides saliency: {r['gap']:+.3f} (CI {r['low']:+.3f} .. {r['high']:+.3f})")


def _level(table: pd.DataFrame, what: str) -> float:
    if "level" not in table:
        raise ValueError(f"{what} has no 'level' column: the interval's level must come with it")
    return float(table["level"].iloc[0])


def category_sensitivity(summary: pd.DataFrame, gaps: pd.DataFrame, drops: Optional[pd.DataFrame] = None,
                         classifiers: Optional[pd.DataFrame] = None, *, mode: str, seeds: Sequence[int],
                         validation_curves: Curves = None, selected_on_validation: Optional[bool] = None) -> Verdict:
    """Tables of `sodlab.studies.categories.category_sensitivity` (``summary``, ``gaps`` with
    its ``level``, ``classifiers``) and `sodlab.studies.categories.loo_drop` of its
    leave-one-out matrix (``drops``, optional). The effect is SOD's seen-minus-unseen max-F with
    its bootstrap interval, rule ``equivalent`` with `CATEGORY_MARGIN`; the classifier it is
    contrasted with must pass its gate."""
    g = gaps.set_index(["task", "metric"])
    sod_f = g.loc[("sod", "max_f")]
    sod_m = g.loc[("sod", "mae")]
    level = _level(gaps, "gaps")

    def val(task: str, group: str, metric: str) -> float:
        sel = summary[(summary.task == task) & (summary.group == group) & (summary.metric == metric)]
        return float(sel["value"].iloc[0])

    pooled = ""
    if sod_f.get("n_replicates", 1) > 1:
        pooled = f" (means over {int(sod_f.n_replicates)} category splits; interval over splits and images)"
    lines = [
        f"- SOD max-F{pooled}: seen {val('sod', 'seen', 'max_f'):.3f}, unseen {val('sod', 'unseen', 'max_f'):.3f}; "
        f"gap {sod_f.gap:+.3f} ({level:.0%} CI {sod_f.low:+.3f} .. {sod_f.high:+.3f}, {sod_f.relative_gap:+.1%} of the seen score).",
        f"- SOD MAE: gap {sod_m.gap:+.4f} ({level:.0%} CI {sod_m.low:+.4f} .. {sod_m.high:+.4f}; a negative MAE gap means unseen is worse).",
    ]
    for task, who in (("classifier", "Classifier"), ("sod_encoder", "SOD")):
        if (task, "ncm_accuracy_vs_chance") in g.index:
            r = g.loc[(task, "ncm_accuracy_vs_chance")]
            lines.append(f"- {who} encoder, nearest-class-mean accuracy above chance: seen "
                         f"{val(task, 'seen', 'ncm_accuracy_vs_chance'):.2f}, unseen {val(task, 'unseen', 'ncm_accuracy_vs_chance'):.2f}; "
                         f"gap {r.gap:+.2f} ({level:.0%} CI {r.low:+.2f} .. {r.high:+.2f}).")
    if drops is not None and len(drops):
        worst = drops.loc[drops["drop"].idxmax()]
        lines.append(f"- Leave-one-out ({len(drops)} categories held out in turn): max-F when seen minus max-F when held out, "
                     f"mean {drops['drop'].mean():+.3f} (positive: worse when unseen; largest {worst['drop']:+.3f}, "
                     f"`{worst['category']}`).")
    cls_gates, cls_lines = classifier_gates(classifiers, ["classifier"])
    control = category_control_gate(gaps)
    trained = ["sod", "classifier"] + (["control_sod"] if control.value is not None else [])
    return judge(study="04_category_sensitivity", claim=CATEGORY_CLAIM,
                 quantity="SOD max-F on seen minus unseen test categories (0-1)", effect=float(sod_f.gap),
                 ci=(float(sod_f.low), float(sod_f.high)), ci_level=level, margin=CATEGORY_MARGIN, rule="equivalent",
                 mode=mode, seeds=seeds, lines=lines + cls_lines,
                 gates=cls_gates + [control] + training_gates(trained, validation_curves, selected_on_validation))


# ------------------------------------------------------------------------ 5: pre-training
PRETRAINING_CLAIM = "Classification pre-training is not necessary for SOD: from scratch is about as good."
# "About as good": within 0.02 max-F, a difference smaller than anyone would choose a model by (equivalent).
PRETRAINING_MARGIN = 0.02


def imagenet_gate(row: pd.Series) -> tuple[Gate, str]:
    """The classifier gate of 05's ImageNet arm and its Markdown line, from the ``classifiers``
    row of the user's weights (`sodlab.studies.pretraining.imagenet_row`): its value is the top-1
    the user measured on ImageNet val (`IMAGENET_MIN_TOP1`; sodlab cannot check it and says so),
    not evaluable when none was given. No classifier was trained, so it has no plateau gate."""
    top1 = None if pd.isna(row.get("accuracy")) else float(row["accuracy"])
    weights = row.get("weights", "the weights file")
    if top1 is None:
        note = "no ImageNet top-1 given (imagenet_top1): the weights' competence is unknown here"
        line = (f"- Pre-trained encoder: the user's ImageNet weights {weights}, no classifier trained here; no ImageNet top-1 "
                "given (imagenet_top1), so the classifier gate is not evaluable.")
    else:
        note = "the user's own ImageNet val measurement, not checked by sodlab"
        line = (f"- Pre-trained encoder: the user's ImageNet weights {weights}, no classifier trained here; ImageNet val top-1 "
                f"{top1:.3f} on {int(row.get('classes', IMAGENET_CLASSES))} classes as measured by the user (not checked here).")
    return classifier_gate(f"ImageNet weights {weights}", top1, note, threshold=IMAGENET_MIN_TOP1), line


def pretraining(final: pd.DataFrame, efficiency: pd.DataFrame, classifiers: Optional[pd.DataFrame] = None, *, mode: str,
                seeds: Sequence[int], validation_curves: Curves = None, selected_on_validation: Optional[bool] = None,
                controls: Optional[pd.DataFrame] = None) -> Verdict:
    """Tables of `sodlab.studies.pretraining.pretraining_effect`: ``final`` (init, fraction,
    max_f; with ``schedule`` and ``seed`` when the study ran several), ``efficiency`` (per
    fraction and schedule: n_train, max_f_gain with its CI low/high and level, mae_gain),
    ``classifiers`` (the pre-training classifiers) and ``controls`` (pre-trained minus each
    control arm, optional). The effect is pre-trained minus scratch max-F with the full
    training set (the largest fraction) and the longest schedule, rule ``equivalent`` with
    `PRETRAINING_MARGIN`; when ``controls`` holds the compute-matched scratch arm there, scratch
    is that arm (scratch given as many training images as pre-training plus fine-tuning: the
    claim is that scratch catches up with enough training). Every pre-training classifier
    must pass its gate; every fine-tuned model of the longest schedule its training gates.
    When ``classifiers`` holds the user's ImageNet weights (`IMAGENET_CLASSIFIER`), their gate
    is `imagenet_gate` instead: no classifier was trained, so none has curves to judge."""
    fin = final.assign(schedule=final["schedule"] if "schedule" in final else 0).groupby(["init", "fraction", "schedule"])["max_f"].mean()
    eff = efficiency.assign(schedule=efficiency["schedule"] if "schedule" in efficiency else 0).sort_values(["fraction", "schedule"])
    level = _level(efficiency, "efficiency")
    longest = eff["schedule"].max()
    top = eff[eff.schedule == longest].iloc[-1]
    several = eff["schedule"].nunique() > 1
    when = lambda n: f", {int(n)} epoch{'' if int(n) == 1 else 's'}" if several else ""  # noqa: E731
    lines = [f"- {r.fraction:.0%} of the training set ({r.n_train} images{when(r.schedule)}): scratch max-F "
             f"{fin[('scratch', r.fraction, r.schedule)]:.3f}, pre-trained {fin[('pretrained', r.fraction, r.schedule)]:.3f}; "
             f"gain {r.max_f_gain:+.3f} ({level:.0%} CI {r.low:+.3f} .. {r.high:+.3f}), MAE gain {r.mae_gain:+.4f}"
             for r in eff.itertuples()]
    said = {"random_labels": "pre-trained on shuffled labels", "scratch_matched": "scratch with matched compute",
            "pretrained_with_sod": "pre-trained on the corpus with the SOD categories"}
    ctl = controls if controls is not None and len(controls) else None
    if ctl is not None:
        ctl = ctl.assign(schedule=ctl["schedule"] if "schedule" in ctl else 0)
        for r in ctl.sort_values(["versus", "fraction", "schedule"]).itertuples():
            lines.append(f"- Pre-trained minus {said.get(r.versus, r.versus)} ({fin.get((r.versus, r.fraction, r.schedule), float('nan')):.3f}) "
                         f"at {r.fraction:.0%}{when(r.schedule)}: {r.max_f_gain:+.3f} ({r.level:.0%} CI {r.low:+.3f} .. {r.high:+.3f}).")
    matched = None if ctl is None else ctl[(ctl.versus == "scratch_matched") & np.isclose(ctl.fraction, top.fraction)
                                           & (ctl.schedule == longest)]
    imagenet = None if classifiers is None or "model" not in classifiers else classifiers[classifiers.model == IMAGENET_CLASSIFIER]
    imagenet = imagenet if imagenet is not None and len(imagenet) else None
    if matched is not None and len(matched):
        head, against = matched.iloc[0], "compute-matched scratch"
    else:
        head, against = top, "scratch"
        lines.append("- Scratch here trained for the fine-tuning's epochs only" + (
            ": ImageNet pre-training's compute cannot be matched in this design, so no compute-matched arm." if imagenet is not None
            else ", not for the pre-training's images too: no compute-matched arm."))
    if several:
        by_len = eff[np.isclose(eff.fraction, top.fraction)].set_index("schedule")["max_f_gain"]
        lines.append(f"- Does scratch catch up with longer training? The gain over scratch at {top.fraction:.0%} goes from "
                     f"{by_len.iloc[0]:+.3f} ({when(by_len.index[0])[2:]}) to {by_len.iloc[-1]:+.3f} ({when(by_len.index[-1])[2:]}).")
    arms = list(dict.fromkeys(final["init"])) if "init" in final else ["scratch", "pretrained"]
    models = [arm_name(i, f) for f in eff.fraction.unique() for i in arms if i != "scratch_matched" or np.isclose(f, top.fraction)]
    if imagenet is not None:  # the user's ImageNet weights: gated on their top-1, and trained here is no classifier
        gate, line = imagenet_gate(imagenet.iloc[0])
        cls_gates, cls_lines = [gate], [line]
    else:
        cls_gates, cls_lines = classifier_gates(classifiers, ["pretraining_classifier"])
        models = ["pretraining_classifier"] + models
    return judge(study="05_pretraining", claim=PRETRAINING_CLAIM,
                 quantity=f"pre-trained minus {against} max-F with {top.fraction:.0%} of the training set"
                          f"{when(longest)} (0-1)",
                 effect=float(head.max_f_gain), ci=(float(head.low), float(head.high)), ci_level=float(head.level) if "level" in head else level,
                 margin=PRETRAINING_MARGIN, rule="equivalent", mode=mode, seeds=seeds, lines=lines + cls_lines,
                 gates=cls_gates + training_gates(models, validation_curves, selected_on_validation))


# ------------------------------------------------------------------------ 6: redundancy
REDUNDANCY_CLAIM = "SOD needs far fewer parameters than classification; its features are more redundant."
# SOD must keep clearly more of its lead over its floor when shrunk: 2 points of that lead, not rounding (greater).
REDUNDANCY_MARGIN = 0.02
# The widest model of each task must lead its floor (centre-bias max-F; chance) by this much, or
# "the share of the lead kept" divides by noise.
FLOOR_LEAD_MIN = 0.05


def floor_lead_gate(scores: pd.DataFrame) -> Gate:
    """Each task's widest model above its floor (`task_scores` rows with ``floor``): the gate's
    value is the smaller lead of the two tasks. Tables without floors cannot be evaluated."""
    name = "widest model above its floor"
    if "floor" not in scores or scores["floor"].isna().any():
        return Gate(name, None, FLOOR_LEAD_MIN, "at least", "no floor recorded beside the scores (tables from before floors)")
    widest = scores.loc[scores.groupby("task")["width"].idxmax()].set_index("task")
    lead = widest["value"] - widest["floor"]
    return Gate(name, float(lead.min()), FLOOR_LEAD_MIN, "at least",
                "widest minus floor: " + ", ".join(f"{t} {v:+.3f}" for t, v in lead.items()))


def redundancy(res: Mapping[str, pd.DataFrame], *, mode: str, seeds: Sequence[int], validation_curves: Curves = None,
               selected_on_validation: Optional[bool] = None) -> Verdict:
    """The tables of `sodlab.studies.redundancy.redundancy_study` (``width_sweep``, ``layers``,
    ``pruning``, ``cka_twins``, ``classifiers``). The effect is the share of its widest
    model's lead over its floor SOD keeps at the narrowest width minus the share classification
    keeps (`task_scores`' ``above_floor``), rule ``greater`` with `REDUNDANCY_MARGIN`; the
    widest classifier must pass its gate (the narrower ones are the measurement) and each
    task's widest model must lead its floor (`floor_lead_gate`). With several seeds the sweep
    is read as its mean over the seeds, the effect is the mean of the seeds' effects and its
    interval ``retention_stats``' (a bootstrap over seeds and test images), and the classifier
    gate holds for the lowest seed; without ``retention_stats`` (one model per task and width)
    there is no interval."""
    sweep = _over_seeds(res["width_sweep"], ["width", "task", "metric"])
    main = task_scores(sweep)
    wmin, wmax = int(main.width.min()), int(main.width.max())
    rel = main.set_index(["task", "width"])["relative"]
    par = sweep.drop_duplicates(["task", "width"]).set_index(["task", "width"])["params"].round().astype("int64")
    val = main.set_index(["task", "width"])["value"]
    sod_keep, cls_keep = rel[("sod", wmin)], rel[("classification", wmin)]
    floor_gate = floor_lead_gate(main)
    if "above_floor" in main:
        above = main.set_index(["task", "width"])["above_floor"]
        sod_above, cls_above = above[("sod", wmin)], above[("classification", wmin)]
        flo = main.drop_duplicates("task").set_index("task")["floor"]
        share = lambda v: f"{v:.1%}" if np.isfinite(v) else "an undefined share (its widest model is not above the floor)"  # noqa: E731
        floor_line = (f"- Above each task's floor (SOD: the centre-bias guess, max-F {flo['sod']:.3f}; classification: "
                      f"chance, {flo['classification']:.3f}), width {wmin} keeps {share(sod_above)} of the widest SOD model's lead "
                      f"and {share(cls_above)} of the widest classifier's.")
        need = params_to_reach(main).set_index("task")

        def needs(task: str) -> str:
            r = need.loc[task]
            if not np.isfinite(r.params):
                return "undefined"
            return f"at most {r.params:,.0f} (its narrowest model already does)" if r.censored else f"{r.params:,.0f}"

        floor_line += (f" Parameters to keep {PLATEAU_SHARE:.0%} of that lead (log-interpolated between widths): "
                       f"SOD {needs('sod')}, classification {needs('classification')}.")
    else:
        sod_above = cls_above = float("nan")
        floor_line = "- No floors recorded beside the scores: the share of the lead over the floor is unknown."
    lw = res["layers"][res["layers"].width == wmax]
    er = lw.groupby("task")["effective_rank_ratio"].mean()
    corr = lw.groupby("task")["mean_abs_corr"].mean()
    prn = res["pruning"]
    dead = prn[prn.width == wmax].groupby(["task", "threshold"])["frac_channels_below"].first()
    ths = sorted(prn.threshold.unique())
    th = ths[len(ths) // 2]
    twins = res["cka_twins"]
    twins = twins[twins.width == wmax].set_index("layer")["cka"]
    lines = [
        f"- Width {wmax} -> {wmin}: SOD parameters {par[('sod', wmax)]:,} -> {par[('sod', wmin)]:,}; max-F "
        f"{val[('sod', wmax)]:.3f} -> {val[('sod', wmin)]:.3f} ({sod_keep:.1%} kept). Classification accuracy "
        f"{val[('classification', wmax)]:.3f} -> {val[('classification', wmin)]:.3f} ({cls_keep:.1%} kept).",
        floor_line,
        f"- Effective rank / channels, mean over layers at width {wmax}: SOD {er.get('sod', float('nan')):.2f}, "
        f"classification {er.get('classification', float('nan')):.2f}; mean |channel correlation| SOD "
        f"{corr.get('sod', float('nan')):.2f}, classification {corr.get('classification', float('nan')):.2f}.",
        f"- Channels with |gamma| below {th:g} of their block's largest: SOD {dead.get(('sod', th), float('nan')):.0%}, "
        f"classification {dead.get(('classification', th), float('nan')):.0%}.",
        "- CKA between the twins, same layer: " + ", ".join(f"{k} {v:.2f}" for k, v in twins.items()) + ".",
    ]
    base = res.get("cka_baselines")
    if base is not None and len(base):
        mean = base[base.width == wmax].groupby("comparison")["cka"].mean()
        said = {"twins": "twins", "sod_trained_vs_init": "SOD trained vs initial", "classification_trained_vs_init":
                "classification trained vs initial", "sod_seed_vs_seed": "SOD seed vs seed",
                "classification_seed_vs_seed": "classification seed vs seed"}
        lines.append(f"- CKA, mean over layers at width {wmax}: " + ", ".join(f"{said.get(k, k)} {mean[k]:.2f}" for k in said if k in mean)
                     + (". The twins are as alike as two runs of one task only if their CKA reaches the seed-vs-seed values."
                        if "sod_seed_vs_seed" in mean else ". No second seed: no seed-vs-seed baseline."))
    effect = float(sod_above - cls_above)
    ci, level = None, CI_LEVEL
    stats, kept = res.get("retention_stats"), res.get("retention")
    no_interval = "no retention_stats table (per-image scores of each seed's models): no interval over seeds or images"
    if stats is not None and len(stats) and not np.isfinite(float(stats["effect"].iloc[0])):
        no_interval = "a seed's widest model is not above its floor, so its share kept is undefined: no interval over seeds"
    elif stats is not None and len(stats):
        st = stats.iloc[0]
        effect, level = float(st["effect"]), float(st["ci_level"])
        if np.isfinite(st["ci_low"]) and np.isfinite(st["ci_high"]):
            ci = (float(st["ci_low"]), float(st["ci_high"]))
        if kept is not None and len(kept) > 1:
            lines.append("- Per seed, SOD's share kept minus classification's: " + ", ".join(
                f"seed {int(r.seed)} {r.effect:+.3f} ({r.sod_kept:.1%} vs {r.classification_kept:.1%})" for r in kept.itertuples())
                + f"; the effect is their mean, its interval a bootstrap over {int(st['n_seeds'])} seeds and {int(st['n_images'])} test images"
                + (f" ({int(st['undefined_resamples'])} of {int(st['n_boot'])} resamples undefined, left out)" if st["undefined_resamples"] else "")
                + ".")
    if not np.isfinite(effect):
        # no floor, or a widest model at or below it: the floor gate has failed, and the
        # verdict (inconclusive) reports the share of the raw score instead
        effect = float(sod_keep - cls_keep)
        lines.append(f"- The effect shown is the share of the raw score kept, SOD minus classification ({effect:+.3f}): "
                     "the share of the lead over the floor could not be computed.")
    cls = res.get("classifiers")
    if cls is not None and len(cls) and "width" in cls:
        cls = cls[cls.width == wmax]
    n_seeds = 0
    if cls is not None and len(cls) and "seed" in cls and cls["seed"].nunique() > 1:
        n_seeds, worst_seed = cls["seed"].nunique(), int(cls.loc[cls.accuracy.idxmin(), "seed"])
        cls = cls.loc[[cls.accuracy.idxmin()]]
    cls_gates, cls_lines = classifier_gates(cls, [f"classifier_w{wmax}"])
    if n_seeds:
        cls_gates = [dataclasses.replace(g, note=f"{g.note}; the lowest of {n_seeds} seeds (seed {worst_seed})") for g in cls_gates]
    models = [f"{t} width {w}" for w in sorted(main.width.unique()) for t in ("sod", "classification")]
    return judge(study="06_redundancy", claim=REDUNDANCY_CLAIM,
                 quantity=(f"share of the width-{wmax} model's lead over its floor kept at width {wmin}, "
                           "SOD minus classification (fraction)"),
                 effect=effect, ci=ci, ci_level=level, margin=REDUNDANCY_MARGIN, rule="greater", mode=mode, seeds=seeds,
                 lines=lines + cls_lines,
                 gates=cls_gates + [floor_gate] + training_gates(models, validation_curves, selected_on_validation),
                 no_interval=no_interval)


# ------------------------------------------------------------------------ 7: mechanisms
MECHANISMS_CLAIM = "SOD and classification use different mechanisms: different channels matter for each."
# Top-quarter sets overlap by chance at Jaccard about 0.14; 0.10 above chance (x1.7) is where "shared" begins (equivalent).
MECHANISMS_MARGIN = 0.10
# The importance ranking must find channels that matter: removing a task's own top channels must
# cost that task at least 5% of its score more than removing as many random channels (mean over
# layers). Below that the ranking is noise, and so is the overlap computed from it.
ABLATION_CONTROL_MIN = 0.05
# The positive control: each task's top channels from one half of the images must overlap with
# those from the other half by at least twice the margin above chance. Shared channels then
# show as an effect well outside [-margin, +margin], so the rule could refute "different".
SPLIT_HALF_MIN = 2 * MECHANISMS_MARGIN


def ablation_control_gate(cross: pd.DataFrame) -> Gate:
    """The random-channel control of the cross-ablation (`mechanisms`): for each task, the mean
    over layers of its relative drop when its own top channels go minus its drop when as many
    random channels go; the gate's value is the smaller of the two tasks'. Without ``random``
    rows the gate cannot be evaluated, so it fails."""
    name, missing = "ablation beats random channels", "no random-channel ablation in the cross table"
    if cross is None or not len(cross) or "random" not in set(cross["removed"]):
        return Gate(name, None, ABLATION_CONTROL_MIN, "at least", missing)
    cr = cross.set_index(["layer", "removed"])
    layers = sorted({layer for layer, removed in cr.index if removed == "random"})
    margins = []
    for own, col in (("sod_top", "sod_rel_drop"), ("classification_top", "classification_rel_drop")):
        diffs = [float(cr.loc[(layer, own), col] - cr.loc[(layer, "random"), col]) for layer in layers if (layer, own) in cr.index]
        if not diffs or not all(np.isfinite(diffs)):
            return Gate(name, None, ABLATION_CONTROL_MIN, "at least", f"no finite {own} drop beside the random one")
        margins.append(float(np.mean(diffs)))
    return Gate(name, min(margins), ABLATION_CONTROL_MIN, "at least",
                f"own top channels minus random, mean over layers: saliency {margins[0]:+.0%}, class {margins[1]:+.0%}")


def split_half_gate(row: Optional[pd.Series]) -> Gate:
    """The positive control of the overlap (`sodlab.analysis.overlap.split_half_overlap`): the
    smaller of the two tasks' overlaps with themselves between halves of the images, at least
    `SPLIT_HALF_MIN`. Without it the gate cannot be evaluated, so it fails."""
    name = "a task's channels overlap with themselves (split halves)"
    if row is None:
        return Gate(name, None, SPLIT_HALF_MIN, "at least", "no split-half overlap in the tables")
    s, c = float(row["split_half_sod"]), float(row["split_half_classification"])
    if not (np.isfinite(s) and np.isfinite(c)):
        return Gate(name, None, SPLIT_HALF_MIN, "at least", "split-half overlap is not finite")
    return Gate(name, min(s, c), SPLIT_HALF_MIN, "at least", f"Jaccard above chance between image halves: saliency {s:+.2f}, class {c:+.2f}")


def _transfer_lines(transfer: Optional[pd.DataFrame]) -> list[str]:
    """The transfer matrix in two lines (one per task) and how far each task gets on the other's
    frozen encoder (`sodlab.studies.transfer.transfer_share`)."""
    if transfer is None or not len(transfer):
        return ["- No transfer matrix: the encoders were not read out for the other task."]
    from .transfer import transfer_share

    m = transfer.set_index(["encoder", "task", "readout"])["value"]
    share = {k: "n/a (the task's own model is not clearly above the untrained encoder)" if pd.isna(v) else f"{v:.0%}"
             for k, v in transfer_share(transfer).items()}

    def get(*key: str) -> str:
        v = m.get(key, float("nan"))
        return "n/a" if pd.isna(v) else f"{v:.3f}"
    return [
        f"- Transfer, saliency (max-F): the saliency model {get('saliency', 'saliency', 'own head')}; a new saliency head on the "
        f"frozen classification encoder {get('classification', 'saliency', 'frozen + new head')}, on the untrained encoder "
        f"{get('untrained', 'saliency', 'frozen + new head')}: the classification encoder gets {share['saliency']} of the "
        "way from untrained to the saliency model.",
        f"- Transfer, classification (top-1): the classifier {get('classification', 'classification', 'own head')}; a linear head "
        f"on pooled features of the frozen encoder: classification {get('classification', 'classification', 'frozen + new head')}, "
        f"saliency {get('saliency', 'classification', 'frozen + new head')}, untrained "
        f"{get('untrained', 'classification', 'frozen + new head')}: the saliency encoder gets {share['classification']} of "
        "the way from untrained to the classifier.",
    ]


def _over_seeds(table: Optional[pd.DataFrame], by: Sequence[str]) -> Optional[pd.DataFrame]:
    """A several-seed table as its mean over the seeds (`seed_mean`); other tables as they are."""
    if table is None or "seed" not in table or table["seed"].nunique() < 2:
        return table
    return seed_mean(table, [c for c in by if c in table])


def _seed_effects(overlap: pd.DataFrame, encoder: str) -> dict[int, float]:
    """Each seed's effect (`mechanisms`: mean over layers of the excess Jaccard, ablation when
    present) on ``encoder``."""
    if "seed" not in overlap:
        return {}
    rows = overlap[overlap["encoder"] == encoder] if "encoder" in overlap else overlap
    m = "ablation" if (rows.method == "ablation").any() else rows.method.iloc[0]
    return {int(s): float(g["excess_jaccard"].mean()) for s, g in rows[rows.method == m].groupby("seed")}


def _stats_row(overlap_stats: Optional[pd.DataFrame], method: str) -> Optional[pd.Series]:
    if overlap_stats is None or not len(overlap_stats):
        return None
    rows = overlap_stats[overlap_stats["method"] == method]
    return rows.iloc[0] if len(rows) else None


# The encoder the verdict reads (`mechanisms`): the classifier's, so that the class importances
# come from the gated classifier itself; its saliency read-out is a head trained on it frozen.
MECHANISMS_ENCODER = "classification_encoder"
# Each encoder's read-outs: the classifier the class target comes from, the saliency model the
# saliency target comes from.
_READOUT_MODELS = {"classification_encoder": ("classifier_twin", "saliency head on the classification encoder"),
                   "sod_encoder": ("sod_encoder_probe", "sod")}


def saliency_readout_gate(readouts: Optional[pd.DataFrame], encoder: str) -> Gate:
    """The saliency read-out of ``encoder`` (a ``readouts`` row, task saliency) at least
    `FLOOR_LEAD_MIN` max-F above its floor, the centre-bias guess: its importances must come from
    a model that finds objects, as the class ones must come from a classifier that passed."""
    name = "saliency read-out above the centre-bias guess"
    if readouts is None or not len(readouts):
        return Gate(name, None, FLOOR_LEAD_MIN, "at least", "no readouts table (tables from before the classification encoder)")
    rows = readouts[(readouts.encoder == encoder) & (readouts.task == "saliency")]
    if not len(rows):
        return Gate(name, None, FLOOR_LEAD_MIN, "at least", f"no saliency read-out of the {encoder}")
    r = rows.loc[(rows.value - rows.floor).idxmin()]
    worst = f", the lowest of {len(rows)} seeds (seed {int(r.seed)})" if len(rows) > 1 and "seed" in rows else ""
    return Gate(name, float(r.value - r.floor), FLOOR_LEAD_MIN, "at least",
                f"{r.model}: max-F {r.value:.3f}, centre-bias guess {r.floor:.3f}{worst}")


def _of_encoder(table: Optional[pd.DataFrame], encoder: str) -> Optional[pd.DataFrame]:
    if table is None or "encoder" not in table:
        return table
    return table[table["encoder"] == encoder]


def mechanisms(overlap: pd.DataFrame, cross: pd.DataFrame, gradcam: pd.DataFrame, classifiers: Optional[pd.DataFrame] = None,
               *, mode: str, seeds: Sequence[int], validation_curves: Curves = None,
               selected_on_validation: Optional[bool] = None, overlap_stats: Optional[pd.DataFrame] = None,
               transfer: Optional[pd.DataFrame] = None, readouts: Optional[pd.DataFrame] = None,
               encoder: str = MECHANISMS_ENCODER) -> Verdict:
    """Tables of `sodlab.studies.mechanisms.mechanisms_study`: ``overlap`` (per encoder, layer
    and method: k, channels, jaccard, chance_jaccard, excess_jaccard, spearman), ``cross``
    (cross-ablation relative drops, with the ``random`` control), ``gradcam`` (per image: cam_of,
    r_cam_gt), ``classifiers`` (the twin and the SOD encoder's class head) and ``readouts`` (each
    encoder's two read-outs beside their floors). The verdict reads ``encoder`` (default
    `MECHANISMS_ENCODER`; tables without an ``encoder`` column are taken whole): the effect is
    the mean over layers of its top-channel Jaccard above chance (channel ablation when present:
    it measures what a channel does, not a gradient's guess), rule ``equivalent`` with
    `MECHANISMS_MARGIN`; its class read-out must pass the classifier gate and its saliency
    read-out `saliency_readout_gate`. ``overlap_stats`` gives the interval (a bootstrap over
    images), the permutation null and the split-half positive control (`split_half_gate`);
    without it there is no interval. The other encoder's overlap is reported beside.
    ``transfer`` (the study's transfer matrix) is reported beside the verdict, its new heads
    held to the training gates."""
    if encoder not in _READOUT_MODELS:
        raise ConfigError(f"encoder {encoder!r}: expected one of {', '.join(_READOUT_MODELS)}")
    per_seed = _seed_effects(overlap, encoder)
    # several seeds: the per-layer tables are read as their means over the seeds
    overlap, cross = _over_seeds(overlap, ["encoder", "layer", "method"]), _over_seeds(cross, ["encoder", "layer", "removed"])
    all_overlap, all_stats = overlap, overlap_stats
    overlap, cross, overlap_stats = _of_encoder(overlap, encoder), _of_encoder(cross, encoder), _of_encoder(overlap_stats, encoder)
    if not len(overlap):
        raise DataError(f"the overlap table has no rows of the {encoder}")
    m = "ablation" if (overlap.method == "ablation").any() else overlap.method.iloc[0]
    o = overlap[overlap.method == m].set_index("layer")
    cr = cross.set_index(["layer", "removed"])
    lines = [f"- Read on the {encoder.replace('_', ' ')} (class target: {_classifier_name(_READOUT_MODELS[encoder][0])}; "
             f"saliency target: {_READOUT_MODELS[encoder][1].replace('sod', 'the saliency model')})."]
    lines += [f"- {layer}: top-{int(r.k)} of {int(r.channels)} channels overlap with Jaccard {r.jaccard:.2f} "
              f"(chance {r.chance_jaccard:.2f}); Spearman {r.spearman:+.2f} ({m})." for layer, r in o.iterrows()]
    for layer in o.index:
        s, c = cr.loc[(layer, "sod_top")], cr.loc[(layer, "classification_top")]
        line = (f"- {layer}, removing SOD's top channels: saliency target {s.sod_rel_drop:+.0%}, class logit "
                f"{s.classification_rel_drop:+.0%}; removing the class's top channels: saliency {c.sod_rel_drop:+.0%}, "
                f"class {c.classification_rel_drop:+.0%}")
        if (layer, "random") in cr.index:
            rnd = cr.loc[(layer, "random")]
            line += f"; as many random channels: saliency {rnd.sod_rel_drop:+.0%}, class {rnd.classification_rel_drop:+.0%}"
        lines.append(line + ".")
    gm = gradcam.groupby("cam_of")["r_cam_gt"].mean()
    lines.append("- Correlation with the ground-truth mask: " + ", ".join(f"{k} {v:.2f}" for k, v in gm.items()) + ".")
    excess = float(np.mean(o["excess_jaccard"]))
    lines.append(f"- Mean Spearman over layers {float(o['spearman'].mean()):+.2f}.")
    if len(per_seed) > 1:
        lines.append(f"- Per seed (mean over layers, {m}): " + ", ".join(f"seed {s} {v:+.3f}" for s, v in per_seed.items())
                     + "; the layers above are means over the seeds.")
    st = _stats_row(overlap_stats, m)
    ci, level = None, CI_LEVEL
    if st is not None:
        ci, level = (float(st["ci_low"]), float(st["ci_high"])), float(st["ci_level"])
        lines.append(f"- With the class channels relabelled at random ({int(st['n_perm'])} times) the effect is "
                     f"{st['null_mean']:+.3f} on average, {st['null_q95']:+.3f} at the 95th percentile; the observed "
                     f"{st['excess_jaccard']:+.3f} has p = {st['p_more_than_chance']:.3g} for more overlap than chance, "
                     f"{st['p_less_than_chance']:.3g} for less.")
        lines.append(f"- Positive control, each task against itself on two halves of the {int(st['n_images'])} images: "
                     f"saliency {st['split_half_sod']:+.3f}, class {st['split_half_classification']:+.3f} above chance.")
    for other in _READOUT_MODELS:
        ost = _stats_row(_of_encoder(all_stats, other), m) if other != encoder and all_overlap is not None and "encoder" in all_overlap else None
        if ost is not None:
            lines.append(f"- Beside it, on the {other.replace('_', ' ')} (class target: {_classifier_name(_READOUT_MODELS[other][0])}): "
                         f"{ost['excess_jaccard']:+.3f} above chance ({float(ost['ci_level']):.0%} interval {ost['ci_low']:+.3f} .. "
                         f"{ost['ci_high']:+.3f}); not the verdict's encoder.")
    lines += _transfer_lines(transfer)
    named = classifiers
    if classifiers is not None and "seed" in classifiers and classifiers["seed"].nunique() > 1:
        named = classifiers.assign(model=[f"{_classifier_name(m)} (seed {int(s)})" for m, s in zip(classifiers.model, classifiers.seed)])
    cls_lines = classifier_gates(named, [])[1]
    used = _READOUT_MODELS[encoder][0]
    gated = classifiers[classifiers.model == used] if classifiers is not None and len(classifiers) else None
    if gated is not None and len(gated):
        worst = gated.loc[[gated.accuracy.idxmin()]]
        cls_gates = classifier_gates(worst, [used])[0]
        if len(gated) > 1 and "seed" in gated:
            cls_gates = [dataclasses.replace(g, note=f"{g.note}; the lowest of {len(gated)} seeds (seed {int(worst.seed.iloc[0])})")
                         for g in cls_gates]
    else:
        cls_gates = [classifier_gate(used, None)]
    return judge(study="07_mechanisms", claim=MECHANISMS_CLAIM,
                 quantity=f"top-channel Jaccard overlap of the two tasks minus its chance level, mean over layers ({m}, {encoder.replace('_', ' ')})",
                 effect=excess, ci=ci, ci_level=level, margin=MECHANISMS_MARGIN, rule="equivalent", mode=mode, seeds=seeds,
                 lines=lines + cls_lines,
                 gates=cls_gates + [saliency_readout_gate(readouts, encoder), ablation_control_gate(cross), split_half_gate(st)]
                 + training_gates(["sod", "classifier_twin"], validation_curves, selected_on_validation),
                 no_interval="no overlap_stats table (per-image attributions): no bootstrap over images")
