"""How redundant a layer's channels are, and how similar two layers' representations are.

Activations are read with forward hooks on named layers (the model is never modified).
A layer's channels are treated as variables observed at every image position; the
channel correlation matrix, the PCA spectrum and its effective rank (Roy & Vetterli,
2007) then say how many independent directions the layer really uses. Linear CKA
(Kornblith et al., 2019) compares layers across depth and across networks, per image.
"""
from __future__ import annotations

from typing import Iterable, Literal, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .importance import eval_mode, resolve_layer


# --- activations ---------------------------------------------------------------------
def _batches(inputs: Tensor | Iterable, batch_size: int) -> Iterable[Tensor]:
    if isinstance(inputs, Tensor):
        for start in range(0, len(inputs), batch_size):
            yield inputs[start:start + batch_size]
    else:
        for b in inputs:
            yield b["image"] if isinstance(b, Mapping) else (b[0] if isinstance(b, (list, tuple)) else b)


@torch.no_grad()
def collect_activations(
    model: nn.Module,
    inputs: Tensor | Iterable,
    layers: Sequence[str],
    batch_size: int = 16,
    device: Optional[torch.device | str] = None,
) -> dict[str, Tensor]:
    """Outputs (N, C, H, W) of the named ``layers`` (dotted names or `resolve_layer`
    aliases) for ``inputs`` (a tensor, or batches/dicts with ``"image"``), on the CPU."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    store: dict[str, list[Tensor]] = {name: [] for name in layers}
    handles = []
    for name in layers:
        module = resolve_layer(model, name)

        def hook(_m, _i, out, name=name):
            if not isinstance(out, Tensor):
                raise ConfigError(f"layer {name!r} returns a {type(out).__name__}; pick a single-tensor layer (e.g. an alias)")
            store[name].append(out.detach().float().cpu())

        handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(model):
            for x in _batches(inputs, batch_size):
                model(x.to(device))
    finally:
        for h in handles:
            h.remove()
    return {name: torch.cat(v) for name, v in store.items()}


def channel_matrix(act: Tensor, max_rows: Optional[int] = None, seed: int = 0) -> np.ndarray:
    """(positions x channels) float64 matrix of an (N, C, H, W) or (N, C) activation;
    ``max_rows`` subsamples positions (seeded) to bound the cost."""
    a = act.detach().double()
    m = a.transpose(0, 1).flatten(1).T if a.dim() > 2 else a
    m = m.numpy()
    if max_rows is not None and len(m) > max_rows:
        rows = np.random.default_rng(seed).choice(len(m), size=max_rows, replace=False)
        m = m[np.sort(rows)]
    return m


# --- correlation and spectrum --------------------------------------------------------
def channel_correlation(act: Tensor, max_rows: Optional[int] = 200_000, seed: int = 0) -> np.ndarray:
    """Pearson correlation between channels (C, C) over images and positions; channels that
    never vary (pruned or dead) give NaN rows."""
    m = channel_matrix(act, max_rows, seed)
    m = m - m.mean(0)
    sd = np.sqrt((m * m).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (m.T @ m) / np.outer(sd, sd)
    dead = sd == 0
    c[dead, :] = np.nan
    c[:, dead] = np.nan
    np.fill_diagonal(c, np.where(dead, np.nan, 1.0))
    return c


def correlation_summary(corr: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Mean |r| over channel pairs and the fraction of pairs with |r| above ``threshold``."""
    n = len(corr)
    off = np.abs(corr[~np.eye(n, dtype=bool)])
    off = off[np.isfinite(off)]
    if off.size == 0:
        return {"mean_abs_corr": float("nan"), f"frac_abs_corr_gt_{threshold:g}": float("nan")}
    return {"mean_abs_corr": float(off.mean()), f"frac_abs_corr_gt_{threshold:g}": float((off > threshold).mean())}


def pca_spectrum(act: Tensor, max_rows: Optional[int] = 200_000, seed: int = 0) -> np.ndarray:
    """Singular values (descending) of the centred positions x channels matrix; their
    squares are the PCA variances (up to the 1/(n-1) factor)."""
    m = channel_matrix(act, max_rows, seed)
    m = m - m.mean(0)
    # The C x C scatter matrix is small; its eigenvalues are the squared singular values.
    ev = np.linalg.eigvalsh(m.T @ m)[::-1]
    return np.sqrt(np.clip(ev, 0.0, None))


def effective_rank(singular_values: Sequence[float] | np.ndarray) -> float:
    """Roy & Vetterli's effective rank: exp of the entropy of the normalised singular values.

    Between 1 (one direction) and the number of non-zero values (all equal).
    """
    s = np.abs(np.asarray(singular_values, dtype=np.float64))
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def explained_variance_ratio(singular_values: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(singular_values, dtype=np.float64) ** 2
    return v / v.sum() if v.sum() > 0 else v


def components_for(singular_values: Sequence[float] | np.ndarray, fraction: float = 0.9) -> int:
    """Number of principal components that explain ``fraction`` of the variance."""
    r = np.cumsum(explained_variance_ratio(singular_values))
    return int(np.searchsorted(r, fraction - 1e-12) + 1) if r.size and r[-1] > 0 else 0


def layer_redundancy(acts: Mapping[str, Tensor], max_rows: Optional[int] = 200_000, seed: int = 0) -> pd.DataFrame:
    """One row per layer: channels, effective rank (absolute and per channel), components for
    90% variance, and the channel correlation summary."""
    rows = []
    for name, act in acts.items():
        s = pca_spectrum(act, max_rows, seed)
        er = effective_rank(s)
        rows.append(
            {
                "layer": name,
                "channels": int(act.shape[1]),
                "effective_rank": er,
                "effective_rank_ratio": er / act.shape[1],
                "components_90": components_for(s, 0.9),
                **correlation_summary(channel_correlation(act, max_rows, seed)),
            }
        )
    return pd.DataFrame(rows)


def spectrum_table(acts: Mapping[str, Tensor], max_rows: Optional[int] = 200_000, seed: int = 0) -> pd.DataFrame:
    """Long table of the PCA spectra: layer, component (1-based), explained variance ratio."""
    rows = []
    for name, act in acts.items():
        for i, r in enumerate(explained_variance_ratio(pca_spectrum(act, max_rows, seed)), 1):
            rows.append({"layer": name, "component": i, "explained_variance_ratio": float(r)})
    return pd.DataFrame(rows)


# --- CKA -------------------------------------------------------------------------------
def cka_features(act: Tensor, mode: Literal["flatten", "pool"] = "flatten") -> np.ndarray:
    """Per-image representation (N, D): the flattened map, or its spatial mean per channel."""
    a = act.detach().double()
    if a.dim() > 2:
        a = a.flatten(2).mean(2) if mode == "pool" else a.flatten(1)
    return a.numpy()


def linear_cka(x: np.ndarray | Tensor, y: np.ndarray | Tensor) -> float:
    """Linear CKA between two representations of the same N examples, (N, D1) and (N, D2).

    Invariant to orthogonal transforms and isotropic scaling of either; 1 for identical
    representations. Uses N x N Gram matrices, so wide layers cost nothing extra.
    """
    x = np.asarray(x.detach().cpu().double() if isinstance(x, Tensor) else x, dtype=np.float64)
    y = np.asarray(y.detach().cpu().double() if isinstance(y, Tensor) else y, dtype=np.float64)
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    if len(x) != len(y):
        raise ConfigError(f"CKA needs the same examples in both representations: {len(x)} vs {len(y)}")
    x = x - x.mean(0)
    y = y - y.mean(0)
    kx, ky = x @ x.T, y @ y.T
    hsic = (kx * ky).sum()
    den = np.sqrt((kx * kx).sum() * (ky * ky).sum())
    return float(hsic / den) if den > 0 else float("nan")


def cka_matrix(
    acts_a: Mapping[str, Tensor],
    acts_b: Optional[Mapping[str, Tensor]] = None,
    mode: Literal["flatten", "pool"] = "flatten",
) -> pd.DataFrame:
    """Linear CKA between every layer of ``acts_a`` (rows) and of ``acts_b`` (columns;
    ``acts_a`` itself when omitted)."""
    acts_b = acts_a if acts_b is None else acts_b
    fa = {k: cka_features(v, mode) for k, v in acts_a.items()}
    fb = fa if acts_b is acts_a else {k: cka_features(v, mode) for k, v in acts_b.items()}
    return pd.DataFrame([[linear_cka(fa[i], fb[j]) for j in fb] for i in fa], index=list(fa), columns=list(fb))
