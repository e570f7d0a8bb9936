"""Inference and training-step speed of CSNet-L-x2 at 224x224 on CPU, against the authors' code.

    python benchmarks/bench_inference.py [--quick] [--threads 2] [--reference DIR] [--compile]

Implementations timed in the same run, on the same weights and the same input:

* authors (per-branch): `authors_baseline.AuthorsCSNet`, a faithful transcription of their
  released CSNet (one convolution per input/output branch pair, BatchNorm and PReLU as separate
  calls, the x100 weight gain applied on every call): the baseline of every ratio;
* sodlab CSNet (plain): sodlab's model as the checkpoint loaders build it;
* sodlab optimize_for_inference (eager): `sodlab.fast.optimize_for_inference`;
* the same run as TorchScript graphs traced once per input shape (``jit=True``, what
  ``sodlab predict`` and ``sodlab eval`` use; tracing happens before any measurement);
* the same under ``torch.compile`` (only with ``--compile``: the first call compiles C++ kernels,
  minutes on two cores);
* onnxruntime: the file `sodlab.export.export_onnx` writes (dynamic axes), run by onnxruntime's
  CPU provider with the same number of intra-op threads.

Weights: the authors' released ``csnet-L-x2.pth.tar`` when the reference folder has it (their
checkpoint loads into their model with ``strict=True`` and into sodlab's with its key mapping),
otherwise random weights with the ``csnet-L-x2`` preset, copied into the baseline with
`sodlab.models.official.csnet_to_official`. Before any timing, every implementation's logits
must equal the baseline's to 1e-4; the run stops otherwise.

Reported per implementation and batch (1 and 8): images/s (batch / median seconds per call; the
implementations are timed in turns after warm-up, so background load hits all of them alike),
the ratio to the baseline, peak memory (see `PeakRSS`), the multiply-accumulates one image
executes (`sodlab.profiling.count_macs`) and the MAC rate they imply, next to this machine's
float32 matmul rate measured in the same run. Then a training step (batch 8: forward, BCE,
backward, Adam step) of the plain model against `sodlab.fast.optimize_for_training`, with the
largest gradient difference between them on one step from identical weights (float32 at the
benchmark size, float64 on a small batch).

oneDNN's kernel cache is raised to 8192 entries (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, unless set)
so that the implementations timed in turns do not evict each other's compiled kernels.

The report is printed and written to ``results/benchmarks/inference.md``.
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import datetime
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

# oneDNN keeps its compiled convolution kernels in an LRU cache of 1024 by default. The paths timed
# here in turns need more than that together (plain + fused training step: about 1200), so each
# turn would evict and recompile the kernels of the path before it, which a process running one
# model never does (it cost the fused step 0.5-0.7 s of its 2.0 s). Read when oneDNN creates its
# first kernel, so it must be set before torch runs anything.
PRIMITIVE_CACHE = int(os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8192"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from authors_baseline import AuthorsCSNet, load_authors_csnet  # noqa: E402

from sodlab import create_model  # noqa: E402
from sodlab.atomic import atomic_path  # noqa: E402
from sodlab.export import export_onnx, onnx_session  # noqa: E402
from sodlab.fast import TracedModel, optimize_for_inference, optimize_for_training  # noqa: E402
from sodlab.fast.norm_act import numba_available  # noqa: E402
from sodlab.models.official import csnet_to_official, load_official_csnet, read_layer_config  # noqa: E402
from sodlab.profiling import count_macs  # noqa: E402

MODEL = "csnet-L-x2"
ATOL = 1e-4
DEFAULT_REFERENCE = Path(os.environ.get("SODLAB_REFERENCE", REPO.parent / "shared" / "reference"))
TARGETS = {1: 3.0, 8: 2.5, "train": 1.5}  # issue 7: speed-up over the baseline (training: over the plain model)

BASELINE = "authors (per-branch, baseline)"
PLAIN = "sodlab CSNet (plain)"
EAGER = "sodlab optimize_for_inference (eager)"
TRACED = "sodlab optimize_for_inference(jit=True) (TorchScript; predict/eval)"
COMPILED = "sodlab optimize_for_inference + torch.compile"
ORT = "onnxruntime (sodlab export, CPU provider)"
TRAIN_PATHS = {
    "plain": "sodlab CSNet (plain)",
    "fused": "sodlab optimize_for_training (default: channels-last on CPU)",
    "fused-nchw": "sodlab optimize_for_training(channels_last=False)",
}


# --- memory -------------------------------------------------------------------------------------
class PeakRSS:
    """Peak resident-set growth of a call, in MiB (Linux with glibc; ``None`` elsewhere).

    Measured as VmHWM (reset to the current RSS through /proc/self/clear_refs just before the
    call) minus VmRSS before it. All measurements happen before any timing, with glibc's mmap
    threshold pinned at 128 KiB so every tensor is its own mapping, returned when freed: the
    growth is then the call's peak of live memory, not heap pages that earlier calls left
    behind. `timing` then raises the thresholds to glibc's own dynamic maximum, so that timed
    calls reuse memory as a long-running process does instead of paying page faults for
    every activation.
    """

    LOW, HIGH = 128 * 1024, 32 * 1024 * 1024
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3

    def __init__(self) -> None:
        self.ok = Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()
        try:
            self.libc: Any = ctypes.CDLL("libc.so.6")
            if not (hasattr(self.libc, "mallopt") and hasattr(self.libc, "malloc_trim")):
                self.libc = None
        except OSError:
            self.libc = None
        if self.ok:
            try:
                self._reset()
            except OSError:
                self.ok = False
        self._thresholds(self.LOW)

    def _thresholds(self, mmap: int) -> None:
        if self.libc is not None:
            self.libc.mallopt(self.M_MMAP_THRESHOLD, mmap)
            self.libc.mallopt(self.M_TRIM_THRESHOLD, 2 * mmap)

    def timing(self) -> None:
        self._thresholds(self.HIGH)

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise OSError(key)

    def _reset(self) -> int:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        return self._status("VmRSS")

    def measure(self, fn: Callable[[], object]) -> Optional[float]:
        gc.collect()
        if self.libc is not None:
            self.libc.malloc_trim(0)
        if not self.ok:
            fn()
            return None
        base = self._reset()
        fn()
        return (self._status("VmHWM") - base) / 2**20


# --- models ---------------------------------------------------------------------------------------
def calibrated_random(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm affine and PReLU slopes, BatchNorm statistics from one random batch:
    logits of order one that depend on every layer (for the parity check; timing does not care)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.momentum = 1.0
        model.train()(torch.randn(2, 3, 96, 96, generator=g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
    return model.eval()


def build_models(reference: Path) -> tuple[nn.Module, nn.Module, str]:
    """(authors' baseline, sodlab CSNet, where the weights came from), both in eval mode."""
    ckpt = reference / "official" / f"{MODEL}.pth.tar"
    config = reference / f"{MODEL}_layer_config.json"
    if ckpt.is_file() and config.is_file():
        baseline = load_authors_csnet(str(ckpt), read_layer_config(config))
        ours = load_official_csnet(ckpt, config).eval()
        return baseline, ours, f"the authors' released checkpoint ({ckpt})"
    print(f"note: no authors' checkpoint at {ckpt} (with {config.name}): timing random weights with the "
          f"{MODEL} preset, copied into the baseline", file=sys.stderr)
    torch.manual_seed(0)
    ours = calibrated_random(create_model(MODEL))
    state, layer_config = csnet_to_official(ours)
    baseline = AuthorsCSNet(layer_config)
    baseline.load_state_dict(state, strict=True)
    return baseline.eval(), ours, f"random weights, {MODEL} preset (no authors' checkpoint under {reference})"


# --- timing -----------------------------------------------------------------------------------------
def matmul_gmacs(repeats: int, n: int = 2048) -> float:
    """This machine's float32 matmul rate (GMAC/s) with the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - t)
    return n**3 / statistics.median(times) / 1e9


def round_robin(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in turns after ``warmup`` calls each."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def torch_runner(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run():
        with torch.inference_mode():
            return model(x)
    return run


def ort_runner(path: Path, x: torch.Tensor, threads: int, arena: bool = True) -> Callable[[], object]:
    """A fresh onnxruntime session on ``x``; without ``arena`` its buffers come from malloc
    (so `PeakRSS` sees them) instead of onnxruntime's growing, never-shrinking arena."""
    if arena:
        sess = onnx_session(path, threads=threads)
    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.enable_cpu_mem_arena = False
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    name, arr = sess.get_inputs()[0].name, x.numpy()
    return lambda: sess.run(None, {name: arr})


def check_parity(impls: dict[str, Callable[[torch.Tensor], np.ndarray]], baseline: nn.Module, x: torch.Tensor) -> dict[str, float]:
    with torch.inference_mode():
        ref = baseline(x).numpy()
    errs = {}
    for name, fn in impls.items():
        got = fn(x)
        errs[name] = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
    bad = {k: v for k, v in errs.items() if not v <= ATOL}
    if bad:
        raise SystemExit(f"error: logits differ from the authors' baseline by more than {ATOL:g}: "
                         + ", ".join(f"{k}: {v:.3g}" for k, v in bad.items()) + "; not timing a different computation")
    return errs


# --- inference --------------------------------------------------------------------------------------------
class InferenceBench:
    def __init__(self, baseline: nn.Module, ours: nn.Module, size: int, threads: int, compile: bool, workdir: Path) -> None:
        self.size, self.threads = size, threads
        fast = optimize_for_inference(ours)
        # TracedModel(fast) is what optimize_for_inference(ours, jit=True) returns, without folding twice
        self.models: dict[str, nn.Module] = {BASELINE: baseline, PLAIN: ours, EAGER: fast, TRACED: TracedModel(fast).eval()}
        if compile:
            self.models[COMPILED] = optimize_for_inference(ours, compile=True)
        # MACs each implementation executes per image (onnxruntime runs the folded graph).
        self.macs = {k: count_macs(fast if k in (COMPILED, TRACED) else m, size) for k, m in self.models.items()}
        self.macs[ORT] = self.macs[EAGER]
        self.onnx = export_onnx(ours, workdir / "csnet.onnx", size=size, dynamic=True, check=False)
        self.names = [*self.models, ORT]
        self.inputs = {b: torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(3)) for b in (1, 8)}
        self.peak: dict[tuple[str, int], Optional[float]] = {}
        self.secs: dict[tuple[str, int], float] = {}
        self.notes: list[str] = []

    def parity(self) -> dict[str, float]:
        """Every implementation against the baseline on a 2-image batch (compiles, if asked)."""
        fns: dict[str, Callable[[torch.Tensor], np.ndarray]] = {}
        for k, m in self.models.items():
            if k != BASELINE:
                def via_torch(x, m=m):
                    with torch.inference_mode():
                        return m(x).numpy()
                fns[k] = via_torch
        sess = onnx_session(self.onnx, threads=self.threads)
        fns[ORT] = lambda x: sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        t0 = time.perf_counter()
        errs = check_parity(fns, self.models[BASELINE], torch.randn(2, 3, self.size, self.size, generator=torch.Generator().manual_seed(2)))
        if COMPILED in self.models:
            self.notes.append(f"torch.compile: the parity check (its first calls, compilation included) took {time.perf_counter() - t0:.0f} s")
        t1 = time.perf_counter()
        with torch.inference_mode():
            for x in self.inputs.values():  # one trace per input shape, before any measurement
                self.models[TRACED](x)
        self.notes.append(f"TorchScript: tracing and freezing at batch 1 and 8 took {time.perf_counter() - t1:.1f} s")
        return errs

    def runners(self, batch: int, arena: bool = True) -> dict[str, Callable[[], object]]:
        fns = {k: torch_runner(m, self.inputs[batch]) for k, m in self.models.items()}
        fns[ORT] = ort_runner(self.onnx, self.inputs[batch], self.threads, arena=arena)
        return fns

    def measure_memory(self, mem: PeakRSS) -> None:
        """Peak RSS growth of the first call at each batch size (onnxruntime: arena off).
        The parity check ran every implementation before, so this holds little one-time
        set-up: a few MiB of per-shape oneDNN primitives, against a steady-state call."""
        for b in (1, 8):
            for k, fn in self.runners(b, arena=False).items():
                self.peak[k, b] = mem.measure(fn)

    def time(self, batch: int, warmup: int, repeats: int) -> None:
        fns = self.runners(batch)
        for k, s in round_robin(fns, warmup, repeats).items():
            self.secs[k, batch] = s

    def rows(self, gmacs_peak: float) -> list[tuple]:
        out = []
        for b in (1, 8):
            for k in self.names:
                ips = b / self.secs[k, b]
                rate = self.macs[k] * ips / 1e9
                out.append((k, b, ips, self.secs[BASELINE, b] / self.secs[k, b], self.peak.get((k, b)), self.macs[k] / 1e6, rate,
                            100 * rate / gmacs_peak))
        return out


# --- training step ------------------------------------------------------------------------------------
def _make_trainable(model: nn.Module, key: str) -> Callable:
    if key == "plain":
        return model
    return optimize_for_training(model, channels_last=None if key == "fused" else False)


class TrainingBench:
    """One plain and two fused training paths, each on its own copy of the same weights."""

    def __init__(self, ours: nn.Module, batch: int, size: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(batch, 3, size, size, generator=g)
        self.y = (torch.rand(batch, 1, size, size, generator=g) > 0.5).float()
        self.ours, self.batch = ours, batch
        self.nets: dict[str, tuple[Callable, list[nn.Parameter]]] = {}
        for key in TRAIN_PATHS:
            model = copy.deepcopy(ours).train()
            self.nets[key] = (_make_trainable(model, key), list(model.parameters()))
        self.opts = {k: torch.optim.Adam(p, lr=1e-4, betas=(0.9, 0.99), weight_decay=5e-3) for k, (_, p) in self.nets.items()}
        self.res: dict[str, dict[str, Any]] = {k: {} for k in TRAIN_PATHS}

    def _backward(self, k: str) -> None:
        net, params = self.nets[k]
        for p in params:
            p.grad = None
        F.binary_cross_entropy_with_logits(net(self.x), self.y).backward()

    def first_step(self, mem: PeakRSS) -> None:
        """One step from identical weights on each path: peak RSS growth (forward, backward
        and Adam's first step, which allocates its state) and gradients against the plain path."""
        grads: dict[str, list[torch.Tensor]] = {}
        for k in self.nets:
            def step(k=k):
                self._backward(k)
                grads[k] = [p.grad.clone() for p in self.nets[k][1]]
                self.opts[k].step()
            self.res[k]["peak"] = mem.measure(step)
        self.scale = max(float(a.abs().max()) for a in grads["plain"])
        for k in self.nets:
            self.res[k]["grad_diff"] = max(float((a - b).abs().max()) for a, b in zip(grads["plain"], grads[k]))
        self.float64 = float64_gradients(self.ours)

    def time(self, repeats: int) -> None:
        def step(k: str) -> Callable[[], None]:
            def run() -> None:
                self._backward(k)
                self.opts[k].step()
            return run
        for k, s in round_robin({k: step(k) for k in self.nets}, 0, repeats).items():
            self.res[k]["secs"] = s


def _gradients(model: nn.Module, key: str, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.train()
    F.binary_cross_entropy_with_logits(_make_trainable(model, key)(x), y).backward()
    return [p.grad.double() for p in model.parameters()]


def float64_gradients(ours: nn.Module) -> dict[str, float]:
    """Max |gradient - plain model's| in float64 on a small batch (2x3x64x64) for each fused
    path (the same maths: ~1e-12), and the plain float32 model's own deviation from float64
    there: the float32 rounding level to read the float32 differences against."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 1, 64, 64, generator=g) > 0.5).double()
    ref = _gradients(copy.deepcopy(ours).double(), "plain", x, y)
    out = {k: max(float((a - b).abs().max()) for a, b in zip(ref, _gradients(copy.deepcopy(ours).double(), k, x, y)))
           for k in TRAIN_PATHS if k != "plain"}
    plain32 = _gradients(copy.deepcopy(ours), "plain", x.float(), y.float())
    out["plain32"] = max(float((a - b).abs().max()) for a, b in zip(ref, plain32))
    out["scale"] = max(float(a.abs().max()) for a in ref)
    return out


# --- report ---------------------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt_mem(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def progress(t0: float, what: str) -> None:
    print(f"[{time.perf_counter() - t0:6.1f} s] {what}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repeats: a smoke run (about a minute on two idle cores)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for PyTorch and onnxruntime (default 2)")
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                    help=f"folder with official/{MODEL}.pth.tar and {MODEL}_layer_config.json (default {DEFAULT_REFERENCE})")
    ap.add_argument("--size", type=int, default=224, help="input side, a multiple of 16 (default 224)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed calls per implementation and batch (default 10 at batch 1 and 6 at batch 8; --quick 3 and 2)")
    ap.add_argument("--compile", action="store_true", help="also time optimize_for_inference under torch.compile (compiles C++: slow to start)")
    ap.add_argument("--parts", nargs="+", choices=("inference", "training"), default=["inference", "training"],
                    help="what to measure (default both)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "inference.md", help="markdown file to write")
    args = ap.parse_args(argv)
    if args.size < 16 or args.size % 16:
        ap.error("--size must be a positive multiple of 16")
    repeats = args.repeats or (3 if args.quick else 10)
    repeats_b8 = args.repeats or (2 if args.quick else 6)
    warmup = 1 if args.quick else 2
    # steps are memory-bound and the VM's bandwidth drifts: as many turns as batch-1 calls
    train_repeats = 2 if args.quick else max(2, repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mem = PeakRSS()
    t0 = time.perf_counter()
    size = args.size
    do_inf, do_train = "inference" in args.parts, "training" in args.parts

    baseline, ours, source = build_models(args.reference)
    progress(t0, f"models ready ({source})")
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as workdir:
        # 1. Set-up, parity and every memory measurement (before any timing: see PeakRSS).
        if do_inf:
            inf = InferenceBench(baseline, ours, size, args.threads, args.compile, Path(workdir))
            progress(t0, "MACs counted, ONNX file written")
            errs = inf.parity()
            progress(t0, "parity checked: " + ", ".join(f"{v:.1e}" for v in errs.values()))
            inf.measure_memory(mem)
            progress(t0, "inference memory measured")
        if do_train:
            train = TrainingBench(ours, 8, size)
            train.first_step(mem)
            progress(t0, "training: gradients compared, memory measured")
        # 2. Timing.
        mem.timing()
        gmacs_peak = matmul_gmacs(repeats)
        if do_inf:
            for b in (1, 8):
                inf.time(b, warmup, repeats if b == 1 else repeats_b8)
                progress(t0, f"inference at batch {b} timed")
        if do_train:
            train.time(train_repeats)
            progress(t0, "training step timed")

    # --- the report ---
    lines = [
        f"# Inference and training speed: CSNet-L-x2, {size}x{size}, float32, CPU, {args.threads} threads",
        "",
        f"- {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; {cpu_name()}, {os.cpu_count()} logical CPUs; "
        f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, Python {platform.python_version()}",
        f"- weights: {source}",
        f"- {'quick smoke run' if args.quick else 'full run'}: "
        + "; ".join(([f"inference: median of {repeats} (batch 1) / {repeats_b8} (batch 8) calls per implementation after "
                      f"{warmup} warm-up call(s) each, implementations timed in turns"] if do_inf else [])
                    + ([f"training: median of {train_repeats} steps per path after one, in turns"] if do_train else [])),
        f"- machine load before the run (1-minute load average): {load:.2f}; OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}",
        f"- oneDNN primitive cache: {PRIMITIVE_CACHE} kernels (ONEDNN_PRIMITIVE_CACHE_CAPACITY; oneDNN's default 1024 "
        "is fewer than the implementations timed in turns use together, and each turn would recompile the others' kernels)",
        f"- float32 matmul (2048x2048, same threads): {gmacs_peak:.1f} GMAC/s: the hardware reference for the GMAC/s column",
        "- peak RSS: resident-set growth during the first call at that batch size, after the parity check at batch 2 "
        "(a few MiB more than a steady-state call; training: during the first step, Adam's state included), MiB: Linux VmHWM, reset through /proc/self/clear_refs, minus VmRSS before the call, measured "
        "before any timing with glibc's mmap threshold at 128 KiB so that freed tensors leave the resident set; "
        "onnxruntime measured with its memory arena off (timed with it on)",
    ]
    verdicts: list[str] = []
    if do_inf:
        rows = inf.rows(gmacs_peak)
        lines += [
            f"- parity before timing, max |logit - baseline's| on 2x3x{size}x{size}: " + "; ".join(f"{k}: {v:.1e}" for k, v in errs.items()),
            "- MMAC/image: multiply-accumulates the implementation executes (sodlab.profiling.count_macs; onnxruntime runs "
            "the folded graph, counted as optimize_for_inference).",
            *[f"- {n}" for n in inf.notes],
            "",
            "## Inference",
            "",
            "| implementation | batch | images/s | vs authors | peak RSS (MiB) | MMAC/image | GMAC/s | % of matmul |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for k, b, ips, ratio, peak, mmac, rate, pct in rows:
            lines.append(f"| {k} | {b} | {ips:.2f} | {ratio:.2f}x | {fmt_mem(peak)} | {mmac:.0f} | {rate:.1f} | {pct:.1f}% |")
        if not args.compile:
            lines += ["", "torch.compile was not timed (pass --compile; its first call compiles C++ kernels)."]
        for b in (1, 8):
            for k in [k for k in inf.names if k not in (BASELINE, PLAIN)]:
                ratio = next(r[3] for r in rows if r[0] == k and r[1] == b)
                verdicts.append(f"- batch {b}, {k}: at least {TARGETS[b]:g}x the baseline: "
                                f"{'met' if ratio >= TARGETS[b] else 'missed'} ({ratio:.2f}x)")
    if do_train:
        res, f64 = train.res, train.float64
        base = res["plain"]["secs"]
        lines += [
            "",
            f"## Training step (batch 8, {size}x{size}: forward, BCE, backward, Adam step)",
            "",
            "Gradient difference: one step from identical weights, max |gradient - plain model's gradient| over all "
            f"parameters: float32 on this batch (relative: divided by the largest gradient, {train.scale:.3g}) and float64 "
            f"on 2x3x64x64. For scale: on that small batch the plain float32 model's gradients are {f64['plain32']:.1e} "
            f"from its own float64 ones (largest gradient {f64['scale']:.3g}).",
            "",
            "BatchNorm + PReLU in the channels-last path: "
            + ("numba kernels (sodlab.fast._norm_act_kernels)." if numba_available() else "torch operations (numba unavailable)."),
            "",
            "| implementation | batch | images/s | vs plain | peak RSS (MiB) | max abs grad diff, float32 | relative | float64 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for k, label in TRAIN_PATHS.items():
            r = res[k]
            gd, gr, g64 = ("-", "-", "-") if k == "plain" else (f"{r['grad_diff']:.1e}", f"{r['grad_diff'] / train.scale:.1e}", f"{f64[k]:.1e}")
            lines.append(f"| {label} | 8 | {8 / r['secs']:.2f} | {base / r['secs']:.2f}x | {fmt_mem(r['peak'])} | {gd} | {gr} | {g64} |")
        for k in ("fused", "fused-nchw"):
            tr = base / res[k]["secs"]
            verdicts.append(f"- training step, {TRAIN_PATHS[k]}: at least {TARGETS['train']:g}x the plain model: "
                            f"{'met' if tr >= TARGETS['train'] else 'missed'} ({tr:.2f}x)")
    lines += ["", "## Targets of issue 7", "", *verdicts]
    if args.quick:
        lines += ["", "A quick run: few repeats, to show that everything runs; use the full run for numbers to quote."]
    lines.append(f"\n({time.perf_counter() - t0:.0f} s in all)")
    text = "\n".join(lines) + "\n"
    print(text)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
