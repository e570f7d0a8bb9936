"""Writing study outputs: files appear whole or not at all."""
from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_path


def savefig(fig, path: str | Path, dpi: int = 120, close: bool = False) -> Path:
    """Save a matplotlib figure as PNG (``.png`` is added when missing), atomically.

    The figure stays open by default so that a notebook still displays it.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def save_table(df, path: str | Path, index: bool = False) -> Path:
    """Save a DataFrame as CSV (``.csv`` is added when missing), atomically."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        path = path.with_name(path.name + ".csv")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=index)
    return path
