#!/usr/bin/env bash
# End-to-end benchmark of the reference pipeline: `lakeward dags test ecommerce_etl` at several
# sizes, each in a fresh home (SQLite state, local warehouse). First the DAG without its
# promotion tasks (the baseline), then the whole DAG: each task's time (the promote_* tasks are
# the Iceberg promotion), the total, peak RSS (from the summary `dags test` prints) and what
# promotion added to the wall time; then the size of each Iceberg table and a full scan against
# a one-day partition-filtered scan of bronze.orders (files planned, time).
#
# Usage: cargo build --release && benches/ecommerce.sh [ORDERS...]   (default: 5000 1000000 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${LAKEWARD_BIN:-${CARGO_TARGET_DIR:-target}/release/lakeward}"
[ -x "$bin" ] || { echo "build first: cargo build --release ($bin missing)" >&2; exit 1; }
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(5000 1000000 10000000)
# The same DAG up to (not including) its first promotion task.
unpromoted="$(mktemp -d)"
sed '/^\[tasks\.promote_/,$d' dags/ecommerce.toml > "$unpromoted/ecommerce.toml"
trap 'rm -rf "$unpromoted"' EXIT

# Runs the DAG from folder $1 in home $2 with $3 orders; prints the tasks and the wall time.
run_dag() {
    local customers=$(( $3 / 10 > 1000 ? $3 / 10 : 1000 ))
    local products=$(( $3 >= 1000000 ? 2000 : 200 ))
    local start end
    start=$(date +%s.%N)
    LAKEWARD_HOME="$2" LAKEWARD_DAGS_FOLDER="$1" "$bin" dags test ecommerce_etl --date 2024-06-30 \
        --param "orders=$3" --param "customers=$customers" --param "products=$products" \
        | sed -n '/^TASK/,$p' >&2
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

for orders in "${sizes[@]}"; do
    echo "=== $orders orders"
    home="$(mktemp -d)"
    echo "--- without promotion"
    before=$(run_dag "$unpromoted" "$home" "$orders")
    rm -rf "$home"
    echo "wall time without promotion: $before s"
    home="$(mktemp -d)"
    echo "--- with promotion"
    after=$(run_dag dags "$home" "$orders")
    echo "wall time with promotion: $after s (+$(echo "scale=1; 100 * ($after - $before) / $before" | bc)%)"
    du -sh "$home/warehouse" | sed 's/^/warehouse size: /'
    for table in bronze/orders bronze/products bronze/customers silver/orders_enriched \
        gold/daily_sales gold/product_performance gold/customer_metrics gold/regional_sales; do
        du -sh "$home/warehouse/iceberg/$table/data" | sed "s|$home/warehouse/iceberg/||"
    done
    for filter in "" "order_date = '2024-03-01'"; do
        start=$(date +%s.%N)
        LAKEWARD_HOME="$home" "$bin" tables scan bronze.orders --explain ${filter:+--filter "$filter"}
        end=$(date +%s.%N)
        echo "  scan${filter:+ with $filter} took $(echo "$end - $start" | bc) s"
    done
    rm -rf "$home"
done
