#!/usr/bin/env bash
# Memory after work (issue 17): `lakeward standalone` (release build, SQLite, its own home, no
# Kafka) with only the e-commerce DAG, whose latest daily interval runs at start (5,000 orders,
# with Iceberg promotion). Prints the RSS at start, when the run has ended, and every 10 s for
# a minute after; the target is under 60 MB within that minute. Then triggers the DAG again
# and prints both runs' durations: what giving memory back costs the next run.
# Usage: cargo build --release && benches/memory_after_work.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${LAKEWARD_BIN:-${CARGO_TARGET_DIR:-target}/release/lakeward}"
[ -x "$bin" ] || { echo "build first: cargo build --release ($bin missing)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/dags" && cp dags/ecommerce.toml "$work/dags/"
rss() { awk '/VmRSS/ {printf "%.0f MB", $2 / 1024}' "/proc/$pid/status"; }
LAKEWARD_HOME="$work/home" LAKEWARD_DAGS_FOLDER="$work/dags" LAKEWARD_WEB_BIND=127.0.0.1:0 \
    LAKEWARD_KAFKA_BROKERS=127.0.0.1:9 "$bin" standalone > "$work/out.log" 2> "$work/err.log" &
pid=$!
sleep 1
echo "started: $(rss)"
db="$work/home/lakeward.db"
# Waits until N runs have ended (exits if standalone died).
wait_for_runs() {
    until [ "$(sqlite3 -cmd ".timeout 5000" "file:$db?mode=ro" \
        "SELECT count(*) FROM dag_runs WHERE state IN ('success', 'failed')" 2>/dev/null || echo 0)" -ge "$1" ]; do
        kill -0 "$pid" || { tail "$work/err.log"; exit 1; }
        sleep 0.2
    done
}
wait_for_runs 1
echo "run ended ($(sqlite3 "file:$db?mode=ro" "SELECT state FROM dag_runs")): $(rss), peak $(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' "/proc/$pid/status")"
for t in 10 20 30 40 50 60; do
    sleep 10
    echo "${t} s later: $(rss)"
done
grep -E "^(Rss|Anonymous|Shared_Clean|Private_Clean)" "/proc/$pid/smaps_rollup" | tr -s ' ' | paste -sd ' '
LAKEWARD_HOME="$work/home" LAKEWARD_DAGS_FOLDER="$work/dags" "$bin" dags trigger ecommerce_etl > /dev/null
wait_for_runs 2
echo "run durations (first, then the one triggered after the idle minute):"
sqlite3 "file:$db?mode=ro" \
    "SELECT run_id || ': ' || state || ', ' || printf('%.2f s', (ended_at - started_at) / 1e6) FROM dag_runs ORDER BY started_at"
