"""The notebooks' live panels, headless: moving a control (``update``) redraws the figure from
precomputed data, and the figure's data changes accordingly."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

import sodlab  # noqa: E402
from sodlab import viz  # noqa: E402
from sodlab.errors import ConfigError  # noqa: E402
from sodlab.viz import panels  # noqa: E402
from sodlab.viz.widgets import PANEL_CLASS, PROBE_CLASS, LivePanel, selection_slider  # noqa: E402


def _bar_heights(ax) -> list[float]:
    return [round(float(p.get_height()), 6) for p in ax.patches]


def test_live_panel_redraws_on_update_and_names_unknown_controls():
    import matplotlib.pyplot as plt

    def draw(k: int):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, k])
        return fig

    panel = LivePanel(draw, {"k": selection_slider([1, 2, 3], description="k")}, probe="k")
    assert panel.redraws == 1 and list(panel.figure.axes[0].lines[0].get_ydata()) == [0, 1]
    fig = panel.update(k=3)
    assert fig is panel.figure and list(fig.axes[0].lines[0].get_ydata()) == [0, 3]
    panel.controls["k"].value = 2  # a reader moving the slider
    assert list(panel.figure.axes[0].lines[0].get_ydata()) == [0, 2] and panel.redraws == 3
    assert PANEL_CLASS in panel.widget._dom_classes and PROBE_CLASS in panel.controls["k"]._dom_classes
    with pytest.raises(ConfigError, match="no control named j"):
        panel.update(j=1)
    with pytest.raises(ConfigError, match="probe 'x'"):
        LivePanel(draw, {"k": selection_slider([1, 2])}, probe="x")


class _Brightness(nn.Module):
    """A stand-in saliency model: brighter pixels are more salient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1, keepdim=True)


def test_saliency_thresholds_moves_the_point_on_the_pr_curve_and_takes_uploads():
    img = np.repeat(np.repeat(np.linspace(0, 255, 32).astype(np.uint8)[None, :, None], 32, 0), 3, 2)  # dark to bright
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 20:] = 255
    panel = panels.SaliencyThresholds(_Brightness(), [img, img[::-1]], ["a", "b"], masks=[mask, mask[::-1]], size=32)
    low = panel.update(threshold=0.2)
    binary_low = np.asarray(low.axes[2].images[0].get_array()).copy()
    point_low = float(low.axes[3].lines[1].get_xdata()[0])
    high = panel.update(threshold=0.8)
    assert np.asarray(high.axes[2].images[0].get_array()).sum() < binary_low.sum()  # fewer pixels above a higher threshold
    assert float(high.axes[3].lines[1].get_xdata()[0]) < point_low  # recall falls as the threshold rises
    assert "0.80" in high.axes[3].lines[1].get_label()

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    panel._on_upload({"new": ({"name": "mine.png", "content": memoryview(buf.getvalue())},)})
    assert panel.controls["image"].value == "upload: mine.png"
    assert "no ground truth" in panel.figure.axes[3].texts[0].get_text()
    panel._on_upload({"new": ({"name": "broken.jpg", "content": b"not an image"},)})
    assert "broken.jpg" in panel.message.value and panel.controls["image"].value == "upload: mine.png"
    with pytest.raises(ConfigError, match="2 images, 1 names"):
        panels.SaliencyThresholds(_Brightness(), [img, img], ["a"])


def test_allocation_panel_shows_the_chosen_configuration():
    models = {name: sodlab.create_model(name).config for name in ("csnet", "csnet-L-x1", "csnet-L-x2")}
    panel = panels.allocation_panel(models, reference=models["csnet"])
    unpruned = _bar_heights(panel.figure.axes[0])
    learned = panel.update(model="csnet-L-x1")
    assert _bar_heights(learned.axes[0]) != unpruned
    assert "93,647 parameters" in learned.axes[0].get_title()
    share = panel.update(view="share kept")
    kept = [h for h in _bar_heights(share.axes[0]) if h > 0]
    assert kept and max(kept) <= 1.0 + 1e-9 and min(kept) < 1.0  # CSNet-L-x1 keeps less than all in some block


def _pruning_tables():
    cfg = sodlab.create_model("csnet", width=8).config
    from sodlab.prune import allocation_table

    curve, alloc = [], []
    for reg in ("dwd", "l2"):
        for frac, params, maxf in ((1.0, 40000, 0.7), (0.5, 20000, 0.6), (0.2, 8000, 0.4 if reg == "dwd" else 0.2)):
            curve.append({"regularizer": reg, "keep_fraction": frac, "params": params, "macs": params * 50, "max_f": maxf,
                          "max_f_finetuned": float("nan")})
            t = allocation_table(cfg, cfg)
            t["channels"] = np.ceil(t["channels"] * frac).astype(int)
            alloc.append(t.assign(regularizer=reg, keep_fraction=frac))
    return pd.DataFrame(curve), pd.concat(alloc, ignore_index=True)


def test_pruning_panel_moves_along_the_curve():
    curve, alloc = _pruning_tables()
    panel = panels.pruning_panel(curve, alloc)
    assert panel.controls["keep_fraction"].value == 1.0  # starts unpruned
    full = panel.figure
    assert "40,000 parameters" in full._suptitle.get_text()
    half = panel.update(keep_fraction=0.5)
    assert "20,000 parameters" in half._suptitle.get_text() and "max-F 0.600" in half._suptitle.get_text()
    marker = half.axes[0].lines[-1]
    assert (float(marker.get_xdata()[0]), float(marker.get_ydata()[0])) == (20000.0, 0.6)
    assert _bar_heights(half.axes[1]) != _bar_heights(full.axes[1])  # channels kept and removed per block
    assert "removed" in half.axes[1].get_title()
    l2 = panel.update(regularizer="l2", keep_fraction=0.2)
    assert "max-F 0.200" in l2._suptitle.get_text()


def test_category_panel_switches_category_and_split():
    cats = ["disk", "star", "ring"]
    scores = pd.DataFrame([{"split": s, "category": c, "trained_on": c != held, "max_f": 0.5 + 0.1 * i + (0.05 if s == "random split" else 0),
                            "mae": 0.1} for s, held in (("random split", "ring"), ("without star", "star")) for i, c in enumerate(cats)])
    rng = np.random.default_rng(1)
    examples = {"images": rng.random((6, 16, 16, 3)), "masks": rng.random((6, 16, 16)) > 0.5,
                "categories": ["disk", "disk", "star", "star", "ring", "ring"], "splits": ["random split", "without star"],
                "pred_0": rng.random((6, 16, 16)), "pred_1": rng.random((6, 16, 16))}
    panel = panels.category_panel(scores, examples)
    first = panel.figure
    shown = np.asarray(first.axes[1].images[0].get_array())
    star = panel.update(category="star")
    assert not np.allclose(np.asarray(star.axes[1].images[0].get_array()), shown)
    assert star.axes[0].patches[1].get_linewidth() > star.axes[0].patches[0].get_linewidth()  # the chosen category's bar
    other = panel.update(split="without star")
    assert _bar_heights(other.axes[0]) != _bar_heights(star.axes[0])
    assert np.allclose(np.asarray(other.axes[3].images[0].get_array()), examples["pred_1"][2])


def test_learning_panel_shows_the_arms_the_results_hold():
    rows = [{"init": arm, "fraction": f, "epoch": e, "val_max_f": 0.3 + 0.1 * e + 0.01 * k, "train_loss": 1.0 / e}
            for k, arm in enumerate(["pretrained", "scratch_matched", "scratch"]) for f in (0.5, 1.0) for e in (1, 2, 3)]
    curves = pd.DataFrame(rows)
    final = curves[curves.epoch == 3].assign(n_train=lambda d: (d.fraction * 100).astype(int), max_f=lambda d: d.val_max_f)
    panel = panels.learning_panel(curves, final)
    arms = [k for k in panel.controls if k.startswith("arm: ")]
    assert arms == ["arm: scratch", "arm: pretrained", "arm: scratch_matched"]  # known arms in the study's order
    assert "arm: random_labels" not in panel.controls  # only arms the results hold
    assert len(panel.figure.axes[0].lines) == 6  # 3 arms x 2 fractions
    one = panel.update(fraction=0.5)
    assert len(one.axes[0].lines) == 3 and all("50%" in line.get_label() for line in one.axes[0].lines)
    fewer = panel.update(**{"arm: scratch_matched": False})
    assert len(fewer.axes[0].lines) == 2 and not any("scratch_matched" in line.get_label() for line in fewer.axes[0].lines)
    loss = panel.update(metric="train_loss")
    assert loss.axes[0].get_ylabel().startswith("training loss")


def test_redundancy_panel_picks_layer_and_width():
    layers = pd.DataFrame([{"width": w, "task": t, "layer": layer, "effective_rank_ratio": 0.1 * w / 8 + (0.3 if layer == "stage3" else 0),
                            "mean_abs_corr": 0.2 + (0.1 if t == "sod" else 0)}
                           for w in (4, 8) for t in ("sod", "classification") for layer in ("stage2", "stage3")])
    scores = pd.DataFrame([{"width": w, "task": t, "params": 1000 * w, "value": 0.5, "relative": w / 8}
                           for w in (4, 8) for t in ("sod", "classification")])
    cka = pd.DataFrame([{"width": w, "layer": layer, "cka": 0.9 - 0.1 * w / 4 - (0.3 if layer == "stage3" else 0)}
                        for w in (4, 8) for layer in ("stage2", "stage3")])
    spectra = pd.DataFrame([{"task": t, "layer": layer, "component": c, "explained_variance_ratio": 0.5 ** c}
                            for t in ("sod", "classification") for layer in ("stage2", "stage3") for c in range(1, 5)])
    panel = panels.redundancy_panel(scores, layers, cka, spectra)
    assert panel.controls["width"].value == 8
    a = _bar_heights(panel.figure.axes[1])
    other = panel.update(layer="stage2")
    assert _bar_heights(other.axes[1]) != a
    assert "stage2" in other.axes[2].get_title()
    narrow = panel.update(width=4)
    assert float(narrow.axes[2].lines[1].get_xdata()[0]) == 4.0  # the chosen width marked on the CKA curve


def test_explorer_panel_ranks_channels_for_the_chosen_target():
    from conftest import fake_explorer_data

    c = 6
    data = fake_explorer_data(c=c, side=16)
    data["importance_sod"][0, 4] = 50.0
    data["importance_cls"][0, 1] = -40.0
    panel = viz.explorer_panel({"stage3": data}, class_names=["cat", "dog"])
    assert panel.controls["channel"].value == 4
    saliency = panel.figure.axes[-1]
    assert "saliency: channel 4 ranks 1 of 6" in saliency.get_title()
    cls = panel.update(target="class logit")
    assert "class logit: channel 4" in cls.axes[-1].get_title()
    alphas = {round(p.get_alpha() or 1.0, 2) for p in cls.axes[-1].patches[:c]}
    assert alphas == {0.3}  # saliency's bars step back when the class logit is the target
    panel.widget.children[1].children[-1].click()  # "most important channel"
    assert panel.controls["channel"].value == 1
    assert "channel 1 ranks 1 of 6" in panel.figure.axes[-1].get_title()
