//! The e-commerce DAG against a real S3-protocol server (`.ci/run` starts one): datasets, the
//! KPI report and the Iceberg tables land in the bucket, SQL reads a table back through the
//! cache into another, and the figures equal those of a run on a local folder.
//!
//! Needs `LAKEWARD_TEST_S3_ENDPOINT` (e.g. `http://127.0.0.1:8014`), `LAKEWARD_TEST_S3_BUCKET`,
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; skipped without them except under CI=true.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, HarnessOptions};
use lakeward::dag::folder::load_file;
use lakeward::domain::RunState;
use lakeward::jobs::Registry;
use lakeward::lake::query::{render, Console, Limits};
use lakeward::lake::tables::{TablesHandle, WriteMode};
use lakeward::lake::Warehouse;
use lakeward::scheduler::trigger::RunRequest;
use serde_json::{json, Value};

async fn run_ecommerce(warehouse: Warehouse) -> Value {
    let db = common::sqlite();
    let options = HarnessOptions { warehouse: Some(warehouse.clone()), ..Default::default() };
    let h = Harness::start_with(&db, options).await;
    let dag = Arc::new(load_file(Path::new("dags/ecommerce.toml"), &Registry::builtin()).unwrap());
    let params = json!({ "orders": 3000, "customers": 300, "products": 40 });
    let logical = lakeward::schedule::parse_date("2024-06-30", chrono_tz::UTC).unwrap();
    let run =
        h.trigger(&dag, RunRequest::manual(logical, params.as_object().cloned().unwrap())).await;
    let done = h.wait(&run, Duration::from_secs(120)).await;
    assert_eq!(done.state, RunState::Success, "{:#?}", h.tasks(&run).await);
    // The Iceberg tables live in the same warehouse, and read back through it.
    let tables = lakeward::lake::tables::Tables::open(&h.store, &warehouse, &Default::default())
        .await
        .unwrap();
    let silver = tables.describe("silver.orders_enriched").await.unwrap();
    let daily = tables.describe("gold.daily_sales").await.unwrap();
    assert_eq!(daily.rows, 365);
    let scanned = tables.scan("gold.daily_sales", &Default::default()).await.unwrap();
    assert_eq!(scanned.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 365);
    let compacted = tables.compact("bronze.orders").await.unwrap();
    assert!(compacted.snapshot_id.is_none(), "one file per day: nothing to compact");
    // Small appends, then compaction and expiry, on this warehouse.
    let dataset = warehouse.dataset("bronze/customers").unwrap();
    let data = tokio::task::spawn_blocking(move || dataset.current().unwrap()).await.unwrap();
    for _ in 0..2 {
        tables.promote("bronze.customers", &data, &[], WriteMode::Append).await.unwrap();
    }
    let before = tables.describe("bronze.customers").await.unwrap();
    let compacted = tables.compact("bronze.customers").await.unwrap();
    assert_eq!((compacted.files_before, compacted.files_after), (3, 1));
    let expired = tables.expire_snapshots("bronze.customers", i64::MAX, 1).await.unwrap();
    assert_eq!(expired.expired_snapshots.len(), 3);
    assert!(expired.deleted_files >= 3, "{expired:?}");
    let after = tables.scan("bronze.customers", &Default::default()).await.unwrap();
    assert_eq!(after.batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(), before.rows);
    // SQL over a table (its files read through the warehouse's cache) into another table.
    let monthly = r#"
        [tasks.monthly]
        kind = "sql"
        inputs = { daily = "gold.daily_sales" }
        [tasks.monthly.outputs."gold.monthly_sales"]
        query = """SELECT date_trunc('day', CAST("date" AS TIMESTAMP)) AS day, total_revenue
                   FROM daily"""
        partition_by = ["month(day)"]
    "#;
    let monthly =
        Arc::new(lakeward::dag::compile("m.toml", monthly, "m", &Registry::builtin()).unwrap());
    let tasks = h.run_to_success(&monthly, Duration::from_secs(60)).await;
    assert_eq!(tasks[0].outputs["gold.monthly_sales"]["rows"], 365);
    let monthly = tables.scan("gold.monthly_sales", &Default::default()).await.unwrap();
    let revenue: f64 = monthly
        .batches
        .iter()
        .map(|b| lakeward::lake::tables::number_column(b, "total_revenue").unwrap())
        .map(|c| c.values().iter().sum::<f64>())
        .sum();
    // The SQL console over the same warehouse: a table's planned files fetched through the
    // cache, the others pruned by a one-day filter.
    let handle = TablesHandle::new(h.store.clone(), warehouse.clone(), Default::default());
    let limits = Limits { timeout: Duration::from_secs(30), max_rows: 1_000 };
    let console = Console::new(warehouse.clone(), handle, limits);
    let mut answer = console
        .run("SELECT SUM(total_revenue) AS revenue FROM gold.daily_sales", 10)
        .await
        .unwrap();
    let console_revenue = render::json_rows(&mut answer.frame).unwrap()[0][0].clone();
    let day = "SELECT COUNT(*) AS n FROM bronze.orders WHERE order_date = '2024-06-15'";
    let plans = console.explain(day).await.unwrap();
    assert_eq!(plans[0].planned_files, 1, "{plans:?}");
    let mut one_day = console.run(day, 10).await.unwrap();
    let one_day = render::json_rows(&mut one_day.frame).unwrap()[0][0].clone();
    h.stop().await;
    let report = tokio::task::spawn_blocking(move || warehouse.read_text("gold/kpi_report.json"))
        .await
        .unwrap()
        .unwrap();
    let mut metrics = serde_json::from_str::<Value>(&report).unwrap()["metrics"].clone();
    metrics["silver_table_rows"] = json!(silver.rows);
    metrics["table_location"] = json!(silver.location);
    metrics["revenue_through_sql"] = json!(revenue);
    metrics["revenue_through_the_console"] = console_revenue;
    metrics["orders_on_one_day"] = one_day;
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_the_same_on_s3() {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let (Ok(endpoint), Ok(bucket)) =
        (std::env::var("LAKEWARD_TEST_S3_ENDPOINT"), std::env::var("LAKEWARD_TEST_S3_BUCKET"))
    else {
        assert!(
            !in_ci,
            "LAKEWARD_TEST_S3_ENDPOINT and LAKEWARD_TEST_S3_BUCKET must be set when CI=true"
        );
        eprintln!("skipping: no S3 test server configured");
        return;
    };
    // The object store client reads AWS_* from the environment, which tests may not change
    // (they share one process): `.ci/run` sets them for the test server.
    for (name, value) in [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
    ] {
        assert_eq!(std::env::var(name).as_deref(), Ok(value), "{name} must be set for the S3 test");
    }
    let cache = tempfile::tempdir().unwrap();
    let prefix = format!("test-{}-{}", std::process::id(), lakeward::time::now_micros());
    let remote = Warehouse::connect(&format!("s3://{bucket}/{prefix}"), cache.path()).unwrap();
    let on_s3 = run_ecommerce(remote.clone()).await;

    let local_dir = tempfile::tempdir().unwrap();
    let local = Warehouse::open(local_dir.path().to_str().unwrap()).unwrap();
    let on_disk = run_ecommerce(local).await;
    for exact in ["total_orders", "total_customers"] {
        assert_eq!(on_s3[exact], on_disk[exact], "{exact}");
    }
    assert_eq!(on_s3["best_day"]["date"], on_disk["best_day"]["date"]);
    for float in ["total_revenue", "avg_order_value"] {
        let (a, b) = (on_s3[float].as_f64().unwrap(), on_disk[float].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-9 * b.abs(), "{float}: {a} on S3, {b} on disk");
    }
    assert!(on_s3["total_orders"].as_u64().unwrap() > 2000);
    let through_sql = on_s3["revenue_through_sql"].as_f64().unwrap();
    let revenue = on_s3["total_revenue"].as_f64().unwrap();
    assert!((through_sql - revenue).abs() <= 1e-6 * revenue, "{through_sql} vs {revenue}");
    let console = on_s3["revenue_through_the_console"].as_f64().unwrap();
    assert!((console - revenue).abs() <= 1e-6 * revenue, "{console} vs {revenue}");
    assert_eq!(on_s3["orders_on_one_day"], on_disk["orders_on_one_day"]);
    assert!(on_s3["orders_on_one_day"].as_u64().unwrap() > 0);
    assert_eq!(on_s3["silver_table_rows"], on_s3["total_orders"]);
    assert_eq!(on_s3["silver_table_rows"], on_disk["silver_table_rows"]);
    let location = on_s3["table_location"].as_str().unwrap();
    assert!(location.starts_with(&format!("s3://{bucket}/{prefix}/iceberg/")), "{location}");

    // The bucket holds the published datasets, read back through a fresh cache.
    let fresh_cache = tempfile::tempdir().unwrap();
    let reader =
        Warehouse::connect(&format!("s3://{bucket}/{prefix}"), fresh_cache.path()).unwrap();
    let daily = tokio::task::spawn_blocking(move || {
        let dataset = reader.dataset("gold/daily_sales").unwrap();
        lakeward::lake::scan(&dataset, &Default::default()).unwrap().collect().unwrap().height()
    })
    .await
    .unwrap();
    assert_eq!(daily, 365);
}
