"""The "What we found" of each study notebook: from a study's result tables to a verdict on the
paper's claim and the numbers behind it.

Each function takes the tables an experiment in `sodlab.studies` returns (or the notebook
derives from them) and returns a `Finding`: the claim, an ``outcome`` ("held", "held weakly",
"held partly", "did not hold"), a one-sentence ``verdict`` starting with that outcome, and
``lines`` of Markdown bullets with this run's numbers. The thresholds that decide an outcome live
here, next to the reason for each, so that they are tested and the notebooks stay thin.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from .redundancy import task_scores

OUTCOMES = ("held", "held weakly", "held partly", "did not hold")


@dataclasses.dataclass(frozen=True)
class Finding:
    claim: str
    outcome: str
    verdict: str
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r}: expected one of {OUTCOMES}")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _finding(claim: str, verdict: str, lines: list[str]) -> Finding:
    outcome = next(o for o in sorted(OUTCOMES, key=len, reverse=True) if verdict.startswith(o))
    return Finding(claim, outcome, verdict, tuple(lines))


# ------------------------------------------------------------------------ classifiers
# A classifier that closes less than a fifth of the distance from chance to perfect accuracy has
# not learned the categories: what its features or its gradients do says little about how
# classification works, so a comparison with it is weak whatever the SOD side shows.
CLASSIFIER_MIN_ABOVE_CHANCE = 0.2

_CLASSIFIER_NAMES = {"classifier": "the classification twin", "classifier_twin": "the classification twin",
                     "pretraining_classifier": "the pre-training classifier",
                     "sod_encoder_probe": "the SOD encoder's linear class head"}


def _classifier_name(model: str) -> str:
    if model.startswith("classifier_w"):
        return f"the width-{model[len('classifier_w'):]} classifier"
    return _CLASSIFIER_NAMES.get(model, model)


def classifier_check(classifiers: Optional[pd.DataFrame],
                     consequence: str = "the comparison with classification is weak") -> tuple[list[str], Optional[str]]:
    """From a ``classifiers`` table (model, classes, accuracy, chance, above_chance; as the
    experiments return it): one line per classifier, and a caveat naming those that stayed
    within `CLASSIFIER_MIN_ABOVE_CHANCE` of chance and saying what follows (``consequence``);
    None when every one learned."""
    if classifiers is None or not len(classifiers):
        return [], None
    lines = ["- Classifiers on the test split: " + "; ".join(
        f"{_classifier_name(r.model)} accuracy {r.accuracy:.3f} on {int(r.classes)} classes (chance {r.chance:.3f})"
        for r in classifiers.itertuples()) + "."]
    weak = classifiers[classifiers.above_chance < CLASSIFIER_MIN_ABOVE_CHANCE]
    if not len(weak):
        return lines, None
    names = [f"{_classifier_name(r.model)} ({r.accuracy:.2f}, chance {r.chance:.2f})" for r in weak.itertuples()]
    who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return lines, f"caveat: {who} barely learned the categories, so {consequence}"


def _with_caveat(verdict: str, caveat: Optional[str], downgrade: bool) -> str:
    """Append ``caveat``; with ``downgrade`` a plain "held" becomes "held weakly", since the
    classification side of the evidence is missing."""
    if caveat is None:
        return verdict
    if downgrade and verdict.startswith("held:"):
        verdict = "held weakly:" + verdict[len("held:"):]
    return f"{verdict}; {caveat}"


# ------------------------------------------------------------------------ 1: quickstart
QUICKSTART_CLAIM = "The model detects salient objects better than a centre-bias guess."
# A model must beat the centre-bias guess by more than noise between runs of a small model.
QUICKSTART_MARGIN = 0.05


def quickstart(metrics: Mapping[str, float], centre: Mapping[str, float], source: str, params: int, gmacs: float,
               size: int, n_images: int) -> Finding:
    """``metrics``/``centre``: scalar metrics (max_f, mae, ...) of the model and of the
    centre-bias baseline on the same test images."""
    gain = metrics["max_f"] - centre["max_f"]
    if gain > QUICKSTART_MARGIN:
        verdict = f"held: max-F {metrics['max_f']:.3f} vs {centre['max_f']:.3f} for the centre-bias guess ({gain:+.3f})"
    else:
        verdict = (f"did not hold: max-F {metrics['max_f']:.3f} is not clearly above the centre-bias guess "
                   f"({centre['max_f']:.3f})")
    lines = [
        f"- Model: {source}; {params:,} parameters, {gmacs:.3f} GMACs at {size}x{size}.",
        f"- Test split ({n_images} images): max-F {metrics['max_f']:.3f}, mean-F {metrics.get('mean_f', float('nan')):.3f}, "
        f"MAE {metrics['mae']:.4f}; centre bias: max-F {centre['max_f']:.3f}, MAE {centre['mae']:.4f}.",
    ]
    return _finding(QUICKSTART_CLAIM, verdict, lines)


# ------------------------------------------------------------------------ 2: anatomy
ANATOMY_CLAIM = "SOD can be done with about 100K parameters; CSNet's channel numbers are learned, not uniform."


def anatomy(models: pd.DataFrame, blocks: pd.DataFrame, big: Optional[str] = "csf-res2net50") -> Finding:
    """``models``: one row per model at 224x224 (``model``, ``params``, ``gmacs``); ``blocks``:
    the per-block allocation (``model``, ``block``, ``scale``, ``channels``) with rows for
    ``csnet`` (unpruned), ``csnet-L-x1`` and ``csnet-L-x2``."""
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
    ]
    small = p["csnet-L-x2"] < 200_000  # "about 100K": within a factor of two
    learned = kept.std() > 0.1  # a uniform width multiplier would keep the same share of every block
    strong = big is not None and p[big] / p["csnet-L-x2"] > 50
    if small and learned:
        verdict = (f"held{', strongly' if strong else ''}: CSNet-L-x2 has {p['csnet-L-x2']:,} parameters"
                   + (f", {p[big] / p['csnet-L-x2']:.0f}x fewer than CSF+Res2Net" if big else "")
                   + f", and its learned allocation is far from uniform (per-block kept share spread {kept.std():.2f})")
    else:
        verdict = f"did not hold: CSNet-L-x2 has {p['csnet-L-x2']:,} parameters; per-block kept share spread {kept.std():.2f}"
    return _finding(ANATOMY_CLAIM, verdict, lines)


# ------------------------------------------------------------------------ 3: pruning
PRUNING_CLAIM = "Dynamic weight decay lets about 80% of CSNet's parameters be pruned with little loss, better than L2/L1."
PRUNING_TOLERANCE = 0.02  # absolute max-F a pruned model may lose and still count as "little loss"


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


def pruning(curves: pd.DataFrame, tol: float = PRUNING_TOLERANCE) -> Finding:
    """``curves``: `sodlab.prune.curve` rows with a ``regularizer`` column. When the curves
    were fine-tuned (``max_f_finetuned``), the verdict reads the fine-tuned slim models against
    the trained, unpruned model (the paper's protocol: prune, fine-tune, compare with the
    original); otherwise the pruned models as they are."""
    rows = {r: prunable_share(g, tol) for r, g in curves.groupby("regularizer")}
    lines = [f"- {r}: unpruned max-F {mf:.3f}; up to {share:.0%} of the parameters removed within {tol:g} max-F "
             "without fine-tuning" for r, (share, mf) in rows.items()]
    smallest = {r: g.sort_values("params").iloc[0] for r, g in curves.groupby("regularizer")}
    lines.append("- at the smallest kept fraction: " + "; ".join(
        f"{r} {g['params']:,.0f} parameters, max-F {g['max_f']:.3f}" for r, g in smallest.items()))
    tuned = "max_f_finetuned" in curves and curves["max_f_finetuned"].notna().any()
    if tuned:
        groups = dict(list(curves.groupby("regularizer")))
        rows = {r: prunable_share(g.dropna(subset=["max_f_finetuned"]).assign(max_f=lambda d: d.max_f_finetuned), tol,
                                  reference=rows[r][1]) for r, g in groups.items()}
        lines.append("- after fine-tuning, removable within the same tolerance of the unpruned model: "
                     + "; ".join(f"{r} {s:.0%}" for r, (s, _) in rows.items()))
        # the unpruned point fine-tuned alike tells whether the fine-tuning recipe itself helps or harms
        full = {r: g.sort_values("params", ascending=False).iloc[0] for r, g in groups.items()}
        lines.append("- the unpruned model fine-tuned the same way: " + "; ".join(
            f"{r} {f['max_f']:.3f} -> {f['max_f_finetuned']:.3f}" for r, f in full.items() if not pd.isna(f["max_f_finetuned"])))
    when = "after fine-tuning" if tuned else "without fine-tuning"
    dwd = rows.get("dwd", (float("nan"), 0))[0]
    others = {r: s for r, (s, _) in rows.items() if r != "dwd"}
    best = max(others.values(), default=0.0)
    rivals = ", ".join(f"{r.upper() if r != 'none' else 'no regulariser'} {s:.0%}" for r, s in others.items()) or "no other regulariser run"
    if dwd >= 0.7 and dwd >= best:
        verdict = f"held: DWD lets {dwd:.0%} of the parameters go within {tol:g} max-F {when} ({rivals})"
    elif dwd > best:
        verdict = f"held partly: DWD prunes the most {when} ({dwd:.0%}; {rivals}) but short of 80%"
    else:
        verdict = f"did not hold in this run: {when}, DWD {dwd:.0%} of the parameters prunable within {tol:g} max-F ({rivals})"
    return _finding(PRUNING_CLAIM, verdict, lines)


# ------------------------------------------------------------------------ 4: categories
CATEGORY_CLAIM = "SOD models are category-insensitive: trained on some categories, they segment unseen categories about as well."


def category_sensitivity(summary: pd.DataFrame, gaps: pd.DataFrame, drops: Optional[pd.DataFrame] = None,
                         classifiers: Optional[pd.DataFrame] = None) -> Finding:
    """Tables of `sodlab.studies.categories.category_sensitivity` (``summary``, ``gaps``,
    ``classifiers``, optional) and `sodlab.studies.categories.loo_drop` of its leave-one-out matrix
    (``drops``, optional). The claim is about SOD; a classifier that barely learned only
    removes the contrast with classification."""
    g = gaps.set_index(["task", "metric"])
    sod_f = g.loc[("sod", "max_f")]
    sod_m = g.loc[("sod", "mae")]

    def val(task: str, group: str, metric: str) -> float:
        sel = summary[(summary.task == task) & (summary.group == group) & (summary.metric == metric)]
        return float(sel["value"].iloc[0])

    lines = [
        f"- SOD max-F: seen {val('sod', 'seen', 'max_f'):.3f}, unseen {val('sod', 'unseen', 'max_f'):.3f}; "
        f"gap {sod_f.gap:+.3f} (95% CI {sod_f.low:+.3f} .. {sod_f.high:+.3f}, {sod_f.relative_gap:+.1%} of the seen score).",
        f"- SOD MAE: gap {sod_m.gap:+.4f} (95% CI {sod_m.low:+.4f} .. {sod_m.high:+.4f}; a negative MAE gap means unseen is worse).",
    ]
    cls_gap = None
    for task, who in (("classifier", "Classifier"), ("sod_encoder", "SOD")):
        if (task, "ncm_accuracy_vs_chance") in g.index:
            r = g.loc[(task, "ncm_accuracy_vs_chance")]
            lines.append(f"- {who} encoder, nearest-class-mean accuracy above chance: seen "
                         f"{val(task, 'seen', 'ncm_accuracy_vs_chance'):.2f}, unseen {val(task, 'unseen', 'ncm_accuracy_vs_chance'):.2f}; "
                         f"gap {r.gap:+.2f} (95% CI {r.low:+.2f} .. {r.high:+.2f}).")
            if task == "classifier":
                cls_gap = r
    if drops is not None and len(drops):
        worst = drops.loc[drops["drop"].idxmax()]
        lines.append(f"- Leave-one-out ({len(drops)} categories held out in turn): max-F when seen minus max-F when held out, "
                     f"mean {drops['drop'].mean():+.3f} (positive: worse when unseen; largest {worst['drop']:+.3f}, "
                     f"`{worst['category']}`).")
    cls_lines, caveat = classifier_check(classifiers)
    lines += cls_lines
    rel = abs(sod_f.relative_gap)
    zero_in_ci = sod_f.low <= 0 <= sod_f.high
    # under 2% of the seen score is below what separates two SOD models in the literature
    if zero_in_ci or rel < 0.02:
        verdict = "held: the SOD gap between seen and unseen categories is " + (
            "indistinguishable from zero" if zero_in_ci else f"only {rel:.1%} of the seen score")
        if cls_gap is not None and cls_gap.low > 0 and caveat is None:
            verdict += ", while the classifier's gap is clearly positive (strong contrast)"
    elif rel < 0.05:
        verdict = f"held weakly: SOD is {rel:.1%} worse on unseen categories, and the interval excludes zero"
    else:
        verdict = f"did not hold: SOD is {rel:.1%} worse on unseen categories (CI {sod_f.low:+.3f} .. {sod_f.high:+.3f})"
    return _finding(CATEGORY_CLAIM, _with_caveat(verdict, caveat, downgrade=False), lines)


# ------------------------------------------------------------------------ 5: pre-training
PRETRAINING_CLAIM = "Classification pre-training is not necessary for SOD: from scratch is about as good."


def pretraining(final: pd.DataFrame, efficiency: pd.DataFrame, classifiers: Optional[pd.DataFrame] = None) -> Finding:
    """Tables of `sodlab.studies.pretraining.pretraining_effect`: ``final`` (init, fraction, max_f),
    ``efficiency`` (per fraction: n_train, max_f_gain with its CI low/high, mae_gain) and
    ``classifiers`` (the pre-training classifier's accuracy, optional)."""
    fin = final.set_index(["init", "fraction"])["max_f"]
    eff = efficiency.sort_values("fraction")
    top, low = eff.iloc[-1], eff.iloc[0]
    lines = [f"- {r.fraction:.0%} of the training set ({r.n_train} images): scratch max-F {fin[('scratch', r.fraction)]:.3f}, "
             f"pre-trained {fin[('pretrained', r.fraction)]:.3f}; gain {r.max_f_gain:+.3f} (95% CI {r.low:+.3f} .. {r.high:+.3f}), "
             f"MAE gain {r.mae_gain:+.4f}" for r in eff.itertuples()]
    if top.low <= 0 <= top.high:
        verdict = (f"held: with the full training set, pre-training changes max-F by {top.max_f_gain:+.3f} "
                   f"(95% CI {top.low:+.3f} .. {top.high:+.3f}), not distinguishable from zero")
    elif top.max_f_gain <= 0:
        verdict = f"held: with the full training set, scratch is better by {-top.max_f_gain:.3f}"
    elif top.max_f_gain < 0.02:  # significant, but smaller than a 2-point max-F difference anyone would act on
        verdict = f"held weakly: pre-training helps by {top.max_f_gain:+.3f} max-F with the full set (significant but small)"
    else:
        verdict = f"did not hold: pre-training helps by {top.max_f_gain:+.3f} max-F (95% CI {top.low:+.3f} .. {top.high:+.3f})"
    if len(eff) > 1 and low.max_f_gain > top.max_f_gain:
        verdict += f"; with {low.fraction:.0%} of the data the gain is larger ({low.max_f_gain:+.3f})"
    # the SOD comparison stands; what it pre-trained on is what the caveat qualifies
    cls_lines, caveat = classifier_check(classifiers, "this measures a barely trained encoder, not classification features")
    return _finding(PRETRAINING_CLAIM, _with_caveat(verdict, caveat, downgrade=False), lines + cls_lines)


# ------------------------------------------------------------------------ 6: redundancy
REDUNDANCY_CLAIM = "SOD needs far fewer parameters than classification; its features are more redundant."


def redundancy(res: Mapping[str, pd.DataFrame]) -> Finding:
    """The tables of `sodlab.studies.redundancy.redundancy_study` (``width_sweep``, ``layers``,
    ``pruning``, ``cka_twins``, ``classifiers`` optional); compares the widest and the
    narrowest width swept. A classifier near chance at the widest width downgrades "held"."""
    sweep = res["width_sweep"]
    main = task_scores(sweep)
    wmin, wmax = int(main.width.min()), int(main.width.max())
    rel = main.set_index(["task", "width"])["relative"]
    par = sweep.drop_duplicates(["task", "width"]).set_index(["task", "width"])["params"]
    val = main.set_index(["task", "width"])["value"]
    sod_keep, cls_keep = rel[("sod", wmin)], rel[("classification", wmin)]
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
        f"- Effective rank / channels, mean over layers at width {wmax}: SOD {er.get('sod', float('nan')):.2f}, "
        f"classification {er.get('classification', float('nan')):.2f}; mean |channel correlation| SOD "
        f"{corr.get('sod', float('nan')):.2f}, classification {corr.get('classification', float('nan')):.2f}.",
        f"- Channels with |gamma| below {th:g} of their block's largest: SOD {dead.get(('sod', th), float('nan')):.0%}, "
        f"classification {dead.get(('classification', th), float('nan')):.0%}.",
        "- CKA between the twins, same layer: " + ", ".join(f"{k} {v:.2f}" for k, v in twins.items()) + ".",
    ]
    # SOD must keep clearly more of its score (2 points of the widest model's score), not a rounding error more
    sod_better = bool(sod_keep > cls_keep + 0.02)
    agree = sum([sod_better, er.get("sod", 1) < er.get("classification", 0),
                 dead.get(("sod", th), 0) > dead.get(("classification", th), 1)])
    if sod_better and agree == 3:
        verdict = (f"held: shrinking the width keeps {sod_keep:.1%} of SOD's max-F but {cls_keep:.1%} of the classifier's "
                   "accuracy, and SOD's layers are more redundant")
    elif sod_better:
        verdict = (f"held partly: SOD keeps {sod_keep:.1%} of its score vs {cls_keep:.1%} for classification, but the "
                   f"redundancy measures agree only {agree} of 3 ways")
    else:
        verdict = (f"did not hold: SOD keeps {sod_keep:.1%} of its score when shrunk, classification {cls_keep:.1%} "
                   "(SOD needs to keep at least 2 points more)")
    cls = res.get("classifiers")
    if cls is not None and len(cls) and "width" in cls:
        cls = cls[cls.width == wmax]
    cls_lines, caveat = classifier_check(cls)
    return _finding(REDUNDANCY_CLAIM, _with_caveat(verdict, caveat, downgrade=True), lines + cls_lines)


# ------------------------------------------------------------------------ 7: mechanisms
MECHANISMS_CLAIM = "SOD and classification use different mechanisms: different channels matter for each."


def mechanisms(overlap: pd.DataFrame, cross: pd.DataFrame, gradcam: pd.DataFrame, classifiers: Optional[pd.DataFrame] = None) -> Finding:
    """Tables of `sodlab.studies.mechanisms.mechanisms_study`: ``overlap`` (per layer and method:
    k, channels, jaccard, chance_jaccard, excess_jaccard, spearman), ``cross`` (cross-ablation
    relative drops), ``gradcam`` (per image: cam_of, r_cam_gt) and ``classifiers`` (optional;
    a class target near chance downgrades "held"). Channel ablation is the method judged
    when present (it measures what a channel does, not a gradient's guess)."""
    m = "ablation" if (overlap.method == "ablation").any() else overlap.method.iloc[0]
    o = overlap[overlap.method == m].set_index("layer")
    cr = cross.set_index(["layer", "removed"])
    lines = [f"- {layer}: top-{int(r.k)} of {int(r.channels)} channels overlap with Jaccard {r.jaccard:.2f} "
             f"(chance {r.chance_jaccard:.2f}); Spearman {r.spearman:+.2f} ({m})." for layer, r in o.iterrows()]
    asym = []
    for layer in o.index:
        s, c = cr.loc[(layer, "sod_top")], cr.loc[(layer, "classification_top")]
        # > 0 when each task's own top channels hurt it more than they hurt the other task
        asym.append((s.sod_rel_drop - s.classification_rel_drop) + (c.classification_rel_drop - c.sod_rel_drop))
        lines.append(f"- {layer}, removing SOD's top channels: saliency target {s.sod_rel_drop:+.0%}, class logit "
                     f"{s.classification_rel_drop:+.0%}; removing the class's top channels: saliency {c.sod_rel_drop:+.0%}, "
                     f"class {c.classification_rel_drop:+.0%}.")
    gm = gradcam.groupby("cam_of")["r_cam_gt"].mean()
    lines.append("- Correlation with the ground-truth mask: " + ", ".join(f"{k} {v:.2f}" for k, v in gm.items()) + ".")
    excess = float(o["excess_jaccard"].mean())
    rho = float(o["spearman"].mean())
    selective = bool(np.mean(asym) > 0) if asym else False
    if excess < 0.1 and rho < 0.3 and selective:
        verdict = (f"held: the tasks' important channels overlap {'no more than' if excess <= 0 else 'barely more than'} "
                   f"chance (mean excess Jaccard {excess:+.2f}, Spearman {rho:+.2f}) and each task's channels hurt that task more")
    elif excess < 0.2 and rho < 0.5:
        verdict = f"held weakly: overlap above chance {excess:+.2f}, Spearman {rho:+.2f}; cross-ablation " + (
            "is selective" if selective else "is not selective")
    else:
        verdict = f"did not hold: the important channels are shared (excess Jaccard {excess:+.2f}, Spearman {rho:+.2f})"
    cls_lines, caveat = classifier_check(classifiers)
    return _finding(MECHANISMS_CLAIM, _with_caveat(verdict, caveat, downgrade=True), lines + cls_lines)

