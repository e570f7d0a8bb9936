"""The built-in benchmark: synthetic salient object images made from real photographs.

Every image holds one salient object of a known category (``categories.csv``) on a
background cut from one of the photographs scikit-image ships, among distractors. Neither
colour nor texture gives the object away: the object, the distractors and the background
all take their textures from the same pool of photographs. What makes the object salient is
what makes objects salient in real SOD data: it is the largest, most compact shape, it sits
near the centre and it contrasts with its surroundings. ``difficulty`` (0 = easy, 1 = hard;
values up to 1.5 are allowed) weakens those cues together:

* object/background contrast shrinks (from about 0.45 to 0.1 in RGB distance on a 0..1 scale);
* distractors become more numerous (Poisson mean 1 + 5d), larger (up to ~0.35 + 0.45d of the
  object's side), more contrasted and more often cut from the object's own photograph;
* the object's texture is more often cut from the background's photograph;
* low-contrast clutter strokes, sensor noise and an illumination gradient grow.

Layout written by `generate` (the layout `SODFolder` reads)::

    OUT/synth.json                 generator parameters
    OUT/train/images/train-00000.jpg
    OUT/train/GT/train-00000.png   0 / 255
    OUT/train/categories.csv       stem,category
    OUT/test/...

Image ``i`` of split ``s`` is drawn from its own random stream, seeded by
``(seed, s, i)``: generation is parallel and the same seed gives byte-identical files (for
the same versions of numpy, Pillow and scikit-image). Categories are balanced within each
split (counts differ by at most one).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..atomic import current_umask, finish_cleanup
from ..errors import DataError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
DEFAULT_DIFFICULTY = 0.1
DEFAULT_SIZE = 128
DEFAULT_TRAIN = 2000
DEFAULT_TEST = 300
DEFAULT_SEED = 0

CATEGORIES: tuple[str, ...] = (
    "ellipse", "triangle", "rectangle", "star", "cross", "ring",
    "crescent", "heart", "arrow", "gear", "letter_A", "horse",
)
# Real photographs and textures bundled with scikit-image (no download needed). Grey ones
# are tinted when used.
PHOTOS: tuple[str, ...] = (
    "astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
    "retina", "stereo_motorcycle", "camera", "coins", "moon", "grass", "gravel", "brick", "clock",
)
SPLITS = {"train": 1, "test": 2}  # stream ids in the per-image seed
_TEMPLATE_RES = 160   # canonical shape bitmaps, side in pixels
_PHOTO_MAX_SIDE = 384  # photos are downscaled once; crops are resized to the image size
_SUPERSAMPLE = 2      # shapes are placed at twice the resolution, then box-filtered
_MAX_CHUNK = 256      # images per worker task at most (each task loads the photographs once)


@dataclass(frozen=True)
class SynthParams:
    """Everything that determines the generated files (hashed by `ensure_benchmark`)."""

    n_train: int = DEFAULT_TRAIN
    n_test: int = DEFAULT_TEST
    size: int = DEFAULT_SIZE
    seed: int = DEFAULT_SEED
    categories: tuple[str, ...] = CATEGORIES
    difficulty: float = DEFAULT_DIFFICULTY
    image_format: str = "jpg"
    version: int = GENERATOR_VERSION
    photos: tuple[str, ...] = field(default=PHOTOS)

    def validate(self) -> None:
        if self.n_train < 0 or self.n_test < 0 or self.n_train + self.n_test == 0:
            raise DataError(f"need a positive number of images (train {self.n_train}, test {self.n_test})")
        if self.size < 16:
            raise DataError(f"image size must be at least 16, got {self.size}")
        if not 0.0 <= self.difficulty <= 1.5:
            raise DataError(f"difficulty must be in [0, 1.5], got {self.difficulty}")
        unknown = [c for c in self.categories if c not in CATEGORIES]
        if unknown or not self.categories:
            raise DataError(f"unknown categories {unknown or '(none given)'}; choose from {', '.join(CATEGORIES)}")
        if len(set(self.categories)) != len(self.categories):
            raise DataError(f"categories repeat: {', '.join(self.categories)}")
        if self.image_format not in ("jpg", "png"):
            raise DataError(f"image_format must be jpg or png, got {self.image_format!r}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["categories"], d["photos"] = list(self.categories), list(self.photos)
        return d

    def digest(self) -> str:
        """A short hash of the parameters (the cache key of `ensure_benchmark`)."""
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


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


# --- writing ----------------------------------------------------------------------------------
def split_categories(params: SynthParams, split: str, n: int) -> list[str]:
    """The balanced, shuffled category of every image of a split."""
    cats = np.arange(n) % len(params.categories)
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, SPLITS[split], 0xCA7]))
    return [params.categories[int(i)] for i in rng.permutation(cats)]


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of ``split``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], int(index)]))


def _stem(split: str, index: int) -> str:
    return f"{split}-{index:05d}"


def _write_chunk(pj: dict[str, Any], out: str, split: str, items: Sequence[tuple[int, str]],
                 on_image: Optional[Callable[[], None]] = None) -> int:
    """Render and write the images ``items`` (index, category) of ``split``; returns how many
    were written."""
    params = SynthParams(**{**pj, "categories": tuple(pj["categories"]), "photos": tuple(pj["photos"])})
    assets = _Assets(params.photos)
    root = Path(out) / split
    for index, category in items:
        image, mask = render(assets, params, category, image_rng(params.seed, split, index))
        stem = _stem(split, index)
        if params.image_format == "jpg":
            Image.fromarray(image).save(root / "images" / f"{stem}.jpg", format="JPEG", quality=92)
        else:
            Image.fromarray(image).save(root / "images" / f"{stem}.png", format="PNG")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "GT" / f"{stem}.png", format="PNG")
        if on_image is not None:
            on_image()
    return len(items)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


# A worker is a fresh interpreter running this, not a multiprocessing child: multiprocessing
# (spawn) re-runs the caller's main script in every worker, so a script calling generate()
# without the `if __name__ == "__main__":` guard printed its output again and failed in each
# worker. Ctrl-C reaches every process of the terminal's group: the workers ignore it and the
# parent stops them, so that none is left writing into a folder the parent removes.
# `python -c` puts the working folder first on sys.path: the worker replaces it with the folder
# this sodlab lives in, so that it never imports another sodlab that happens to be there.
_WORKER_CODE = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "import sys; sys.path[0] = {root!r}\n"
                "from sodlab.data.synthetic import _worker_main; _worker_main()\n")


def _worker_main() -> None:
    """Body of a worker process: reads its job (JSON) from stdin, writes its tasks, and prints
    the key of the task of every image written."""
    job = json.load(sys.stdin)
    for key, split, items in job["tasks"]:
        _write_chunk(job["params"], job["out"], split, items, on_image=lambda: print(key, flush=True))


def _start_worker() -> tuple[subprocess.Popen, Any]:
    code = _WORKER_CODE.format(root=str(Path(__file__).resolve().parents[2]))
    err = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=err, text=True, encoding="utf-8")
    return proc, err


def _relay(proc: subprocess.Popen, job: str, events: queue.Queue) -> None:
    """Send ``job`` to a worker, then pass on the task key of each image it writes and finally
    None (always: the parent counts the workers that are done)."""
    try:
        try:
            proc.stdin.write(job)
            proc.stdin.close()
        except OSError:  # the worker died at once; its exit code tells the parent
            pass
        for line in proc.stdout:
            if line.strip().isdigit():  # anything else a library prints is not ours
                events.put(int(line))
    finally:
        events.put(None)


def _write_in_processes(pj: dict[str, Any], out: str, left: dict[int, tuple[str, list]], workers: int, bar: Any) -> None:
    """Write the tasks (split, items) in ``left`` in worker processes, removing each one
    written. Tasks of a worker that failed stay in ``left`` for the caller, with a warning."""
    keys = sorted(left)
    done = dict.fromkeys(keys, 0)
    events: queue.Queue = queue.Queue()
    started: list[tuple[subprocess.Popen, Any, threading.Thread]] = []
    try:
        for w in range(workers):
            mine = keys[w::workers]
            job = {"params": pj, "out": out, "tasks": [[k, *left[k]] for k in mine]}
            proc, err = _start_worker()
            relay = threading.Thread(target=_relay, args=(proc, json.dumps(job), events), daemon=True)
            started.append((proc, err, relay))
            relay.start()
        running = len(started)
        while running:
            try:
                key = events.get(timeout=0.5)  # a timeout keeps Ctrl-C deliverable on every platform
            except queue.Empty:
                continue
            if key is None:
                running -= 1
                continue
            done[key] += 1
            bar.update(1)
            if done[key] == len(left[key][1]):
                del left[key]
        if left:
            failed = []
            for proc, err, _ in started:
                if proc.wait() != 0:
                    err.seek(0)
                    lines = [ln for ln in err.read().splitlines() if ln.strip()]
                    failed.append(f"exit code {proc.returncode}" + (f": {lines[-1].strip()}" if lines else ""))
            partial = sum(done[k] for k in left)
            bar.update(-partial)  # those tasks are written again, whole
            log.warning("synthetic benchmark: %s; writing the remaining %d images in this process",
                        "a worker process failed (" + "; ".join(failed) + ")" if failed else "the worker processes stopped early",
                        sum(len(items) for _, items in left.values()))
    finally:  # Ctrl-C or an error: stop the workers before the caller removes their folder
        finish_cleanup(lambda: _stop(started))


def _stop(started: list[tuple[subprocess.Popen, Any, threading.Thread]]) -> None:
    for proc, _, _ in started:
        if proc.poll() is None:
            proc.kill()
    for proc, err, relay in started:
        proc.wait()
        relay.join()  # it reads the pipe to its end, which has come with the process
        for f in (proc.stdin, proc.stdout, err):
            f.close()


def _write_all(params: SynthParams, tmp: Path, progress: bool, workers: int) -> None:
    from tqdm import tqdm

    tasks = []
    pj = params.to_json()
    total = params.n_train + params.n_test
    chunk = min(_MAX_CHUNK, max(32, math.ceil(total / (4 * max(1, workers)))))
    for split, n in (("train", params.n_train), ("test", params.n_test)):
        (tmp / split / "images").mkdir(parents=True)
        (tmp / split / "GT").mkdir(parents=True)
        cats = split_categories(params, split, n)
        rows = ["stem,category"] + [f"{_stem(split, i)},{c}" for i, c in enumerate(cats)]
        (tmp / split / "categories.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        items = list(enumerate(cats))
        tasks += [(split, items[k:k + chunk]) for k in range(0, n, chunk)]
    with tqdm(total=total, unit="img", desc="synthetic benchmark", disable=not progress) as bar:
        left = dict(enumerate(tasks))
        if workers > 1 and len(tasks) > 1 and sys.executable:
            _write_in_processes(pj, str(tmp), left, min(workers, len(tasks)), bar)
        for k in sorted(left):
            bar.update(_write_chunk(pj, str(tmp), *left.pop(k)))
    (tmp / "synth.json").write_text(json.dumps({"generator": "sodlab.data.synthetic", **pj}, indent=2, sort_keys=True) + "\n",
                                    encoding="utf-8")


def generate(out_dir: str | Path, n_train: int = DEFAULT_TRAIN, n_test: int = DEFAULT_TEST, size: int = DEFAULT_SIZE,
             seed: int = DEFAULT_SEED, categories: Optional[Sequence[str]] = None,
             difficulty: float = DEFAULT_DIFFICULTY, progress: bool = True, overwrite: bool = False,
             workers: Optional[int] = None, image_format: str = "jpg") -> Path:
    """Write a synthetic benchmark to ``out_dir`` (layout in the module docstring).

    The files are written into a temporary folder beside ``out_dir`` and renamed into place
    at the end, so ``out_dir`` is either complete or untouched. An existing non-empty
    ``out_dir`` raises `DataError` unless ``overwrite=True``. ``workers`` processes render
    in parallel (default: the usable cores; jobs under 256 images run in this process). They
    are fresh interpreters that import only sodlab, so a script needs no ``__main__`` guard; if
    one fails, a warning says why and this process writes its images. Returns ``out_dir``.
    """
    params = SynthParams(n_train=int(n_train), n_test=int(n_test), size=int(size), seed=int(seed),
                         categories=tuple(categories) if categories else CATEGORIES,
                         difficulty=float(difficulty), image_format=image_format)
    params.validate()
    out = Path(out_dir).expanduser()
    if _is_nonempty_dir(out) and not overwrite:
        raise DataError(f"{out}: folder exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    if workers is not None:
        n_workers = int(workers)
    elif params.n_train + params.n_test < 256:
        n_workers = 1  # starting processes costs more than it saves
    else:
        n_workers = _default_workers()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write_all(params, tmp, progress, n_workers)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private
        if out.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "replaced")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        finish_cleanup(lambda: tmp.exists() and shutil.rmtree(tmp, ignore_errors=True))
    log.info("wrote %d training and %d test images (%dpx, seed %d, difficulty %.2f) to %s",
             params.n_train, params.n_test, params.size, params.seed, params.difficulty, out)
    return out


def default_data_dir() -> Path:
    """``$SODLAB_DATA`` when set, else the repository's ``data/`` folder (for an editable
    install), else ``~/.cache/sodlab``."""
    env = os.environ.get("SODLAB_DATA")
    if env:
        return Path(env).expanduser()
    repo_data = Path(__file__).resolve().parents[2] / "data"
    if repo_data.is_dir() and os.access(repo_data, os.W_OK):
        return repo_data
    return Path.home() / ".cache" / "sodlab"


def ensure_benchmark(root: Optional[str | Path] = None, n_train: int = DEFAULT_TRAIN, n_test: int = DEFAULT_TEST,
                     size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED, categories: Optional[Sequence[str]] = None,
                     difficulty: float = DEFAULT_DIFFICULTY, progress: bool = True, workers: Optional[int] = None) -> Path:
    """The folder of the built-in benchmark with these parameters, generated on first use.

    It lives in ``root`` (default `default_data_dir`) as ``synthetic-<hash of the
    parameters>``, so different parameters never share a folder and a finished folder is
    reused as is.
    """
    params = SynthParams(n_train=int(n_train), n_test=int(n_test), size=int(size), seed=int(seed),
                         categories=tuple(categories) if categories else CATEGORIES, difficulty=float(difficulty))
    params.validate()
    base = Path(root).expanduser() if root is not None else default_data_dir()
    out = base / f"synthetic-{params.digest()}"
    if (out / "synth.json").is_file():
        return out
    log.info("generating the built-in benchmark in %s (once)", out)
    try:
        return generate(out, params.n_train, params.n_test, params.size, params.seed, params.categories,
                        params.difficulty, progress=progress, workers=workers)
    except DataError:
        if (out / "synth.json").is_file():  # another process finished it first
            return out
        raise


def read_params(root: str | Path) -> dict[str, Any]:
    """The parameters a benchmark folder was generated with (its ``synth.json``)."""
    path = Path(root) / "synth.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a generated benchmark ({exc})") from None


# --- figure -----------------------------------------------------------------------------------
def sample_grid(root: str | Path, per_category: int = 4, split: str = "train", outline: bool = True):
    """A matplotlib figure: one row per category, ``per_category`` images each, the ground
    truth outlined in the image (or shown beside it when ``outline`` is false)."""
    import matplotlib.pyplot as plt

    from .folder import SODFolder

    ds = SODFolder(root, split=split)
    names = ds.category_names
    cols = per_category * (1 if outline else 2)
    fig, axes = plt.subplots(len(names), cols, figsize=(1.3 * cols + 1.2, 1.3 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        idx = [i for i, c in enumerate(ds.categories) if c == name][:per_category]
        for k in range(per_category):
            cells = axes[r, k:k + 1] if outline else axes[r, 2 * k:2 * k + 2]
            for ax in cells:
                ax.set_xticks([])
                ax.set_yticks([])
                for s in ax.spines.values():
                    s.set_visible(False)
            if k >= len(idx):
                continue
            image, mask = ds.read(idx[k])
            cells[0].imshow(image)
            if outline:
                cells[0].contour(mask.astype(float), levels=[0.5], colors=["#ffe600"], linewidths=0.8)
            else:
                cells[1].imshow(mask, cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"Synthetic benchmark: {split} samples per category (ground truth outlined)" if outline
                 else f"Synthetic benchmark: {split} samples per category (image, ground truth)", fontsize=10)
    fig.tight_layout()
    return fig
