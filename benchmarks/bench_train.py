"""Training throughput of CSNet (images/s) at 224x224, batch 8 and 24, on CPU (and CUDA
when present).

For each batch size it measures, in the same run:
  * baseline: eval-mode forward only (inference images/s),
  * train step: forward + BCE + backward + Adam step (plain PyTorch loop),
  * train step + DWD: the same with dynamic weight decay hooks and penalty,
  * fit(): `sodlab.train.fit` on in-memory data (the whole trainer: sampler, loader, logging,
    checkpoints) with the csnet-paper recipe's optimisation,
and prints each as images/s and as a ratio to the baseline and to the plain train step.

    python benchmarks/bench_train.py [--width 20] [--steps 3] [--threads 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F

from sodlab import create_model
from sodlab.train import build_regularizer, fit, load_recipe


class Synthetic(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.m = (torch.rand(n, 1, size, size, generator=g) > 0.5).float()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "mask": self.m[i]}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, steps: int, dev: torch.device) -> float:
    fn()  # warm-up (allocator, oneDNN primitives)
    _sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(dev)
    return (time.perf_counter() - t) / steps


def bench(batch: int, size: int, width: int, steps: int, dev: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model("csnet", width=width).to(dev)
    x = torch.randn(batch, 3, size, size, device=dev)
    y = (torch.rand(batch, 1, size, size, device=dev) > 0.5).float()

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=5e-3)

    def step() -> None:
        model.train()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    reg = build_regularizer("dwd").attach(model)

    def step_dwd() -> None:
        model.train()
        with reg.recording():
            out = model(x)
        loss = F.binary_cross_entropy_with_logits(out, y) + reg.weight * reg.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()

    res = {"infer": batch / timed(infer, steps, dev), "step": batch / timed(step, steps, dev)}
    res["step_dwd"] = batch / timed(step_dwd, steps, dev)
    reg.detach()

    paper = load_recipe("csnet-paper")
    cfg = paper.replace(epochs=1, batch_size=batch, num_workers=0, image_size=None)
    data = Synthetic(batch * (steps + 1), size)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        fit(create_model("csnet", width=width), data, None, cfg, tmp, device=dev, progress=False)
        _sync(dev)
        res["fit"] = len(data) / (time.perf_counter() - t)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=20)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 24])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cpu, then cuda too when present)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device(args.device)] if args.device else [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"CSNet width {args.width}, {args.size}x{args.size}, {args.threads} CPU threads, torch {torch.__version__}")
    print(f"{'device':6s} {'batch':>5s} {'infer':>8s} {'step':>8s} {'step+DWD':>9s} {'fit()':>8s}   step/infer  DWD/step  fit/step   (images/s)")
    for dev in devices:
        for b in args.batches:
            r = bench(b, args.size, args.width, args.steps, dev)
            print(
                f"{dev.type:6s} {b:5d} {r['infer']:8.1f} {r['step']:8.1f} {r['step_dwd']:9.1f} {r['fit']:8.1f}"
                f"   {r['step'] / r['infer']:10.2f} {r['step_dwd'] / r['step']:9.2f} {r['fit'] / r['step']:9.2f}"
            )


if __name__ == "__main__":
    main()
