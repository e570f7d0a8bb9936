"""The study notebooks: run them headless, keep them in sync, collect their findings.

The notebooks live in ``notebooks/`` as jupytext percent scripts (``NN_name.py``), the source
of truth; each is paired with an ``.ipynb`` of the same cells without outputs (`sync_notebooks`
writes it). The runner converts a script to a notebook in memory, injects the run's parameters
in a cell right after the one tagged ``parameters`` (as papermill does), executes it with
nbclient and saves the executed notebook, outputs included, into ``results/<name>/``.

A notebook talks back through `start_study`: it resolves the device and the data, writes
figures and tables into its results folder, and records its closing findings
(``findings.json``, its `Verdict`), from which `regenerate_docs` builds ``docs/findings.md`` and
``docs/findings.json``.

Modules, one job each: `paths` (folders, discovery), `source` (reading, parameters, pairing),
`runner` (execution, summary), `notebook` (`Study`, `start_study`), `docs`; `common` (what the
experiments share) and one module per experiment (`anatomy`, `pruning`, `categories`,
`pretraining`, `redundancy`, `mechanisms`, `explorer`); `rules` (the verdict rule, gates, `Verdict`) and `verdicts` (each study's).

Names are resolved lazily, as in `sodlab`: the runner's process (``sodlab studies``) never
imports torch, only the notebooks' kernels do.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "sodlab.studies.paths": ("MODES", "repo_root", "default_notebooks_dir", "default_results_dir", "default_docs_dir",
                             "discover_notebooks", "select_notebooks"),
    "sodlab.studies.source": ("PARAMETERS_TAG", "INJECTED_TAG", "read_notebook", "notebook_title", "parameter_names",
                              "inject_parameters", "paired_notebook_text", "out_of_sync", "sync_notebooks"),
    "sodlab.studies.runner": ("RUN_RECORD", "CellFailure", "NotebookRun", "execute_notebook", "run_studies", "summary_table",
                              "write_summary"),
    "sodlab.studies.notebook": ("FINDINGS_RECORD", "FINDINGS_CONTEXT", "QUICK_BENCHMARK", "TWIN_BENCHMARK", "Study", "start_study"),
    "sodlab.studies.docs": ("README_START", "README_END", "FINDINGS_JSON", "default_readme", "regenerate_docs"),
    "sodlab.studies.rules": ("OUTCOMES", "RULES", "Gate", "Verdict", "judge", "familywise_level", "holm"),
}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sodlab.studies' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
