"""What a running study notebook uses: `start_study` resolves its parameters into a `Study`,
which saves its figures and tables and records its closing findings."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from ..atomic import write_text_atomic
from ..data import synthetic
from ..device import describe_device, resolve_device
from ..errors import ConfigError, DataError
from ..viz.io import save_table, savefig
from .cache import cached_call
from .common import saliency_scores
from .paths import MODES, default_results_dir
from .rules import Verdict

log = logging.getLogger(__name__)

FINDINGS_RECORD = "findings.json"  # the study's `Verdict` object, the same as its entry in docs/findings.json
FINDINGS_CONTEXT = "findings_context.json"  # how it was run and its key figure, for docs/
# The built-in benchmark in quick mode: small enough that all seven notebooks train their
# models in minutes on two CPU cores (quick mode only proves the code paths). Ten test and
# forty training images per category; standard and full mode use the default benchmark.
QUICK_BENCHMARK = {"n_train": 480, "n_test": 120}
# The built-in benchmark of the studies whose classifier must pass its gate (0.90 top-1): the
# study classifier (res2net-mini, classify-quick) reaches it on 12,000 training images, not on
# the default 2,000 (README, "The study model").
TWIN_BENCHMARK = {"n_train": 12000, "n_test": 1200}
SHARED_MODELS = "shared-models"


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
        return self._per_data(self.results_dir / "runs" / self.mode)

    @property
    def model_store(self) -> Path:
        """Where models that several notebooks train alike are kept, shared between the
        notebooks (``shared-models/`` beside the notebook's results folder, per mode and data
        set): a twin of the same family, task, width, seed, data and recipe is trained once
        (`sodlab.studies.twins.run_key` names its folder)."""
        return self._per_data(self.results_dir.parent / SHARED_MODELS / self.mode)

    def _per_data(self, base: Path) -> Path:
        if self.data_root is None:
            return base
        if self.builtin_data:
            return base / self.data_root.name  # synthetic-<hash of its parameters>
        path = str(self.data_root.resolve())
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.data_root.name)[:40] or "data"
        return base / f"{tag}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"

    @property
    def cache_dir(self) -> Path:
        """Where `cached` keeps computed results: beside the training runs they come from."""
        return self.work_dir / "cache"

    def cached(self, fn: Callable[..., Any], *args: Any, refresh: bool = False, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` through the result cache (`sodlab.studies.cache`): the first
        run computes and stores it, a rerun with the same arguments (data, sizes, seed)
        reads it back, so a notebook run again only redraws."""
        return cached_call(self.cache_dir, fn, *args, refresh=refresh, **kwargs)

    def device_note(self) -> str:
        """One line naming the device the notebook's training uses (printed by its training cells)."""
        return f"training on {describe_device(self.device)}"

    def sample_data(self) -> Path:
        """A benchmark root for pictures: the study's data, or (for a notebook that needs no
        data) the built-in quick benchmark, generated on first use."""
        if self.data_root is not None:
            return self.data_root
        return Path(synthetic.ensure_benchmark(**QUICK_BENCHMARK))

    def control_data(self, saliency: str = "category") -> Path:
        """The built-in benchmark of this mode's size with another saliency rule (a positive
        control's data, e.g. 04's world where the category decides saliency), generated on
        first use. The same for the built-in benchmark and a user's data: a control needs a
        world whose answer is known."""
        options = dict(QUICK_BENCHMARK) if self.quick else {}
        return Path(synthetic.ensure_benchmark(**options, saliency=saliency))

    def savefig(self, fig, name: str, **kw) -> Path:
        """Save a matplotlib figure as ``<results_dir>/<name>.png`` (atomically)."""
        return savefig(fig, self.results_dir / name, **kw)

    def save_table(self, df, name: str, index: bool = False) -> Path:
        """Save a DataFrame as ``<results_dir>/<name>.csv`` (atomically). A table of saliency
        scores (`saliency_scores`) without a ``protocol`` column is refused: a reader could not
        tell which protocol's numbers they are."""
        scores = saliency_scores(df)
        if scores and "protocol" not in df.columns:
            raise ConfigError(f"{self.name}: table {name!r} holds saliency scores ({', '.join(scores)}) but no 'protocol' "
                              "column naming the sodlab.metrics protocol that scored them")
        return save_table(df, self.results_dir / name, index=index)

    def findings(self, verdict: Verdict, key_figure: Optional[str] = None, exact: bool = False):
        """Record the closing `Verdict` (``findings.json``: its JSON object, exactly; with
        ``findings_context.json``: key figure, data, device, and ``findings.md``) and return it
        as Markdown for display.

        ``exact``: the notebook trains and samples nothing, so its numbers are the same in every
        mode (quick mode still concludes nothing: the rule is the same for every notebook).
        """
        if verdict.study != self.name or verdict.mode != self.mode:
            raise ConfigError(f"a verdict of {verdict.study} in {verdict.mode} mode cannot close {self.name} "
                              f"in {self.mode} mode")
        caveat = ""
        if self.quick and exact:
            caveat = ("*Quick mode never concludes; this notebook trains and samples nothing, so its numbers are "
                      "exact and the same in every mode: run it with `mode = \"standard\"` for a verdict.*")
        elif self.quick:
            caveat = ("**Quick mode: this run only proves that the code path works; it is far too small to conclude "
                      "anything, so its outcome is inconclusive whatever the numbers.** Run with `mode = \"standard\"` "
                      "(CPU) or `\"full\"` (GPU, real data).")
        data = ("no data" if self.data_root is None else
                "the built-in generated benchmark" if self.builtin_data else f"`{self.data_root}`")
        md = "\n\n".join(x for x in [
            "## What we found",
            caveat,
            f"**Claim.** {verdict.claim}",
            f"**Verdict ({self.mode} mode, {data}, device {self.device}).**",
            verdict.markdown(),
        ] if x)
        if key_figure is not None and not (self.results_dir / key_figure).exists():
            raise DataError(f"key figure {key_figure} not found in {self.results_dir}")
        context = {"key_figure": key_figure, "device": self.device, "exact": exact,
                   "data": None if self.data_root is None else "builtin" if self.builtin_data else str(self.data_root)}
        write_text_atomic(self.results_dir / FINDINGS_RECORD, json.dumps(verdict.to_dict(), indent=1, allow_nan=False) + "\n")
        write_text_atomic(self.results_dir / FINDINGS_CONTEXT, json.dumps(context, indent=1) + "\n")
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
    overrides: Optional[Mapping[str, Any]] = None,
) -> Study:
    """Resolve a notebook's parameters: check ``mode``, pick its sizes, resolve ``device``
    ("auto": CUDA when present), make the results folder and find the data (``data_root=None``:
    the built-in generated benchmark, made on first use with ``benchmark`` options, by default
    `QUICK_BENCHMARK` in quick mode and the full default benchmark otherwise; left ``None``
    when ``needs_data`` is false). ``overrides``: sizes the notebook's parameters change (e.g.
    the seeds of a run split across sessions); each must be one of the mode's sizes."""
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode not in sizes:
        raise ConfigError(f"{name}: no sizes for mode {mode!r} (have {', '.join(sizes)})")
    unknown = sorted(set(overrides or {}) - set(sizes[mode]))
    if unknown:
        raise ConfigError(f"{name}: cannot override {', '.join(unknown)}: not among the {mode} sizes ({', '.join(sizes[mode])})")
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
        options = dict(QUICK_BENCHMARK) if mode == "quick" else {}
        root = Path(synthetic.ensure_benchmark(**(options | dict(benchmark or {}))))
        builtin = True
    else:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f"{root}: no such data folder (data_root)")
        builtin = False
    log.info("%s: %s mode on %s, data %s, results in %s", name, mode, dev, root, out)
    return Study(name, mode, {**sizes[mode], **(overrides or {})}, dev, root, out, builtin)
