//! The data task kinds through the real scheduler and worker: happy paths, bad input data
//! (quarantined and counted), failing checks, and idempotent re-runs.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, HarnessOptions};
use lakeward::dag::compile;
use lakeward::domain::{RunState, TaskState};
use lakeward::jobs::Registry;
use lakeward::lake::Warehouse;
use lakeward::scheduler::trigger::RunRequest;
use lakeward::store::TaskInstanceRow;
use serde_json::{json, Value};

/// Runs `source` as a DAG against a warehouse in `dir`; returns the run's state and tasks.
async fn run(dir: &Path, source: &str) -> (RunState, Vec<TaskInstanceRow>) {
    let db = common::sqlite();
    let options = HarnessOptions {
        warehouse: Some(Warehouse::open(dir.join("warehouse").to_str().unwrap()).unwrap()),
        ..Default::default()
    };
    let h = Harness::start_with(&db, options).await;
    let dag = Arc::new(compile("jobs.toml", source, "jobs", &Registry::builtin()).unwrap());
    let logical = lakeward::schedule::parse_date("2024-06-30", chrono_tz::UTC).unwrap();
    let run = h.trigger(&dag, RunRequest::manual(logical, Default::default())).await;
    let state = h.wait(&run, Duration::from_secs(60)).await.state;
    let tasks = h.tasks(&run).await;
    h.stop().await;
    (state, tasks)
}

fn rows(dir: &Path, dataset: &str) -> Vec<Value> {
    let warehouse = Warehouse::open(dir.join("warehouse").to_str().unwrap()).unwrap();
    common::dataset_rows(&warehouse, dataset)
}

fn write(dir: &Path, relative: &str, text: &str) {
    let path = dir.join("warehouse").join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_is_deterministic_and_reruns_replace_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let dag = r#"
        [tasks.gen]
        kind = "generate"
        output = "raw"
        orders = 2000
        customers = 100
        products = 20
        dirty_fraction = 0.05
        seed = 7
    "#;
    let (state, tasks) = run(dir.path(), dag).await;
    assert_eq!(state, RunState::Success);
    let outputs = &tasks[0].outputs;
    assert_eq!(outputs["orders"]["rows"], 2000);
    let dirty = outputs["orders"]["dirty_rows"].as_u64().unwrap();
    assert!((50..=150).contains(&dirty), "about 5% of 2000 orders should be dirty, got {dirty}");
    let first = rows(dir.path(), "raw/orders");
    assert_eq!(first.len(), 2000);

    run(dir.path(), dag).await;
    assert_eq!(
        rows(dir.path(), "raw/orders"),
        first,
        "same seed, same data; the re-run replaced it"
    );
    let statuses: std::collections::HashSet<_> =
        first.iter().map(|r| r["status"].clone()).collect();
    assert!(statuses.contains(&json!("unknown")) && statuses.contains(&json!("cancelled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_quarantines_rows_that_do_not_fit_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "landing/orders.csv",
        "order_id,order_date,quantity,note\n1,2024-01-01,3,fine\n2,2024-13-45,1,bad date\n3,2024-01-02,lots,bad number\n4,2024-01-03,,missing quantity\n",
    );
    write(
        dir.path(),
        "landing/events.jsonl",
        "{\"id\": 1, \"kind\": \"click\"}\nnot json at all\n{\"id\": 2, \"kind\": \"view\"}\n",
    );
    let dag = r#"
        [tasks.ingest]
        kind = "ingest"
        [tasks.ingest.tables.orders]
        input = "landing/orders.csv"
        output = "bronze/orders"
        schema = { order_id = "integer", order_date = "date", quantity = "integer" }
        [tasks.ingest.tables.events]
        input = "landing/events.jsonl"
        output = "bronze/events"
    "#;
    for _ in 0..2 {
        let (state, tasks) = run(dir.path(), dag).await;
        assert_eq!(state, RunState::Success);
        let outputs = &tasks[0].outputs;
        assert_eq!(
            (outputs["orders"]["rows"].clone(), outputs["orders"]["quarantined"].clone()),
            (json!(2), json!(2))
        );
        assert_eq!(
            (outputs["events"]["rows"].clone(), outputs["events"]["quarantined"].clone()),
            (json!(2), json!(1))
        );

        let bronze = rows(dir.path(), "bronze/orders");
        assert_eq!(bronze.len(), 2, "re-running replaces, never duplicates");
        assert_eq!(bronze[0]["order_date"], "2024-01-01");
        assert_eq!(bronze[0]["data_quality_flag"], "valid");
        assert_eq!(bronze[1]["data_quality_flag"], "missing_values");
        assert!(bronze[0]["ingested_at"].is_string() || bronze[0]["ingested_at"].is_number());
        let quarantined = rows(dir.path(), "bronze/orders_quarantine");
        let reasons: Vec<_> =
            quarantined.iter().map(|r| r["_error"].as_str().unwrap().to_string()).collect();
        assert_eq!(reasons, ["order_date: not a valid date", "quantity: not a valid integer"]);
        assert_eq!(quarantined[1]["quantity"], "lots", "quarantined rows keep the raw values");
        assert_eq!(
            rows(dir.path(), "bronze/events_quarantine_lines")[0]["_raw"],
            "not json at all"
        );
    }
}

/// Dirty files as they come: a stray quote, invalid UTF-8, extra and missing fields, in CSV
/// and JSON lines, over two files. Every bad record is quarantined with its file, line and
/// reason, the rest is ingested, booleans read in their usual spellings, and empty and
/// header-only files are simply empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_quarantines_malformed_records_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("warehouse/landing/orders");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(
        landing.join("a.csv"),
        b"id,paid,amount\n1,true,10\n2,\"oops,20\n3,No,30,extra\n4,Y,40\n".as_slice(),
    )
    .unwrap();
    std::fs::write(landing.join("b.csv"), b"id,paid,amount\n5,\xff,50\n6,0\n7,maybe,70\n8,F,80\n")
        .unwrap();
    std::fs::write(
        dir.path().join("warehouse/landing/events.jsonl"),
        b"{\"id\": 1}\n{\"id\": \"\xfe\"}\n[2]\n",
    )
    .unwrap();
    write(dir.path(), "landing/empty.csv", "");
    write(dir.path(), "landing/header_only.csv", "id,paid\n");
    let dag = r#"
        [tasks.ingest]
        kind = "ingest"
        [tasks.ingest.tables.orders]
        input = "landing/orders"
        output = "bronze/orders"
        schema = { id = "integer", paid = "boolean", amount = "integer" }
        [tasks.ingest.tables.events]
        input = "landing/events.jsonl"
        output = "bronze/events"
        [tasks.ingest.tables.empty]
        input = "landing/empty.csv"
        output = "bronze/empty"
        schema = { id = "integer", paid = "boolean" }
        [tasks.ingest.tables.header_only]
        input = "landing/header_only.csv"
        output = "bronze/header_only"
        schema = { id = "integer", paid = "boolean" }
    "#;
    let (state, tasks) = run(dir.path(), dag).await;
    assert_eq!(state, RunState::Success, "{:?}", tasks[0].error);
    let outputs = &tasks[0].outputs;
    assert_eq!(outputs["orders"]["rows"], 3, "{outputs:?}");
    assert_eq!(outputs["orders"]["malformed"], 4, "{outputs:?}");
    assert_eq!(outputs["orders"]["quarantined"], 5, "{outputs:?}");
    assert_eq!(
        (outputs["empty"]["rows"].clone(), outputs["header_only"]["rows"].clone()),
        (json!(0), json!(0))
    );
    let bronze = rows(dir.path(), "bronze/orders");
    let got: Vec<(i64, bool)> =
        bronze.iter().map(|r| (r["id"].as_i64().unwrap(), r["paid"].as_bool().unwrap())).collect();
    assert_eq!(got, [(1, true), (4, true), (8, false)]);
    assert!(bronze[0].get("_line").is_none(), "origin columns stay out of bronze");

    let lines = rows(dir.path(), "bronze/orders_quarantine_lines");
    let where_why: Vec<(String, i64, String)> = lines
        .iter()
        .map(|r| {
            let file = r["_file"].as_str().unwrap().to_string();
            (file, r["_line"].as_i64().unwrap(), r["_error"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        where_why,
        [
            ("landing/orders/a.csv".to_string(), 3, "expected 3 fields, found 2".to_string()),
            ("landing/orders/a.csv".to_string(), 4, "expected 3 fields, found 4".to_string()),
            ("landing/orders/b.csv".to_string(), 2, "field 2 is not valid UTF-8".to_string()),
            ("landing/orders/b.csv".to_string(), 3, "expected 3 fields, found 2".to_string()),
        ]
    );
    let typed = rows(dir.path(), "bronze/orders_quarantine");
    assert_eq!(typed.len(), 1);
    assert_eq!(
        (typed[0]["_file"].as_str(), typed[0]["_line"].as_i64(), typed[0]["_error"].as_str()),
        (Some("landing/orders/b.csv"), Some(4), Some("paid: not a valid boolean"))
    );
    let events = rows(dir.path(), "bronze/events_quarantine_lines");
    let reasons: Vec<(i64, &str)> = events
        .iter()
        .map(|r| (r["_line"].as_i64().unwrap(), r["_error"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, [(2, "not valid UTF-8"), (3, "not a JSON object")]);

    // A file that cannot be read fails the task, naming it.
    let unreadable = landing.join("c.csv");
    std::fs::write(&unreadable, "id,paid,amount\n").unwrap();
    std::fs::set_permissions(&unreadable, std::os::unix::fs::PermissionsExt::from_mode(0o000))
        .unwrap();
    if std::fs::read(&unreadable).is_err() {
        let (state, tasks) = run(dir.path(), dag).await;
        assert_eq!(state, RunState::Failed);
        let error = tasks[0].error.clone().unwrap_or_default();
        assert!(error.contains("cannot read `landing/orders/c.csv`"), "{error}");
    }
}

/// The date range of each row group of the Parquet files under `dir`, file by file.
fn row_group_days(dir: &Path) -> Vec<(i64, i32, i32)> {
    let mut files: Vec<_> = walk_parquet(dir);
    files.sort();
    let mut days = Vec::new();
    for path in files {
        let file = std::fs::File::open(&path).unwrap();
        let metadata =
            parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&file).unwrap();
        let schema = metadata.file_metadata().schema_descr();
        let column =
            (0..schema.num_columns()).find(|&i| schema.column(i).name() == "order_date").unwrap();
        for group in metadata.row_groups() {
            let statistics = group.column(column).statistics().unwrap();
            let parquet::file::statistics::Statistics::Int32(day) = statistics else { panic!() };
            days.push((group.num_rows(), *day.min_opt().unwrap(), *day.max_opt().unwrap()));
        }
    }
    days
}

/// The bytes of each row group of the Parquet file `path`, from its first column chunk's
/// start to its last one's end.
fn row_group_bytes(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let file = std::fs::File::open(path).unwrap();
    let metadata =
        parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&file).unwrap();
    let mut groups = Vec::new();
    for group in metadata.row_groups() {
        let ranges: Vec<(u64, u64)> = group.columns().iter().map(|c| c.byte_range()).collect();
        let start = ranges.iter().map(|(start, _)| *start).min().unwrap() as usize;
        let end = ranges.iter().map(|(start, len)| start + len).max().unwrap() as usize;
        groups.push(bytes[start..end].to_vec());
    }
    groups
}

fn walk_parquet(dir: &Path) -> Vec<std::path::PathBuf> {
    common::walk(dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

/// `cluster_by` on an ingest table: one file, a row group per day in ascending order (each
/// day's rows in the order read), bad rows still quarantined. Promoted by day, each row group
/// becomes a table file as it is; by month, a month's row groups share one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_clusters_by_day_and_promotion_takes_the_row_groups_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "landing/orders.csv",
        "order_id,order_date,amount\n1,2024-02-01,1.5\n2,2024-01-31,2\n3,2024-02-01,3\n\
         4,2024-01-30,4\n5,not a date,5\n6,2024-01-31,6\n",
    );
    let dag = r#"
        [tasks.ingest]
        kind = "ingest"
        [tasks.ingest.tables.orders]
        input = "landing/orders.csv"
        output = "bronze/orders"
        schema = { order_id = "integer", order_date = "date", amount = "float" }
        cluster_by = ["order_date"]
        [tasks.by_day]
        kind = "iceberg"
        depends_on = ["ingest"]
        table = "bronze.orders"
        input = "bronze/orders"
        partition_by = ["day(order_date)"]
        [tasks.by_month]
        kind = "iceberg"
        depends_on = ["ingest"]
        table = "bronze.orders_monthly"
        input = "bronze/orders"
        partition_by = ["month(order_date)"]
    "#;
    let (state, tasks) = run(dir.path(), dag).await;
    assert_eq!(state, RunState::Success, "{tasks:#?}");
    let ingest = tasks.iter().find(|t| t.task_id == "ingest").unwrap();
    assert_eq!(
        (ingest.outputs["orders"]["rows"].clone(), ingest.outputs["orders"]["quarantined"].clone()),
        (json!(5), json!(1))
    );
    let ids: Vec<_> =
        rows(dir.path(), "bronze/orders").iter().map(|r| r["order_id"].clone()).collect();
    assert_eq!(ids, [json!(4), json!(2), json!(6), json!(1), json!(3)]);

    let warehouse = dir.path().join("warehouse");
    let dataset = warehouse.join("bronze/orders");
    let version = dataset.join(std::fs::read_to_string(dataset.join("_current")).unwrap().trim());
    // 2024-01-30 is day 19752 since the epoch.
    assert_eq!(row_group_days(&version), [(1, 19752, 19752), (2, 19753, 19753), (2, 19754, 19754)]);
    let dataset_bytes = std::fs::read(&walk_parquet(&version)[0]).unwrap();
    for (table, task, days) in [
        ("orders", "by_day", vec![(1, 19752, 19752), (2, 19753, 19753), (2, 19754, 19754)]),
        (
            "orders_monthly",
            "by_month",
            vec![(1, 19752, 19752), (2, 19753, 19753), (2, 19754, 19754)],
        ),
    ] {
        let data = warehouse.join("iceberg/bronze").join(table).join("data");
        let promoted = tasks.iter().find(|t| t.task_id == task).unwrap();
        assert_eq!(promoted.outputs["rows"], 5, "{task}");
        let files = walk_parquet(&data);
        assert_eq!(promoted.outputs["files"], files.len(), "{task}");
        assert_eq!(files.len(), if task == "by_day" { 3 } else { 2 }, "{task}");
        let mut found = row_group_days(&data);
        found.sort_by_key(|(_, day, _)| *day);
        assert_eq!(found, days, "{task}: the row groups, as they were");
        for file in files {
            for row_group in row_group_bytes(&file) {
                assert!(
                    dataset_bytes.windows(row_group.len()).any(|bytes| bytes == row_group),
                    "{task}: a row group of {} was not copied from the dataset's file",
                    file.display()
                );
            }
        }
    }
}

/// A task writing several datasets publishes them together: when one output fails, the
/// others keep their previous version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_multi_output_task_changes_no_dataset() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "landing/a.csv", "x\n1\n");
    let good = r#"
        [tasks.split]
        kind = "sql"
        inputs = { a = "landing/a.csv" }
        outputs."silver/one" = { query = "SELECT x FROM a" }
        outputs."silver/two" = { query = "SELECT x * 2 AS y FROM a" }
    "#;
    assert_eq!(run(dir.path(), good).await.0, RunState::Success);
    let before = (rows(dir.path(), "silver/one"), rows(dir.path(), "silver/two"));
    write(dir.path(), "landing/a.csv", "x\n5\n");
    let broken = good.replace("SELECT x * 2 AS y FROM a", "SELECT no_such_column FROM a");
    assert_eq!(run(dir.path(), &broken).await.0, RunState::Failed);
    assert_eq!(
        (rows(dir.path(), "silver/one"), rows(dir.path(), "silver/two")),
        before,
        "the first output was written but must not be published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_error_checks_fail_the_task_with_a_report_and_keep_the_results() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "landing/customers.csv", "customer_id,segment\n1,Premium\n2,Gold\n2,Basic\n");
    write(
        dir.path(),
        "landing/orders.csv",
        "order_id,customer_id,amount\n10,1,5.0\n11,9,-1.0\n12,,3.0\n",
    );
    let dag = r#"
        [tasks.check]
        kind = "quality"
        datasets = { customers = "landing/customers.csv", orders = "landing/orders.csv" }
        checks = [
          { check = "unique", dataset = "customers", column = "customer_id" },
          { check = "accepted_values", dataset = "customers", column = "segment", values = ["Premium", "Standard", "Basic"], severity = "warn" },
          { check = "relationship", dataset = "orders", column = "customer_id", to = "customers", field = "customer_id" },
          { check = "not_null", dataset = "orders", column = "customer_id", severity = "warn" },
          { check = "range", dataset = "orders", column = "amount", min = 0 },
          { check = "sql", dataset = "orders", predicate = "amount < 100" },
          { check = "row_count", dataset = "orders", min = 1, max = 2 },
          { check = "sql", dataset = "orders", predicate = "amount > 0", severity = "warn", name = "positive" },
          { check = "unique", dataset = "customers", columns = ["customer_id", "segment"], severity = "warn" },
        ]
    "#;
    let (state, tasks) = run(dir.path(), dag).await;
    assert_eq!(state, RunState::Failed);
    let ti = &tasks[0];
    assert_eq!(ti.try_number, 1, "failed checks are not retried");
    let error = ti.error.clone().unwrap();
    assert!(error.starts_with("4 quality check(s) failed:"), "{error}");
    assert!(error.contains("customers.unique customer_id: 2 failing rows"), "{error}");
    assert!(
        error.contains("orders.relationship customer_id -> customers.customer_id: 1 failing rows"),
        "{error}"
    );
    assert!(error.contains("orders.range amount: 1 failing rows"), "{error}");
    assert!(error.contains("orders.row_count: 3 failing rows"), "{error}");
    let checks = ti.outputs["checks"].as_array().unwrap();
    let by_name = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap().clone();
    assert_eq!(by_name("customers.accepted_values segment")["failing_rows"], 1);
    assert_eq!(by_name("customers.accepted_values segment")["sample"][0]["segment"], "Gold");
    assert_eq!(by_name("orders.not_null customer_id")["severity"], "warn");
    assert_eq!(by_name("orders.sql `amount < 100`")["passed"], true);
    assert_eq!(by_name("positive")["failing_rows"], 1);
    assert_eq!(by_name("positive")["sample"][0]["order_id"], 11);
    assert_eq!(by_name("customers.unique customer_id, segment")["passed"], true);
    assert_eq!(
        (ti.outputs["failed_errors"].clone(), ti.outputs["failed_warnings"].clone()),
        (json!(4), json!(3))
    );

    // A check naming a column the dataset lacks fails the task and says which check.
    let dag = r#"
        [tasks.check]
        kind = "quality"
        datasets = { orders = "landing/orders.csv" }
        checks = [
          { check = "row_count", dataset = "orders", min = 1 },
          { check = "not_null", dataset = "orders", column = "amount_typo" },
        ]
    "#;
    let (state, tasks) = run(dir.path(), dag).await;
    assert_eq!(state, RunState::Failed);
    let error = tasks[0].error.clone().unwrap();
    assert!(error.contains("check `orders.not_null amount_typo`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_report_write_datasets_and_a_json_document() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "landing/sales.csv", "region,amount\neu,10\nus,5\neu,2.5\n");
    let dag = r#"
        [tasks.agg]
        kind = "sql"
        inputs = { sales = "landing/sales.csv" }
        [tasks.agg.outputs."gold/by_region"]
        query = "SELECT region, SUM(amount) AS total FROM sales GROUP BY region ORDER BY region"
        partition_by = ["region"]
        [tasks.kpi]
        kind = "report"
        depends_on = ["agg"]
        inputs = { r = "gold/by_region" }
        output = "gold/kpi.json"
        metrics = { total = "SELECT SUM(total) FROM r", top = "SELECT region, total FROM r ORDER BY total DESC LIMIT 1" }
    "#;
    let (state, tasks) = run(dir.path(), dag).await;
    assert_eq!(state, RunState::Success, "{tasks:#?}");
    let agg = tasks.iter().find(|t| t.task_id == "agg").unwrap();
    assert_eq!(agg.outputs["gold/by_region"]["rows"], 2);
    assert_eq!(agg.outputs["gold/by_region"]["files"], 2);
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("warehouse/gold/kpi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        report["metrics"],
        json!({ "total": 17.5, "top": { "region": "eu", "total": 12.5 } })
    );
    let kpi = tasks.iter().find(|t| t.task_id == "kpi").unwrap();
    assert_eq!(kpi.outputs["metrics"]["total"], 17.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_a_missing_dataset_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let dag = r#"
        [tasks.agg]
        kind = "sql"
        retries = 0
        inputs = { sales = "landing/nothing_here" }
        [tasks.agg.outputs."gold/x"]
        query = "SELECT * FROM sales"
    "#;
    let (state, tasks) = run(dir.path(), dag).await;
    assert_eq!(state, RunState::Failed);
    assert_eq!(tasks[0].state, TaskState::Failed);
    let error = tasks[0].error.clone().unwrap();
    assert!(error.contains("dataset `landing/nothing_here` does not exist"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_reads_and_writes_tables_and_skips_while_an_input_table_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "landing/sales.csv", "region,amount\neu,10\nus,5\neu,2.5\n");
    let dag = r#"
        [tasks.load]
        kind = "sql"
        inputs = { sales = "landing/sales.csv" }
        [tasks.load.outputs."gold.sales"]
        query = "SELECT region, amount FROM sales"
        partition_by = ["region"]

        [tasks.twice]
        kind = "sql"
        depends_on = ["load"]
        inputs = { s = "gold.sales" }
        [tasks.twice.outputs."gold.sales_twice"]
        query = "SELECT * FROM s UNION ALL SELECT * FROM s"
        mode = "append"

        [tasks.summary]
        kind = "sql"
        depends_on = ["twice"]
        inputs = { t = "gold.sales_twice" }
        [tasks.summary.outputs."gold/summary"]
        query = "SELECT region, SUM(amount) AS total, COUNT(*) AS n FROM t GROUP BY region ORDER BY region"

        [tasks.waiting]
        kind = "sql"
        inputs = { b = "batch.not_yet" }
        if_missing = "skip"
        [tasks.waiting.outputs."gold/never"]
        query = "SELECT * FROM b"

        [tasks.after_waiting]
        kind = "noop"
        depends_on = ["waiting"]
    "#;
    let (state, tasks) = run(dir.path(), dag).await;
    assert_eq!(state, RunState::Success, "{tasks:#?}");
    let task = |id: &str| tasks.iter().find(|t| t.task_id == id).unwrap();
    assert_eq!(task("load").outputs["gold.sales"]["rows"], 3);
    assert!(task("load").outputs["gold.sales"]["snapshot_id"].is_i64(), "{:?}", task("load"));
    assert_eq!(task("twice").outputs["gold.sales_twice"]["rows"], 6);
    assert_eq!(
        rows(dir.path(), "gold/summary"),
        vec![
            json!({ "region": "eu", "total": 25.0, "n": 4 }),
            json!({ "region": "us", "total": 10.0, "n": 2 }),
        ]
    );
    assert_eq!(task("waiting").state, TaskState::Skipped);
    let reason = task("waiting").outputs["skipped"].as_str().unwrap().to_string();
    assert!(reason.contains("batch.not_yet does not exist yet"), "{reason}");
    assert_eq!(task("after_waiting").state, TaskState::Skipped);
}
