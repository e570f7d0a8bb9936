"""Numba kernels for `sodlab.fast.norm_act`: training-mode BatchNorm + PReLU on an (M, C) matrix.

``x`` is a channels-last activation seen as its (N*H*W, C) matrix. The kernels split the M
rows into chunks that run in parallel; per-channel sums accumulate in float64 within a
chunk and are added over chunks afterwards, so they are at least as accurate as PyTorch's
(which accumulates in the input's precision). Each function reads its inputs once or twice
and writes its output once: the torch-ops path in `sodlab.fast.norm_act` needs about a dozen
passes over memory for the same work, and memory bandwidth is what bounds it.

The forward does not keep ``y = (x - mean) * scale + beta``: the backward recomputes it
with the same expression in the same precision, so the PReLU mask is the forward's.

Imported on first use only: compiling takes some seconds (cached on disk afterwards).
"""
from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

_OPTIONS = dict(parallel=True, cache=True, nogil=True)


@nb.njit(**_OPTIONS)
def batch_stats(x, n_chunks):  # pragma: no cover - compiled
    """(mean, biased variance) per column of ``x``, in float64.

    Sums of ``x - x[0]`` and its square: shifting by a sample of the data keeps the
    one-pass variance formula free of cancellation."""
    m, c = x.shape
    part = np.zeros((n_chunks, 2, c))
    step = (m + n_chunks - 1) // n_chunks
    shift = x[0].astype(np.float64)
    for k in prange(n_chunks):
        s = np.zeros(c)
        q = np.zeros(c)
        for i in range(k * step, min(m, (k + 1) * step)):
            for j in range(c):
                d = np.float64(x[i, j]) - shift[j]
                s[j] += d
                q[j] += d * d
        part[k, 0] = s
        part[k, 1] = q
    s = part[:, 0].sum(axis=0) / m
    q = part[:, 1].sum(axis=0) / m
    return shift + s, np.maximum(q - s * s, 0.0)


@nb.njit(**_OPTIONS)
def forward(x, mean, scale, beta, slope, out, n_chunks):  # pragma: no cover - compiled
    """``out = prelu((x - mean) * scale + beta, slope)``, row by row."""
    m, c = x.shape
    step = (m + n_chunks - 1) // n_chunks
    for k in prange(n_chunks):
        for i in range(k * step, min(m, (k + 1) * step)):
            for j in range(c):
                y = (x[i, j] - mean[j]) * scale[j] + beta[j]
                out[i, j] = y if y > 0 else slope[j] * y


@nb.njit(**_OPTIONS)
def backward(g, x, mean, scale, beta, slope, invstd, dx, n_chunks):  # pragma: no cover - compiled
    """Writes ``dx``; returns per-column float64 (sum dy, sum dy * (x - mean), sum g * min(y, 0)),
    where ``dy`` is the gradient reaching the BatchNorm output ``y``."""
    m, c = x.shape
    step = (m + n_chunks - 1) // n_chunks
    part = np.zeros((n_chunks, 3, c))
    for k in prange(n_chunks):
        s_dy = np.zeros(c)
        s_dyx = np.zeros(c)
        s_gy = np.zeros(c)
        for i in range(k * step, min(m, (k + 1) * step)):
            for j in range(c):
                xc = x[i, j] - mean[j]
                y = xc * scale[j] + beta[j]
                gi = g[i, j]
                if y > 0:
                    dy = gi
                else:
                    dy = slope[j] * gi
                    s_gy[j] += np.float64(gi) * np.float64(y)
                s_dy[j] += dy
                s_dyx[j] += np.float64(dy) * np.float64(xc)
        part[k, 0] = s_dy
        part[k, 1] = s_dyx
        part[k, 2] = s_gy
    sums = part.sum(axis=0)
    # dx = scale * (dy - mean(dy) - x_hat * mean(dy * x_hat)), x_hat = xc * invstd
    k1 = (-(scale * invstd * invstd) * sums[1] / m).astype(x.dtype)
    k0 = (-scale * sums[0] / m).astype(x.dtype)
    for k in prange(n_chunks):
        for i in range(k * step, min(m, (k + 1) * step)):
            for j in range(c):
                xc = x[i, j] - mean[j]
                y = xc * scale[j] + beta[j]
                gi = g[i, j]
                dy = gi if y > 0 else slope[j] * gi
                dx[i, j] = dy * scale[j] + xc * k1[j] + k0[j]
    return sums
