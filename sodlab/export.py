"""Export a model to ONNX (checked against onnxruntime) and TorchScript.

The exported graph is the inference-optimised model (`sodlab.fast.optimize_for_inference`,
BatchNorm folded, gOctConv blocks fused) in the default memory layout, so it is smaller and
faster than a graph of the plain model, and computes the same logits. Files are written
atomically: to a temporary file beside the target, renamed into place once complete.
"""
from __future__ import annotations

import logging
import math
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .atomic import atomic_path
from .errors import SodlabError
from .fast import optimize_for_inference
from .models._weights import first_non_finite

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17


class ExportError(SodlabError):
    """Export failed, or the exported model disagrees with PyTorch."""


@contextmanager
def _atomic_target(path: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ExportError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    with atomic_path(path) as tmp:
        yield tmp


def _export_module(model: nn.Module) -> nn.Module:
    """The module that is traced: folded, default layout, eval, no gradients. A model holding
    NaN or inf is refused: its file would compute NaN everywhere."""
    bad = first_non_finite(model.state_dict())
    if bad is not None:
        raise ExportError(f"{type(model).__name__} weight {bad!r} holds NaN or inf; refusing to export it")
    return optimize_for_inference(model, channels_last=False)


def _check_parity(err: float, atol: float, fmt: str) -> None:
    """``err`` within ``atol``; NaN (non-finite outputs) never passes."""
    if math.isnan(err):
        raise ExportError(f"{fmt} model or PyTorch gives NaN or inf outputs; nothing was written")
    if err > atol:
        raise ExportError(f"{fmt} model disagrees with PyTorch: max |difference| {err:.3g} > {atol:g}")


def export_onnx(
    model: nn.Module,
    path: str | Path,
    size: int | tuple[int, int] = 224,
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    check: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Write ``model`` as ONNX to ``path`` and (``check``) verify it with onnxruntime.

    Args:
        model: a sodlab model (any module taking an (N, 3, H, W) image batch).
        size: the example input side (or (H, W)); with ``dynamic=False`` the only size the
            file accepts.
        dynamic: batch, height and width become dynamic axes (CSNet needs sides that are
            multiples of 16).
        opset: ONNX operator set.
        overwrite: replace an existing file.
        check: run the file in onnxruntime on the example size (and, when dynamic, on a
            second size and batch) and require logits within ``atol`` of PyTorch's.

    Raises:
        ExportError: the file exists (without ``overwrite``), export failed, or the check failed.
    """
    h, w = (size, size) if isinstance(size, int) else size
    module = _export_module(model)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    path = Path(path)
    with _atomic_target(path, overwrite) as tmp:
        with warnings.catch_warnings():
            # The tracer warns about Python-side shape checks; they are constant for valid inputs.
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(module, (x,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes=axes, opset_version=opset, dynamo=False)
            except Exception as exc:
                raise ExportError(f"ONNX export of {type(model).__name__} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from exc
        if check:
            sizes = [(1, h, w)]
            if dynamic:
                sizes.append((2, h + 32 if h > 32 else 2 * h, w - 16 if w > 32 else w + 16))
            err = onnx_parity(tmp, model, sizes)
            _check_parity(err, atol, "ONNX")
            log.info("onnxruntime parity: max |difference| %.2e over sizes %s", err, sizes)
    return path


def onnx_session(path: str | Path, threads: Optional[int] = None):
    """An onnxruntime CPU session for ``path`` (``threads`` intra-op threads if given)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ExportError("onnxruntime is not installed (pip install onnxruntime)") from exc
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


@torch.no_grad()
def onnx_parity(path: str | Path, model: nn.Module, sizes: Sequence[tuple[int, int, int]] = ((1, 224, 224),), seed: int = 0) -> float:
    """Largest |logit difference| between onnxruntime on ``path`` and ``model.eval()``
    over random inputs of the given (batch, height, width) sizes; NaN when either side gives
    a non-finite logit (a NaN must never compare as no difference)."""
    sess = onnx_session(path)
    name = sess.get_inputs()[0].name
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    try:
        for n, h, w in sizes:
            x = torch.randn(n, 3, h, w, generator=g)
            ref = model(x).float().numpy()
            got = sess.run(None, {name: x.numpy()})[0]
            if got.shape != ref.shape:
                raise ExportError(f"ONNX output shape {got.shape} != PyTorch {ref.shape} for input {(n, 3, h, w)}")
            if not (np.isfinite(got).all() and np.isfinite(ref).all()):
                return math.nan
            worst = max(worst, float(np.abs(got - ref).max()))
    finally:
        model.train(was_training)
    return worst


def export_torchscript(model: nn.Module, path: str | Path, size: int | tuple[int, int] = 224, overwrite: bool = False,
                       check: bool = True, atol: float = 1e-4) -> Path:
    """Write the optimised ``model`` as a traced TorchScript file (``torch.jit.load`` reads it).

    The trace records no Python control flow; CSNet's is shape checks only, so the file
    accepts other batch sizes and sides that are multiples of 16 (``check`` verifies one).
    """
    h, w = (size, size) if isinstance(size, int) else size
    module = _export_module(model)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    path = Path(path)
    with _atomic_target(path, overwrite) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                traced = torch.jit.trace(module, (x,), check_trace=False)
                traced.save(str(tmp))
            except Exception as exc:
                raise ExportError(f"TorchScript export of {type(model).__name__} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from exc
        if check:
            loaded = torch.jit.load(str(tmp))
            err = 0.0
            g = torch.Generator().manual_seed(1)
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    for n, hh, ww in ((1, h, w), (2, h + 32, w + 16)):
                        xx = torch.randn(n, 3, hh, ww, generator=g)
                        got, ref = loaded(xx), model(xx)
                        if not (torch.isfinite(got).all() and torch.isfinite(ref).all()):
                            err = math.nan
                            break
                        err = max(err, float((got - ref).abs().max()))
            finally:
                model.train(was_training)
            _check_parity(err, atol, "TorchScript")
    return path
