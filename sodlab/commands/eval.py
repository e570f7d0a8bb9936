"""`sodlab eval`: score saved saliency maps against masks, or a model on a dataset folder: a
saliency model on images + masks, a classifier on an ImageFolder or a folder with
``categories.csv`` (top-1, per-class accuracy, confusion matrix)."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Optional

from ..errors import SodlabError
from ._common import check_size_arg, load_model, maybe_optimize, naming_weights

NAME = "eval"
HELP = "score saliency maps (--pred/--gt) or a model (--weights/--data): max-F, mean-F, MAE and more; a classifier: top-1, per class, confusion"

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
    model.add_argument("--data", default=None, help="dataset folder (images/ + GT/, DUTS, ECSSD ...); for a classifier, one with "
                       "categories.csv or an ImageFolder (one sub-folder per class)")
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
        ds = _dataset(args.data, args.split)  # pairing and every header checked before the model loads
        res = _evaluate_model(args, ds)
        if res.get("task") == "classification":
            return _print_classification(res, args.json)
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


def _dataset(data: str, split: Optional[str]) -> Any:
    """An `ImageFolder` when ``data`` (/``split``) holds class sub-folders, else a `SODFolder`."""
    from ..data.folder import SODFolder
    from ..data.imagefolder import ImageFolder, is_image_folder

    root = Path(data) / split if split is not None else Path(data)
    return ImageFolder(root) if is_image_folder(root) else SODFolder(data, split=split)


def _evaluate_model(args: argparse.Namespace, ds: Any) -> dict[str, Any]:
    """The scores of ``--weights`` on ``ds``, for the model's task; a model and data of
    different tasks are one line saying what each is."""
    from ..checkpoint import describe_model, model_task
    from ..data.folder import SODFolder
    from ..evaluation import evaluate, evaluate_classifier
    from ..inference import input_side

    model = load_model(args)
    what = f"{args.weights} is {describe_model(model)}"
    task = model_task(model)  # read before optimising: the optimised twin does not carry it
    if task == "classification" and isinstance(ds, SODFolder) and not ds.category_names:
        raise SodlabError(f"{what}; eval of a classifier needs class labels, but {ds.root} has masks and no categories.csv "
                          "(give a folder with categories.csv, or an ImageFolder: one sub-folder per class)")
    if task == "sod" and not isinstance(ds, SODFolder):
        raise SodlabError(f"{what}; eval of a saliency model needs images/ and masks (GT/), but {ds.root} is an ImageFolder "
                          "(class sub-folders, no masks)")
    size = input_side(args.size, model)
    names = getattr(model, "class_names", None)
    net = maybe_optimize(model, not args.no_optimize)
    progress = not args.no_progress and not args.json
    with naming_weights(args.weights):
        if task == "classification":
            res = evaluate_classifier(net, ds, class_names=names, batch_size=args.batch_size, size=size, device=args.device,
                                      progress=progress)
        else:
            res = evaluate(net, ds, protocol=args.protocol, batch_size=args.batch_size, size=size, device=args.device,
                           progress=progress)
    res["source"] = {"weights": args.weights, "data": str(ds.root)}
    return res


def _print_classification(res: dict[str, Any], as_json: bool) -> int:
    from ..metrics import format_confusion

    if as_json:
        print(json.dumps(res))
        return 0
    print(f"task: classification   images: {res['n']}   size: {res['size']}")
    print(f"  {'top-1 accuracy':20s} {res['top1']:.4f}")
    print("per-class accuracy:")
    width = max(len(c) for c in res["per_class"])
    for name, acc in res["per_class"].items():
        print(f"  {name:{width}s}  " + ("no images" if acc is None else f"{acc:.4f}"))
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(format_confusion(res["confusion"]))
    return 0
