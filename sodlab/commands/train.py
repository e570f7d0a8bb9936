"""`sodlab train`: train a registered model on a dataset folder with a recipe.

One process: ``sodlab train --data TRAIN --val VAL --recipe quick --out runs/quick``.
A classifier: ``sodlab train --data TRAIN --val VAL --recipe classify-quick --out runs/cls`` on a
folder with ``categories.csv`` or an ImageFolder (``TRAIN/<class>/*.jpg``); the number of
classes comes from the data unless ``--model-arg num_classes=K``, and the class names are
stored in the checkpoints.
Several (DistributedDataParallel): ``torchrun --nproc_per_node N -m sodlab train ...``.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._common import parse_assignments

NAME = "train"
HELP = ("train a model (recipes: csnet-paper, quick, csf-res2net-paper, csf-res2net-batched, csf-mini-quick, classify-quick); "
        "saliency or classification, resumable, multi-GPU with torchrun")

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="training folder: images + masks (saliency); for classification images + "
                   "categories.csv, or an ImageFolder (one sub-folder per class)")
    p.add_argument("--val", default=None, help="validation folder (best.pt is chosen by its max-F, or top-1 for classification)")
    p.add_argument("--model", default=None, help="registry name, overriding the recipe's model (see `sodlab info --list`)")
    p.add_argument("--model-arg", action="append", default=[], metavar="K=V", help="model constructor argument (JSON value), repeatable")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--recipe", default=None, help="shipped recipe name (default: quick)")
    src.add_argument("--config", default=None, metavar="FILE", help="recipe or train-config JSON file")
    p.add_argument("--set", action="append", default=[], metavar="K=V", help="override a train-config key (JSON value), repeatable")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs (may change when resuming)")
    p.add_argument("--out", required=True, help="run folder: last.pt, best.pt, log.csv, config.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, fit, folder_dataset, read_recipe
    from ..train import distributed as D
    from ..train.data import class_names_of
    from ..train.rundir import check_writable

    # Everything is checked before anything is read at length or written.
    for flag, path in (("--data", args.data), ("--val", args.val)):
        if path is not None and not Path(path).is_dir():
            raise ConfigError(f"{flag} {path}: no such folder")
    recipe = read_recipe(args.config or args.recipe or "quick")
    train_cfg = dict(recipe["train"])
    train_cfg.update(parse_assignments(args.set, "--set"))
    if args.epochs is not None:
        train_cfg["epochs"] = args.epochs
    config = TrainConfig.from_dict(train_cfg, args.config or f"recipe {args.recipe or 'quick'}")
    check_writable(Path(args.out))

    model_spec = recipe.get("model") or {}
    name = args.model or model_spec.get("name")
    if not name:
        raise ConfigError("no model: give --model NAME (the recipe names none)")
    model_args = dict(model_spec.get("args", {})) if name == model_spec.get("name") else {}
    model_args.update(parse_assignments(args.model_arg, "--model-arg"))

    info = D.init_from_env(args.device)
    try:
        train_ds = folder_dataset(args.data, config, train=True)
        names = class_names_of(train_ds)
        val_ds = folder_dataset(args.val, config, train=False, category_names=names) if args.val else None
        if config.resolved_task == "classification":
            _set_num_classes(model_args, names, args.data)
        model = _build_model(name, model_args, config.seed)
        if not info.is_main:
            logging.getLogger("sodlab").setLevel(logging.WARNING)
        df = fit(model, train_ds, val_ds, config, args.out, resume=args.resume, device=info.device, progress=not args.no_progress)
    finally:
        D.cleanup()
    if info.is_main and len(df):
        last = df.iloc[-1]
        metric = "val_max_f" if "val_max_f" in df else ("val_top1" if "val_top1" in df else None)
        msg = f"trained {name} for {int(last['epoch'])} epochs into {args.out} (last.pt, best.pt, log.csv, config.json)"
        if metric:
            best = df[metric].idxmax()
            extra = f", MAE {df['val_mae'][best]:.4f}" if "val_mae" in df else ""
            msg += f"; best epoch {int(df['epoch'][best])}: {metric} {df[metric][best]:.4f}{extra}"
        print(msg)
    return 0


def _set_num_classes(model_args: dict[str, Any], names: Any, data: str) -> None:
    """``num_classes`` from the data's classes, unless given (then it must cover them)."""
    if not names:
        raise ConfigError(f"{data}: classification needs class labels (categories.csv, or an ImageFolder: one sub-folder per class)")
    given = model_args.setdefault("num_classes", len(names))
    if isinstance(given, bool) or not isinstance(given, int) or given < len(names):
        raise ConfigError(f"--model-arg num_classes={given!r}: {data} has {len(names)} classes ({', '.join(names)})")


def _build_model(name: str, model_args: dict[str, Any], seed: int) -> Any:
    """The model with its initial weights drawn from ``seed`` (same command, same weights);
    arguments its constructor does not take are bad input, not a crash."""
    from ..models import create_model
    from ..train.rng import seeded

    with seeded(seed):
        try:
            return create_model(name, **model_args)
        except TypeError as exc:
            given = ", ".join(f"{k}={v!r}" for k, v in model_args.items())
            raise ConfigError(f"--model-arg: model {name!r} does not take ({given}): {exc}") from exc


def resume_hint(args: argparse.Namespace) -> str:
    return f"add --resume to the same command to continue {args.out} from its last finished epoch"
