"""Drawing one image: photographs and shape templates (`_Assets`, loaded once per worker
task), the pieces every generated image is made of (photo textures, placed shapes, clutter,
contrasting paint, light and noise) and `render`, which composes a benchmark image (the
background, clutter, distractors and the salient object) from its random stream. How
``difficulty`` weakens the saliency cues is described in the package docstring."""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .params import CATEGORIES, SynthParams, bright_is_salient
from .shapes import BAR, BAR_LENGTH, BLOB, EXTRA_SHAPES, OBJECT_LIKE_SHAPES, templates

_TEMPLATE_RES = 160   # canonical shape bitmaps, side in pixels
_PHOTO_MAX_SIDE = 384  # photos are downscaled once; crops are resized to the image size
_SUPERSAMPLE = 2      # shapes are placed at twice the resolution, then box-filtered


# --- assets: photographs and shape templates ------------------------------------------------
def _mosaic(stack: np.ndarray) -> np.ndarray:
    """A stack of small images (scikit-image's faces) tiled into one picture, 10 rows."""
    n, h, w = stack.shape[:3]
    cols = -(-n // 10)
    out = np.zeros((10 * h, cols * w) + stack.shape[3:], stack.dtype)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = stack[k]
    return out


def _load_photo(name: str) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    if isinstance(arr, tuple):  # stereo pairs
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
        arr = _mosaic(arr)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0, 1) * 255).astype(np.uint8) if arr.max() <= 1 else arr.astype(np.uint8)
    im = Image.fromarray(arr).convert("RGB") if arr.ndim == 2 else Image.fromarray(arr[:, :, :3])
    scale = _PHOTO_MAX_SIDE / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    return im


class _Assets:
    """Photographs and shape templates (every variant of each), loaded once per worker task.
    ``shapes`` defaults to what a benchmark draws: its categories and the distractor shapes."""

    def __init__(self, photos: Sequence[str], shapes: Sequence[str] = CATEGORIES + EXTRA_SHAPES) -> None:
        self.photos = [_load_photo(p) for p in photos]
        self.photo_is_grey = [bool(np.ptp(np.asarray(p, dtype=np.int16), axis=2).max() == 0) for p in self.photos]
        self.templates = {c: [Image.fromarray(t) for t in templates(c, _TEMPLATE_RES)] for c in shapes}


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
           centre: tuple[float, float], aspect: float, supersample: int = _SUPERSAMPLE,
           max_rotation: Optional[float] = None) -> np.ndarray:
    """The (size, size) float alpha of shape ``name`` (a random variant of it) with the given
    side (pixels), centre, aspect ratio and a random rotation: any angle, or within
    +-``max_rotation`` radians (glyphs, which turned over would be other glyphs)."""
    ss = supersample
    variants = assets.templates[name]
    template = variants[int(rng.integers(len(variants)))] if len(variants) > 1 else variants[0]
    theta = rng.uniform(0, 2 * math.pi) if max_rotation is None else rng.uniform(-max_rotation, max_rotation)
    sx = side * ss * math.sqrt(aspect) / _TEMPLATE_RES
    sy = side * ss / math.sqrt(aspect) / _TEMPLATE_RES
    c, s = math.cos(theta), math.sin(theta)
    cx, cy = centre[0] * ss, centre[1] * ss
    half = _TEMPLATE_RES / 2.0
    # Output pixel p maps back to template pixel u = diag(1/sx, 1/sy) R^T (p - c) + half.
    a, b = c / sx, s / sx
    d_, e = -s / sy, c / sy
    coeffs = (a, b, half - a * cx - b * cy, d_, e, half - d_ * cx - e * cy)
    big = template.transform((size * ss, size * ss), Image.AFFINE, coeffs, resample=Image.BILINEAR)
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


def _paint(img: np.ndarray, alpha: np.ndarray, tex: np.ndarray, rng: np.random.Generator, distance: float,
           keep: float) -> np.ndarray:
    """``img`` with ``tex`` composited by ``alpha``, its colour moved ``distance`` away from
    the mean of what it covers (so a shape contrasts locally, whatever its photograph)."""
    a = alpha[..., None]
    around = (img * a).reshape(-1, 3).sum(0) / max(float(a.sum()), 1e-6)
    return img * (1 - a) + _recolour(tex, _contrasting_colour(rng, around, distance), keep) * a


def _light_and_noise(img: np.ndarray, rng: np.random.Generator, gradient: float, noise: float) -> np.ndarray:
    """The uint8 image after a random illumination gradient and sensor noise."""
    size = img.shape[0]
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    g = rng.normal(0, gradient, 2).astype(np.float32)
    img = img * (1 + g[0] * ramp[None, :, None] + g[1] * ramp[:, None, None])
    img += rng.normal(0, noise, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _background(assets: _Assets, rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    """A photo crop, half the time blended with a second one (backgrounds are not one
    texture), and the index of the first photograph."""
    img, photo = _texture(assets, rng, size)
    if rng.random() < 0.5:
        other, _ = _texture(assets, rng, size)
        w = np.float32(rng.uniform(0.2, 0.5))
        img = (1 - w) * img + w * other
    return img, photo


class Rendering(NamedTuple):
    """A benchmark image, its mask and the shapes drawn as distractors (in drawing order)."""

    image: np.ndarray          # uint8 SxSx3
    mask: np.ndarray           # bool SxS
    distractors: tuple[str, ...]


def _distractor(rng: np.random.Generator, side: float, d: float) -> tuple[str, float, float]:
    """A distractor's shape, aspect and side. Never a category: a smaller star beside a
    heart would make the image's label arguable (see `shapes.OBJECT_LIKE_SHAPES`)."""
    kind = rng.random()
    dside = side * rng.uniform(0.12, 0.35 + 0.45 * d)
    if kind < 0.45:
        return OBJECT_LIKE_SHAPES[int(rng.integers(len(OBJECT_LIKE_SHAPES)))], float(np.exp(rng.uniform(-0.5, 0.5))), dside
    if kind < 0.75:
        # Long bars 8-20 times as long as wide, as long and wide as the stretched squares of
        # generator version 1 (the bar template is BAR_LENGTH:1 and spans 0.83 of its side).
        return BAR, float(rng.uniform(8, 20)) / BAR_LENGTH, dside * 1.22
    return BLOB, float(np.exp(rng.uniform(-0.8, 0.8))), dside


def compose(assets: _Assets, params: SynthParams, category: str, rng: np.random.Generator) -> Rendering:
    """One benchmark image with an object of ``category``, with what was drawn."""
    if params.saliency == "category":
        return _compose_category_rule(assets, params, category, rng)
    S, d = params.size, params.difficulty
    img, bg_photo = _background(assets, rng, S)

    # The object: large, compact, near the centre.
    side = S * rng.uniform(0.42, 0.72)
    aspect = float(np.exp(rng.uniform(-0.35, 0.35)))
    centre = tuple(np.clip(rng.normal(S / 2, 0.1 * S, 2), 0.3 * side, S - 0.3 * side))
    alpha_obj = _place(assets, rng, category, S, side, centre, aspect)
    if not (alpha_obj > 0.5).any():  # degenerate placement; a centred object instead
        alpha_obj = _place(assets, rng, category, S, side, (S / 2, S / 2), 1.0)

    img = _clutter(img, rng, int(rng.poisson(1 + 6 * d)), strength=0.12 + 0.25 * d)

    # The object's texture: more often from the background's own photograph when hard.
    obj_photo = bg_photo if rng.random() < 0.15 + 0.5 * d else None
    obj_tex, obj_photo = _texture(assets, rng, S, obj_photo)

    # Distractors: smaller shapes, bars and blobs with similar textures, behind the object.
    drawn = []
    for _ in range(int(rng.poisson(1 + 5 * d))):
        name, dasp, dside = _distractor(rng, side, d)
        alpha = _place(assets, rng, name, S, dside, tuple(rng.uniform(0, S, 2)), dasp, supersample=1)
        box = _bbox(alpha)
        same = rng.random() < 0.3 + 0.6 * d
        dist = rng.uniform(0.08, 0.15 + 0.3 * d)
        keep = rng.uniform(0.5, 1.0)
        if box is None:
            continue
        a = alpha[box]
        tex, _ = _texture(assets, rng, max(a.shape), obj_photo if same else None)
        img[box] = _paint(img[box], a, tex[:a.shape[0], :a.shape[1]], rng, dist, keep)
        drawn.append(name)

    # The object itself, contrasting with what it covers.
    contrast = (0.45 - 0.35 * min(d, 1.0)) * rng.uniform(0.75, 1.25)
    img = _paint(img, alpha_obj, obj_tex, rng, contrast, rng.uniform(0.5, 1.0))
    out = _light_and_noise(img, rng, 0.1 + 0.15 * d, 0.01 + 0.025 * d)
    return Rendering(out, alpha_obj > 0.5, tuple(drawn))


def _compose_category_rule(assets: _Assets, params: SynthParams, category: str, rng: np.random.Generator) -> Rendering:
    """The positive control's world: two copies of the category's shape, as large as each
    other, placed opposite each other about the centre, one as much brighter than what it
    covers as the other is darker. Only the category says which one is salient
    (`bright_is_salient`), so a model can learn it for the categories it was trained on and
    can only guess for the others."""
    S = params.size
    img, _ = _background(assets, rng, S)
    img = 0.35 + 0.3 * img  # a mid-grey range, so that both polarities fit in [0, 1]
    side = S * rng.uniform(0.28, 0.38)
    aspect = float(np.exp(rng.uniform(-0.3, 0.3)))
    angle, reach = rng.uniform(0, 2 * math.pi), S * rng.uniform(0.22, 0.27)
    offset = np.array([math.cos(angle), math.sin(angle)]) * reach
    centres = [tuple(S / 2 + offset), tuple(S / 2 - offset)]
    alphas = [_place(assets, rng, category, S, side * rng.uniform(0.9, 1.1), c, aspect) for c in centres]
    salient = int(rng.integers(2))
    contrast = rng.uniform(0.18, 0.28)
    bright = bright_is_salient(category)
    for k, alpha in enumerate(alphas):
        sign = 1.0 if (k == salient) == bright else -1.0
        a = alpha[..., None]
        around = (img * a).reshape(-1, 3).sum(0) / max(float(a.sum()), 1e-6)
        colour = np.clip(around + sign * contrast + rng.normal(0, 0.03, 3), 0.02, 0.98).astype(np.float32)
        tex, _ = _texture(assets, rng, S)
        img = img * (1 - a) + _recolour(tex, colour, 0.3) * a
    out = _light_and_noise(img, rng, 0.08, 0.01)
    return Rendering(out, alphas[salient] > 0.5, (category,))


def render(assets: _Assets, params: SynthParams, category: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image uint8 SxSx3, mask bool SxS)`` pair with an object of ``category``."""
    r = compose(assets, params, category, rng)
    return r.image, r.mask
