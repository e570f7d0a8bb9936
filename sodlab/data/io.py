"""Reading images and masks robustly, and writing PNGs atomically.

Every reader here turns "this file cannot be decoded" into `sodlab.errors.ImageReadError`
naming the file, never a raw PIL traceback. Writing goes through `sodlab.atomic.atomic_path`,
the one place that implements "write to a temporary file beside the target, then rename".
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..atomic import atomic_path
from ..errors import ImageReadError

# PIL raises a zoo of exception types for bad files (OSError for truncated data,
# UnidentifiedImageError, SyntaxError from some plugins, ValueError/TypeError for odd
# headers, DecompressionBombError); all of them mean "cannot read this image".
_DECODE_ERRORS = (OSError, ValueError, TypeError, SyntaxError, EOFError, IndexError, KeyError,
                  Image.DecompressionBombError, Image.UnidentifiedImageError)

# EXIF orientations 5..8 are rotations by 90 or 270 degrees: width and height swap.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION_TAG = 0x0112


def write_png_atomic(path: str | Path, array: np.ndarray) -> Path:
    """Write an (H, W) or (H, W, 3|4) uint8 array (or a bool mask, stored as 0/255) as PNG,
    atomically. Returns ``path``."""
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise TypeError(f"write_png_atomic expects uint8 or bool, got {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"write_png_atomic expects (H, W) or (H, W, 3|4), got shape {arr.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")
    return Path(path)


def _open(path: str | Path) -> Image.Image:
    """The decoded, EXIF-upright image at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    return _decode(path, str(path))


def _decode(source: Path | io.BytesIO, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Truncated/odd files are an error here, not a warning; a huge image is not.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                im.load()
                upright = ImageOps.exif_transpose(im)
                upright.load()
                return upright
    except ImageReadError:
        raise
    except _DECODE_ERRORS as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{name}: cannot read image ({reason})") from None


def _high_depth_to_uint8(im: Image.Image) -> np.ndarray:
    """16-bit and 32-bit single-channel images scaled to 0..255."""
    arr = np.asarray(im)
    if im.mode == "F":
        arr = arr.astype(np.float64)
        scale = 255.0 if np.nanmax(arr, initial=0.0) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(arr) * scale, 0, 255).round().astype(np.uint8)
    arr = arr.astype(np.int64)
    # PIL opens 16-bit PNG/TIFF as "I;16*" or "I" (newer versions); an "I" image whose values
    # fit in 8 bits was stored as 8-bit data in a 32-bit container and is kept as is.
    full_scale = 65535 if (im.mode.startswith("I;16") or arr.max(initial=0) > 255) else 255
    return np.clip(np.rint(arr * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        gray = _high_depth_to_uint8(im)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode in ("LA", "La", "RGBA", "RGBa"):
        # Composite on black: transparent pixels carry no image content.
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[:, :, :3] * rgba[:, :, 3:4] + 127) // 255
        return rgb.astype(np.uint8)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only arrays)


def read_image(path: str | Path) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from any image file PIL can read.

    Grayscale is replicated to three channels, transparency is composited on black,
    16-bit data is scaled to 8 bits, palettes are expanded and the EXIF orientation is
    applied. Raises `ImageReadError` naming the file when it cannot be decoded.
    """
    return np.ascontiguousarray(_to_rgb_array(_open(path)))


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """`read_image` for the bytes of an image file (an upload); errors name ``name``."""
    return np.ascontiguousarray(_to_rgb_array(_decode(io.BytesIO(bytes(data)), name)))


def read_gray(path: str | Path) -> np.ndarray:
    """An (H, W) uint8 gray-level array (luma for colour files; 16-bit scaled to 8 bits).
    For saliency maps and masks."""
    return _gray(_open(path))


def _gray(im: Image.Image) -> np.ndarray:
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return _high_depth_to_uint8(im)
    if im.mode == "L":
        return np.asarray(im).copy()
    if im.mode == "1":
        return np.asarray(im, dtype=np.uint8) * 255
    return np.asarray(Image.fromarray(_to_rgb_array(im)).convert("L"))


def mask_levels(path: str | Path) -> np.ndarray:
    """The (H, W) uint8 gray levels of a mask file, as `read_gray` reads them except that a
    16-bit 0/1 mask keeps its 0/1 (scaled to 8 bits, its 1s would become 0)."""
    im = _open(path)
    if im.mode.startswith("I"):
        raw = np.asarray(im)
        if raw.max(initial=0) == 1 and raw.min(initial=0) >= 0:
            return raw.astype(np.uint8)
    return _gray(im)


def mask_kind(levels: np.ndarray) -> str:
    """What the gray levels of a mask say about how it was saved: ``"binary"`` (0 and at
    most one other level, above 128: sodlab's 0/255), ``"zero_one"`` (0 and 1: read with 1
    as the foreground), or ``"soft"`` (anything else: anti-aliased edges, a probability map,
    JPEG noise, or a foreground level at or below 128, all of which `read_mask` thresholds
    at 128)."""
    present = np.flatnonzero(np.bincount(np.asarray(levels, dtype=np.uint8).ravel(), minlength=256))
    above_zero = present[present > 0]
    if above_zero.tolist() == [1]:
        return "zero_one"
    if above_zero.size <= 1 and (above_zero > 128).all():
        return "binary"
    return "soft"


# Folders whose 0/1 masks were already reported: one warning per folder, not one per file.
_ZERO_ONE_FOLDERS: set[Path] = set()


def read_mask(path: str | Path) -> np.ndarray:
    """An (H, W) bool mask: the file's gray level (luma for colour files) > 128.

    A mask whose maximum is 1 was saved as 0/1 (numpy or OpenCV code often does): its 1s
    are the foreground, with a warning naming its folder, once per folder. Thresholded at
    128 it would be empty, and every metric against it meaningless.
    """
    levels = mask_levels(path)
    if levels.max(initial=0) == 1:
        folder = Path(path).parent
        if folder not in _ZERO_ONE_FOLDERS:
            _ZERO_ONE_FOLDERS.add(folder)
            warnings.warn(f"{folder}: masks saved as 0/1 (e.g. {Path(path).name}); reading 1 as the foreground "
                          "(sodlab writes 0/255)", UserWarning, stacklevel=2)
        return levels == 1
    return levels > 128


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image after its EXIF orientation, from the header only (fast).

    Raises `ImageReadError` when the file is not an image PIL recognises; truncated pixel
    data is only detected by `read_image`.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(_EXIF_ORIENTATION_TAG, 1)
            except _DECODE_ERRORS:
                orientation = 1
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except _DECODE_ERRORS as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{path}: cannot read image ({reason})") from None
    return (w, h) if orientation in _SWAPPING_ORIENTATIONS else (h, w)
