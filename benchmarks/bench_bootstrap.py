"""Two-level bootstrap speed: `bootstrap_seeds_images` with its default mean (computed from
draw counts, no resample materialised) against the same interval through an explicit
statistic (every resample indexed), both measured in the same run on the same (seeds, images)
scores; and the study-sized `bootstrap_replicates_gap` (5 category splits, max-F over per-image
curves). The ratio is what to compare across machines; the absolute seconds say whether a
verdict's interval costs anything next to training.

    python benchmarks/bench_bootstrap.py [--seeds 5] [--images 300] [--boot 1000]
"""
from __future__ import annotations

import argparse

import numpy as np

from bench_study_model import timed  # this folder is on the path of a script run from it
from sodlab.analysis import bootstrap_replicates_gap, bootstrap_seeds_images
from sodlab.metrics import max_f_from_curves


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--boot", type=int, default=1000)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    v = rng.normal(0.7, 0.1, (args.seeds, args.images))
    fast = timed(lambda: bootstrap_seeds_images(v, n_boot=args.boot, seed=0), 3)
    slow = timed(lambda: bootstrap_seeds_images(v, n_boot=args.boot, seed=0, statistic=lambda r: float(r.mean())), 3)
    print(f"seeds x images ({args.seeds} x {args.images}, {args.boot} resamples): counted mean {fast * 1e3:.1f} ms, "
          f"indexed {slow * 1e3:.1f} ms, ratio {slow / fast:.1f}x")
    # five category splits, ~125 seen and ~175 unseen test images each, F-measure counts per image
    curves = [(rng.integers(0, 500, (125, 3, 256)).astype(float), rng.integers(0, 500, (175, 3, 256)).astype(float))
              for _ in range(args.seeds)]
    rep = timed(lambda: bootstrap_replicates_gap(curves, n_boot=args.boot, seed=0, statistic=max_f_from_curves), 1)
    print(f"replicates gap of max-F ({args.seeds} splits, {args.boot} resamples): {rep:.2f} s")


if __name__ == "__main__":
    main()
