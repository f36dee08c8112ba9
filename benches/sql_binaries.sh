#!/usr/bin/env bash
# One query through `lakeward sql` with several lakeward binaries taking turns (before and after
# a change, in one sitting on one machine): the median and best end-to-end time of each.
#
# Usage: LAKEWARD_HOME=<a home with tables> benches/sql_binaries.sh "<query>" BIN [BIN...]
#   RUNS=15 for more runs of each (default 7).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 \"<query>\" BIN [BIN...]" >&2; exit 2; }
: "${LAKEWARD_HOME:?set LAKEWARD_HOME to a home whose tables the query reads}"
query="$1"
shift
declare -A times
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for _ in $(seq 1 "${RUNS:-7}"); do
    for bin in "$@"; do
        t0=$(date +%s%N)
        "$bin" sql --format csv "$query" > "$out" 2>&1 || { cat "$out" >&2; exit 1; }
        times[$bin]+="$(( ($(date +%s%N) - t0) / 1000000 )) "
    done
done
for bin in "$@"; do
    sorted=($(printf '%s\n' ${times[$bin]} | sort -n))
    echo "$bin: median ${sorted[$(( ${#sorted[@]} / 2 ))]} ms, best ${sorted[0]} ms (runs: ${times[$bin]})"
done
