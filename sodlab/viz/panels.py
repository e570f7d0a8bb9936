"""The study notebooks' live panels, one builder per notebook (the channel explorer of 07 is
`sodlab.viz.explorer`). Each reads results a notebook already computed (tables, arrays, a
trained model for a single forward pass) and returns a `LivePanel`; each draw function is a
plain function of the controls' values, so moving a control never trains or evaluates.

- 01 `SaliencyThresholds`: a test image or an upload, its saliency map, a threshold slider
  with the binarised map and its point on the image's precision-recall curve;
- 02 `allocation_panel`: a CSNet configuration's channels per block and scale;
- 03 `pruning_panel`: a kept fraction along the pruning curve, with its parameters, MACs,
  max-F and the channels each block loses;
- 04 `category_panel`: a category split and a category, per-category scores and examples;
- 05 `learning_panel`: arms and training-set fractions on the learning curves;
- 06 `redundancy_panel`: a layer's redundancy and CKA, a width on the width sweep.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from ..data.io import decode_image
from ..errors import ConfigError, DataError, ImageReadError
from ..inference import as_rgb_array, predict_batch
from ..metrics import f_measure, precision_recall
from ..models.csnet import CSNet, CSNetConfig
from ..prune.allocation import allocation_table
from .allocation import plot_allocation
from .plots import STYLE, metric_curves
from .widgets import LivePanel, dropdown, selection_slider

# Arms of the pre-training study in the order they are shown; other arms follow in their own order.
KNOWN_ARMS = ("scratch", "pretrained", "pretrained_with_sod", "random_labels", "scratch_matched")  # `sodlab.studies.pretraining.ARMS`
_CURVE_METRICS = {
    "val_max_f": "validation max F-measure (0-1)",
    "train_task_loss": "training BCE loss without the regulariser (nats/pixel)",
    "train_loss": "training loss (BCE, nats/pixel)",
    "val_loss": "validation loss (BCE, nats/pixel)",
}


def _threshold_index(threshold: float) -> int:
    # SalMetric's thresholds: salient where the uint8 map exceeds t = 0..255
    return int(np.clip(round(float(threshold) * 255), 0, 255))


def draw_threshold(image: np.ndarray, saliency: np.ndarray, mask: Optional[np.ndarray], threshold: float,
                   name: str = "") -> Figure:
    """Photo, saliency map (uint8), the map binarised at ``threshold`` (0-1) and, with a
    ground-truth ``mask``, the image's precision-recall curve with that threshold marked."""
    t = _threshold_index(threshold)
    binary = saliency > t
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.5), layout="constrained")
    axes[0].imshow(image)
    axes[0].set_title(name or "image", fontsize="small")
    im = axes[1].imshow(saliency / 255.0, cmap="gray", vmin=0, vmax=1)
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="saliency (0-1)")
    axes[1].set_title("saliency map", fontsize="small")
    axes[2].imshow(binary, cmap="gray", vmin=0, vmax=1)
    if mask is not None:
        axes[2].contour(mask.astype(float), levels=[0.5], colors=["#ffb000"], linewidths=1.0)
    axes[2].set_title(f"saliency > {t / 255:.2f}: {binary.mean():.0%} of pixels"
                      + ("\n(orange: ground truth)" if mask is not None else ""), fontsize="small")
    for ax in axes[:3]:
        ax.set_axis_off()
    ax = axes[3]
    if mask is None:
        ax.text(0.5, 0.5, "no ground truth for this image:\nno precision-recall curve", ha="center", va="center")
        ax.set_axis_off()
        return fig
    precision, recall = precision_recall(saliency, mask)
    f = f_measure(precision, recall)
    with sns.axes_style(STYLE):
        ax.plot(recall, precision, color="C0", lw=1.5, label="this image, thresholds 0-1")
        ax.plot(recall[t], precision[t], "o", color="C3", ms=8, label=f"threshold {t / 255:.2f}: F {f[t]:.3f}")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall (0-1)")
        ax.set_ylabel("precision (0-1)")
        ax.set_title(f"precision-recall (max F {f.max():.3f})", fontsize="small")
        ax.grid(True, alpha=0.4)
        ax.legend(fontsize="x-small", loc="best")
    return fig


class SaliencyThresholds(LivePanel):
    """01: pick a test image (or upload one), see its saliency map; a threshold slider shows
    the binarised map and where it sits on the precision-recall curve. The model runs once
    per image (at creation, and for each upload), never on a slider move."""

    def __init__(self, model: nn.Module, images: Sequence[Any], names: Sequence[str],
                 masks: Optional[Sequence[np.ndarray]] = None, size: Optional[int] = None,
                 device: Optional[str] = None) -> None:
        if len(images) != len(names) or (masks is not None and len(masks) != len(images)):
            raise ConfigError(f"{len(images)} images, {len(names)} names and "
                              f"{'no' if masks is None else len(masks)} masks: expected one of each per image")
        self._model, self._size, self._device = model, size, device
        rgb = [as_rgb_array(im) for im in images]
        maps = predict_batch(model, rgb, size=size, device=device)
        self.items: dict[str, tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]] = {}
        for i, name in enumerate(names):
            m = None if masks is None else np.asarray(masks[i]) > (128 if np.asarray(masks[i]).dtype == np.uint8 else 0.5)
            self.items[str(name)] = (rgb[i], maps[i], m)
        controls = {
            "image": dropdown(list(self.items), description="image"),
            "threshold": W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, continuous_update=False, readout_format=".2f",
                                       description="threshold", layout=W.Layout(width="360px")),
        }
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="your image")
        self.upload.observe(self._on_upload, names="value")
        self.message = W.HTML("")
        super().__init__(self._draw_item, controls, probe="threshold", extra=[self.upload, self.message],
                         title="Saliency of one image, binarised at a threshold")

    def _draw_item(self, image: str, threshold: float) -> Figure:
        rgb, smap, mask = self.items[image]
        return draw_threshold(rgb, smap, mask, threshold, name=image)

    def add_image(self, name: str, image: Any) -> str:
        """Predict the saliency of ``image`` (array, PIL image or path), add it to the choices
        as ``upload: name`` and show it; returns that choice."""
        rgb = as_rgb_array(image)
        smap = predict_batch(self._model, [rgb], size=self._size, device=self._device)[0]
        key = f"upload: {name}"
        self.items[key] = (rgb, smap, None)
        dd = self.controls["image"]
        with self._hold():
            if key not in dd.options:
                dd.options = [*dd.options, key]
            dd.value = key
        self.redraw()
        return key

    def _on_upload(self, change: Mapping[str, Any]) -> None:
        for f in change["new"] or ():
            try:
                image = decode_image(f["content"], f["name"])
            except ImageReadError as exc:
                self.message.value = f"<span style='color:#b00'>{exc}</span>"
                continue
            self.message.value = ""
            self.add_image(f["name"], image)


def _csnet_config(model: CSNetConfig | nn.Module) -> CSNetConfig:
    cfg = model if isinstance(model, CSNetConfig) else getattr(model, "config", None)
    if not isinstance(cfg, CSNetConfig):
        raise ConfigError(f"expected a CSNet or its CSNetConfig, got {type(model).__name__}")
    return cfg


def allocation_panel(models: Mapping[str, CSNetConfig | nn.Module], reference: CSNetConfig | nn.Module) -> LivePanel:
    """02: choose a CSNet configuration (unpruned, learned, a slim model of yours) and see its
    channels per block and scale next to ``reference``, or the share of them it keeps."""
    configs = {name: _csnet_config(m) for name, m in models.items()}
    ref = _csnet_config(reference)
    params = {name: sum(p.numel() for p in CSNet(cfg).parameters()) for name, cfg in configs.items()}

    def draw(model: str, view: str) -> Figure:
        cfg = configs[model]
        title = f"{model}: {params[model]:,} parameters"
        if view == "channels":
            try:
                return plot_allocation(cfg, ref, title=title + " (outline: reference)")
            except ConfigError:  # another structure than the reference: no outline
                return plot_allocation(cfg, None, title=title)
        try:
            table = allocation_table(cfg, ref)
        except ConfigError:
            fig, ax = plt.subplots(figsize=(10, 3.8), layout="constrained")
            ax.text(0.5, 0.5, f"{model} has another block structure than the reference: no share to show",
                    ha="center", va="center")
            ax.set_axis_off()
            return fig
        blocks = table[table["kind"] == "block"].assign(scale=lambda d: d["scale"].map({0: "full resolution", 1: "half resolution"}))
        with sns.axes_style(STYLE):
            fig, ax = plt.subplots(figsize=(10, 3.8), layout="constrained")
            order = list(dict.fromkeys(blocks["block"]))
            for j, (scale, g) in enumerate(blocks.groupby("scale", sort=True)):
                g = g.set_index("block").reindex(order)
                ax.bar(np.arange(len(order)) + (j - 0.5) * 0.4, g["kept"].fillna(0), width=0.38, label=scale)
            ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
            ax.set_xticks(np.arange(len(order)), order, rotation=70, ha="right", fontsize=7)
            ax.set_xlabel("ILBlock (stem, stage.block)")
            ax.set_ylabel("channels kept / reference (fraction)")
            ax.set_title(title + ": share of the reference's channels kept")
            ax.legend(fontsize="small")
        return fig

    controls = {
        "model": dropdown(list(configs), description="model"),
        "view": W.ToggleButtons(options=["channels", "share kept"], value="channels", description="show",
                                style={"description_width": "initial", "button_width": "110px"}),
    }
    return LivePanel(draw, controls, probe="model", title="Channel allocation of a CSNet configuration")


def pruning_panel(curve: pd.DataFrame, allocation: pd.DataFrame) -> LivePanel:
    """03: move along the pruning curve (``curve``: `sodlab.prune.curve` rows with
    ``regularizer``) by kept fraction; see the point's parameters, MACs and max-F and the
    channels each block keeps and loses (``allocation``: the study's ``allocation`` table)."""
    pts = curve.dropna(subset=["keep_fraction"])
    if pts.empty:
        raise DataError("the pruning curve has no kept-fraction points to move along")
    regs = list(dict.fromkeys(pts["regularizer"]))
    fracs = sorted(set(float(f) for f in pts["keep_fraction"]), reverse=True)
    finetuned = "max_f_finetuned" in pts and pts["max_f_finetuned"].notna().any()

    def draw(regularizer: str, keep_fraction: float) -> Figure:
        row = pts[(pts.regularizer == regularizer) & np.isclose(pts.keep_fraction, keep_fraction)]
        fig, axes = plt.subplots(1, 2, figsize=(13, 4), layout="constrained", gridspec_kw={"width_ratios": [1, 1.5]})
        metric_curves(pts, x="params", y="max_f", hue="regularizer", xlabel="parameters after pruning (count)",
                      ylabel="max F-measure (0-1)", title="Pruning curves (no fine-tuning)", ax=axes[0])
        text = f"{regularizer}, keep {keep_fraction:.0%}: no such point"
        if len(row):
            r = row.iloc[0]
            axes[0].plot(r["params"], r["max_f"], "o", ms=13, mfc="none", mec="C3", mew=2.5)
            text = (f"{regularizer}, keep {keep_fraction:.0%}: {int(r['params']):,} parameters, "
                    f"{r['macs'] / 1e6:.1f} MMACs, max-F {r['max_f']:.3f}")
            if finetuned and np.isfinite(r["max_f_finetuned"]):
                text += f" ({r['max_f_finetuned']:.3f} fine-tuned)"
        fig.suptitle(text, fontsize="medium")
        al = allocation[(allocation.regularizer == regularizer) & np.isclose(allocation.keep_fraction, keep_fraction)
                        & (allocation.kind == "block")]
        ax = axes[1]
        if al.empty:
            ax.text(0.5, 0.5, "no channel table for this point", ha="center", va="center")
            ax.set_axis_off()
            return fig
        per_block = al.groupby("block", sort=False)[["channels", "reference_channels"]].sum()
        removed = per_block["reference_channels"] - per_block["channels"]
        x = np.arange(len(per_block))
        with sns.axes_style(STYLE):
            ax.bar(x, per_block["channels"], color="C0", label="kept")
            ax.bar(x, removed, bottom=per_block["channels"], color="0.8", hatch="//", edgecolor="0.5", label="removed")
            ax.set_xticks(x, per_block.index, rotation=70, ha="right", fontsize=7)
            ax.set_xlabel("ILBlock (stem, stage.block)")
            ax.set_ylabel("output channels, both scales (count)")
            ax.set_title(f"Channels per block: {int(removed.sum())} of {int(per_block['reference_channels'].sum())} removed",
                         fontsize="small")
            ax.legend(fontsize="small")
        return fig

    controls = {
        "regularizer": dropdown(regs, description="regulariser"),
        "keep_fraction": selection_slider({f"{f:.0%}": f for f in fracs}, description="parameters kept"),
    }
    return LivePanel(draw, controls, probe="keep_fraction", title="Along the pruning curve")


def category_panel(scores: pd.DataFrame, examples: Mapping[str, Any]) -> LivePanel:
    """04: choose a category split (the random seen/unseen split, or one category left out)
    and a category: per-category max-F of that split's model, and test images of the
    category with its predictions. ``scores``: `sodlab.studies.categories.scores_by_split`;
    ``examples``: `category_examples`."""
    splits = [s for s in dict.fromkeys(scores["split"])]
    categories = list(dict.fromkeys(scores["category"]))
    cats = np.asarray(examples["categories"])
    pred_of = {name: examples[f"pred_{k}"] for k, name in enumerate(examples["splits"])}

    def draw(split: str, category: str) -> Figure:
        s = scores[scores.split == split].set_index("category").reindex(categories)
        idx = np.flatnonzero(cats == category)
        rows = max(len(idx), 1)
        fig = plt.figure(figsize=(13, max(3.8, 1.5 * rows)), layout="constrained")
        grid = fig.add_gridspec(rows, 4, width_ratios=[3.2, 1, 1, 1])
        with sns.axes_style(STYLE):
            ax = fig.add_subplot(grid[:, 0])
            colors = ["C0" if t else "C1" for t in s["trained_on"].fillna(False).astype(bool)]
            bars = ax.bar(np.arange(len(categories)), s["max_f"], color=colors)
            if category in categories:
                k = categories.index(category)
                bars[k].set_edgecolor("k")
                bars[k].set_linewidth(2.5)
            ax.set_xticks(np.arange(len(categories)), categories, rotation=30, ha="right")
            ax.set_xlabel("test category (blue: in training, orange: never seen)")
            ax.set_ylabel("max F-measure (0-1)")
            ax.set_ylim(0, 1)
            ax.set_title(f"SOD model of split '{split}'", fontsize="small")
        pred = pred_of.get(split)
        for r, i in enumerate(idx):
            panels = [(examples["images"][i], None, "image"), (examples["masks"][i], "gray", "ground truth"),
                      (None if pred is None else pred[i], "gray", "prediction (0-1)")]
            for c, (img, cmap, title) in enumerate(panels):
                ax = fig.add_subplot(grid[r, 1 + c])
                ax.set_axis_off()
                if img is None:
                    ax.text(0.5, 0.5, "no model", ha="center", va="center")
                    continue
                ax.imshow(img, cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None)
                if r == 0:
                    ax.set_title(title, fontsize="small")
        if not len(idx):
            ax = fig.add_subplot(grid[0, 1:])
            ax.text(0.5, 0.5, f"no example images of {category}", ha="center", va="center")
            ax.set_axis_off()
        return fig

    controls = {"split": dropdown(splits, description="split"), "category": dropdown(categories, description="category")}
    return LivePanel(draw, controls, probe="category", title="Scores and examples per category")


def ordered_arms(arms: Sequence[str]) -> list[str]:
    """``arms`` with the known ones (`KNOWN_ARMS`) first, in that order, then the others."""
    present = list(dict.fromkeys(arms))
    return [a for a in KNOWN_ARMS if a in present] + [a for a in present if a not in KNOWN_ARMS]


def learning_panel(curves: pd.DataFrame, final: Optional[pd.DataFrame] = None, arm: str = "init") -> LivePanel:
    """05: toggle the arms (column ``arm`` of ``curves``: whatever the study ran, e.g. scratch,
    pretrained, random_labels, scratch_matched) and the training-set fraction on the learning
    curves; ``final`` (test scores per arm and fraction, with ``n_train``) adds the data
    efficiency view."""
    arms = ordered_arms(list(curves[arm]))
    fractions = sorted(set(float(f) for f in curves["fraction"]))
    metrics = {c: label for c, label in _CURVE_METRICS.items() if c in curves and curves[c].notna().any()}
    if not metrics:
        raise DataError(f"the learning curves have none of the columns {', '.join(_CURVE_METRICS)}")
    palette = dict(zip(arms, sns.color_palette(n_colors=len(arms))))
    styles = ["-", "--", ":", "-."]

    def draw(fraction: Any, metric: str, **shown: bool) -> Figure:
        on = [a for a in arms if shown.get(f"arm: {a}", True)]
        fracs = fractions if fraction == "all" else [float(fraction)]
        ncols = 2 if final is not None else 1
        fig, axes = plt.subplots(1, ncols, figsize=(6.2 * ncols, 4), layout="constrained", squeeze=False)
        with sns.axes_style(STYLE):
            ax = axes[0, 0]
            for a in on:
                for j, f in enumerate(fractions):
                    if f not in fracs:
                        continue
                    g = curves[(curves[arm] == a) & np.isclose(curves["fraction"], f)].sort_values("epoch")
                    ax.plot(g["epoch"], g[metric], marker="o", ms=4, color=palette[a], ls=styles[j % len(styles)],
                            label=f"{a}, {f:.0%} of the data")
            epochs = sorted(set(int(e) for e in curves["epoch"]))
            if len(epochs) <= 15:  # whole epochs only, also for a single one (matplotlib pads that with fractions)
                ax.set_xticks(epochs)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(metrics[metric])
            ax.set_title("Learning curves", fontsize="small")
            if on:
                ax.legend(fontsize="x-small")
            else:
                ax.text(0.5, 0.5, "no arm selected", ha="center", va="center", transform=ax.transAxes)
            if final is not None:
                ax = axes[0, 1]
                for a in on:
                    g = final[final[arm] == a].sort_values("n_train")
                    ax.plot(g["n_train"], g["max_f"], marker="o", color=palette[a], label=a)
                    sel = g[g["fraction"].apply(lambda v: any(np.isclose(v, f) for f in fracs))]
                    ax.plot(sel["n_train"], sel["max_f"], "o", ms=11, mfc="none", mec=palette[a], mew=2)
                ax.set_xlabel("training images (count)")
                ax.set_ylabel("test max F-measure (0-1)")
                ax.set_title("Data efficiency (circles: selected fraction)", fontsize="small")
                if on:
                    ax.legend(fontsize="x-small")
        return fig

    controls: dict[str, W.ValueWidget] = {
        "fraction": dropdown([("all fractions", "all")] + [(f"{f:.0%} of the training set", f) for f in fractions],
                             description="data"),
        "metric": dropdown({label: c for c, label in metrics.items()}, description="curve", width="420px"),
    }
    for a in arms:
        controls[f"arm: {a}"] = W.Checkbox(value=True, description=a, indent=False, layout=W.Layout(width="auto"))
    return LivePanel(draw, controls, probe="fraction", title="Learning curves by arm and training-set size")


def redundancy_panel(scores: pd.DataFrame, layers: pd.DataFrame, cka_twins: pd.DataFrame,
                     spectra: Optional[pd.DataFrame] = None) -> LivePanel:
    """06: pick a layer for the redundancy and CKA views and a width on the width sweep.
    ``scores``: `sodlab.studies.redundancy.task_scores` of the width sweep; ``layers``,
    ``cka_twins``, ``spectra``: the study's tables of the same names."""
    layer_names = list(dict.fromkeys(layers["layer"]))
    widths = sorted(set(int(w) for w in scores["width"]))
    widest = max(widths)

    def draw(layer: str, width: int) -> Figure:
        n = 4 if spectra is not None else 3
        fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.9), layout="constrained")
        with sns.axes_style(STYLE):
            # the lead over each task's floor when the sweep has floors, else the raw ratio
            y, ylabel = (("above_floor", "(metric - floor) / (widest - floor)") if "above_floor" in scores
                         else ("relative", "metric / metric at the widest (ratio)"))
            metric_curves(scores, x="params", y=y, hue="task", logx=True, xlabel="parameters (count, log scale)",
                          ylabel=ylabel, title="Width sweep", ax=axes[0])
            at = scores[scores.width == width]
            axes[0].plot(at["params"], at[y], "o", ms=12, mfc="none", mec="C3", mew=2, label=f"width {width}")
            axes[0].legend(fontsize="x-small")
            lw = layers[(layers.layer == layer) & (layers.width == width)]
            long = lw.melt(id_vars=["task"], value_vars=["effective_rank_ratio", "mean_abs_corr"], var_name="measure")
            ax = axes[1]
            measures = ["effective_rank_ratio", "mean_abs_corr"]
            tasks = list(dict.fromkeys(long["task"]))
            for j, task in enumerate(tasks):
                g = long[long.task == task].set_index("measure").reindex(measures)
                ax.bar(np.arange(2) + (j - (len(tasks) - 1) / 2) * 0.38, g["value"], width=0.36, label=task)
            ax.set_xticks([0, 1], ["effective rank /\nchannels", "mean |correlation|\nbetween channels"])
            ax.set_ylabel("value (0-1)")
            ax.set_ylim(0, 1)
            ax.set_title(f"{layer}, width {width}", fontsize="small")
            ax.legend(fontsize="x-small")
            ct = cka_twins[cka_twins.layer == layer].sort_values("width")
            ax = axes[2]
            ax.plot(ct["width"], ct["cka"], marker="o", color="C2")
            sel = ct[ct.width == width]
            ax.plot(sel["width"], sel["cka"], "o", ms=12, mfc="none", mec="C3", mew=2)
            ax.set_xlabel("encoder width (channels)")
            ax.set_ylabel("linear CKA, SOD vs classifier (0-1)")
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{layer}: how alike the twins are", fontsize="small")
            if spectra is not None:
                ax = axes[3]
                for task, g in spectra[spectra.layer == layer].groupby("task", sort=False):
                    ax.plot(g["component"], g["explained_variance_ratio"], marker=".", label=task)
                ax.set_yscale("log")
                ax.set_xlabel("principal component (rank)")
                ax.set_ylabel("explained variance (fraction, log)")
                ax.set_title(f"{layer}: PCA spectrum, width {widest}", fontsize="small")
                ax.legend(fontsize="x-small")
        return fig

    controls = {
        "layer": dropdown(layer_names, value=layer_names[min(2, len(layer_names) - 1)], description="layer"),
        "width": selection_slider(widths, value=widest, description="width"),
    }
    return LivePanel(draw, controls, probe="layer", title="Redundancy per layer and width")
