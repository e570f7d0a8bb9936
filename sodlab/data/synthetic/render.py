"""Drawing one image: photographs and shape templates (`_Assets`, loaded once per worker
task) and `render`, which composes the background, clutter, distractors and the salient
object from an image's random stream. How ``difficulty`` weakens the saliency cues is
described in the package docstring."""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ...errors import DataError
from .params import CATEGORIES, SynthParams

_TEMPLATE_RES = 160   # canonical shape bitmaps, side in pixels
_PHOTO_MAX_SIDE = 384  # photos are downscaled once; crops are resized to the image size
_SUPERSAMPLE = 2      # shapes are placed at twice the resolution, then box-filtered


# --- assets: photographs and shape templates ------------------------------------------------
def _load_photo(name: str) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    if isinstance(arr, tuple):  # stereo pairs
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0, 1) * 255).astype(np.uint8) if arr.max() <= 1 else arr.astype(np.uint8)
    im = Image.fromarray(arr).convert("RGB") if arr.ndim == 2 else Image.fromarray(arr[:, :, :3])
    scale = _PHOTO_MAX_SIDE / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    return im


def _polygon(draw: ImageDraw.ImageDraw, pts: Iterable[tuple[float, float]], res: int, fill: int = 255) -> None:
    # Unit coordinates (radius 1 around the centre) to template pixels.
    half, r = res / 2.0, 0.46 * res
    draw.polygon([(half + x * r, half + y * r) for x, y in pts], fill=fill)


def _circle(draw: ImageDraw.ImageDraw, cx: float, cy: float, rad: float, res: int, fill: int) -> None:
    n = 96
    _polygon(draw, [(cx + rad * math.cos(2 * math.pi * k / n), cy + rad * math.sin(2 * math.pi * k / n)) for k in range(n)], res, fill)


def _fit_bitmap(mask: np.ndarray, res: int) -> np.ndarray:
    """A binary bitmap cropped to its content and centred in a res x res template."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    scale = 0.92 * res / max(h, w)
    im = Image.fromarray(crop.astype(np.uint8) * 255).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    out = Image.new("L", (res, res), 0)
    out.paste(im, ((res - im.width) // 2, (res - im.height) // 2))
    return np.asarray(out)


def _template(name: str, res: int) -> np.ndarray:
    """The canonical (res, res) uint8 alpha of a category, object centred, upright."""
    big = res * 2  # drawn at twice the size, then downsampled for smooth edges
    im = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(im)
    tau = 2 * math.pi
    if name == "ellipse":
        _circle(d, 0, 0, 1, big, 255)
    elif name == "triangle":
        _polygon(d, [(math.cos(a), math.sin(a) + 0.2) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)], big)
    elif name == "rectangle":
        _polygon(d, [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)], big)
    elif name == "star":
        _polygon(d, [((1.0 if k % 2 == 0 else 0.42) * math.cos(tau * k / 10 - math.pi / 2),
                      (1.0 if k % 2 == 0 else 0.42) * math.sin(tau * k / 10 - math.pi / 2) + 0.08) for k in range(10)], big)
    elif name == "cross":
        a = 0.3
        _polygon(d, [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)], big)
    elif name == "ring":
        _circle(d, 0, 0, 1, big, 255)
        _circle(d, 0, 0, 0.55, big, 0)
    elif name == "crescent":
        _circle(d, 0, 0, 1, big, 255)
        _circle(d, 0.45, -0.15, 0.85, big, 0)
    elif name == "heart":
        t = np.linspace(0, tau, 120, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        _polygon(d, zip(x / 17, (y + 2.5) / 17), big)
    elif name == "arrow":
        _polygon(d, [(-1, -0.22), (0.15, -0.22), (0.15, -0.6), (1, 0), (0.15, 0.6), (0.15, 0.22), (-1, 0.22)], big)
    elif name == "gear":
        pts = []
        for k in range(10):
            a0 = tau * k / 10
            for da, r in ((0.0, 0.72), (0.08, 1.0), (0.31, 1.0), (0.39, 0.72)):
                a = a0 + da * tau / 10 * 2.5 / 2
                pts.append((r * math.cos(a), r * math.sin(a)))
        _polygon(d, pts, big)
        _circle(d, 0, 0, 0.3, big, 0)
    elif name == "letter_A":
        font = ImageFont.load_default(size=big)
        glyph = Image.new("L", (big * 2, big * 2), 0)
        ImageDraw.Draw(glyph).text((big // 2, big // 4), "A", fill=255, font=font)
        return _fit_bitmap(np.asarray(glyph) > 127, res)
    elif name == "horse":
        import skimage.data

        return _fit_bitmap(~skimage.data.horse(), res)
    else:  # pragma: no cover - guarded by SynthParams.validate
        raise DataError(f"unknown category {name!r}")
    return np.asarray(im.resize((res, res), Image.BOX))


class _Assets:
    """Photographs and shape templates, loaded once per worker task."""

    def __init__(self, photos: Sequence[str]) -> None:
        self.photos = [_load_photo(p) for p in photos]
        self.photo_is_grey = [bool(np.ptp(np.asarray(p, dtype=np.int16), axis=2).max() == 0) for p in self.photos]
        self.templates = {c: Image.fromarray(_template(c, _TEMPLATE_RES)) for c in CATEGORIES}


# --- drawing ----------------------------------------------------------------------------------
def _texture(assets: _Assets, rng: np.random.Generator, size: int, photo: Optional[int] = None) -> tuple[np.ndarray, int]:
    """A size x size float crop of a photograph (random scale, position, flip, tint) and
    the photograph's index."""
    k = int(rng.integers(len(assets.photos))) if photo is None else photo
    src = assets.photos[k]
    w, h = src.size
    side = int(rng.uniform(0.25, 0.9) * min(h, w))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = src.resize((size, size), Image.BILINEAR, box=(x, y, x + side, y + side))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    tex = np.asarray(crop, dtype=np.float32) / 255.0
    if assets.photo_is_grey[k] or rng.random() < 0.3:
        # Tinting and channel shuffles keep colour from identifying a photograph.
        tint = rng.uniform(0.55, 1.0, size=3).astype(np.float32)
        tex = tex * (tint / tint.max())
    if rng.random() < 0.3:
        tex = tex[:, :, rng.permutation(3)]
    return np.ascontiguousarray(tex), k


def _place(assets: _Assets, rng: np.random.Generator, name: str, size: int, side: float,
           centre: tuple[float, float], aspect: float, supersample: int = _SUPERSAMPLE) -> np.ndarray:
    """The (size, size) float alpha of template ``name`` with the given side (pixels),
    centre, aspect ratio and a random rotation."""
    ss = supersample
    theta = rng.uniform(0, 2 * math.pi)
    sx = side * ss * math.sqrt(aspect) / _TEMPLATE_RES
    sy = side * ss / math.sqrt(aspect) / _TEMPLATE_RES
    c, s = math.cos(theta), math.sin(theta)
    cx, cy = centre[0] * ss, centre[1] * ss
    half = _TEMPLATE_RES / 2.0
    # Output pixel p maps back to template pixel u = diag(1/sx, 1/sy) R^T (p - c) + half.
    a, b = c / sx, s / sx
    d_, e = -s / sy, c / sy
    coeffs = (a, b, half - a * cx - b * cy, d_, e, half - d_ * cx - e * cy)
    big = assets.templates[name].transform((size * ss, size * ss), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    if ss > 1:
        big = big.reduce(ss)
    return np.asarray(big, dtype=np.float32) / 255.0


def _bbox(alpha: np.ndarray) -> Optional[tuple[slice, slice]]:
    """The rows and columns where ``alpha`` is non-zero (None when it is empty)."""
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _recolour(tex: np.ndarray, target: np.ndarray, keep: float) -> np.ndarray:
    """``tex`` with its mean moved to ``target`` and its variation scaled by ``keep``."""
    mean = tex[::4, ::4].reshape(-1, 3).mean(0)  # a subsample estimates the mean well enough
    return np.clip((tex - mean) * keep + target, 0.0, 1.0)


def _contrasting_colour(rng: np.random.Generator, around: np.ndarray, distance: float) -> np.ndarray:
    """A colour ``distance`` away from ``around`` (RGB, 0..1), kept inside the cube by
    reflecting the direction where it would leave it."""
    direction = rng.normal(size=3)
    direction += rng.choice([-1.0, 1.0]) * 1.2  # mostly a luminance difference, as in photos
    direction /= np.linalg.norm(direction) + 1e-8
    target = around + distance * direction
    out = np.where((target < 0.05) | (target > 0.95), around - distance * direction, target)
    return np.clip(out, 0.05, 0.95).astype(np.float32)


def _clutter(canvas: np.ndarray, rng: np.random.Generator, n: int, strength: float) -> np.ndarray:
    """``canvas`` with ``n`` low-contrast strokes and blobs drawn over it."""
    if n <= 0:
        return canvas
    size = canvas.shape[0]
    mean = canvas[::4, ::4].reshape(-1, 3).mean(0)
    colours = Image.new("RGB", (size, size), 0)
    alpha = Image.new("L", (size, size), 0)
    dc, da = ImageDraw.Draw(colours), ImageDraw.Draw(alpha)
    for _ in range(n):
        colour = tuple(int(v) for v in np.clip(mean + rng.normal(0, 0.25, 3), 0, 1) * 255)
        if rng.random() < 0.6:
            pts = [tuple(rng.uniform(-0.1, 1.1, 2) * size) for _ in range(int(rng.integers(2, 5)))]
            width = max(1, int(rng.uniform(0.005, 0.025) * size))
            dc.line(pts, fill=colour, width=width)
            da.line(pts, fill=255, width=width)
        else:
            x, y = rng.uniform(0, size, 2)
            r = rng.uniform(0.03, 0.12) * size
            box = (x - r, y - r * rng.uniform(0.4, 1), x + r, y + r * rng.uniform(0.4, 1))
            dc.ellipse(box, fill=colour)
            da.ellipse(box, fill=255)
    a = np.asarray(alpha.filter(ImageFilter.BoxBlur(1)), dtype=np.float32)[..., None] * (strength / 255.0)
    return canvas * (1 - a) + (np.asarray(colours, dtype=np.float32) / 255.0) * a


def render(assets: _Assets, params: SynthParams, category: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image uint8 SxSx3, mask bool SxS)`` pair with an object of ``category``."""
    S, d = params.size, params.difficulty
    img, bg_photo = _texture(assets, rng, S)
    if rng.random() < 0.5:  # a second photograph blended in: backgrounds are not one texture
        other, _ = _texture(assets, rng, S)
        w = np.float32(rng.uniform(0.2, 0.5))
        img = (1 - w) * img + w * other

    # The object: large, compact, near the centre.
    side = S * rng.uniform(0.42, 0.72)
    aspect = float(np.exp(rng.uniform(-0.35, 0.35)))
    centre = tuple(np.clip(rng.normal(S / 2, 0.1 * S, 2), 0.3 * side, S - 0.3 * side))
    alpha_obj = _place(assets, rng, category, S, side, centre, aspect)
    mask = alpha_obj > 0.5
    if not mask.any():  # degenerate placement; a centred object instead
        alpha_obj = _place(assets, rng, category, S, side, (S / 2, S / 2), 1.0)
        mask = alpha_obj > 0.5

    img = _clutter(img, rng, int(rng.poisson(1 + 6 * d)), strength=0.12 + 0.25 * d)

    # The object's texture: more often from the background's own photograph when hard.
    obj_photo = bg_photo if rng.random() < 0.15 + 0.5 * d else None
    obj_tex, obj_photo = _texture(assets, rng, S, obj_photo)

    # Distractors: smaller shapes, bars and blobs with similar textures, behind the object.
    for _ in range(int(rng.poisson(1 + 5 * d))):
        kind = rng.random()
        dside = side * rng.uniform(0.12, 0.35 + 0.45 * d)
        if kind < 0.45:
            name, dasp = CATEGORIES[int(rng.integers(len(CATEGORIES)))], float(np.exp(rng.uniform(-0.5, 0.5)))
        elif kind < 0.75:
            name, dasp, dside = "rectangle", float(rng.uniform(8, 20)), dside * 0.5
        else:
            name, dasp = "ellipse", float(np.exp(rng.uniform(-0.8, 0.8)))
        dcentre = tuple(rng.uniform(0, S, 2))
        alpha = _place(assets, rng, name, S, dside, dcentre, dasp, supersample=1)
        box = _bbox(alpha)
        same = rng.random() < 0.3 + 0.6 * d
        dist = rng.uniform(0.08, 0.15 + 0.3 * d)
        keep = rng.uniform(0.5, 1.0)
        if box is None:
            continue
        a = alpha[box][..., None]
        region = img[box]
        tex, _ = _texture(assets, rng, max(a.shape[:2]), obj_photo if same else None)
        tex = tex[:a.shape[0], :a.shape[1]]
        around = (region * a).reshape(-1, 3).sum(0) / max(float(a.sum()), 1e-6)
        tex = _recolour(tex, _contrasting_colour(rng, around, dist), keep)
        img[box] = region * (1 - a) + tex * a

    # The object itself, contrasting with what it covers.
    around = img[mask].mean(0)
    contrast = (0.45 - 0.35 * min(d, 1.0)) * rng.uniform(0.75, 1.25)
    fg = _recolour(obj_tex, _contrasting_colour(rng, around, contrast), rng.uniform(0.5, 1.0))
    a = alpha_obj[..., None]
    img = img * (1 - a) + fg * a

    # Illumination gradient and sensor noise.
    ramp = np.linspace(-0.5, 0.5, S, dtype=np.float32)
    g = rng.normal(0, 0.1 + 0.15 * d, 2).astype(np.float32)
    img = img * (1 + g[0] * ramp[None, :, None] + g[1] * ramp[:, None, None])
    img += rng.normal(0, 0.01 + 0.025 * d, img.shape).astype(np.float32)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out, mask
