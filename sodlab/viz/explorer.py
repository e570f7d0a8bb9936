"""The channel explorer: pick an image, a layer and a channel; see the channel's activation in
the saliency model and in the classifier, and how much it matters to each task.

Reads what `sodlab.experiments.channel_explorer_data` precomputes (one dict per layer), so
moving a slider only redraws. With a live Jupyter frontend it shows ipywidgets controls;
it always returns a static matplotlib figure of the current selection, so a headless run
(``sodlab studies``) still leaves a figure in the notebook and on disk.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import matplotlib.pyplot as plt
import numpy as np

_KEYS = ("images", "saliency", "activations_sod", "activations_cls", "importance_sod", "importance_cls", "layer")


def _check(data: Mapping[str, Any]) -> None:
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise KeyError(f"explorer data lacks {', '.join(missing)} (make it with sodlab.experiments.channel_explorer_data)")


def default_channel(data: Mapping[str, Any], image: int) -> int:
    """The channel that matters most to saliency on ``image`` (largest |importance|)."""
    return int(np.abs(np.asarray(data["importance_sod"])[image]).argmax())


def channel_figure(data: Mapping[str, Any], image: int = 0, channel: Optional[int] = None,
                   class_names: Optional[list[str]] = None):
    """Static view of one (image, channel) at ``data["layer"]``: the photo, the predicted
    saliency, the channel's activation in both models, and every channel's importance for
    both tasks on that image with the selected one marked."""
    _check(data)
    n = len(data["images"])
    if not 0 <= image < n:
        raise IndexError(f"image {image} out of range (0..{n - 1})")
    c_total = np.asarray(data["importance_sod"]).shape[1]
    channel = default_channel(data, image) if channel is None else int(channel)
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
        ax.bar(chans + off, v / scale, width=0.4, color=color, label=f"{name} (max |value| {scale:.3g})")
    ax.axvspan(channel - 0.5, channel + 0.5, color="0.85", zorder=0, label=f"channel {channel}")
    ax.axhline(0, color="0.3", lw=0.6)
    ax.set_xlim(-0.7, c_total - 0.3)
    ax.set_xlabel(f"channel of {layer}")
    ax.set_ylabel("gradient x activation\n(relative to max |value|)")
    ax.legend(fontsize="x-small", ncols=3, loc="upper right")
    return fig


def _live_frontend() -> bool:
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


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
    controls appear when ``interactive`` (default: inside a Jupyter kernel with ipywidgets);
    without a frontend they render as inert text, and the returned figure is what remains.
    """
    by_layer = {data["layer"]: data} if "layer" in data else dict(data)
    for d in by_layer.values():
        _check(d)
    layer = layer if layer is not None else next(iter(by_layer))
    if layer not in by_layer:
        raise KeyError(f"no explorer data for layer {layer!r} (have {', '.join(by_layer)})")
    static = channel_figure(by_layer[layer], image, channel, class_names)
    if interactive is None:
        interactive = _live_frontend()
    if interactive:
        _show_widgets(by_layer, image, channel, layer, class_names)
    return static


def _show_widgets(by_layer, image, channel, layer, class_names) -> None:
    import ipywidgets as W
    from IPython.display import display

    first = by_layer[layer]
    n_images = len(first["images"])
    w_image = W.IntSlider(value=image, min=0, max=n_images - 1, description="image")
    w_layer = W.Dropdown(options=list(by_layer), value=layer, description="layer")
    c0 = default_channel(first, image) if channel is None else channel
    w_channel = W.IntSlider(value=c0, min=0, max=first["channels"] - 1 if "channels" in first else np.asarray(first["importance_sod"]).shape[1] - 1,
                            description="channel")
    w_top = W.Button(description="most salient channel", tooltip="jump to the channel that matters most to saliency on this image")
    out = W.Output()

    def redraw(*_args) -> None:
        d = by_layer[w_layer.value]
        w_channel.max = np.asarray(d["importance_sod"]).shape[1] - 1
        with out:
            out.clear_output(wait=True)
            fig = channel_figure(d, w_image.value, min(w_channel.value, w_channel.max), class_names)
            display(fig)
            plt.close(fig)

    def to_top(_b) -> None:
        w_channel.value = default_channel(by_layer[w_layer.value], w_image.value)

    for w in (w_image, w_layer, w_channel):
        w.observe(redraw, names="value")
    w_top.on_click(to_top)
    display(W.VBox([W.HBox([w_image, w_layer]), W.HBox([w_channel, w_top]), out]))
    redraw()
