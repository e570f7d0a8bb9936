"""How hard is the built-in benchmark? Two model-free baselines on its test split.

    python benchmarks/synth_baselines.py [--difficulty D ...] [--root DIR]

* centre bias: a Gaussian centred in the image (sigma = 1/4 of the side) as the saliency map;
* colour oracle: a map that knows the object's mean colour (from the ground truth) and ranks
  every pixel by its RGB distance to it; an upper bound for "the object is a colour".

Prints max-F and MAE (standard protocol) per difficulty, for the default benchmark parameters
(2,000 + 300 images at 128x128, seed 0) unless ``--root`` names a generated folder.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def centre_map(h: int, w: int, sigma: float = 0.25) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = ((y - (h - 1) / 2) / (sigma * h)) ** 2 + ((x - (w - 1) / 2) / (sigma * w)) ** 2
    return (np.exp(-0.5 * d2) * 255).astype(np.uint8)


def colour_oracle_map(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    img = image.astype(np.float32) / 255
    dist = np.linalg.norm(img - img[mask].mean(0), axis=-1)
    return ((1 - dist / max(float(dist.max()), 1e-6)) * 255).astype(np.uint8)


def score(root: Path) -> dict[str, dict[str, float]]:
    from sodlab.data import SODFolder
    from sodlab.metrics import SODMetrics

    ds = SODFolder(root / "test")
    meters = {"centre bias": SODMetrics(), "colour oracle": SODMetrics()}
    for i in range(len(ds)):
        image, mask = ds.read(i)
        meters["centre bias"].step(centre_map(*mask.shape), mask)
        meters["colour oracle"].step(colour_oracle_map(image, mask), mask)
    return {k: m.get_results() for k, m in meters.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--difficulty", type=float, nargs="*", default=None, help="default: the generator's default")
    p.add_argument("--root", default=None, help="a generated benchmark folder instead")
    args = p.parse_args(argv)

    from sodlab.data.synthetic import DEFAULT_DIFFICULTY, ensure_benchmark

    if args.root:
        roots = [(None, Path(args.root))]
    else:
        roots = [(d, ensure_benchmark(difficulty=d, progress=False)) for d in (args.difficulty or [DEFAULT_DIFFICULTY])]
    print("| difficulty | baseline | max-F | MAE |\n|---|---|---|---|")
    for d, root in roots:
        for name, res in score(root).items():
            print(f"| {'-' if d is None else f'{d:g}'} | {name} | {res['max_f']:.3f} | {res['mae']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
