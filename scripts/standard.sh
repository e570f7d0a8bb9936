#!/usr/bin/env bash
# The standard studies on 2 cores in two lanes of one thread each (two one-thread runs do twice
# the work of one two-thread run; see README, Budget). Each notebook resumes from its finished
# models and epochs: run this again after an interruption. 07 goes before 06 in the same lane
# because 06 reuses 07's widest pair of twins from the shared model store.
#   bash scripts/standard.sh [RESULTS]        (default results/; logs in RESULTS/logs/)
# LANE_A and LANE_B override the notebooks of each lane (empty: none), e.g. LANE_A="06 04" LANE_B="01".
set -uo pipefail
cd "$(dirname "$0")/.."
results=${1:-results}
[ -x .venv/bin/sodlab ] || bash scripts/setup.sh
mkdir -p "$results/logs"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
lane() {
    for nb in "$@"; do
        echo "$(date -u +%FT%TZ) $nb start" >> "$results/logs/standard.log"
        .venv/bin/sodlab studies --mode standard --only "$nb" --results "$results" > "$results/logs/$nb-$(date -u +%m%d%H%M).log" 2>&1
        echo "$(date -u +%FT%TZ) $nb exit $?" >> "$results/logs/standard.log"
    done
}
lane ${LANE_A-07 06 04 05} &
lane ${LANE_B-01 03} &
wait
