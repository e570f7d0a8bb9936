"""`sodlab predict`: saliency maps for image files and folders."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import DataError, SodlabError

NAME = "predict"
HELP = "write one saliency map (PNG) per input image"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    p.add_argument("--model", default="csnet-L-x2", help="registry name; for the authors' .pth.tar it supplies the layer configuration (default: csnet-L-x2)")
    p.add_argument("--weights", required=True, help="a sodlab checkpoint or the authors' .pth.tar")
    p.add_argument("--layer-config", default=None, help="the authors' layer configuration (.bin or JSON) for their checkpoint")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
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


def check_size_arg(size) -> None:
    """Refuse a ``--size`` CSNet cannot take (``None``, meaning the default, passes)."""
    from ..models.csnet import INPUT_MULTIPLE, is_input_side

    if size is not None and not is_input_side(size):
        raise SodlabError(f"--size must be a positive multiple of {INPUT_MULTIPLE}, got {size}")


def maybe_optimize(model, enabled: bool):
    """The inference-optimised equivalent of ``model`` (folded, traced per input shape) when
    sodlab.fast is available."""
    if not enabled:
        return model
    try:
        from ..fast import optimize_for_inference
    except ImportError:
        return model
    return optimize_for_inference(model, jit=True)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..checkpoint import load_weights
    from ..data.io import read_image, write_png_atomic
    from ..inference import input_side, predict_batch

    check_size_arg(args.size)
    files = collect_inputs(args.paths)
    out_dir = Path(args.out)
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
    model = load_weights(args.weights, args.model, args.layer_config)
    size = input_side(args.size, model)
    model = maybe_optimize(model, not args.no_optimize)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    bar = tqdm(total=len(files), unit="img", desc="predict", disable=None)
    for start in range(0, len(files), args.batch_size):
        chunk, images = [], []
        for f in files[start:start + args.batch_size]:
            try:
                images.append(read_image(f))
                chunk.append(f)
            except SodlabError as exc:
                failed += 1
                print(f"sodlab predict: skipped {f}: {exc}", file=sys.stderr)
                bar.update(1)
        if not images:
            continue
        maps = predict_batch(model, images, size=size, device=args.device, batch_size=args.batch_size)
        for f, sal in zip(chunk, maps):
            write_png_atomic(targets[f], np.asarray(sal))
            bar.update(1)
    bar.close()
    written = len(files) - failed
    log.info("wrote %d map(s) to %s%s", written, out_dir, f"; {failed} input(s) failed" if failed else "")
    return 1 if failed else 0


def resume_hint(args: argparse.Namespace) -> str:
    return "add --skip-existing to the same command to write only the maps still missing"
