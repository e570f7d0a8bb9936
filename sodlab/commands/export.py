"""`sodlab export`: a trained model to ONNX (checked with onnxruntime) and TorchScript."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import SodlabError
from ._common import check_output_file, check_size_arg, load_model

NAME = "export"
HELP = "export a model to ONNX (verified with onnxruntime) and optionally TorchScript"

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="a sodlab checkpoint or the authors' .pth.tar")
    p.add_argument("--model", default=None, help="for the authors' .pth.tar: the preset giving its layer configuration (csnet-L-x1, csnet-L-x2)")
    p.add_argument("--layer-config", default=None, help="for the authors' .pth.tar: their layer configuration (.bin or JSON)")
    p.add_argument("--onnx", default=None, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--torchscript", default=None, metavar="OUT.pt", help="TorchScript file to write (traced)")
    p.add_argument("--size", type=int, default=224, help="example input side, a multiple of 16 (default 224)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width in the ONNX file (sides must be multiples of 16)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime / reload parity check")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")


def run(args: argparse.Namespace) -> int:
    from ..export import export_onnx, export_torchscript

    if args.onnx is None and args.torchscript is None:
        raise SodlabError("nothing to do: give --onnx OUT.onnx and/or --torchscript OUT.pt")
    check_size_arg(args.size)
    # Refuse before the (slow) export rather than after.
    for flag, out in (("--onnx", args.onnx), ("--torchscript", args.torchscript)):
        if out is not None:
            check_output_file(out, flag, args.overwrite)
    if args.onnx is not None and args.torchscript is not None and Path(args.onnx).resolve() == Path(args.torchscript).resolve():
        raise SodlabError(f"--onnx and --torchscript name the same file {args.onnx}")
    model = load_model(args)
    if args.onnx is not None:
        path = export_onnx(model, args.onnx, size=args.size, dynamic=args.dynamic, opset=args.opset,
                           overwrite=args.overwrite, check=not args.no_check)
        log.info("wrote %s%s", path, " (dynamic batch/height/width)" if args.dynamic else f" ({args.size}x{args.size})")
    if args.torchscript is not None:
        path = export_torchscript(model, args.torchscript, size=args.size, overwrite=args.overwrite, check=not args.no_check)
        log.info("wrote %s", path)
    return 0
