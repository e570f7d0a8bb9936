#!/usr/bin/env bash
# Creates .venv (once) and installs sodlab with its test extras into it.
# torch is pinned to the CPU build this project is developed against; an unpinned torch
# would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
