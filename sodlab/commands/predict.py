"""`sodlab predict`: saliency maps for image files and folders."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import DataError, ImageReadError, SodlabError
from ._common import check_output_dir, check_size_arg, load_model, maybe_optimize, naming_weights

NAME = "predict"
HELP = "write one saliency map (PNG) per input image"
DESCRIPTION = (
    "Write one saliency map (PNG, named after the image) per input image. Before any work, every "
    "input's header is read and --out is checked: an unreadable image or an unusable --out is one "
    "error line naming it, exit code 2, and nothing is written. An image whose header is fine but "
    "whose pixel data is damaged is found while decoding: the run stops there with exit code 2; the "
    "maps written before it are complete (each is written whole or not at all), and after fixing "
    "or removing the file, --skip-existing writes the rest."
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    p.add_argument("--model", default="csnet-L-x2", help="registry name; for the authors' .pth.tar it supplies the layer configuration (default: csnet-L-x2)")
    p.add_argument("--weights", required=True, help="a sodlab checkpoint or the authors' .pth.tar")
    p.add_argument("--layer-config", default=None, help="the authors' layer configuration (.bin or JSON) for their checkpoint")
    p.add_argument("--out", required=True, help="output folder (created if missing; checked before any work)")
    p.add_argument("--size", type=int, default=None, help="network input side (multiple of 16; default: the side a sodlab checkpoint was trained at, else 224)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true", help="replace maps that already exist in --out")
    again.add_argument("--skip-existing", action="store_true",
                       help="leave maps that already exist in --out and write the missing ones (to finish an "
                            "interrupted run: each map is written whole or not at all)")
    p.add_argument("--no-optimize", action="store_true", help="run the plain model instead of the inference-optimised one")


def collect_inputs(paths: list[str]) -> list[Path]:
    """Image files named directly, plus the images inside named folders (sorted)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not files:
        raise DataError(f"no images found in {', '.join(paths)}")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise DataError(f"{stems[f.stem]} and {f} would both be written as {f.stem}.png")
        stems[f.stem] = f
    return files


def check_readable(files: list[Path]) -> None:
    """Every image's header can be read (cheap); else one line naming the first bad file."""
    from ..data.io import image_size

    bad: list[str] = []
    for f in files:
        try:
            image_size(f)
        except ImageReadError as exc:
            # PIL's reason repeats the path the message already starts with
            bad.append(str(exc).replace(f" {str(f)!r}", ""))
    if bad:
        more = f" (and {len(bad) - 1} more unreadable input(s))" if len(bad) > 1 else ""
        raise ImageReadError(f"{bad[0]}{more}; nothing was written")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..checkpoint import describe_model, model_task
    from ..data.io import read_image, write_png_atomic
    from ..inference import input_side, predict_batch

    check_size_arg(args.size)
    if args.batch_size < 1:
        raise SodlabError(f"--batch-size must be at least 1, got {args.batch_size}")
    out_dir = check_output_dir(args.out)
    files = collect_inputs(args.paths)
    targets = {f: out_dir / f"{f.stem}.png" for f in files}
    existing = [t for t in targets.values() if t.exists()]
    if existing and args.skip_existing:
        done = set(existing)
        files = [f for f in files if targets[f] not in done]
        log.info("%d of %d map(s) already in %s: skipped (--skip-existing)", len(existing), len(targets), out_dir)
        if not files:
            return 0
    elif existing and not args.overwrite:
        raise SodlabError(f"{len(existing)} output(s) already exist, first {existing[0]}; pass --overwrite to replace "
                          "them, or --skip-existing to write only the missing ones")
    check_readable(files)
    model = load_model(args)
    if model_task(model) != "sod":
        raise SodlabError(f"{args.weights} is {describe_model(model)}; sodlab predict writes saliency maps and needs a saliency "
                          f"model (score a classifier with sodlab eval --weights {args.weights} --data DIR)")
    size = input_side(args.size, model)
    model = maybe_optimize(model, not args.no_optimize)
    # The folder is made by the first map written: a run that fails before that leaves nothing.
    with tqdm(total=len(files), unit="img", desc="predict", disable=None) as bar, naming_weights(args.weights):
        for start in range(0, len(files), args.batch_size):
            chunk = files[start:start + args.batch_size]
            images = [read_image(f) for f in chunk]
            maps = predict_batch(model, images, size=size, device=args.device, batch_size=args.batch_size)
            for f, sal in zip(chunk, maps):
                write_png_atomic(targets[f], np.asarray(sal))
                bar.update(1)
    log.info("wrote %d map(s) to %s", len(files), out_dir)
    return 0


def resume_hint(args: argparse.Namespace) -> str:
    return "add --skip-existing to the same command to write only the maps still missing"
