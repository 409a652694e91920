#!/usr/bin/env bash
# Instructions per node of one runtime case (see probe_instructions.py): PYTHON CASE
set -euo pipefail
PY=$1
CASE=$2
HERE=$(dirname "$0")
count() {
  PYTHONHASHSEED=0 CASE=$CASE REPS=$1 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$PY" "$HERE/probe_instructions.py" 2>&1 | grep -oP "Collected : \K[0-9]+"
}
one=$(count 1)
six=$(count 6)
echo "$CASE $(( (six - one) / 5 / 200 )) instructions/node"
