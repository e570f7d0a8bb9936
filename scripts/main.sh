#!/usr/bin/env bash
# Sets up the environment and runs every study notebook headless in quick mode into results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/sodlab studies --quick "$@"
