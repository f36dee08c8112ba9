#!/usr/bin/env python3
"""The e-commerce pipeline's data steps, lakeward against a DuckDB script, in one invocation.

For each size (orders; customers are a tenth, products 2,000 from 1M orders up, else 200):
  1. lakeward runs `dags/ecommerce.toml` without its Iceberg promotion tasks (`dags test`,
     release build, fresh home, SQLite): the seconds of each task and the peak RSS;
  2. DuckDB (its own process, 2 threads) runs the same steps on the very CSV files lakeward's
     `generate` wrote: ingest (typed read; rejected rows kept from the same read) into bronze
     Parquet, the DAG's quality checks (one query each, as a dbt-style script has them), the
     DAG's silver query with a partitioned write, its four gold queries, its report metrics.
     Every query is the DAG's own text, read from the TOML file;
  3. lakeward runs the whole DAG (with promotion) in another fresh home: what promotion adds.
With RUNS=N (default 1) each size gets N such rounds; the table then gives each step's median
and range, the ratio of the medians, and each round's data-steps ratio (on the 2-core
development machines one run of a step can differ from the next by a fifth, DuckDB's as much
as lakeward's, so one round proves little).
Both write zstd Parquet at level 1 (lakeward's level). The table says seconds per step, the
data steps' sum (ingest → report), their ratio and the peak RSS.

Usage: cargo build --release && PYTHON=~/.cache/lakeward/venv/bin/python \
           [RUNS=N] $PYTHON benches/pipeline_vs_duckdb.py [ORDERS...]   (default: 1000000 10000000)
"""

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAG = ROOT / "dags" / "ecommerce.toml"
STEPS = {
    "generate_sample_data": "generate",
    "ingest_to_bronze": "ingest",
    "validate_data_quality": "quality",
    "transform_to_silver": "silver",
    "aggregate_to_gold": "gold",
    "generate_report": "report",
}
DATA_STEPS = ["ingest", "quality", "silver", "gold", "report"]
# How DuckDB writes Parquet: zstd at level 1, as lakeward does (DuckDB's own default is 3).
DUCK_PARQUET = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"
DUCK_TYPES = {"integer": "BIGINT", "float": "DOUBLE", "string": "VARCHAR", "date": "DATE"}


def lakeward_bin():
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return os.environ.get("LAKEWARD_BIN", f"{target}/release/lakeward")


def sizes(orders):
    return orders // 10 if orders // 10 > 1000 else 1000, 2000 if orders >= 1_000_000 else 200


def run_lakeward(home, dags, orders):
    """Runs the DAG of folder `dags`; returns ({step: seconds}, peak RSS MiB, wall seconds)."""
    customers, products = sizes(orders)
    env = dict(os.environ, LAKEWARD_HOME=str(home), LAKEWARD_DAGS_FOLDER=str(dags))
    start = time.perf_counter()
    out = subprocess.run(
        [lakeward_bin(), "dags", "test", "ecommerce_etl", "--date", "2024-06-30",
         "--param", f"orders={orders}", "--param", f"customers={customers}",
         "--param", f"products={products}"],
        env=env, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - start
    steps = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] in STEPS and fields[1] == "success":
            steps[STEPS[fields[0]]] = float(fields[2])
    rss = float(re.search(r"peak RSS: ([\d.]+) MiB", out).group(1))
    return steps, rss, wall


def current_version(dataset):
    """The folder of a lakeward dataset's current version."""
    return dataset / (dataset / "_current").read_text().strip()


def duckdb_steps(raw, out):
    """The DAG's data steps in DuckDB (run in a process of its own); prints JSON."""
    import duckdb

    dag = tomllib.loads(DAG.read_text())
    tasks = dag["tasks"]
    db = duckdb.connect()
    db.execute("SET threads = 2")
    timings = {}
    bronze = out / "bronze"
    bronze.mkdir(parents=True)

    start = time.perf_counter()
    for name, table in tasks["ingest_to_bronze"]["tables"].items():
        csv = next(current_version(raw / name).glob("*.csv"))
        columns = ", ".join(f"'{c}': '{DUCK_TYPES[t]}'" for c, t in table["schema"].items())
        missing = " OR ".join(f"{c} IS NULL" for c in table["schema"])
        db.execute(f"""
            COPY (SELECT *, now() AS ingested_at,
                         CASE WHEN {missing} THEN 'missing_values' ELSE 'valid' END
                           AS data_quality_flag
                  FROM read_csv('{csv}', header = true, columns = {{{columns}}},
                                store_rejects = true, rejects_table = 'rejected_{name}',
                                rejects_scan = 'scan_{name}'))
            TO '{bronze / name}.parquet' ({DUCK_PARQUET})""")
        db.execute(f"COPY rejected_{name} TO '{bronze / name}_quarantine.parquet' (FORMAT parquet)")
    timings["ingest"] = time.perf_counter() - start

    start = time.perf_counter()
    quality = tasks["validate_data_quality"]
    for name, path in quality["datasets"].items():
        db.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM '{out / path}.parquet'")
    for check in quality["checks"]:
        db.execute(check_query(check)).fetchall()
    timings["quality"] = time.perf_counter() - start

    start = time.perf_counter()
    silver = tasks["transform_to_silver"]
    for name, path in silver["inputs"].items():
        db.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM '{out / path}.parquet'")
    for path, spec in silver["outputs"].items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        partitions = ", ".join(spec["partition_by"])
        db.execute(f"COPY ({spec['query']}) TO '{out / path}' "
                   f"({DUCK_PARQUET}, PARTITION_BY ({partitions}))")
    timings["silver"] = time.perf_counter() - start

    start = time.perf_counter()
    gold = tasks["aggregate_to_gold"]
    db.execute(f"CREATE OR REPLACE VIEW silver AS SELECT * FROM "
               f"read_parquet('{out}/silver/orders_enriched/**/*.parquet', hive_partitioning = true)")
    (out / "gold").mkdir()
    for path, spec in gold["outputs"].items():
        db.execute(f"COPY ({spec['query']}) TO '{out / path}.parquet' ({DUCK_PARQUET})")
    timings["gold"] = time.perf_counter() - start

    start = time.perf_counter()
    report = tasks["generate_report"]
    db.execute(f"CREATE OR REPLACE VIEW daily AS SELECT * FROM '{out}/gold/daily_sales.parquet'")
    metrics = {name: db.execute(query).fetchall() for name, query in report["metrics"].items()}
    (out / "gold" / "kpi_report.json").write_text(json.dumps(metrics, default=str))
    timings["report"] = time.perf_counter() - start

    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"steps": timings, "rss": rss_mib}))


def check_query(check):
    """A quality check of the DAG as the one query a script would run for it."""
    table = check["dataset"]
    columns = check.get("columns", []) + ([check["column"]] if "column" in check else [])
    kind = check["check"]
    if kind == "row_count":
        return f"SELECT COUNT(*) FROM {table}"
    if kind == "not_null":
        return f"SELECT COUNT(*) FROM {table} WHERE " + " OR ".join(f"{c} IS NULL" for c in columns)
    if kind == "unique":
        keys = ", ".join(columns)
        return f"SELECT COUNT(*) FROM (SELECT {keys} FROM {table} GROUP BY {keys} HAVING COUNT(*) > 1)"
    if kind == "relationship":
        return (f"SELECT COUNT(*) FROM {table} t WHERE t.{check['column']} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {check['to']} r WHERE r.{check['field']} = t.{check['column']})")
    if kind == "accepted_values":
        values = ", ".join(f"'{v}'" for v in check["values"])
        return f"SELECT COUNT(*) FROM {table} WHERE {check['column']} NOT IN ({values})"
    if kind == "range":
        bounds = []
        if "min" in check:
            bounds.append(f"{check['column']} < {check['min']}")
        if "max" in check:
            bounds.append(f"{check['column']} > {check['max']}")
        return f"SELECT COUNT(*) FROM {table} WHERE " + " OR ".join(bounds)
    if kind == "sql":
        return f"SELECT COUNT(*) FROM {table} WHERE NOT ({check['predicate']})"
    raise ValueError(f"unknown check {kind}")


def one_round(orders):
    """One run of each side at `orders`: lakeward without promotion, DuckDB on the CSV files
    it generated, then lakeward's whole DAG in another home."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        unpromoted = scratch / "dags"
        unpromoted.mkdir()
        text = DAG.read_text()
        (unpromoted / "ecommerce.toml").write_text(text[:text.index("[tasks.promote_")])
        lake, lake_rss, lake_wall = run_lakeward(scratch / "home", unpromoted, orders)
        duck_run = subprocess.run(
            [sys.executable, __file__, "--duckdb", str(scratch / "home/warehouse/raw"),
             str(scratch / "duckdb")], check=True, capture_output=True, text=True)
        duck = json.loads(duck_run.stdout)
        _, full_rss, full_wall = run_lakeward(scratch / "home_full", ROOT / "dags", orders)
    lake["total"] = sum(lake[s] for s in DATA_STEPS)
    duck["steps"]["total"] = sum(duck["steps"][s] for s in DATA_STEPS)
    return {
        "lake": lake, "duck": duck["steps"], "lake_rss": lake_rss, "duck_rss": duck["rss"],
        "lake_wall": lake_wall, "full_wall": full_wall, "full_rss": full_rss,
        "added": 100 * (full_wall - lake_wall) / lake_wall,
    }


def spread(values):
    """The median, and the range when there is more than one value."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(orders_list, runs):
    print(f"lakeward: {lakeward_bin()}; DuckDB {__import__('duckdb').__version__}, 2 threads; "
          f"{runs} round(s) per size, the two sides taking turns")
    for orders in orders_list:
        rounds = [one_round(orders) for _ in range(runs)]
        generate = statistics.median([r["lake"]["generate"] for r in rounds])
        print(f"\n=== {orders:,} orders (generate: {generate:.2f} s, not counted)")
        if runs > 1:
            print("medians (and ranges) over the rounds; the ratio is that of the medians")
        print(f"{'step':<10}{'lakeward':>22}{'DuckDB':>22}{'ratio':>8}")
        for step in DATA_STEPS + ["total"]:
            lake = [r["lake"][step] for r in rounds]
            duck = [r["duck"][step] for r in rounds]
            ratio = statistics.median(lake) / statistics.median(duck)
            print(f"{step:<10}{spread(lake):>22}{spread(duck):>22}{ratio:>8.2f}")
        lake_rss = max(r["lake_rss"] for r in rounds)
        duck_rss = max(r["duck_rss"] for r in rounds)
        print(f"{'peak RSS':<10}{lake_rss:>20.0f}MB{duck_rss:>20.0f}MB")
        if runs > 1:
            ratios = ", ".join(f"{r['lake']['total'] / r['duck']['total']:.2f}" for r in rounds)
            print(f"data steps' ratio per round: {ratios}")
        added = [r["added"] for r in rounds]
        without = statistics.median([r["lake_wall"] for r in rounds])
        with_promotion = statistics.median([r["full_wall"] for r in rounds])
        print(f"whole DAG: {without:.2f} s without promotion, {with_promotion:.2f} s with (added: "
              f"{', '.join(f'{a:+.0f}%' for a in added)}), peak RSS with promotion "
              f"{max(r['full_rss'] for r in rounds):.0f} MB")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--duckdb"]:
        duckdb_steps(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main([int(n) for n in sys.argv[1:]] or [1_000_000, 10_000_000],
             int(os.environ.get("RUNS", "1")))
