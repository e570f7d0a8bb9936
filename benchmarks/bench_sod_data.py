"""Saliency data path: images/s of an epoch's batches read from disk (decode + per-item
transform) against pairs preloaded into memory (`SODFolder.preload`; the same per-item
transform), with the training transform (the twins' crop, both flips and quarter turns) and
the evaluation one (validation), all measured in the same run on the same images.

The model is not involved: this is the share of a saliency epoch the data costs. ``--data``
names a training folder (the built-in benchmark's ``train/``: 128 px JPEGs and PNG masks), of
which the first ``--images`` pairs are linked into a temporary folder; without it a synthetic
one is generated.

    python benchmarks/bench_sod_data.py [--data DIR/train] [--images 800] [--size 64] [--batch 16] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from bench_class_data import rate

from sodlab.data import SODFolder
from sodlab.data import transforms as T


def linked_subset(src: Path, n: int, out: Path) -> Path:
    """A dataset folder of the first ``n`` image/mask pairs of ``src``, as symbolic links."""
    pairs = SODFolder(src)
    for name, paths in (("images", pairs.image_paths), ("GT", pairs.mask_paths)):
        (out / name).mkdir(parents=True)
        for p in paths[:n]:
            (out / name / p.name).symlink_to(p.resolve())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a saliency training folder (default: generate one)")
    ap.add_argument("--images", type=int, default=800)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            from sodlab.data import synthetic

            data = Path(synthetic.generate(Path(tmp) / "sod", n_train=args.images, n_test=4, seed=101, progress=False)) / "train"
        else:
            data = linked_subset(args.data, args.images, Path(tmp) / "sub")
        mem = SODFolder(data)
        t = time.perf_counter()
        mem.preload()
        load_s = time.perf_counter() - t
        batches = len(mem) // args.batch
        rows = []
        for name, tf in (("training", T.train_transform(args.size, hflip=True, vflip=True, rot90=True)),
                         ("evaluation", T.eval_transform(args.size))):
            disk = SODFolder(data, transform=tf)
            rows.append((name, rate(disk, batches, args.batch), rate(mem.with_transform(tf), batches, args.batch)))
    h, w = mem.sizes[0]
    print(f"{len(mem)} pairs of {w}x{h} to {args.size} px, batch {args.batch}, {args.threads} threads, "
          f"best of 3 passes of {batches} batches; {load_s:.1f} s to preload")
    for name, r_disk, r_mem in rows:
        print(f"{name:10s} from disk: {r_disk:7.0f} images/s   preloaded: {r_mem:7.0f} images/s   ratio {r_mem / r_disk:5.2f}x")


if __name__ == "__main__":
    main()
