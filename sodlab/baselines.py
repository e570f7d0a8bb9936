"""Trivial saliency "models" that any detector must beat, scored with the same metric code.

* centre bias: a Gaussian centred in the image (sigma a quarter of each side), the same map
  for every image. Photographers centre their subjects, and so does the built-in benchmark.
* colour oracle: pixels ranked by how close their colour is to the object's mean colour, read
  from the ground truth. It cheats (it knows the answer's colour) and still ignores shape and
  context, so a model that beats it uses more than colour.
* contrast + centre: the classic model-free detector a learned one must also beat. Each
  pixel's colour distance, in CIELAB after a small blur, from the image's mean colour
  (frequency-tuned saliency, Achanta et al., CVPR 2009), weighted by the centre bias. It uses
  no ground truth; a model that beats only the blob may have learned no more than "odd colour
  near the middle", which is what this baseline computes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.ndimage import convolve1d
from skimage.color import rgb2lab

from .data.folder import SODFolder
from .errors import ConfigError
from .metrics import SODMetrics

BASELINES = ("centre bias", "contrast + centre", "colour oracle")


def centre_bias_map(h: int, w: int, sigma: float = 0.25) -> np.ndarray:
    """(h, w) uint8 Gaussian blob centred in the image, ``sigma`` as a fraction of each side."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = ((y - (h - 1) / 2) / (sigma * h)) ** 2 + ((x - (w - 1) / 2) / (sigma * w)) ** 2
    return (np.exp(-0.5 * d2) * 255).astype(np.uint8)


def colour_oracle_map(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(h, w) uint8: 255 where a pixel has the object's mean colour (from ``mask``), falling
    linearly to 0 at the most different pixel."""
    img = np.asarray(image, dtype=np.float32) / 255
    mask = np.asarray(mask) > 0
    if not mask.any():
        return np.zeros(mask.shape, np.uint8)
    dist = np.linalg.norm(img - img[mask].mean(0), axis=-1)
    return ((1 - dist / max(float(dist.max()), 1e-6)) * 255).astype(np.uint8)


_BINOMIAL5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # the 5-tap Gaussian of the frequency-tuned method


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 sRGB -> (h, w, 3) float CIELAB (D65, L in 0..100)."""
    return rgb2lab(np.asarray(image))


def _blur(a: np.ndarray) -> np.ndarray:
    # separable 5-tap binomial over rows and columns, edges replicated so the border is not darkened
    return convolve1d(convolve1d(a, _BINOMIAL5, axis=0, mode="nearest"), _BINOMIAL5, axis=1, mode="nearest")


def contrast_centre_map(image: np.ndarray, sigma: float = 0.25) -> np.ndarray:
    """(h, w) uint8: frequency-tuned colour contrast (distance in CIELAB of the blurred image
    from its mean colour) times `centre_bias_map`, stretched to 0..255. No ground truth."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ConfigError(f"contrast_centre_map takes an (h, w, 3) RGB image, got shape {img.shape}")
    lab = _blur(rgb_to_lab(img))
    contrast = np.linalg.norm(lab - lab.reshape(-1, 3).mean(0), axis=-1)
    s = contrast * (centre_bias_map(*img.shape[:2], sigma=sigma) / 255.0)
    top = float(s.max())
    # below a millionth of a Lab unit the "contrast" is float rounding of a flat image
    return np.zeros(s.shape, np.uint8) if top <= 1e-6 else (s / top * 255).astype(np.uint8)


def baseline_map(name: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (h, w) uint8 map of the baseline ``name`` (one of `BASELINES`) for one image."""
    if name == "centre bias":
        return centre_bias_map(*np.asarray(mask).shape[:2])
    if name == "contrast + centre":
        return contrast_centre_map(image)
    if name == "colour oracle":
        return colour_oracle_map(image, mask)
    raise ConfigError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")


def baseline_metrics(folder: str | Path, baselines: Sequence[str] = BASELINES,
                     protocol: str = "standard", per_image: bool = False) -> dict[str, dict[str, Any]]:
    """Scalar metrics (`SODMetrics` under ``protocol``) of each named baseline on an SOD folder
    (images + masks at their own size): ``{"centre bias": {"max_f": ..., "mae": ...}, ...}``.
    Compare them only with models scored under the same protocol. ``per_image`` (salmetric
    only) adds each baseline's ``"per_image"`` scores (`SODMetrics.per_image`, in the folder's
    order: the order `sodlab.evaluate` scores the same folder in)."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
    ds = SODFolder(folder)
    meters = {b: SODMetrics(protocol, per_image=per_image) for b in baselines}
    for i in range(len(ds)):
        image, mask = ds.read(i)
        for b, meter in meters.items():
            meter.step(baseline_map(b, image, mask), mask)
    out: dict[str, dict[str, Any]] = {b: {k: float(v) for k, v in m.get_results().items() if np.isscalar(v)} for b, m in meters.items()}
    if per_image:
        for b, m in meters.items():
            out[b]["per_image"] = m.per_image()
    return out
