"""The study notebooks: run them headless, keep them in sync, collect their findings.

The notebooks live in ``notebooks/`` as jupytext percent scripts (``NN_name.py``), the source
of truth; each is paired with an ``.ipynb`` of the same cells without outputs (``sync_notebooks``
writes it). The runner converts a script to a notebook in memory, injects the run's parameters
in a cell right after the one tagged ``parameters`` (as papermill does), executes it with
nbclient and saves the executed notebook, outputs included, into ``results/<name>/``.

A notebook talks back through `start_study`: it resolves the device and the data, writes
figures and tables into its results folder, and records its closing findings
(``findings.json``), from which `regenerate_docs` builds ``docs/findings.md``.
"""
from __future__ import annotations

import ast
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from .errors import ConfigError, DataError
from .atomic import atomic_path, write_text_atomic
from .viz.io import save_table, savefig

log = logging.getLogger(__name__)

MODES = ("quick", "standard", "full")
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
RUN_RECORD = "run.json"
FINDINGS_RECORD = "findings.json"
_NOTEBOOK_RE = re.compile(r"^(\d+)_([A-Za-z0-9_]+)$")
_JUPYTEXT_HEADER = {"formats": "ipynb,py:percent"}
# The built-in benchmark in quick mode: small enough that all seven notebooks train their
# models in minutes on two CPU cores (quick mode only proves the code paths). Ten test and
# forty training images per category; standard and full mode use the default benchmark.
QUICK_BENCHMARK = {"n_train": 480, "n_test": 120}


# ----------------------------------------------------------------------------- locations

def repo_root() -> Path:
    """The checkout that holds this package (``sodlab/..``)."""
    return Path(__file__).resolve().parents[1]


def default_notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def default_results_dir() -> Path:
    """``results/`` at the repository root when sodlab runs from a checkout, else in the cwd."""
    root = repo_root()
    return root / "results" if (root / "notebooks").is_dir() else Path.cwd() / "results"


def default_docs_dir() -> Path:
    return repo_root() / "docs"


def default_readme() -> Optional[Path]:
    """The repository README when it has the findings block (a source checkout), else None."""
    path = repo_root() / "README.md"
    try:
        return path if README_START in path.read_text(encoding="utf-8") else None
    except OSError:
        return None


# ----------------------------------------------------------------------------- discovery

def discover_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The study scripts ``NN_name.py`` in reading order."""
    d = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    if not d.is_dir():
        raise ConfigError(f"{d}: no notebooks folder (pass --notebooks DIR)")
    found = [p for p in d.glob("*.py") if _NOTEBOOK_RE.match(p.stem)]
    return sorted(found, key=lambda p: (int(_NOTEBOOK_RE.match(p.stem).group(1)), p.stem))


def select_notebooks(notebooks: Sequence[Path], only: Optional[Sequence[str]] = None) -> list[Path]:
    """Filter by ``only``: full names (``04_category_sensitivity``), numbers (``4``, ``04``) or
    unambiguous name prefixes (``category``)."""
    if not only:
        return list(notebooks)
    chosen: list[Path] = []
    names = [p.stem for p in notebooks]
    for key in only:
        k = key.strip().removesuffix(".py").removesuffix(".ipynb")
        hits = [p for p in notebooks if p.stem == k]
        if not hits and k.isdigit():
            hits = [p for p in notebooks if int(_NOTEBOOK_RE.match(p.stem).group(1)) == int(k)]
        if not hits:
            hits = [p for p in notebooks if _NOTEBOOK_RE.match(p.stem).group(2).startswith(k) or p.stem.startswith(k)]
        if not hits:
            raise ConfigError(f"no notebook matches {key!r}; available: {', '.join(names)}")
        if len(hits) > 1:
            raise ConfigError(f"{key!r} matches several notebooks: {', '.join(p.stem for p in hits)}")
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return [p for p in notebooks if p in chosen]


def notebook_title(path: Path) -> str:
    """The first markdown heading of a notebook, without the leading ``#``."""
    for cell in read_notebook(path).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


# ----------------------------------------------------------------------------- notebooks

def read_notebook(path: str | Path):
    """A notebook (nbformat v4) from a jupytext percent script or an ``.ipynb``."""
    import jupytext
    import nbformat

    path = Path(path)
    try:
        if path.suffix == ".ipynb":
            nb = nbformat.read(str(path), as_version=4)
        else:
            nb = jupytext.read(str(path), fmt="py:percent")
    except Exception as exc:  # jupytext/nbformat raise many types for a broken file
        raise DataError(f"{path}: cannot read notebook: {exc}") from exc
    _stable_ids(nb, path.stem)
    return nb


def _stable_ids(nb, name: str) -> None:
    # jupytext draws random cell ids; deterministic ones keep the paired .ipynb diff-free.
    for i, cell in enumerate(nb.cells):
        cell["id"] = hashlib.sha1(f"{name}:{i}".encode()).hexdigest()[:8]


def parameter_names(nb) -> list[str]:
    """Names assigned in the cell tagged ``parameters`` (empty when there is none)."""
    cell = _parameters_cell(nb)
    if cell is None:
        return []
    try:
        tree = ast.parse(nb.cells[cell].source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _parameters_cell(nb) -> Optional[int]:
    for i, cell in enumerate(nb.cells):
        if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def inject_parameters(nb, params: Mapping[str, Any]):
    """Insert a cell tagged ``injected-parameters`` assigning ``params`` right after the cell
    tagged ``parameters`` (at the top when there is none), replacing an earlier injection."""
    import nbformat

    for name, value in params.items():
        if not name.isidentifier():
            raise ConfigError(f"parameter name {name!r} is not a Python identifier")
        try:
            ast.literal_eval(repr(value))
        except (ValueError, SyntaxError):
            raise ConfigError(f"parameter {name}={value!r} is not a plain literal") from None
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    lines = ["# Parameters (injected by sodlab studies)"] + [f"{k} = {v!r}" for k, v in params.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    cell["id"] = "injected-parameters"
    at = _parameters_cell(nb)
    nb.cells.insert(0 if at is None else at + 1, cell)
    return nb


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` from the command line; VALUE is a Python literal or else a string."""
    if "=" not in text:
        raise ConfigError(f"--param {text!r}: expected NAME=VALUE")
    name, raw = text.split("=", 1)
    name = name.strip()
    if not name.isidentifier():
        raise ConfigError(f"--param {text!r}: {name!r} is not a Python identifier")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return name, value


# ----------------------------------------------------------------------------- pairing

def _cell_signature(nb) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.cell_type, c.source.strip(), tuple(c.get("metadata", {}).get("tags", []))) for c in nb.cells]


def paired_notebook_text(script: str | Path) -> str:
    """The ``.ipynb`` text paired with a percent script: same cells, no outputs."""
    import nbformat

    nb = read_notebook(script)
    nb.metadata["jupytext"] = dict(_JUPYTEXT_HEADER)  # no jupytext version: stable across releases
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nbformat.writes(nb) + "\n"


def out_of_sync(notebooks_dir: str | Path | None = None) -> list[str]:
    """Names of scripts whose paired ``.ipynb`` is missing or has different cells."""
    stale = []
    for script in discover_notebooks(notebooks_dir):
        ipynb = script.with_suffix(".ipynb")
        if not ipynb.exists() or _cell_signature(read_notebook(ipynb)) != _cell_signature(read_notebook(script)):
            stale.append(script.stem)
    return stale


def sync_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """Rewrite each script's paired ``.ipynb`` when it differs; returns the files written."""
    written = []
    for script in discover_notebooks(notebooks_dir):
        ipynb = script.with_suffix(".ipynb")
        text = paired_notebook_text(script)
        if not ipynb.exists() or ipynb.read_text(encoding="utf-8") != text:
            write_text_atomic(ipynb, text)
            written.append(ipynb)
    return written


# ----------------------------------------------------------------------------- running

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
    import nbformat
    from nbclient import NotebookClient

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

    client = NotebookClient(
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
    from tqdm.auto import tqdm

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
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["notebook", "mode", "status", "seconds", "finished", "failure"])
    w.writerows(rows)
    return write_text_atomic(results / "summary.csv", buf.getvalue())


# ----------------------------------------------------------------------------- inside a notebook

@dataclasses.dataclass
class Study:
    """What a running notebook needs: its sizes, device, data and results folder.

    Made by `start_study` in each notebook's first code cell after the parameters.
    """

    name: str
    mode: str
    sizes: dict[str, Any]
    device: str
    data_root: Optional[Path]
    results_dir: Path
    builtin_data: bool

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    @property
    def work_dir(self) -> Path:
        """Where the notebook's training runs go; per mode and data set, so that a rerun in the
        same mode on the same data reuses finished runs (resume) and never mixes runs of
        different sizes, nor reuses models trained on other data (a regenerated benchmark
        with other parameters has another folder name, hence another work folder)."""
        base = self.results_dir / "runs" / self.mode
        if self.data_root is None:
            return base
        if self.builtin_data:
            return base / self.data_root.name  # synthetic-<hash of its parameters>
        path = str(self.data_root.resolve())
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.data_root.name)[:40] or "data"
        return base / f"{tag}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"

    def savefig(self, fig, name: str, **kw) -> Path:
        """Save a matplotlib figure as ``<results_dir>/<name>.png`` (atomically)."""
        return savefig(fig, self.results_dir / name, **kw)

    def save_table(self, df, name: str, index: bool = False) -> Path:
        """Save a DataFrame as ``<results_dir>/<name>.csv`` (atomically)."""
        return save_table(df, self.results_dir / name, index=index)

    def findings(self, claim: str, verdict: str, text: str, key_figure: Optional[str] = None, exact: bool = False):
        """Record the closing findings (``findings.json``, ``findings.md``) and return them as
        Markdown for display. In quick mode a caveat that nothing can be concluded is added.

        ``verdict`` is one short phrase (for example "held, strongly"); ``text`` carries the
        numbers of this run. ``exact``: the notebook trains and samples nothing, so its numbers
        are the same in every mode (the quick-mode caveat says so instead).
        """
        caveat = ""
        if self.quick and exact:
            caveat = ("*Quick mode; this notebook trains and samples nothing, so its numbers are exact "
                      "and the same in every mode.*")
        elif self.quick:
            caveat = ("**Quick mode: this run only proves that the code path works. It is far too "
                      "small to conclude anything**; the verdict below is what these numbers would "
                      "say, not evidence. Run with `mode = \"standard\"` (CPU) or `\"full\"` (GPU, real data).")
        data = ("no data" if self.data_root is None else
                "the built-in generated benchmark" if self.builtin_data else f"`{self.data_root}`")
        md = "\n\n".join(x for x in [
            "## What we found",
            caveat,
            f"**Claim.** {claim}",
            f"**Verdict ({self.mode} mode, {data}, device {self.device}).** {verdict}",
            text.strip(),
        ] if x)
        if key_figure is not None and not (self.results_dir / key_figure).exists():
            raise DataError(f"key figure {key_figure} not found in {self.results_dir}")
        record = {"name": self.name, "mode": self.mode, "claim": claim, "verdict": verdict, "text": text.strip(),
                  "key_figure": key_figure, "data": None if self.data_root is None else "builtin" if self.builtin_data else str(self.data_root),
                  "device": self.device, "exact": exact}
        write_text_atomic(self.results_dir / FINDINGS_RECORD, json.dumps(record, indent=1) + "\n")
        write_text_atomic(self.results_dir / "findings.md", md + "\n")
        try:
            from IPython.display import Markdown

            return Markdown(md)
        except ImportError:  # outside Jupyter the text is still useful
            return md


def start_study(
    name: str,
    mode: str,
    sizes: Mapping[str, Mapping[str, Any]],
    data_root: Optional[str | Path] = None,
    device: str = "auto",
    results_dir: Optional[str | Path] = None,
    benchmark: Optional[Mapping[str, Any]] = None,
    needs_data: bool = True,
) -> Study:
    """Resolve a notebook's parameters: check ``mode``, pick its sizes, resolve ``device``
    ("auto": CUDA when present), make the results folder and find the data (``data_root=None``:
    the built-in generated benchmark, made on first use with ``benchmark`` options, by default
    `QUICK_BENCHMARK` in quick mode and the full default benchmark otherwise; left ``None``
    when ``needs_data`` is false)."""
    import torch

    from .device import resolve_device

    if mode not in MODES:
        raise ConfigError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode not in sizes:
        raise ConfigError(f"{name}: no sizes for mode {mode!r} (have {', '.join(sizes)})")
    dev = str(resolve_device(device))
    # Untrained layers and channels whose BN scale decay drove towards zero produce denormal
    # floats, which make CPU convolutions several times slower; flushing them to zero changes
    # values below 1e-38 only. The kernel is this notebook's own process, so this is local.
    torch.set_flush_denormal(True)
    out = Path(results_dir) if results_dir is not None else default_results_dir() / name
    out.mkdir(parents=True, exist_ok=True)
    if data_root is None and not needs_data:
        root, builtin = None, True
    elif data_root is None:
        from .data.synthetic import ensure_benchmark

        options = dict(QUICK_BENCHMARK) if mode == "quick" else {}
        root = Path(ensure_benchmark(**(options | dict(benchmark or {}))))
        builtin = True
    else:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f"{root}: no such data folder (data_root)")
        builtin = False
    log.info("%s: %s mode on %s, data %s, results in %s", name, mode, dev, root, out)
    return Study(name, mode, dict(sizes[mode]), dev, root, out, builtin)


# ----------------------------------------------------------------------------- docs

README_START = "<!-- studies:findings:start -->"
README_END = "<!-- studies:findings:end -->"


def regenerate_docs(results_dir: str | Path | None = None, docs_dir: str | Path | None = None,
                    notebooks_dir: str | Path | None = None, readme: str | Path | None = None) -> Path:
    """Copy each notebook's key figure to ``docs/<name>.png`` and write ``docs/findings.md``
    from the ``findings.json`` in ``results_dir``. Notebooks without findings are listed as
    missing; findings from quick runs are marked as such. With ``readme``, the same findings
    (verdict, numbers, key figure) also replace the block between `README_START` and
    `README_END` in that file; the rest of it is left as it was."""
    results = Path(results_dir) if results_dir is not None else default_results_dir()
    docs = Path(docs_dir) if docs_dir is not None else default_docs_dir()
    if readme is not None:
        readme = Path(readme)
        old = readme.read_text(encoding="utf-8")
        if old.count(README_START) != 1 or old.count(README_END) != 1 or old.index(README_START) > old.index(README_END):
            raise DataError(f"{readme}: expected one {README_START} line followed by one {README_END} line")
    docs.mkdir(parents=True, exist_ok=True)
    parts = ["# What the studies found",
             "",
             "Generated by `sodlab studies --mode standard --docs` from the findings each notebook "
             "records at its end; numbers come from that run. Do not edit by hand.",
             ""]
    short: list[str] = []
    missing = []
    for script in discover_notebooks(notebooks_dir):
        rec_path = results / script.stem / FINDINGS_RECORD
        if not rec_path.exists():
            missing.append(script.stem)
            continue
        rec = json.loads(rec_path.read_text())
        parts += [f"## {notebook_title(script)}", ""]
        if rec.get("mode") == "quick" and not rec.get("exact"):
            parts += ["*From a quick run: too small to conclude anything.*", ""]
        body = [f"**Claim.** {rec['claim']}", "", f"**Verdict ({rec['mode']} mode).** {rec['verdict']}", "", rec["text"], ""]
        parts += body
        short += [f"#### {notebook_title(script)}", ""]
        if rec.get("mode") == "quick" and not rec.get("exact"):
            short += ["*From a quick run: too small to conclude anything.*", ""]
        short += body
        if rec.get("key_figure"):
            src = results / script.stem / rec["key_figure"]
            if src.exists():
                dst = docs / f"{script.stem}.png"
                with atomic_path(dst) as tmp:
                    shutil.copyfile(src, tmp)
                parts += [f"![{script.stem}]({dst.name})", ""]
                rel = dst.name if readme is None else os.path.relpath(dst, readme.parent)
                short += [f"![{script.stem}]({Path(rel).as_posix()})", ""]
        parts += [f"Notebook: [`notebooks/{script.name}`](../notebooks/{script.name}).", ""]
    if missing:
        log.warning("no findings for %s in %s: run them first", ", ".join(missing), results)
        parts += ["## Not run", "", ", ".join(f"`{m}`" for m in missing), ""]
        short += ["Not run: " + ", ".join(f"`{m}`" for m in missing), ""]
    out = write_text_atomic(docs / "findings.md", "\n".join(parts))
    if readme is not None:
        head, rest = old.split(README_START, 1)
        _, tail = rest.split(README_END, 1)
        write_text_atomic(readme, head + README_START + "\n" + "\n".join(short) + README_END + tail)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m sodlab.studies ...``: the same as ``sodlab studies ...``."""
    from .cli import main as cli_main

    return cli_main(["studies", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":
    raise SystemExit(main())
