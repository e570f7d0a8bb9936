"""`sodlab eval`: score saved saliency maps against masks, or a model on a dataset folder."""
from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ..errors import SodlabError
from ._common import check_size_arg, load_model, maybe_optimize, naming_weights

NAME = "eval"
HELP = "score saliency maps (--pred/--gt) or a model (--weights/--data): max-F, mean-F, MAE and more"

# Order and labels of the readable table.
_ROWS = (("max_f", "max F-measure"), ("mean_f", "mean F-measure"), ("adaptive_f", "adaptive F-measure"),
         ("mae", "MAE"), ("s_measure", "S-measure"), ("max_e", "max E-measure"), ("mean_e", "mean E-measure"),
         ("adaptive_e", "adaptive E-measure"), ("weighted_f", "weighted F-measure"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    maps = p.add_argument_group("saved maps")
    maps.add_argument("--pred", default=None, help="folder of predicted maps (PNG, paired with masks by file stem)")
    maps.add_argument("--gt", default=None, help="folder of masks, or a dataset folder with GT/ or masks/")
    model = p.add_argument_group("a model")
    model.add_argument("--weights", default=None, help="a sodlab checkpoint or the authors' .pth.tar")
    model.add_argument("--data", default=None, help="dataset folder (images/ + GT/, DUTS, ECSSD ...)")
    model.add_argument("--split", default=None, help="sub-folder of --data (e.g. test)")
    model.add_argument("--model", default=None, help="registry name giving the layer configuration of an authors' checkpoint (csnet-L-x1, csnet-L-x2)")
    model.add_argument("--layer-config", default=None, help="the authors' layer configuration (.bin or JSON) for their checkpoint")
    model.add_argument("--size", type=int, default=None, help="network input side (default: the side a sodlab checkpoint was trained at, else 224)")
    model.add_argument("--batch-size", type=int, default=8)
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    model.add_argument("--no-optimize", action="store_true", help="run the plain model instead of the inference-optimised one")
    p.add_argument("--protocol", choices=("standard", "salmetric"), default="standard",
                   help="standard: PySODMetrics (most recent papers); salmetric: the CSNet authors' tool (default standard)")
    p.add_argument("--json", action="store_true", help="print only one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _scalars(res: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in res.items() if isinstance(v, (int, float, str)) and not (isinstance(v, float) and math.isnan(v))}


def run(args: argparse.Namespace) -> int:
    by_maps = args.pred is not None or args.gt is not None
    by_model = args.weights is not None or args.data is not None
    if by_maps == by_model:
        raise SodlabError("give either --pred DIR --gt DIR (saved maps) or --weights FILE --data DIR (a model)")
    if by_maps:
        if args.pred is None or args.gt is None:
            raise SodlabError("--pred and --gt go together")
        from ..evaluation import evaluate_folders

        res = evaluate_folders(args.pred, args.gt, protocol=args.protocol, progress=not args.no_progress and not args.json)
        res["source"] = {"pred": args.pred, "gt": args.gt}
    else:
        if args.weights is None or args.data is None:
            raise SodlabError("--weights and --data go together")
        check_size_arg(args.size)
        from ..data.folder import SODFolder
        from ..evaluation import evaluate
        from ..inference import input_side

        ds = SODFolder(args.data, split=args.split)  # pairing and every header checked before the model loads
        model = load_model(args)
        size = input_side(args.size, model)
        model = maybe_optimize(model, not args.no_optimize)
        with naming_weights(args.weights):
            res = evaluate(model, ds, protocol=args.protocol, batch_size=args.batch_size, size=size,
                           device=args.device, progress=not args.no_progress and not args.json)
        res["source"] = {"weights": args.weights, "data": str(ds.root)}
    out = _scalars(res)
    out["source"] = res["source"]
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"protocol: {args.protocol}   images: {out['n_images']}")
    for key, label in _ROWS:
        if key in out:
            print(f"  {label:20s} {out[key]:.4f}")
    return 0
