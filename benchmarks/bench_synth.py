"""Time the built-in benchmark generator: 2,000 training + 300 test images at 128x128.

    python benchmarks/bench_synth.py [--train 2000] [--test 300] [--size 128] [--workers N]

Prints the wall time; the target is under 60 s on 2 cores.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, default=300)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: usable cores)")
    args = p.parse_args(argv)

    from sodlab.data.synthetic import default_workers, generate

    workers = args.workers or default_workers()
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        t0 = time.perf_counter()
        out = generate(Path(tmp) / "bench", n_train=args.train, n_test=args.test, size=args.size, seed=args.seed,
                       progress=False, workers=workers)
        elapsed = time.perf_counter() - t0
        n_files = sum(1 for _ in out.rglob("*.*"))
    n = args.train + args.test
    print(f"generated {args.train}+{args.test} images at {args.size}x{args.size} with {workers} worker(s) "
          f"in {elapsed:.1f} s ({1000 * elapsed / n:.1f} ms/image, {n_files} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
