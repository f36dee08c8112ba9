#!/usr/bin/env bash
# The SQL console against DuckDB on the e-commerce tables (issue 16), in one run on one machine:
#   1. the reference DAG at N orders (default 10M) in a fresh home;
#   2. a one-day filter on bronze.orders (COUNT(*)), end to end from the CLI (process start,
#      catalog, planning, scan), median and worst of 10; DuckDB on the same snapshot's files
#      beside it;
#   3. the four gold aggregations recomputed from silver (GROUP BY date, customer, product,
#      state): `lakeward sql` end to end from the CLI against DuckDB's in-process query time on
#      the same Parquet files (DuckDB's process start and file listing are not counted), best
#      of 3 each;
#   4. the API under 8 concurrent clients: `POST /api/v1/sql` for 1,000 rows, latency minus the
#      query's own time (the `elapsed_ms` the answer reports), p50 and p99.
#
# Usage: cargo build --release --bin lakeward && benches/sql.sh [ORDERS]
# Needs a Python with duckdb: PYTHON=~/.cache/lakeward/venv/bin/python (the test venv).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${LAKEWARD_BIN:-${CARGO_TARGET_DIR:-target}/release/lakeward}"
python="${PYTHON:-$HOME/.cache/lakeward/venv/bin/python}"
[ -x "$bin" ] || { echo "build first: cargo build --release --bin lakeward ($bin missing)" >&2; exit 1; }
"$python" -c "import duckdb" || { echo "PYTHON=$python has no duckdb" >&2; exit 1; }
orders="${1:-10000000}"
home="$(mktemp -d)"
trap 'kill ${web_pid:-} 2>/dev/null || true; rm -rf "$home"' EXIT
export LAKEWARD_HOME="$home" LAKEWARD_DAGS_FOLDER=dags

echo "=== the e-commerce DAG at $orders orders"
customers=$(( orders / 10 > 1000 ? orders / 10 : 1000 ))
start=$(date +%s.%N)
"$bin" dags test ecommerce_etl --date 2024-06-30 --param "orders=$orders" \
    --param "customers=$customers" --param "products=2000" > /dev/null
echo "built in $(echo "$(date +%s.%N) - $start" | bc) s"

now_ms() { date +%s%3N; }

echo "=== one-day filter on bronze.orders, CLI end to end (10 runs)"
day_query="SELECT COUNT(*) AS orders FROM bronze.orders WHERE order_date = '2024-06-15'"
"$bin" sql --explain "$day_query"
times=()
for _ in $(seq 1 10); do
    t0=$(now_ms)
    "$bin" sql --format csv "$day_query" > /dev/null
    times+=($(( $(now_ms) - t0 )))
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
echo "lakeward sql: median ${sorted[4]} ms, worst ${sorted[9]} ms (runs: ${times[*]})"

# The data files of a table's current snapshot, one per line (for DuckDB), as pyiceberg plans
# them from lakeward's SQL catalog.
table_files() {
    "$python" - "$home" "$1" <<'EOF'
import sys
from pyiceberg.catalog.sql import SqlCatalog
home, table = sys.argv[1], sys.argv[2]
catalog = SqlCatalog("lakeward", uri=f"sqlite:///{home}/lakeward.db", warehouse=f"file://{home}/warehouse")
for task in catalog.load_table(table).scan().plan_files():
    print(task.file.file_path.removeprefix("file://"))
EOF
}

"$python" - "$(table_files bronze.orders)" <<'EOF'
import sys, time, duckdb
files = sys.argv[1].split("\n")
con = duckdb.connect()
q = f"SELECT COUNT(*) FROM read_parquet({files!r}) WHERE order_date = DATE '2024-06-15'"
times = []
for _ in range(10):
    t0 = time.perf_counter(); con.execute(q).fetchall(); times.append((time.perf_counter() - t0) * 1000)
times.sort()
print(f"duckdb (in process, {len(files)} files listed): median {times[4]:.0f} ms, worst {times[9]:.0f} ms")
EOF

echo "=== gold aggregations from silver/orders_enriched (best of 3)"
silver="$home/warehouse/silver/orders_enriched/$(cat "$home/warehouse/silver/orders_enriched/_current")"
declare -A gold=(
  [daily_sales]="SELECT order_date AS date, COUNT(*) AS num_orders, SUM(revenue) AS total_revenue, COUNT(DISTINCT customer_id) AS unique_customers, AVG(revenue) AS avg_order_value FROM SILVER GROUP BY order_date ORDER BY date"
  [customer_metrics]="SELECT customer_id, COUNT(*) AS total_orders, SUM(revenue) AS lifetime_value, COUNT(DISTINCT order_date) AS days_active FROM SILVER GROUP BY customer_id ORDER BY customer_id"
  [product_performance]="SELECT product_id, category, SUM(quantity) AS units_sold, SUM(revenue) AS total_revenue FROM SILVER GROUP BY product_id, category ORDER BY total_revenue DESC"
  [regional_sales]="SELECT state, COUNT(*) AS num_orders, SUM(revenue) AS total_revenue, COUNT(DISTINCT customer_id) AS unique_customers FROM SILVER GROUP BY state ORDER BY total_revenue DESC"
)
for name in daily_sales customer_metrics product_performance regional_sales; do
    ours="${gold[$name]//SILVER/\"silver/orders_enriched\"}"
    best=999999
    for _ in 1 2 3; do
        t0=$(now_ms)
        "$bin" sql --format parquet --output "$home/out.parquet" "$ours" 2> /dev/null
        t=$(( $(now_ms) - t0 )); (( t < best )) && best=$t
    done
    theirs=$("$python" - "$silver" "${gold[$name]}" <<'EOF'
import sys, time, duckdb
silver, query = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"CREATE VIEW silver AS SELECT * FROM read_parquet('{silver}/**/*.parquet', hive_partitioning = true)")
best = 1e9
for _ in range(3):
    t0 = time.perf_counter(); con.execute(f"COPY ({query}) TO '/dev/null' (FORMAT parquet)"); best = min(best, time.perf_counter() - t0)
print(f"{best * 1000:.0f}")
EOF
)
    echo "$name: lakeward sql ${best} ms (CLI end to end), duckdb ${theirs} ms (in process): $(echo "scale=2; $best / $theirs" | bc)x"
done

echo "=== POST /api/v1/sql, 1,000 rows, 8 concurrent clients"
LAKEWARD_WEB_AUTH=false LAKEWARD_WEB_BIND=127.0.0.1:18093 "$bin" web > "$home/web.log" 2>&1 &
web_pid=$!
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/18093) 2>/dev/null && break; sleep 0.1; done
"$python" - <<'EOF'
import json, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
body = json.dumps({"query": "SELECT * FROM bronze.orders WHERE order_date >= '2024-06-01'", "limit": 1000}).encode()
def one(_):
    t0 = time.perf_counter()
    req = urllib.request.Request("http://127.0.0.1:18093/api/v1/sql", body, {"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(req))
    total = (time.perf_counter() - t0) * 1000
    assert answer["row_count"] == 1000, answer.get("error")
    return total, total - answer["elapsed_ms"]
for _ in range(5): one(0)
with ThreadPoolExecutor(8) as pool:
    results = list(pool.map(one, range(400)))
totals = sorted(r[0] for r in results); overhead = sorted(r[1] for r in results)
pick = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
print(f"latency p50 {pick(totals, .5):.1f} ms, p99 {pick(totals, .99):.1f} ms; "
      f"excluding the query's own time p50 {pick(overhead, .5):.1f} ms, p99 {pick(overhead, .99):.1f} ms")
EOF
