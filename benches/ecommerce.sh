#!/usr/bin/env bash
# End-to-end benchmark of the reference pipeline: `lakeward dags test ecommerce_etl` at several
# sizes, each in a fresh home (SQLite state, local warehouse). Prints each task's time (the
# promote_* tasks are the Iceberg promotion), the total, and peak RSS (from the summary
# `dags test` prints); then the size of each Iceberg table and a full scan against a one-day
# partition-filtered scan of bronze.orders (files planned, time).
#
# Usage: cargo build --release && benches/ecommerce.sh [ORDERS...]   (default: 5000 1000000 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${LAKEWARD_BIN:-${CARGO_TARGET_DIR:-target}/release/lakeward}"
[ -x "$bin" ] || { echo "build first: cargo build --release ($bin missing)" >&2; exit 1; }
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(5000 1000000 10000000)
for orders in "${sizes[@]}"; do
    home="$(mktemp -d)"
    customers=$(( orders / 10 > 1000 ? orders / 10 : 1000 ))
    products=$(( orders >= 1000000 ? 2000 : 200 ))
    echo "=== $orders orders, $customers customers, $products products"
    start=$(date +%s.%N)
    LAKEWARD_HOME="$home" "$bin" dags test ecommerce_etl --date 2024-06-30 \
        --param "orders=$orders" --param "customers=$customers" --param "products=$products" \
        | sed -n '/^TASK/,$p'
    end=$(date +%s.%N)
    echo "wall time of the whole command: $(echo "$end - $start" | bc) s"
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
