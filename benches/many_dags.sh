#!/usr/bin/env bash
# A folder of many DAGs (issue 17, "idle at scale"): N generated DAG files (default 10,000), each
# `@once` with 5 tasks (4 shell commands, a noop), run by `lakeward standalone` (release build,
# SQLite, its own home). It measures, in one sitting:
#   1. start → every DAG's run succeeded (N runs, 5N task instances);
#   2. the CPU the idle process then burns over IDLE_SECONDS (default 60), from /proc;
#   3. how long a new DAG file, and an edit of an existing one, take to show in the database
#      (5 of each, polled every 10 ms);
#   4. the process's RSS.
# Usage: cargo build --release && benches/many_dags.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${LAKEWARD_BIN:-${CARGO_TARGET_DIR:-target}/release/lakeward}"
[ -x "$bin" ] || { echo "build first: cargo build --release ($bin missing)" >&2; exit 1; }
count="${1:-10000}"
idle_seconds="${IDLE_SECONDS:-60}"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/dags" "$work/home"

dag_file() { # $1: id, $2: description
    cat <<DAG
description = "$2"
schedule = "@once"
start_date = "2024-01-01"
[tasks.a]
kind = "shell"
command = "true"
[tasks.b]
kind = "shell"
command = "true"
depends_on = ["a"]
[tasks.c]
kind = "shell"
command = "true"
depends_on = ["a"]
[tasks.d]
kind = "shell"
command = "true"
depends_on = ["b", "c"]
[tasks.e]
kind = "noop"
depends_on = ["d"]
DAG
}
for i in $(seq -w 1 "$count"); do dag_file "dag_$i" "generated DAG $i" > "$work/dags/dag_$i.toml"; done
db="$work/home/lakeward.db"
sql() { sqlite3 -cmd ".timeout 5000" "file:$db?mode=ro" "$1" 2>/dev/null || echo 0; }
now() { date +%s.%N; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(now)
LAKEWARD_HOME="$work/home" LAKEWARD_DAGS_FOLDER="$work/dags" LAKEWARD_WEB_AUTH=false \
    LAKEWARD_WEB_BIND="127.0.0.1:$port" LAKEWARD_KAFKA_BROKERS=127.0.0.1:9 \
    "$bin" standalone > "$work/out.log" 2> "$work/err.log" &
pid=$!
until [ "$(sql "SELECT count(*) FROM dag_runs WHERE state = 'success'")" -ge "$count" ]; do
    kill -0 "$pid" || { tail "$work/err.log"; exit 1; }
    sleep 0.5
done
echo "$count DAGs ($((count * 5)) tasks, $((count * 4)) shell commands): start → all runs succeeded in $(echo "$(now) - $start" | bc) s"
failed=$(sql "SELECT count(*) FROM task_instances WHERE state <> 'success'")
echo "task instances not succeeded: $failed"

sleep 5 # let the last writes and the post-run housekeeping settle
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
sleep "$idle_seconds"
after=$(ticks)
echo "idle: $(echo "scale=2; 100 * ($after - $before) / ($hz * $idle_seconds)" | bc)% of a core over ${idle_seconds} s"

wait_for() { # $1: SQL that returns 1 when done; prints the seconds it took from $2
    until [ "$(sql "$1")" = 1 ]; do sleep 0.01; done
    echo "$(now) - $2" | bc
}
for k in 1 2 3 4 5; do
    t=$(now)
    dag_file "fresh_$k" "new" > "$work/dags/fresh_$k.toml"
    new=$(wait_for "SELECT count(*) FROM dags WHERE dag_id = 'fresh_$k'" "$t")
    sleep 1
    old=$(sql "SELECT version FROM dags WHERE dag_id = 'dag_$(printf "%0${#count}d" "$k")'")
    t=$(now)
    dag_file "dag_$k" "edited $k" > "$work/dags/dag_$(printf "%0${#count}d" "$k").toml"
    edited=$(wait_for "SELECT count(*) FROM dags WHERE dag_id = 'dag_$(printf "%0${#count}d" "$k")' AND version <> '$old'" "$t")
    echo "new file visible in $new s, edit visible in $edited s"
    sleep 1
done
echo "RSS: $(awk '/VmRSS/ {print $2 / 1024 " MB"}' "/proc/$pid/status"), peak $(awk '/VmHWM/ {print $2 / 1024 " MB"}' "/proc/$pid/status")"
grep -c "DAG folder loaded" "$work/err.log" | sed 's/^/folder loads logged: /'
