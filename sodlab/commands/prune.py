"""`sodlab prune`: remove the channels of a trained CSNet whose BatchNorm scale is ~0."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import SodlabError

NAME = "prune"
HELP = ("remove channels whose BatchNorm |gamma| is below a threshold (by default only where removal is exact); "
        "write the slim model as a checkpoint")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a sodlab CSNet checkpoint (or the authors' .pth.tar with --model)")
    p.add_argument("--out", required=True, help="where to write the slim checkpoint (loads with sodlab.load)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, default=None, help="remove channels with |gamma| below this (default 1e-20, the authors' value)")
    group.add_argument("--keep-fraction", type=float, default=None,
                       help="instead of a threshold: keep at most this fraction of the parameters (needs --approximate)")
    p.add_argument("--approximate", action="store_true",
                   help="also remove channels whose removal changes the output (a constant entering a zero-padded 3x3 "
                        "convolution, a gamma small but not zero); the report says by how much")
    p.add_argument("--overwrite", action="store_true", help="replace --out (and --config-out) if they exist")
    p.add_argument("--no-fold", action="store_true", help="drop the constants of removed channels instead of folding them into the next layer (needs --approximate)")
    p.add_argument("--config-out", default=None, help="also write the learned channel configuration as JSON (preset format)")
    p.add_argument("--probe-size", type=int, default=128, help="input side of the random probe that measures the output change (multiple of 16)")
    p.add_argument("--model", default=None, help="for the authors' checkpoint: csnet-L-x1 or csnet-L-x2")
    p.add_argument("--layer-config", default=None, help="for the authors' checkpoint: their layer configuration (.bin or JSON)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..atomic import write_text_atomic
    from ..checkpoint import load_weights, save
    from ..prune import DEFAULT_THRESHOLD, prune

    out = Path(args.out)
    config_out = Path(args.config_out) if args.config_out else None
    for target in (out, config_out):  # checked before the work: a refusal costs nothing
        if target is None:
            continue
        if target.exists() and not args.overwrite:
            raise SodlabError(f"{target} already exists; pass --overwrite to replace it")
        if target.is_dir():
            raise SodlabError(f"{target} is a folder; --out and --config-out name files")
        if not target.parent.is_dir():
            raise SodlabError(f"{target.parent} does not exist (the folder for {target.name})")
    if args.probe_size % 16:
        raise SodlabError(f"--probe-size must be a multiple of 16, got {args.probe_size}")
    for flag, used in (("--keep-fraction", args.keep_fraction is not None), ("--no-fold", args.no_fold)):
        if used and not args.approximate:
            raise SodlabError(f"{flag} removes channels whose output is not exactly a foldable constant; add --approximate")
    threshold = None if args.keep_fraction is not None else (DEFAULT_THRESHOLD if args.threshold is None else args.threshold)
    model = load_weights(args.checkpoint, args.model, args.layer_config).eval()
    slim_model, report = prune(model, threshold, keep_fraction=args.keep_fraction, fold=not args.no_fold,
                               probe_size=args.probe_size, exact=not args.approximate)
    save(slim_model, out, extra={"pruned_from": str(args.checkpoint), "prune_report": report})
    if config_out is not None:
        doc = {"name": out.stem, "description": f"learned channel numbers pruned from {args.checkpoint} at threshold {report['threshold']:g}",
               "config": slim_model.config.to_dict()}
        write_text_atomic(config_out, json.dumps(doc))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"parameters: {report['params_full']:,} -> {report['params_slim']:,} ({report['param_fraction']:.1%} kept), "
              f"{report['channels_removed']} channels removed at threshold {report['threshold']:g}"
              f"{'' if args.approximate else ' (only where removal is exact)'}")
        exact = "exact" if report["fold_exact"] else f"approximate in {len(report['inexact_folds'])} place(s)"
        print(f"constant folding: {exact}; on a random {report['probe_size']}px input the probability map moved by at most "
              f"{report['max_abs_prob_change']:.2e} (mean {report['mean_abs_prob_change']:.2e})")
        print(f"wrote {out}")
    return 0
