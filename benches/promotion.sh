#!/usr/bin/env bash
# Iceberg promotion alone (issue 17): `bronze/orders` of the e-commerce DAG (one file, 365
# days) promoted into a table partitioned by day(order_date), as `promote_bronze_orders` does,
# with nothing else running. Each binary given promotes in turn, RUNS times (default 5); the
# task's own time is printed, then the median per binary.
#
# Usage: benches/promotion.sh [ORDERS] BIN [BIN...]   (ORDERS defaults to 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
orders=1000000
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then orders=$1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [ORDERS] BIN [BIN...]" >&2; exit 1; }
runs="${RUNS:-5}"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
mkdir "$home/dags"
cat > "$home/dags/promotion.toml" <<'EOF'
id = "promotion_alone"
schedule = "@daily"
start_date = "2024-01-01"
catchup = false

[tasks.promote]
kind = "iceberg"
table = "bronze.orders_alone"
input = "bronze/orders"
partition_by = ["day(order_date)"]
mode = "replace_partitions"
EOF

echo "=== the e-commerce DAG at $orders orders (with $1)"
customers=$(( orders / 10 > 1000 ? orders / 10 : 1000 ))
LAKEWARD_HOME="$home" LAKEWARD_DAGS_FOLDER=dags "$1" dags test ecommerce_etl --date 2024-06-30 \
    --param "orders=$orders" --param "customers=$customers" --param "products=2000" > /dev/null

declare -A times
for _ in $(seq 1 "$runs"); do
    for bin in "$@"; do
        seconds=$(LAKEWARD_HOME="$home" LAKEWARD_DAGS_FOLDER="$home/dags" "$bin" dags test \
            promotion_alone --date 2024-06-30 2>&1 | awk '$1 == "promote" && $2 == "success" {print $3}')
        [ -n "$seconds" ] || { echo "$bin: the promotion failed" >&2; exit 1; }
        echo "$bin: $seconds s"
        times[$bin]="${times[$bin]:-} $seconds"
    done
done
for bin in "$@"; do
    median=$(printf '%s\n' ${times[$bin]} | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
    echo "median $bin: $median s (runs:${times[$bin]})"
done
