"""`sodlab data`: generate the synthetic benchmark or the pre-training corpus, check a dataset
folder, draw samples."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from ..errors import DataError

NAME = "data"
HELP = ("generate the synthetic benchmark or the pre-training corpus (synth), check a dataset folder (check), "
        "draw samples (samples)")

# `data synth` flags that belong to one corpus only (the rest apply to both): given for the
# other one, they are refused rather than silently ignored.
_OWN_FLAGS = {"sod": ("train", "test", "categories", "difficulty", "saliency"),
              "pretrain": ("variant", "classes", "per_class", "val_per_class")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..data.synthetic import CATEGORIES, DEFAULT_DIFFICULTY, DEFAULT_SEED, DEFAULT_SIZE, DEFAULT_TEST, DEFAULT_TRAIN
    from ..data.synthetic.corpus import (DEFAULT_CLASSES, DEFAULT_CORPUS_SIZE, DEFAULT_PER_CLASS, DEFAULT_VAL_PER_CLASS,
                                         DEFAULT_VARIANT)

    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    s = sub.add_parser("synth", help="generate the synthetic benchmark or the pre-training corpus",
                       description="Generate the synthetic SOD benchmark (--corpus sod, the default): OUT/train and "
                                   "OUT/test with images/, GT/ and categories.csv, plus OUT/synth.json; or the "
                                   "pre-training classification corpus (--corpus pretrain): OUT/train/<class>/*.jpg, "
                                   "OUT/val/<class>/*.jpg (ImageFolder layout), plus OUT/corpus.json.")
    s.add_argument("--out", required=True, help="output folder (must not exist or be empty unless --overwrite)")
    s.add_argument("--corpus", default="sod", metavar="{sod,pretrain}",
                   help="sod: the SOD benchmark (default); pretrain: the classification corpus, disjoint from it")
    s.add_argument("--size", type=int, default=None,
                   help=f"image side in pixels (default {DEFAULT_SIZE}; {DEFAULT_CORPUS_SIZE} for --corpus pretrain)")
    s.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    s.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image file format (masks are PNG)")
    s.add_argument("--workers", type=int, default=None, help="processes (default: the usable cores)")
    s.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    sod = s.add_argument_group("--corpus sod")
    sod.add_argument("--train", type=int, default=None, help=f"training images (default {DEFAULT_TRAIN})")
    sod.add_argument("--test", type=int, default=None, help=f"test images (default {DEFAULT_TEST})")
    sod.add_argument("--categories", default=None,
                     help=f"comma-separated subset of: {','.join(CATEGORIES)} (default: all)")
    sod.add_argument("--difficulty", type=float, default=None,
                     help=f"0 (easy) .. 1 (hard), up to 1.5 (default {DEFAULT_DIFFICULTY})")
    sod.add_argument("--saliency", default=None, metavar="{cues,category}",
                     help="what makes the object salient: cues (contrast, size, the centre; default) or category "
                          "(two equally contrasting copies of the shape, the category decides which is salient: "
                          "the category study's positive control)")
    pre = s.add_argument_group("--corpus pretrain")
    pre.add_argument("--variant", default=None, metavar="{with-sod,without-sod}",
                     help=f"with or without the {len(CATEGORIES)} benchmark categories among the classes "
                          f"(default {DEFAULT_VARIANT})")
    pre.add_argument("--classes", type=int, default=None, help=f"number of classes (default {DEFAULT_CLASSES})")
    pre.add_argument("--per-class", type=int, default=None,
                     help=f"training images per class (default {DEFAULT_PER_CLASS})")
    pre.add_argument("--val-per-class", type=int, default=None,
                     help=f"validation images per class (default {DEFAULT_VAL_PER_CLASS})")

    c = sub.add_parser("check", help="validate a dataset folder and summarise it",
                       description="Validate a dataset folder (pairing, readability, sizes) and summarise it, "
                                   "with the masks saved as 0/1 and the soft (non-binary) ones.")
    c.add_argument("root", help="dataset folder (images/ + GT/, DUTS, ECSSD ...)")
    c.add_argument("--split", default=None,
                   help="sub-folder to check (e.g. train, test; default: the folder itself, or each split "
                        "sub-folder of a benchmark root such as `sodlab data synth` writes)")
    c.add_argument("--lenient", action="store_true", help="report problems as warnings and count the usable pairs")
    c.add_argument("--json", action="store_true", help="print one JSON object")

    g = sub.add_parser("samples", help="draw a figure of samples per category",
                       description="Write a PNG grid of samples per category of a generated benchmark.")
    g.add_argument("root", help="benchmark folder (with train/ and test/)")
    g.add_argument("--out", required=True, help="PNG file to write (.png is added when missing; must not exist "
                                                 "unless --overwrite)")
    g.add_argument("--split", default="train")
    g.add_argument("--per-category", type=int, default=4)
    g.add_argument("--dpi", type=int, default=80)
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def _synth(args: argparse.Namespace) -> int:
    from ..data.synthetic import DEFAULT_DIFFICULTY, DEFAULT_SIZE, DEFAULT_TEST, DEFAULT_TRAIN, generate
    from ..data.synthetic.corpus import (DEFAULT_CLASSES, DEFAULT_CORPUS_SIZE, DEFAULT_PER_CLASS, DEFAULT_VAL_PER_CLASS,
                                         DEFAULT_VARIANT, generate_corpus)

    if args.corpus not in _OWN_FLAGS:
        raise DataError(f"--corpus {args.corpus!r}: choose sod (the SOD benchmark) or pretrain (the classification corpus)")
    other = "pretrain" if args.corpus == "sod" else "sod"
    stray = [f"--{k.replace('_', '-')}" for k in _OWN_FLAGS[other] if getattr(args, k) is not None]
    if stray:
        raise DataError(f"{', '.join(stray)}: only for --corpus {other}, not --corpus {args.corpus}")
    common = dict(seed=args.seed, progress=not args.no_progress, overwrite=args.overwrite, workers=args.workers,
                  image_format=args.format)
    if args.corpus == "pretrain":
        out = generate_corpus(args.out, variant=args.variant or DEFAULT_VARIANT,
                              n_classes=_given(args.classes, DEFAULT_CLASSES),
                              per_class=_given(args.per_class, DEFAULT_PER_CLASS),
                              val_per_class=_given(args.val_per_class, DEFAULT_VAL_PER_CLASS),
                              size=_given(args.size, DEFAULT_CORPUS_SIZE), **common)
    else:
        cats = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
        out = generate(args.out, n_train=_given(args.train, DEFAULT_TRAIN), n_test=_given(args.test, DEFAULT_TEST),
                       size=_given(args.size, DEFAULT_SIZE), categories=cats,
                       difficulty=_given(args.difficulty, DEFAULT_DIFFICULTY), saliency=args.saliency or "cues", **common)
    print(out)
    return 0


def _given(value, default):
    """A flag's value, or its default when it was not given (0 is a value)."""
    return default if value is None else value


def _check(args: argparse.Namespace) -> int:
    from ..data.folder import is_dataset_folder, split_folders

    root = Path(args.root).expanduser()
    splits = split_folders(root) if args.split is None and not is_dataset_folder(root) else []
    summaries = [_check_one(root, s, args.lenient) for s in (splits or [args.split])]
    if args.json:
        print(json.dumps(summaries[0] if not splits else {"root": str(root), "splits": dict(zip(splits, summaries))}))
    else:
        for summary in summaries:
            counts = summary["categories"]
            print(f"{summary['root']}: {summary['items']} image/mask pairs, {len(counts)} categories"
                  f"{', ' + str(summary['unlabelled']) + ' unlabelled' if counts and summary['unlabelled'] else ''}")
            for name, n in counts.items():
                print(f"  {name:16s} {n:6d}")
            print(f"  image sizes (WxH, first 10): {', '.join(summary['sizes'])}")
            for line in _mask_notes(summary["masks"]):
                print(f"  {line}")
    return 0


def _mask_notes(masks: dict) -> list[str]:
    """What `data check` says about masks that are not 0/255."""
    notes = []
    if masks["zero_one"]:
        notes.append(f"note: {masks['zero_one']} mask(s) saved as 0/1 (e.g. {masks['examples']['zero_one']}): "
                     "read with 1 as the foreground")
    if masks["soft"]:
        notes.append(f"warning: {masks['soft']} soft mask(s) (gray levels other than 0 and one level above 128, "
                     f"e.g. {masks['examples']['soft']}): thresholded at 128")
    return notes


def _check_one(root: Path, split: Optional[str], lenient: bool) -> dict:
    from collections import Counter

    from ..data.folder import SODFolder

    ds = SODFolder(root, split=split, lenient=lenient)
    counts = Counter(c for c in ds.categories if c is not None)
    return {"root": str(ds.root), "items": len(ds), "categories": dict(sorted(counts.items())),
            "unlabelled": sum(c is None for c in ds.categories),
            "sizes": sorted({f"{w}x{h}" for h, w in ds.sizes})[:10], "masks": _mask_survey(ds.mask_paths)}


def _mask_survey(paths: list[Path]) -> dict:
    """How many masks are binary, 0/1 or soft (`sodlab.data.io.mask_kind`), with the first
    file of each kind that is not binary. Reads every mask: a wrong mask format silently
    ruins every score, so it is worth the time."""
    from ..data.io import mask_kind, mask_levels

    kinds = {"binary": 0, "zero_one": 0, "soft": 0}
    examples: dict[str, str] = {}
    for path in paths:
        kind = mask_kind(mask_levels(path))
        kinds[kind] += 1
        if kind != "binary":
            examples.setdefault(kind, path.name)
    return {**kinds, "examples": examples}


def _samples(args: argparse.Namespace) -> int:
    if args.per_category < 1:
        raise DataError("--per-category must be at least 1")
    out = Path(args.out).expanduser()
    if out.suffix.lower() != ".png":  # the name `savefig` writes
        out = out.with_name(out.name + ".png")
    if out.exists() and not args.overwrite:  # before drawing: the check is cheap, the figure is not
        raise DataError(f"{out}: file exists; pass --overwrite to replace it")
    from ..viz.io import savefig
    from ..viz.samples import sample_grid

    fig = sample_grid(args.root, per_category=args.per_category, split=args.split)
    path = savefig(fig, out, dpi=args.dpi, close=True)
    print(path)
    return 0


def run(args: argparse.Namespace) -> int:
    return {"synth": _synth, "check": _check, "samples": _samples}[args.data_command](args)
