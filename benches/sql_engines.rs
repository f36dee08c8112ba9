//! Polars' two engines on the gold queries of the e-commerce DAG (issue 16), in process, on the
//! same silver files: what `lake::engine::Engine::for_query` chooses from, and the streaming
//! engine again on the plan `lake::engine::narrow_group_keys` rewrites (its check included).
//! For each query: the time of each and the answers' column sums (they must agree).
//!
//! Usage: `LAKEWARD_BENCH_SILVER=<a silver/orders_enriched version folder> cargo bench --bench
//! sql_engines` (`benches/sql.sh` builds one; `LAKEWARD_BENCH_QUERY=<name>` runs one query).

use std::path::Path;
use std::time::Instant;

use polars::prelude::{
    ChunkAgg, DataFrame, DataType, Engine, LazyFrame, PlRefPath, ScanArgsParquet,
};
use polars::sql::SQLContext;

const QUERIES: [(&str, &str); 4] = [
    (
        "daily_sales",
        "SELECT order_date AS date, COUNT(*) AS num_orders, SUM(revenue) AS total_revenue, \
         COUNT(DISTINCT customer_id) AS unique_customers, AVG(revenue) AS avg_order_value \
         FROM silver GROUP BY order_date ORDER BY date",
    ),
    (
        "customer_metrics",
        "SELECT customer_id, COUNT(*) AS total_orders, SUM(revenue) AS lifetime_value, \
         COUNT(DISTINCT order_date) AS days_active FROM silver GROUP BY customer_id \
         ORDER BY customer_id",
    ),
    (
        "product_performance",
        "SELECT product_id, category, SUM(quantity) AS units_sold, SUM(revenue) AS total_revenue \
         FROM silver GROUP BY product_id, category ORDER BY total_revenue DESC",
    ),
    (
        "regional_sales",
        "SELECT state, COUNT(*) AS num_orders, SUM(revenue) AS total_revenue, \
         COUNT(DISTINCT customer_id) AS unique_customers FROM silver GROUP BY state \
         ORDER BY total_revenue DESC",
    ),
];

fn main() {
    let silver = std::env::var("LAKEWARD_BENCH_SILVER")
        .expect("LAKEWARD_BENCH_SILVER: a silver/orders_enriched version folder");
    let files = lakeward::lake::data_files(Path::new(&silver)).unwrap();
    let only = std::env::var("LAKEWARD_BENCH_QUERY").ok();
    for (name, query) in QUERIES {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut line = format!("{name}:");
        let (mut sums, mut rows) = (Vec::new(), 0);
        for (engine, narrowed) in
            [(Engine::InMemory, false), (Engine::Streaming, false), (Engine::Streaming, true)]
        {
            let paths = files.iter().map(|f| PlRefPath::new(f.to_string_lossy().as_ref()));
            let scan = LazyFrame::scan_parquet_files(paths.collect(), ScanArgsParquet::default());
            let mut context = SQLContext::new();
            context.register("silver", scan.unwrap());
            let mut plan = context.execute(query).unwrap();
            let started = Instant::now();
            if narrowed {
                plan = lakeward::lake::engine::narrow_group_keys(plan);
            }
            let answer = plan.collect_with_engine(engine).unwrap().unwrap_single();
            let label = if narrowed { "narrowed" } else { "" };
            let took = started.elapsed().as_secs_f64() * 1e3;
            line += &format!(" {engine:?}{label} {took:.0} ms");
            sums.push(column_sums(&answer));
            rows = answer.height();
        }
        assert!(sums.iter().all(|s| *s == sums[0]), "{name}: the answers disagree");
        println!("{line} ({rows} rows)");
    }
}

/// Each numeric column's sum, rounded to the cent: what two answers must share.
fn column_sums(frame: &DataFrame) -> Vec<String> {
    frame
        .columns()
        .iter()
        .filter(|c| c.dtype().is_primitive_numeric())
        .map(|c| {
            let values = c.as_materialized_series().cast(&DataType::Float64).unwrap();
            format!("{}={:.2}", c.name(), values.f64().unwrap().sum().unwrap_or(0.0))
        })
        .collect()
}
