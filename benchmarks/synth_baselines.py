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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--difficulty", type=float, nargs="*", default=None, help="default: the generator's default")
    p.add_argument("--root", default=None, help="a generated benchmark folder instead")
    args = p.parse_args(argv)

    from sodlab.baselines import baseline_metrics
    from sodlab.data.synthetic import DEFAULT_DIFFICULTY, ensure_benchmark

    if args.root:
        roots = [(None, Path(args.root))]
    else:
        roots = [(d, ensure_benchmark(difficulty=d, progress=False)) for d in (args.difficulty or [DEFAULT_DIFFICULTY])]
    print("| difficulty | baseline | max-F | MAE |\n|---|---|---|---|")
    for d, root in roots:
        for name, res in baseline_metrics(root / "test").items():
            print(f"| {'-' if d is None else f'{d:g}'} | {name} | {res['max_f']:.3f} | {res['mae']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
