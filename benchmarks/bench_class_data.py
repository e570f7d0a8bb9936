"""Classification data path: images/s of one training epoch's batches read from disk item by
item (decode + per-image transform) against preloaded images augmented a batch at a time
(`TrainConfig.preload`), both measured in the same run and on the same folder.

The model is not involved: this is the share of a `classify-quick` epoch the data costs. On a
synthetic 12-category folder of 64 px images (generated into a temporary folder unless
``--data`` names one) the ratio is what to compare across machines.

    python benchmarks/bench_class_data.py [--data DIR/train] [--images 3000] [--batches 40] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from sodlab.train import TrainConfig
from sodlab.train.data import folder_dataset


def rate(ds, batches: int, batch: int) -> float:
    """Images/s of ``batches`` shuffled batches (the best of three passes: on a shared machine
    the slower ones measure the other processes)."""
    best = 0.0
    for rep in range(3):
        torch.manual_seed(rep)
        loader = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True)
        t, n = time.perf_counter(), 0
        for i, b in enumerate(loader):
            n += b["image"].shape[0]
            if i + 1 == batches:
                break
        best = max(best, n / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a labelled training folder (default: generate one)")
    ap.add_argument("--images", type=int, default=3000, help="images to generate when --data is not given")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from sodlab.data import synthetic

            data = Path(synthetic.generate(Path(tmp) / "cls", n_train=args.images, n_test=4, size=64, seed=101, progress=False)) / "train"
        cfg = TrainConfig(task="classification", image_size=64, hflip=True, vflip=True, rot90=True)
        disk = folder_dataset(data, cfg, train=True)
        t = time.perf_counter()
        mem = folder_dataset(data, cfg.replace(preload=True), train=True)
        load_s = time.perf_counter() - t
        r_disk, r_mem = rate(disk, args.batches, args.batch), rate(mem, args.batches, args.batch)
    print(f"{len(disk)} images at 64 px, batch {args.batch}, {args.threads} threads, best of 3 passes of {args.batches} batches")
    print(f"from disk, item by item : {r_disk:8.0f} images/s")
    print(f"preloaded, batched      : {r_mem:8.0f} images/s  ({load_s:.1f} s to list and preload)")
    print(f"ratio preloaded / disk  : {r_mem / r_disk:8.2f}x")


if __name__ == "__main__":
    main()
