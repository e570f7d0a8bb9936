"""Running the study notebooks headless: each one executed with its parameters injected,
saved with its outputs into ``results/<name>/``, and a summary of the run."""
from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import logging
import time
from pathlib import Path
from queue import Empty
from typing import Any, Callable, Mapping, Optional, Sequence

import nbformat
from nbclient import NotebookClient
from tqdm.auto import tqdm

from ..atomic import atomic_path, write_text_atomic
from ..errors import ConfigError, DataError
from .paths import MODES, default_results_dir, discover_notebooks, select_notebooks
from .source import inject_parameters, parameter_names, read_notebook

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"

# How long one wait on a kernel channel may block before it looks at the socket again.
POLL_SLICE_S = 1.0


def sliced_get_msg(get_msg: Callable[..., Any], slice_s: float = POLL_SLICE_S) -> Callable[..., Any]:
    """Wrap an async channel's ``get_msg(timeout)`` so that no single wait blocks longer than
    ``slice_s``: a wait without a timeout becomes a loop of short waits, and one with a timeout
    keeps its deadline. Why: an asyncio zmq poll without a timeout can miss a message that
    arrived while nobody was polling (its wake-up is edge-triggered), and then waits forever;
    a poll that times out looks at the socket itself. A cell that creates widgets hit this in
    CI: the kernel had answered, the client waited 87 minutes for the answer
    (jupyter/nbclient#312 describes the same hang)."""

    async def get_msg_sliced(timeout: Optional[float] = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_s if deadline is None else min(slice_s, max(0.0, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=left)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return get_msg_sliced


class _SlicedPollClient(NotebookClient):
    """`NotebookClient` whose shell and IOPub waits are `sliced_get_msg` waits."""

    async def async_start_new_kernel_client(self):  # type: ignore[override]
        kc = await super().async_start_new_kernel_client()
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = sliced_get_msg(channel.get_msg)
        return kc


@dataclasses.dataclass
class CellFailure:
    """Where a notebook stopped: the cell (1-based, in the executed notebook), its first
    source line and the exception."""

    cell: int
    first_line: str
    exception: str

    def __str__(self) -> str:
        return f"cell {self.cell} ({self.first_line!r}): {self.exception}"


@dataclasses.dataclass
class NotebookRun:
    name: str
    ok: bool
    seconds: float
    mode: str
    executed: Optional[str] = None
    failure: Optional[CellFailure] = None
    skipped: bool = False

    def describe(self) -> str:
        if self.ok:
            return "skipped (done)" if self.skipped else "ok"
        return f"FAILED at {self.failure}" if self.failure else "FAILED"


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:100]
    return ""


def _find_failure(nb, exc: BaseException) -> CellFailure:
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return CellFailure(i + 1, _first_line(cell.source), f"{out.get('ename')}: {out.get('evalue')}")
    # timeouts and dead kernels leave no error output: blame the last cell that started
    started = [i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("execution", {}).get("iopub.execute_input")]
    i = started[-1] if started else 0
    msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return CellFailure(i + 1, _first_line(nb.cells[i].source) if nb.cells else "", msg)


def execute_notebook(
    script: str | Path,
    params: Mapping[str, Any],
    out_dir: str | Path,
    timeout: Optional[int] = None,
    kernel_name: str = "python3",
    progress: Optional[Callable[[int, int], None]] = None,
) -> NotebookRun:
    """Execute one notebook with ``params`` injected and save it (outputs included, also on
    failure) as ``out_dir/<name>.ipynb``, plus ``out_dir/run.json``. Never raises for an error
    inside the notebook: the returned record says where it failed. An interruption (Ctrl-C,
    which reaches this process, the kernel or both) is recorded the same way and then raised
    as `KeyboardInterrupt`."""
    script = Path(script)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = inject_parameters(read_notebook(script), params)
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    done = [0]

    def on_cell_executed(**_kw) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], n_code)

    client = _SlicedPollClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(out_dir)}},
        record_timing=True,
        on_cell_executed=on_cell_executed,
    )
    t0 = time.perf_counter()
    failure = None
    try:
        client.execute()
    except (Exception, KeyboardInterrupt) as exc:  # cell errors, timeouts, a dead kernel; Ctrl-C here
        failure = _find_failure(nb, exc)
    interrupted = failure is not None and failure.exception.startswith("KeyboardInterrupt")
    seconds = time.perf_counter() - t0
    executed = out_dir / f"{script.stem}.ipynb"
    with atomic_path(executed) as tmp:
        nbformat.write(nb, str(tmp))
    run = NotebookRun(script.stem, failure is None, seconds, str(params.get("mode", "")), str(executed), failure)
    record = dataclasses.asdict(run) | {"params": dict(params), "finished": _dt.datetime.now().isoformat(timespec="seconds")}
    write_text_atomic(out_dir / RUN_RECORD, json.dumps(record, indent=1, default=str) + "\n")
    if interrupted:
        raise KeyboardInterrupt(f"{script.stem} interrupted at {failure}")
    return run


def _already_done(out_dir: Path, params: Mapping[str, Any]) -> Optional[NotebookRun]:
    try:
        rec = json.loads((out_dir / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not rec.get("ok") or rec.get("params") != json.loads(json.dumps(dict(params), default=str)):
        return None
    return NotebookRun(rec["name"], True, float(rec["seconds"]), rec["mode"], rec.get("executed"), None, skipped=True)


def run_studies(
    only: Optional[Sequence[str]] = None,
    mode: str = "quick",
    data_root: Optional[str | Path] = None,
    device: str = "auto",
    results_dir: Optional[str | Path] = None,
    notebooks_dir: Optional[str | Path] = None,
    extra_params: Optional[Mapping[str, Any]] = None,
    timeout: Optional[int] = None,
    resume: bool = False,
    show_progress: bool = True,
) -> list[NotebookRun]:
    """Run the selected notebooks one after another; a failing notebook does not stop the
    others, an interruption (Ctrl-C) does (`KeyboardInterrupt`, raised after ``summary.csv``
    is written). ``resume`` skips notebooks whose last run in ``results_dir`` succeeded with
    the same parameters."""
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    if data_root is not None and not Path(data_root).is_dir():
        raise DataError(f"{data_root}: no such data folder")
    results = Path(results_dir) if results_dir is not None else default_results_dir()
    scripts = select_notebooks(discover_notebooks(notebooks_dir), only)
    extra = dict(extra_params or {})
    known = {p.stem: set(parameter_names(read_notebook(p))) for p in scripts}
    unknown = [k for k in extra if not any(k in names for names in known.values())]
    if unknown:
        raise ConfigError(f"--param {', '.join(unknown)}: no selected notebook has such a parameter")

    runs: list[NotebookRun] = []
    try:
        for script in scripts:
            out_dir = (results / script.stem).resolve()
            params = {
                "mode": mode,
                "data_root": str(Path(data_root).resolve()) if data_root is not None else None,
                "device": device,
                "results_dir": str(out_dir),
            } | {k: v for k, v in extra.items() if k in known[script.stem]}
            if resume and (prev := _already_done(out_dir, params)) is not None:
                log.info("%s: already done in %s mode, skipped (--resume)", script.stem, mode)
                runs.append(prev)
                continue
            bar = tqdm(total=1, desc=script.stem, unit="cell", disable=not show_progress, leave=True)

            def progress(i: int, n: int, bar=bar) -> None:
                bar.total = n
                bar.n = i
                bar.refresh()

            try:
                run = execute_notebook(script, params, out_dir, timeout=timeout, progress=progress)
                bar.set_postfix_str(f"{run.seconds:.0f}s " + ("ok" if run.ok else "FAILED"))
            finally:
                bar.close()
            if not run.ok:
                log.error("%s failed at %s (executed notebook: %s)", run.name, run.failure, run.executed)
            runs.append(run)
    finally:
        write_summary(results)
    return runs


def summary_table(runs: Sequence[NotebookRun]) -> str:
    """A plain-text table: notebook, status, seconds; with the total."""
    width = max([len(r.name) for r in runs] + [8])
    lines = [f"{'notebook':{width}s}  {'seconds':>8s}  status", "-" * (width + 30)]
    for r in runs:
        lines.append(f"{r.name:{width}s}  {r.seconds:8.1f}  {r.describe()}")
    total = sum(r.seconds for r in runs)
    failed = sum(not r.ok for r in runs)
    lines.append("-" * (width + 30))
    lines.append(f"{'total':{width}s}  {total:8.1f}  {len(runs) - failed} ok, {failed} failed")
    return "\n".join(lines)


def write_summary(results_dir: str | Path) -> Optional[Path]:
    """``results/summary.csv`` from every notebook's ``run.json`` (latest run of each)."""
    results = Path(results_dir)
    rows = []
    for rec_path in sorted(results.glob(f"*/{RUN_RECORD}")):
        try:
            rec = json.loads(rec_path.read_text())
        except ValueError:
            continue
        fail = rec.get("failure") or {}
        rows.append([rec["name"], rec["mode"], "ok" if rec["ok"] else "failed", f"{rec['seconds']:.1f}",
                     rec.get("finished", ""), str(CellFailure(**fail)) if fail else ""])
    if not rows:
        return None
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["notebook", "mode", "status", "seconds", "finished", "failure"])
    w.writerows(rows)
    return write_text_atomic(results / "summary.csv", buf.getvalue())
