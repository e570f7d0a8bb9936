"""Live controls for the study notebooks: a `LivePanel` is a row of ipywidgets controls and a
matplotlib figure redrawn from results already computed whenever a control moves.

A panel never trains or evaluates: its ``draw`` function reads precomputed tables and arrays,
so a redraw costs one matplotlib figure (well under a second). ``update(**values)`` moves
controls from code, exactly as a reader moving them would, and returns the new figure, which
is how the panels are tested without a browser (`figure` keeps the last one drawn).

In a live Jupyter kernel the figure is shown in the panel's `ipywidgets.Output`; elsewhere
(pytest, a plain interpreter) nothing is displayed and the figure is only kept. Panels carry
the CSS classes `PANEL_CLASS` and, on the control a browser test moves, `PROBE_CLASS`.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..errors import ConfigError

PANEL_CLASS = "sodlab-panel"
PROBE_CLASS = "sodlab-probe"


def live_kernel() -> bool:
    """True inside a Jupyter kernel (where widgets have a frontend to talk to)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LivePanel:
    """Controls (name -> ipywidgets value widget) and a figure ``draw(**values)`` returns.

    ``probe`` names the control a browser test moves; ``extra`` widgets (buttons, an upload)
    sit after the controls; ``title`` is shown above them.
    """

    def __init__(self, draw: Callable[..., Figure], controls: Mapping[str, W.ValueWidget], probe: str,
                 extra: Sequence[W.Widget] = (), title: Optional[str] = None) -> None:
        if probe not in controls:
            raise ConfigError(f"probe {probe!r} is not one of the controls ({', '.join(controls)})")
        self._draw = draw
        self.controls = dict(controls)
        self.output = W.Output()
        self.figure: Optional[Figure] = None
        self.redraws = 0
        self._held = False
        self.controls[probe].add_class(PROBE_CLASS)
        for w in self.controls.values():
            w.observe(self._changed, names="value")
        header = [W.HTML(f"<b>{title}</b>")] if title else []
        self.widget = W.VBox([*header, W.HBox([*self.controls.values(), *extra], layout=W.Layout(flex_flow="row wrap")),
                              self.output])
        self.widget.add_class(PANEL_CLASS)
        self.redraw()

    def values(self) -> dict[str, Any]:
        """The controls' current values."""
        return {name: w.value for name, w in self.controls.items()}

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        self._held, before = True, self._held
        try:
            yield
        finally:
            self._held = before

    def update(self, **values: Any) -> Figure:
        """Move the named controls to ``values`` (one redraw for all of them) and return the
        new figure."""
        unknown = [k for k in values if k not in self.controls]
        if unknown:
            raise ConfigError(f"no control named {', '.join(unknown)} (have {', '.join(self.controls)})")
        with self._hold():
            for name, value in values.items():
                self.controls[name].value = value
        return self.redraw()

    def _changed(self, _change: Mapping[str, Any]) -> None:
        if not self._held:
            self.redraw()

    def redraw(self) -> Figure:
        """Draw the figure for the current values (and show it in a live kernel)."""
        fig = self._draw(**self.values())
        self.figure = fig
        self.redraws += 1
        if live_kernel():
            from IPython.display import display

            with self.output:
                self.output.clear_output(wait=True)
                display(fig)
        # The output holds the rendered picture; closed, the figure keeps its data for tests
        # and the inline backend does not show it a second time under the cell.
        plt.close(fig)
        return fig

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def dropdown(options: Sequence[Any] | Mapping[str, Any], value: Any = None, description: str = "", width: str = "260px") -> W.Dropdown:
    """A dropdown whose description is readable (descriptions are cut at 80 px by default)."""
    opts = list(options.items()) if isinstance(options, Mapping) else list(options)
    if not opts:
        raise ConfigError(f"{description or 'dropdown'}: nothing to choose from")
    first = opts[0][1] if isinstance(opts[0], tuple) else opts[0]
    return W.Dropdown(options=opts, value=first if value is None else value, description=description,
                      style={"description_width": "initial"}, layout=W.Layout(width=width))


def selection_slider(options: Sequence[Any] | Mapping[str, Any], value: Any = None, description: str = "",
                     width: str = "360px") -> W.SelectionSlider:
    """A slider over given values (the points that exist), redrawn on release."""
    opts = list(options.items()) if isinstance(options, Mapping) else list(options)
    if not opts:
        raise ConfigError(f"{description or 'slider'}: nothing to choose from")
    first = opts[0][1] if isinstance(opts[0], tuple) else opts[0]
    return W.SelectionSlider(options=opts, value=first if value is None else value, description=description,
                             continuous_update=False, style={"description_width": "initial"}, layout=W.Layout(width=width))
