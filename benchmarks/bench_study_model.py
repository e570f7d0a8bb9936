"""Training throughput of the study model (res2net-mini, csf-res2net-mini) against CSNet.

For each model it measures, in the same run and under the same settings (batch 64, 64 px,
channels-last, 2 CPU threads by default), the fastest of 20 training steps (the fastest of 5
moved by 1.7x between runs on idle cores): forward + loss + backward + Adam step
(cross-entropy for the classifier, BCE for the saliency models), and prints parameters,
MACs at 64 and 224 px, images/s and the ratio to CSNet width 16. The ratio is what to compare across runs on a loaded machine: multiply it by CSNet-16's images/s on an
idle machine to extrapolate.

    python benchmarks/bench_study_model.py [--steps 20] [--threads 2] [--batch 64] [--size 64]
        [--config '{"layers": [1, 1, 2, 1]}']   # override the mini backbone (sizing runs)
        [--head '{"norm": "bn"}']                 # override the csf-res2net-mini head
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from sodlab import create_model
from sodlab.profiling import count_macs, count_parameters


def timed(fn, steps: int) -> float:
    """Seconds of the fastest of ``steps`` calls: on a shared machine the slower ones
    measure the other processes, not the model."""
    fn()  # warm-up (allocator, oneDNN primitives)
    best = float("inf")
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def train_rate(model: torch.nn.Module, batch: int, size: int, steps: int) -> float:
    """Images/s of forward + loss + backward + Adam step, channels-last."""
    g = torch.Generator().manual_seed(0)
    model = model.to(memory_format=torch.channels_last).train()
    x = torch.randn(batch, 3, size, size, generator=g).contiguous(memory_format=torch.channels_last)
    task = getattr(type(model), "task", "sod")
    if task == "classification":
        y = torch.randint(0, model.config.num_classes, (batch,), generator=g)
        loss_fn = F.cross_entropy
    else:
        y = (torch.rand(batch, 1, size, size, generator=g) > 0.5).float()
        loss_fn = F.binary_cross_entropy_with_logits
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / timed(step, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default=None, help="JSON overrides of the mini backbone config")
    ap.add_argument("--head", default=None, help="JSON overrides of the csf-res2net-mini head (CSFHeadConfig.for_stages arguments)")
    ap.add_argument("--models", nargs="+", default=["csnet", "res2net-mini", "csf-res2net-mini"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = json.loads(args.config) if args.config else None
    head = json.loads(args.head) if args.head else None
    print(f"batch {args.batch}, {args.size}x{args.size}, channels-last, {args.threads} CPU threads, torch {torch.__version__}")
    if overrides:
        print(f"mini backbone overrides: {overrides}")
    if head:
        print(f"csf-res2net-mini head overrides: {head}")
    print(f"{'model':18s} {'params':>10s} {'MMACs@64':>9s} {'MMACs@224':>10s} {'train img/s':>12s} {'vs CSNet-16':>12s}")
    ref = None
    for name in ["csnet"] + [m for m in args.models if m != "csnet"]:
        torch.manual_seed(0)
        kw = {"width": 16} if name == "csnet" else ({"config": overrides} if overrides and "mini" in name else {})
        if head and name == "csf-res2net-mini":
            kw["head"] = head
        model = create_model(name, **kw)
        macs = [count_macs(model, s) / 1e6 for s in (64, 224)]
        rate = train_rate(model, args.batch, args.size, args.steps)
        ref = rate if name == "csnet" else ref
        label = "csnet (width 16)" if name == "csnet" else name
        print(f"{label:18s} {count_parameters(model):10,d} {macs[0]:9.1f} {macs[1]:10.1f} {rate:12.1f} {rate / ref:12.2f}")


if __name__ == "__main__":
    main()
