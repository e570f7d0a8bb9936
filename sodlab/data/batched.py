"""Crop, flip, quarter-turn and resize a whole batch of images in one pass.

Per image, classification's training transform crops, flips, turns and resizes bilinearly
(`sodlab.data.imagefolder.ImageTransform`): about 0.3 ms of Python and small tensor calls per
image, a quarter of an epoch of the CPU-sized classifier. Here the same geometry runs as two
batched matrix products. Bilinear resizing is separable, so resizing a crop is ``Wy @ crop @
Wx^T`` with interpolation matrices built from exactly the source coordinates and clamping
that `torch.nn.functional.interpolate` uses (``align_corners=False``, no anti-aliasing);
flips reverse a matrix's rows, and a quarter turn after a square resize is `torch.rot90` of
the result. The output equals the per-image transform up to float summation order.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor


class Geometry(NamedTuple):
    """One image's augmentation: the crop ``[top, top + height) x [left, left + width)``,
    then flips (left-right, top-bottom), then ``quarter_turns`` turns of `torch.rot90`
    (dims H, W)."""

    top: int
    left: int
    height: int
    width: int
    hflip: bool = False
    vflip: bool = False
    quarter_turns: int = 0


def interpolation_matrices(starts: Tensor, lengths: Tensor, full: int, out: int) -> Tensor:
    """(B, out, full) bilinear weights: row ``j`` of matrix ``b`` samples the segment
    ``[starts[b], starts[b] + lengths[b])`` of an axis of ``full`` pixels at output pixel ``j``
    of ``out``, as `interpolate` resizing that segment alone would (source coordinate
    ``(j + 0.5) * length / out - 0.5``, negative ones clamped to 0, the upper neighbour
    clamped to the segment's last pixel)."""
    b = starts.shape[0]
    scale = (lengths.to(torch.float32) / out)[:, None]
    src = (torch.arange(out, dtype=torch.float32)[None, :] + 0.5) * scale - 0.5
    src = src.clamp_min(0.0)
    i0 = src.floor().to(torch.int64)
    i0 = torch.minimum(i0, (lengths - 1)[:, None])
    i1 = torch.minimum(i0 + 1, (lengths - 1)[:, None])
    lam1 = src - i0.to(torch.float32)
    lam0 = 1.0 - lam1
    weights = torch.zeros(b, out, full, dtype=torch.float32)
    weights.scatter_add_(2, (starts[:, None] + i0)[..., None], lam0[..., None])
    weights.scatter_add_(2, (starts[:, None] + i1)[..., None], lam1[..., None])
    return weights


def crop_flip_turn_resize(images: Tensor, geometries: Sequence[Geometry], size: int) -> Tensor:
    """(B, 3, size, size) float images: each of ``images`` ((B, 3, H, W) float) cropped,
    flipped and turned by its `Geometry`, then resized bilinearly to ``size`` x ``size``."""
    if images.dim() != 4 or images.shape[0] != len(geometries):
        raise ValueError(f"expected (B, C, H, W) images and B geometries, got {tuple(images.shape)} and {len(geometries)}")
    h, w = images.shape[-2:]
    g = torch.tensor([[t.top, t.left, t.height, t.width, int(t.hflip), int(t.vflip), int(t.quarter_turns) % 4] for t in geometries],
                     dtype=torch.int64)
    wy = interpolation_matrices(g[:, 0], g[:, 2], h, size)
    wx = interpolation_matrices(g[:, 1], g[:, 3], w, size)
    # A flip before the resize is the resize's output reversed: the matrix's rows reversed.
    vflip, hflip = g[:, 5].bool(), g[:, 4].bool()
    wy[vflip] = wy[vflip].flip(1)
    wx[hflip] = wx[hflip].flip(1)
    # Two batched products with the channels folded into the columns: broadcasting a
    # (B, 1, S, H) matrix over (B, 3, H, W) runs 5-10x slower on CPU.
    b, c = images.shape[:2]
    rows = torch.bmm(wy, images.contiguous().transpose(1, 2).reshape(b, h, c * w))  # (B, S, C*W)
    cols = torch.bmm(rows.reshape(b, size * c, w), wx.transpose(1, 2))  # (B, S*C, S)
    out = cols.reshape(b, size, c, size).transpose(1, 2).contiguous()
    # The crop is resized to a square, so turning before or after the resize is the same.
    for k in (1, 2, 3):
        sel = g[:, 6] == k
        if bool(sel.any()):
            out[sel] = torch.rot90(out[sel], k, dims=(2, 3))
    return out
