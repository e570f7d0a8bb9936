"""The channel explorer: pick an image, a layer and a channel; see the channel's activation in
the saliency model and in the classifier, and how much it matters to each task.

Reads what `sodlab.experiments.channel_explorer_data` precomputes (one dict per layer), so
moving a slider only redraws. With a live Jupyter frontend it shows ipywidgets controls;
it always returns a static matplotlib figure of the current selection, so a headless run
(``sodlab studies``) still leaves a figure in the notebook and on disk.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np

from .widgets import LivePanel, live_kernel

_KEYS = ("images", "saliency", "activations_sod", "activations_cls", "importance_sod", "importance_cls", "layer")


def _check(data: Mapping[str, Any]) -> None:
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise KeyError(f"explorer data lacks {', '.join(missing)} (make it with sodlab.experiments.channel_explorer_data)")


# The explorer's targets: what a channel's importance is measured against.
TARGETS = {"saliency": "importance_sod", "class logit": "importance_cls"}


def _target_key(target: str) -> str:
    if target not in TARGETS:
        raise KeyError(f"unknown target {target!r} (have {', '.join(TARGETS)})")
    return TARGETS[target]


def default_channel(data: Mapping[str, Any], image: int, target: str = "saliency") -> int:
    """The channel that matters most to ``target`` ("saliency" or "class logit") on ``image``
    (largest |importance|)."""
    return int(np.abs(np.asarray(data[_target_key(target)])[image]).argmax())


def channel_figure(data: Mapping[str, Any], image: int = 0, channel: Optional[int] = None,
                   class_names: Optional[list[str]] = None, target: str = "saliency"):
    """Static view of one (image, channel) at ``data["layer"]``: the photo, the predicted
    saliency, the channel's activation in both models, and every channel's importance for
    both tasks on that image with the selected one marked; ``target`` ("saliency" or "class
    logit") is the task whose importance is drawn in front and ranks the channel."""
    _check(data)
    chosen = _target_key(target)
    n = len(data["images"])
    if not 0 <= image < n:
        raise IndexError(f"image {image} out of range (0..{n - 1})")
    c_total = np.asarray(data["importance_sod"]).shape[1]
    channel = default_channel(data, image, target) if channel is None else int(channel)
    if not 0 <= channel < c_total:
        raise IndexError(f"channel {channel} out of range (0..{c_total - 1})")
    layer = data["layer"]
    fig = plt.figure(figsize=(12.5, 5.6), layout="constrained")
    grid = fig.add_gridspec(2, 4, height_ratios=[1.25, 1])
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(data["images"][image])
    pred = data.get("class_pred")
    label = ""
    if pred is not None:
        k = int(np.asarray(pred)[image])
        label = f"\nclassifier says: {class_names[k] if class_names else k}"
    ax.set_title(f"image {image}{label}", fontsize="small")
    ax.set_axis_off()
    ax = fig.add_subplot(grid[0, 1])
    im = ax.imshow(data["saliency"][image], cmap="gray", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, shrink=0.8, label="saliency (0-1)")
    ax.set_title("predicted saliency", fontsize="small")
    ax.set_axis_off()
    for j, (key, title) in enumerate((("activations_sod", "SOD model"), ("activations_cls", "classifier"))):
        ax = fig.add_subplot(grid[0, 2 + j])
        a = np.nan_to_num(np.asarray(data[key], dtype=np.float64)[image, channel], posinf=0.0, neginf=0.0)
        lim = float(np.abs(a).max()) or 1.0
        im = ax.imshow(a, cmap="RdBu_r", vmin=-lim, vmax=lim)
        fig.colorbar(im, ax=ax, shrink=0.8, label="activation (a.u.)")
        ax.set_title(f"{title}: {layer} channel {channel}", fontsize="small")
        ax.set_axis_off()
    ax = fig.add_subplot(grid[1, :])
    chans = np.arange(c_total)
    for off, key, name, color in ((-0.2, "importance_sod", "saliency target", "C0"), (0.2, "importance_cls", "class logit", "C1")):
        v = np.nan_to_num(np.asarray(data[key], dtype=np.float64)[image], posinf=0.0, neginf=0.0)
        scale = float(np.abs(v).max()) or 1.0
        ax.bar(chans + off, v / scale, width=0.4, color=color, alpha=1.0 if key == chosen else 0.3,
               label=f"{name} (max |value| {scale:.3g})")
    ranked = np.argsort(-np.abs(np.nan_to_num(np.asarray(data[chosen], dtype=np.float64)[image])), kind="stable")
    rank = int(np.flatnonzero(ranked == channel)[0]) + 1
    ax.set_title(f"importance for the {target}: channel {channel} ranks {rank} of {c_total}", fontsize="small")
    ax.axvspan(channel - 0.5, channel + 0.5, color="0.85", zorder=0, label=f"channel {channel}")
    ax.axhline(0, color="0.3", lw=0.6)
    ax.set_xlim(-0.7, c_total - 0.3)
    ax.set_xlabel(f"channel of {layer}")
    ax.set_ylabel("gradient x activation\n(relative to max |value|)")
    ax.legend(fontsize="x-small", ncols=3, loc="upper right")
    return fig


def channel_explorer(
    data: Mapping[str, Any] | Mapping[str, Mapping[str, Any]],
    image: int = 0,
    channel: Optional[int] = None,
    layer: Optional[str] = None,
    class_names: Optional[list[str]] = None,
    interactive: Optional[bool] = None,
):
    """Show the explorer and return the static figure of the initial selection.

    ``data`` is one `channel_explorer_data` dict or a mapping layer -> such dicts. The
    controls (`explorer_panel`) appear when ``interactive`` (default: inside a Jupyter
    kernel); the returned figure is what a headless run keeps.
    """
    by_layer = _by_layer(data)
    layer = layer if layer is not None else next(iter(by_layer))
    if layer not in by_layer:
        raise KeyError(f"no explorer data for layer {layer!r} (have {', '.join(by_layer)})")
    static = channel_figure(by_layer[layer], image, channel, class_names)
    if interactive is None:
        interactive = live_kernel()
    if interactive:
        from IPython.display import display

        display(explorer_panel(by_layer, image, channel, layer, class_names))
    return static


def _by_layer(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    by_layer = {data["layer"]: data} if "layer" in data else dict(data)
    for d in by_layer.values():
        _check(d)
    return by_layer


def explorer_panel(data: Mapping[str, Any], image: int = 0, channel: Optional[int] = None, layer: Optional[str] = None,
                   class_names: Optional[list[str]] = None) -> LivePanel:
    """The explorer's controls: image, layer, channel and the target that ranks channels
    (saliency or class logit), with a button that jumps to the target's top channel."""
    by_layer = _by_layer(data)
    layer = layer if layer is not None else next(iter(by_layer))
    first = by_layer[layer]
    n_channels = lambda d: np.asarray(d["importance_sod"]).shape[1]  # noqa: E731
    c0 = default_channel(first, image) if channel is None else channel
    controls = {
        "image": W.IntSlider(value=image, min=0, max=len(first["images"]) - 1, description="image", continuous_update=False),
        "layer": W.Dropdown(options=list(by_layer), value=layer, description="layer"),
        "channel": W.IntSlider(value=c0, min=0, max=n_channels(first) - 1, description="channel", continuous_update=False),
        "target": W.Dropdown(options=list(TARGETS), value="saliency", description="rank for"),
    }
    top = W.Button(description="most important channel", layout=W.Layout(width="auto"),
                   tooltip="jump to the channel that matters most to the chosen target on this image")

    def draw(image: int, layer: str, channel: int, target: str):
        d = by_layer[layer]
        return channel_figure(d, image, min(channel, n_channels(d) - 1), class_names, target=target)

    panel = LivePanel(draw, controls, probe="image", extra=[top], title="Channel explorer")

    def layer_changed(_change) -> None:
        controls["channel"].max = n_channels(by_layer[controls["layer"].value]) - 1

    def to_top(_button) -> None:
        v = panel.values()
        controls["channel"].value = default_channel(by_layer[v["layer"]], v["image"], v["target"])

    controls["layer"].observe(layer_changed, names="value")
    top.on_click(to_top)
    return panel
