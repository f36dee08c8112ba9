#!/usr/bin/env bash
# Fault run on the real Postgres: a scheduler and three workers work through a DAG of shell
# tasks while a worker is killed with SIGKILL every few seconds (and replaced), then the
# database is taken away once for longer than the heartbeat timeout (the test suite does that
# part with a TCP proxy; here Postgres stays up and only workers die). Every command writes
# `start` and `done` lines to a ledger; at the end it counts kills survived, tasks that did not
# succeed exactly once, commands that finished twice, and commands of killed workers that
# went on running after their worker died.
#
# Usage: cargo build && benches/faults.sh [TASKS] [KILLS]   (default: 60 tasks, 12 kills)
# Needs LAKEWARD_TEST_POSTGRES_URL (as .ci/run sets it) and psql.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${LAKEWARD_BIN:-${CARGO_TARGET_DIR:-target}/debug/lakeward}"
[ -x "$bin" ] || { echo "build first: cargo build ($bin missing)" >&2; exit 1; }
base="${LAKEWARD_TEST_POSTGRES_URL:?set LAKEWARD_TEST_POSTGRES_URL}"
tasks="${1:-60}"
kills="${2:-12}"
schema="lw_faults_$$"
psql "$base" -qc "CREATE SCHEMA $schema"
url="$base?options[search_path]=$schema"
home="$(mktemp -d)"
ledger="$home/ledger"
pids=()
cleanup() {
    kill -9 "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    PGOPTIONS="--client-min-messages=warning" psql "$base" -qc "DROP SCHEMA $schema CASCADE" || true
    rm -rf "$home"
}
trap cleanup EXIT
mkdir -p "$home/dags"
{
    echo 'max_active_tasks = 12'
    echo '[defaults]'
    echo 'retries = 5'
    echo 'retry_delay = "0s"'
    for i in $(seq 1 "$tasks"); do
        echo "[tasks.t$i]"
        echo 'kind = "shell"'
        echo "command = \"echo start t$i \$LAKEWARD_TRY_NUMBER >> $ledger; sleep 1.5; echo done t$i \$LAKEWARD_TRY_NUMBER >> $ledger\""
    done
} > "$home/dags/faults.toml"
printf '[scheduler]\npoll_interval = "200ms"\nheartbeat_timeout = "3s"\n[worker]\nheartbeat_interval = "500ms"\npoll_interval = "200ms"\nslots = 4\n' \
    > "$home/lakeward.toml"
export LAKEWARD_HOME="$home" LAKEWARD_CONFIG="$home/lakeward.toml" LAKEWARD_DATABASE_URL="$url" \
    LAKEWARD_DAGS_FOLDER="$home/dags"
"$bin" scheduler > "$home/scheduler.log" 2>&1 & pids+=($!)
workers=()
start_worker() { "$bin" worker >> "$home/workers.log" 2>&1 & pids+=($!); workers+=($!); }
for _ in 1 2 3; do start_worker; done
until "$bin" dags list 2>/dev/null | grep -q faults; do sleep 0.2; done
"$bin" dags trigger faults --date 2024-05-01 > /dev/null
started=$(date +%s)
survived=0
for _ in $(seq 1 "$kills"); do
    sleep 2.5
    victim=${workers[$((RANDOM % ${#workers[@]}))]}
    kill -9 "$victim" 2>/dev/null && survived=$((survived + 1))
    workers=("${workers[@]/$victim}")
    workers=($(printf '%s\n' "${workers[@]}" | grep -v '^$'))
    start_worker
done
until "$bin" runs list faults 2>/dev/null | grep -Eq 'success|failed'; do sleep 0.5; done
elapsed=$(( $(date +%s) - started ))
state=$("$bin" runs list faults | awk 'NR == 2 { print $3 }')
not_once=$(psql "$base" -Atc "SELECT count(*) FROM $schema.task_instances WHERE state <> 'success'")
tries=$(psql "$base" -Atc "SELECT count(*) FROM $schema.task_tries")
retried=$(psql "$base" -Atc "SELECT count(*) FROM $schema.task_tries WHERE state = 'up_for_retry'")
twice=$(grep '^done' "$ledger" | awk '{ print $2 }' | sort | uniq -d | wc -l)
# A try the database abandoned must never have written `done`: its command died with its worker.
abandoned=$(psql "$base" -Atc "SELECT task_id || ' ' || tt.try_number FROM $schema.task_instances ti JOIN $schema.task_tries tt ON tt.ti_id = ti.id WHERE tt.state = 'up_for_retry'")
orphans=0
while read -r task try; do
    [ -n "$task" ] && grep -qx "done $task $try" "$ledger" && orphans=$((orphans + 1))
done <<< "$abandoned"
echo "run: $state in ${elapsed}s; $tasks tasks, $tries tries ($retried abandoned by killed workers)"
echo "workers killed with SIGKILL and survived: $survived"
echo "tasks not succeeded exactly once: $not_once"
echo "commands that finished twice: $twice"
echo "commands of killed workers that ran on: $orphans"
