"""`sodlab info [NAME ...]`: parameters and MACs of registered models."""
from __future__ import annotations

import argparse
import json

NAME = "info"
HELP = "show parameters and MACs of registered models (all of them when no name is given)"

# Sides a model is shown at by default: the CPU-sized study models train at 64 px.
DEFAULT_SIZES = {"res2net-mini": [64, 224], "csf-res2net-mini": [64, 224]}


def default_sizes(name: str) -> list[int]:
    if name in DEFAULT_SIZES:
        return DEFAULT_SIZES[name]
    return [224, 352] if name.startswith("csf") else [224]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="registry names (see --list)")
    p.add_argument("--size", type=int, nargs="+", default=None, help="input side(s) in pixels (default 224; 224 and 352 for csf models; 64 and 224 for the mini models)")
    p.add_argument("--list", action="store_true", help="only list the registered names")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..models.registry import create_model, model_descriptions
    from ..profiling import profile

    descriptions = model_descriptions()
    if args.list:
        for name, desc in descriptions.items():
            print(f"{name:20s} {desc}")
        return 0
    names = args.names or list(descriptions)
    rows = []
    for name in names:
        model = create_model(name)
        task = getattr(type(model), "task", "")
        for size in args.size or default_sizes(name):
            p = profile(model, size)
            rows.append({"model": name, "task": task, "size": size, "params": p["params"], "gmacs": round(p["gmacs"], 4)})
    if args.json:
        print(json.dumps({"rows": rows, "convention": "MACs of executed convolutions/matmuls (torch.utils.flop_counter)"}))
    else:
        print(f"{'model':20s} {'task':14s} {'size':>5s} {'params':>12s} {'GMACs':>9s}")
        for r in rows:
            print(f"{r['model']:20s} {r['task']:14s} {r['size']:5d} {r['params']:12,d} {r['gmacs']:9.3f}")
        print("GMACs: multiply-accumulates actually executed (torch.utils.flop_counter), one image.")
    return 0
