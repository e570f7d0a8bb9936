"""Trivial saliency "models" that any detector must beat, scored with the same metric code.

* centre bias: a Gaussian centred in the image (sigma a quarter of each side), the same map
  for every image. Photographers centre their subjects, and so does the built-in benchmark.
* colour oracle: pixels ranked by how close their colour is to the object's mean colour, read
  from the ground truth. It cheats (it knows the answer's colour) and still ignores shape and
  context, so a model that beats it uses more than colour.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .data.folder import SODFolder
from .errors import ConfigError
from .metrics import SODMetrics

BASELINES = ("centre bias", "colour oracle")


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


def baseline_metrics(folder: str | Path, baselines: Sequence[str] = BASELINES) -> dict[str, dict[str, float]]:
    """Scalar metrics (`SODMetrics`) of each named baseline on an SOD folder (images + masks
    at their own size): ``{"centre bias": {"max_f": ..., "mae": ...}, ...}``."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
    ds = SODFolder(folder)
    meters = {b: SODMetrics() for b in baselines}
    for i in range(len(ds)):
        image, mask = ds.read(i)
        for b, meter in meters.items():
            pred = centre_bias_map(*mask.shape) if b == "centre bias" else colour_oracle_map(image, mask)
            meter.step(pred, mask)
    return {b: {k: float(v) for k, v in m.get_results().items() if np.isscalar(v)} for b, m in meters.items()}
