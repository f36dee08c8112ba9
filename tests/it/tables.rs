//! Iceberg tables: promotion with every partition transform and write mode, time travel,
//! partition pruning, schema evolution, the `iceberg` task kind in a DAG run (SQLite and
//! Postgres as the catalog database), and pyiceberg as an independent reader.

use crate::common;

use std::time::Duration;

use arrow_array::{Array, RecordBatch};
use common::{
    created_by, dag, data_section, manual, rows, total_amount, walk, write_orders, Harness,
    HarnessOptions,
};
use lakeward::domain::RunState;
use lakeward::lake::tables::{PartitionField, ScanRequest, Tables, WriteMode};
use lakeward::lake::{sink_parquet, write_parquet_clustered, Warehouse};
use lakeward::store::Store;
use lakeward::store::{lineage, runs};
use polars::prelude::{col, df, DataType, IntoLazy};

struct Lake {
    _dir: tempfile::TempDir,
    warehouse: Warehouse,
    store: Store,
    tables: Tables,
}

async fn lake(db: &common::TestDb) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().join("warehouse").to_str().unwrap()).unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let tables = Tables::open(&store, &warehouse, &Default::default()).await.unwrap();
    Lake { _dir: dir, warehouse, store, tables }
}

impl Lake {
    fn data(&self, dataset: &str) -> std::path::PathBuf {
        self.warehouse.dataset(dataset).unwrap().current().unwrap()
    }

    async fn promote(
        &self,
        table: &str,
        dataset: &str,
        partition: &[&str],
        mode: WriteMode,
    ) -> i64 {
        let fields: Vec<PartitionField> =
            partition.iter().map(|p| PartitionField::parse(p).unwrap()).collect();
        self.tables.promote(table, &self.data(dataset), &fields, mode).await.unwrap().snapshot_id
    }

    async fn rows(&self, table: &str, snapshot_id: Option<i64>) -> usize {
        let request = ScanRequest { snapshot_id, ..ScanRequest::default() };
        rows(&self.tables.scan(table, &request).await.unwrap().batches)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_partition_transform_and_write_mode() {
    let db = common::sqlite();
    let lake = lake(&db).await;
    write_orders(&lake.warehouse, "bronze/orders", 0..3, 10, 1.0);
    let transforms: [&[&str]; 7] = [
        &[],
        &["day(order_date)"],
        &["month(order_date)"],
        &["year(order_date)"],
        &["category"],
        &["bucket(4, order_id)"],
        &["truncate(1, category)", "day(order_date)"],
    ];
    // Three days of ten orders, in categories a, b, c by turns (4, 3 and 3 a day).
    fn parts<S: AsRef<str>>(names: &[S], rows: &[u64]) -> Vec<(String, u64)> {
        names.iter().zip(rows).map(|(n, r)| (n.as_ref().to_string(), *r)).collect()
    }
    let days =
        ["order_date_day=2024-01-01", "order_date_day=2024-01-02", "order_date_day=2024-01-03"];
    let by_category_and_day: Vec<String> = ["a", "b", "c"]
        .iter()
        .flat_map(|c| days.iter().map(move |d| format!("category_trunc_1={c}, {d}")))
        .collect();
    let buckets: Vec<String> = (0..4).map(|b| format!("order_id_bucket_4={b}")).collect();
    let expected_partitions = [
        parts(&[""], &[30]),
        parts(&days, &[10, 10, 10]),
        parts(&["order_date_month=2024-01"], &[30]),
        parts(&["order_date_year=2024"], &[30]),
        parts(&["category=a", "category=b", "category=c"], &[12, 9, 9]),
        parts(&buckets, &[10, 6, 4, 10]),
        parts(&by_category_and_day, &[4, 4, 4, 3, 3, 3, 3, 3, 3]),
    ];
    for (i, partition) in transforms.iter().enumerate() {
        let table = format!("bronze.orders_{i}");
        let first =
            lake.promote(&table, "bronze/orders", partition, WriteMode::ReplacePartitions).await;
        assert_eq!(lake.rows(&table, None).await, 30, "{partition:?}");
        // Re-running the same write (a retried or re-run task) replaces what it wrote.
        lake.promote(&table, "bronze/orders", partition, WriteMode::ReplacePartitions).await;
        assert_eq!(lake.rows(&table, None).await, 30, "{partition:?}: re-run duplicated rows");
        lake.promote(&table, "bronze/orders", partition, WriteMode::Append).await;
        assert_eq!(lake.rows(&table, None).await, 60, "{partition:?}: append");
        lake.promote(&table, "bronze/orders", partition, WriteMode::Overwrite).await;
        assert_eq!(lake.rows(&table, None).await, 30, "{partition:?}: overwrite");
        assert_eq!(lake.rows(&table, Some(first)).await, 30, "{partition:?}: first snapshot");
        let info = lake.tables.describe(&table).await.unwrap();
        assert_eq!(info.partition_spec.len(), partition.len());
        assert_eq!((info.rows, info.columns.len()), (30, 4));
        let history = lake.tables.history(&table).await.unwrap();
        let operations: Vec<&str> = history.iter().map(|s| s.operation.as_str()).collect();
        assert_eq!(operations, ["append", "overwrite", "append", "overwrite"], "{partition:?}");
        let partitions = lake.tables.partitions(&table).await.unwrap();
        let mut seen: Vec<(String, u64)> =
            partitions.into_iter().map(|p| (p.partition, p.rows)).collect();
        seen.sort();
        assert_eq!(seen, expected_partitions[i], "{partition:?}");
    }
    assert_eq!(lake.tables.list().await.unwrap().len(), transforms.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_partitions_time_travel_and_pruning() {
    for db in common::databases().await {
        let lake = lake(&db).await;
        write_orders(&lake.warehouse, "bronze/orders", 0..3, 10, 1.0);
        let first = lake
            .promote("bronze.orders", "bronze/orders", &["day(order_date)"], WriteMode::Append)
            .await;
        // A later run re-delivers day 3 only, with other amounts.
        write_orders(&lake.warehouse, "bronze/orders", 2..3, 5, 1000.0);
        let second = lake
            .promote(
                "bronze.orders",
                "bronze/orders",
                &["day(order_date)"],
                WriteMode::ReplacePartitions,
            )
            .await;
        let now = lake.tables.scan("bronze.orders", &ScanRequest::default()).await.unwrap();
        assert_eq!(rows(&now.batches), 25, "{}: days 1 and 2 kept, day 3 replaced", db.backend);
        assert_eq!(now.snapshot_id, Some(second));
        let expected = 2.0 * (10.0 + 45.0) + (5.0 * 1000.0 + 10.0);
        assert!((total_amount(&now.batches) - expected).abs() < 1e-6);

        let then = lake
            .tables
            .scan("bronze.orders", &ScanRequest { snapshot_id: Some(first), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(rows(&then.batches), 30, "time travel to the first snapshot");
        let history = lake.tables.history("bronze.orders").await.unwrap();
        let as_of = ScanRequest { as_of_ms: Some(history[0].timestamp_ms), ..Default::default() };
        assert_eq!(rows(&lake.tables.scan("bronze.orders", &as_of).await.unwrap().batches), 30);
        assert_eq!(
            (history[1].added_rows, history[1].removed_rows, history[1].total_rows),
            (5, 10, 25)
        );

        let one_day =
            ScanRequest { filter: Some("order_date = '2024-01-02'".into()), ..Default::default() };
        let pruned = lake.tables.scan("bronze.orders", &one_day).await.unwrap();
        assert_eq!(rows(&pruned.batches), 10);
        assert_eq!(
            (pruned.planned_files, pruned.total_files),
            (1, 3),
            "only the matching partition is planned"
        );
        let bad = ScanRequest { filter: Some("nope = 1".into()), ..Default::default() };
        let error = lake.tables.scan("bronze.orders", &bad).await.err().unwrap().to_string();
        assert!(error.contains("no column `nope`"), "{error}");
        lake.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_nullable_columns_evolve_the_schema_and_bad_changes_fail() {
    let db = common::sqlite();
    let lake = lake(&db).await;
    write_orders(&lake.warehouse, "silver/orders", 0..2, 4, 1.0);
    let first = lake.promote("silver.orders", "silver/orders", &[], WriteMode::Append).await;
    let with_discount = df!("order_id" => [9001i64], "order_date" => [19730], "category" => ["a"], "amount" => [5.0], "discount" => [0.5])
        .unwrap()
        .lazy()
        .with_column(col("order_date").cast(DataType::Date));
    sink_parquet(with_discount, &lake.warehouse.dataset("silver/orders").unwrap(), &[]).unwrap();
    let path = lake.data("silver/orders");
    let done = lake.tables.promote("silver.orders", &path, &[], WriteMode::Append).await.unwrap();
    assert_eq!(done.added_columns, ["discount"]);
    let info = lake.tables.describe("silver.orders").await.unwrap();
    assert!(info.columns.contains(&"discount: double?".to_string()), "{:?}", info.columns);
    assert_eq!(lake.rows("silver.orders", None).await, 9);
    assert_eq!(lake.rows("silver.orders", Some(first)).await, 8, "the old snapshot stays readable");

    let retyped = df!("order_id" => ["not a number"], "order_date" => [19730], "category" => ["a"], "amount" => [5.0])
        .unwrap()
        .lazy()
        .with_column(col("order_date").cast(DataType::Date));
    sink_parquet(retyped, &lake.warehouse.dataset("silver/orders").unwrap(), &[]).unwrap();
    let error = lake
        .tables
        .promote("silver.orders", &lake.data("silver/orders"), &[], WriteMode::Append)
        .await;
    let error = error.err().unwrap().to_string();
    assert!(
        error.contains("column `order_id` is long in table") && error.contains("incompatible"),
        "{error}"
    );
    assert_eq!(lake.rows("silver.orders", None).await, 9, "a failed write changes nothing");
}

/// A scheduler and worker on a fresh warehouse holding `bronze/orders` (`per_day` orders on
/// each of `days`).
async fn harness_with_orders(
    db: &common::TestDb,
    days: std::ops::Range<i32>,
    per_day: i64,
) -> (tempfile::TempDir, Warehouse, Harness) {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    write_orders(&warehouse, "bronze/orders", days, per_day, 1.0);
    let options =
        HarnessOptions { warehouse: Some(warehouse.clone()), ..HarnessOptions::default() };
    let h = Harness::start_with(db, options).await;
    (dir, warehouse, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_iceberg_task_records_its_snapshot_and_reruns_do_not_duplicate() {
    let promote = dag(r#"
        [tasks.promote]
        kind = "iceberg"
        table = "bronze.orders"
        input = "bronze/orders"
        partition_by = ["day(order_date)"]
        mode = "replace_partitions"
    "#);
    for db in common::databases().await {
        let (_dir, warehouse, h) = harness_with_orders(&db, 0..3, 10).await;
        let run = h.trigger(&promote, manual(serde_json::json!({}))).await;
        assert_eq!(
            h.wait(&run, Duration::from_secs(60)).await.state,
            RunState::Success,
            "{}",
            db.backend
        );
        let ti = h.tasks(&run).await.remove(0);
        let first = ti.outputs["snapshot_id"].as_i64().unwrap();
        assert_eq!(ti.outputs["rows"], 30);

        let run = runs::by_pk(h.store.read(), run.pk).await.unwrap().unwrap();
        lakeward::scheduler::control::clear(&h.store, &promote, &run, "promote", false)
            .await
            .unwrap();
        assert_eq!(h.wait(&run, Duration::from_secs(60)).await.state, RunState::Success);
        let ti = h.tasks(&run).await.remove(0);
        let second = ti.outputs["snapshot_id"].as_i64().unwrap();
        assert_ne!(first, second);
        let tables = Tables::open(&h.store, &warehouse, &Default::default()).await.unwrap();
        let now = tables.scan("bronze.orders", &ScanRequest::default()).await.unwrap();
        assert_eq!(rows(&now.batches), 30, "{}: the re-run replaced its partitions", db.backend);
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_first_writes_share_one_namespace() {
    for db in common::databases().await {
        let lake = std::sync::Arc::new(lake(&db).await);
        write_orders(&lake.warehouse, "bronze/orders", 0..2, 3, 1.0);
        let mut writers = Vec::new();
        for i in 0..4 {
            let lake = lake.clone();
            writers.push(tokio::spawn(async move {
                let table = format!("race.table_{i}");
                lake.promote(&table, "bronze/orders", &[], WriteMode::Overwrite).await
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        assert_eq!(lake.tables.list().await.unwrap().len(), 4, "{}", db.backend);
    }
}

fn sorted_ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("order_id").unwrap();
            let values = column.as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
            values.values().to_vec()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_expiry_keep_the_data_and_drop_only_unreferenced_files() {
    for db in common::databases().await {
        let lake = lake(&db).await;
        let mut first = None;
        for round in 0..5 {
            write_orders(&lake.warehouse, "bronze/orders", 0..3, 4, f64::from(round));
            let id = lake
                .promote("bronze.orders", "bronze/orders", &["day(order_date)"], WriteMode::Append)
                .await;
            first.get_or_insert(id);
        }
        let before = lake.tables.scan("bronze.orders", &ScanRequest::default()).await.unwrap();
        assert_eq!((rows(&before.batches), before.total_files), (60, 15));

        let done = lake.tables.compact("bronze.orders").await.unwrap();
        assert_eq!(
            (done.files_before, done.files_after, done.rewritten_files, done.rows),
            (15, 3, 15, 60)
        );
        let after = lake.tables.scan("bronze.orders", &ScanRequest::default()).await.unwrap();
        assert_eq!((rows(&after.batches), after.total_files), (60, 3), "{}", db.backend);
        assert_eq!(sorted_ids(&after.batches), sorted_ids(&before.batches), "same rows");
        assert!((total_amount(&after.batches) - total_amount(&before.batches)).abs() < 1e-9);
        let history = lake.tables.history("bronze.orders").await.unwrap();
        assert_eq!(history.last().unwrap().operation, "replace");
        assert!(
            lake.tables.compact("bronze.orders").await.unwrap().snapshot_id.is_none(),
            "nothing left to do"
        );

        // Everything before the compaction can go; the compacted files stay.
        let data_dir = lake.warehouse.root().join("iceberg/bronze/orders/data");
        let count_files = || walk(&data_dir).len();
        assert_eq!(count_files(), 18);
        let expiry = lake.tables.expire_snapshots("bronze.orders", i64::MAX, 1).await.unwrap();
        assert_eq!(expiry.expired_snapshots.len(), 5, "{}", db.backend);
        assert_eq!(count_files(), 3, "only the current snapshot's data files are left");
        assert!(expiry.deleted_files >= 15);
        let still = lake.tables.scan("bronze.orders", &ScanRequest::default()).await.unwrap();
        assert_eq!(sorted_ids(&still.batches), sorted_ids(&before.batches));
        let gone = ScanRequest { snapshot_id: first, ..Default::default() };
        assert!(
            lake.tables.scan("bronze.orders", &gone).await.is_err(),
            "expired snapshots are gone"
        );
        lake.store.close().await;
    }
}

/// Every commit writes a metadata file holding every kept snapshot; expiry deletes those
/// older than its age that the metadata log no longer lists, and keeps everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletes_old_metadata_files_the_log_no_longer_lists() {
    use lakeward::lake::tables::Alteration;
    let db = common::sqlite();
    let lake = lake(&db).await;
    let promote = |round: u32| {
        write_orders(&lake.warehouse, "bronze/orders", 0..1, 2, f64::from(round));
        lake.promote("bronze.orders", "bronze/orders", &[], WriteMode::Append)
    };
    promote(0).await;
    let log_length = Alteration::SetProperty {
        key: "write.metadata.previous-versions-max".to_string(),
        value: "2".to_string(),
    };
    lake.tables.alter("bronze.orders", &log_length).await.unwrap();
    for round in 1..6 {
        promote(round).await;
    }
    let metadata_dir = lake.warehouse.root().join("iceberg/bronze/orders/metadata");
    let metadata_files = || {
        let mut names: Vec<String> = walk(&metadata_dir)
            .into_iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".metadata.json"))
            .collect();
        names.sort();
        names
    };
    let written = metadata_files();
    assert_eq!(
        written.len(),
        8,
        "the table's creation, the first append, the property, five appends: {written:?}"
    );

    // Nothing is older than an hour: every file stays.
    let hour_ago = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let kept = lake.tables.expire_snapshots("bronze.orders", hour_ago, 1).await.unwrap();
    assert_eq!((kept.expired_snapshots.len(), kept.deleted_metadata_files), (0, 0));
    assert_eq!(metadata_files(), written);

    // A file newer than the current one (another writer's, not yet swapped in) is never
    // touched, however old it looks.
    let in_flight = metadata_dir.join("99999-in-flight.metadata.json");
    std::fs::write(&in_flight, "{}").unwrap();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(7_200);
    std::fs::File::options().write(true).open(&in_flight).unwrap().set_modified(long_ago).unwrap();

    // Old enough: only the current file and the two the log lists are left, and the table
    // still reads (nothing else expired: every snapshot is kept).
    let all_old = chrono::Utc::now().timestamp_millis() + 1_000;
    let done = lake.tables.expire_snapshots("bronze.orders", all_old, 100).await.unwrap();
    assert_eq!((done.expired_snapshots.len(), done.deleted_metadata_files), (0, 5));
    assert!(in_flight.exists(), "a newer file is another writer's");
    std::fs::remove_file(&in_flight).unwrap();
    assert_eq!(metadata_files(), written[5..], "the newest three");
    let scan = lake.tables.scan("bronze.orders", &ScanRequest::default()).await.unwrap();
    assert_eq!(rows(&scan.batches), 12);

    // An expiry that commits keeps the file it replaced (the new file's log names it).
    promote(6).await;
    let done = lake.tables.expire_snapshots("bronze.orders", all_old + 1_000, 1).await.unwrap();
    assert_eq!(done.expired_snapshots.len(), 6);
    let left = metadata_files();
    assert_eq!(
        left.len(),
        4,
        "the expiry's file, the one it replaced and the two before: {left:?}"
    );
    assert_eq!(
        rows(&lake.tables.scan("bronze.orders", &ScanRequest::default()).await.unwrap().batches),
        14
    );
    lake.store.close().await;
}

/// pyiceberg (installed by `.ci/run`) reads our SQL catalog and tables on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_reads_our_tables() {
    let Some(python) = common::python_with_pyiceberg() else { return };
    let db = common::sqlite();
    let lake = lake(&db).await;
    write_orders(&lake.warehouse, "bronze/orders", 0..3, 10, 1.0);
    let first = lake
        .promote("bronze.orders", "bronze/orders", &["day(order_date)"], WriteMode::Append)
        .await;
    write_orders(&lake.warehouse, "bronze/orders", 2..3, 5, 1000.0);
    lake.promote(
        "bronze.orders",
        "bronze/orders",
        &["day(order_date)"],
        WriteMode::ReplacePartitions,
    )
    .await;
    write_orders(&lake.warehouse, "bronze/orders", 0..1, 2, 7.0);
    lake.promote("bronze.orders", "bronze/orders", &["day(order_date)"], WriteMode::Append).await;
    lake.tables.compact("bronze.orders").await.unwrap();
    write_orders(&lake.warehouse, "bronze/customers", 0..1, 7, 3.0);
    lake.promote("bronze.customers", "bronze/customers", &[], WriteMode::Overwrite).await;
    lake.promote("bronze.customers", "bronze/customers", &[], WriteMode::Overwrite).await;

    let ours = lake.tables.scan("bronze.orders", &ScanRequest::default()).await.unwrap();
    let db_file = db.url.trim_start_matches("sqlite://").split('?').next().unwrap().to_string();
    let script = format!(
        r#"
import json, pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
catalog = SqlCatalog("lakeward", uri="sqlite:///{db_file}", warehouse="file://{warehouse}")
orders = catalog.load_table("bronze.orders")
now = orders.scan().to_arrow()
then = orders.scan(snapshot_id={first}).to_arrow()
day2 = orders.scan(row_filter="order_date == '2024-01-02'").to_arrow()
customers = catalog.load_table("bronze.customers").scan().to_arrow()
print(json.dumps({{
    "tables": sorted(".".join(t) for t in catalog.list_tables("bronze")),
    "columns": [f.name for f in orders.schema().fields],
    "partition": [str(f.transform) for f in orders.spec().fields],
    "rows": now.num_rows,
    "amount": pc.sum(now["amount"]).as_py(),
    "rows_then": then.num_rows,
    "rows_day2": day2.num_rows,
    "customers": customers.num_rows,
}}))
"#,
        warehouse = lake.warehouse.root().join("iceberg").canonicalize().unwrap().display(),
    );
    let seen = common::run_python_json(&python, &script);
    assert_eq!(seen["tables"], serde_json::json!(["bronze.customers", "bronze.orders"]));
    assert_eq!(
        seen["columns"],
        serde_json::json!(["order_id", "order_date", "category", "amount"])
    );
    assert_eq!(seen["partition"], serde_json::json!(["day"]));
    assert_eq!(seen["rows"], rows(&ours.batches));
    assert!((seen["amount"].as_f64().unwrap() - total_amount(&ours.batches)).abs() < 1e-6);
    assert_eq!(seen["rows_then"], 30, "an older snapshot");
    assert_eq!(seen["rows_day2"], 10);
    assert_eq!(seen["customers"], 7, "after two overwrites");
}

/// Files a failed commit left under a table (data files and a manifest nobody references) are
/// removed once older than the safety age; referenced files, metadata files and younger
/// orphans stay, and the table still reads the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_files_of_failed_commits_are_removed_after_a_safety_age() {
    let db = common::sqlite();
    let lake = lake(&db).await;
    write_orders(&lake.warehouse, "bronze/orders", 0..2, 10, 1.0);
    lake.promote("bronze.orders", "bronze/orders", &[], WriteMode::Append).await;
    let table_dir = lake.warehouse.root().join("iceberg/bronze/orders");
    let before = walk(&table_dir);
    let orphans = [
        table_dir.join("data/failed-commit-00000.parquet"),
        table_dir.join("metadata/failed-commit-m0.avro"),
    ];
    for orphan in &orphans {
        std::fs::write(orphan, b"left by a commit that died").unwrap();
    }
    let now = chrono::Utc::now().timestamp_millis();
    let young = lake.tables.remove_orphan_files("bronze.orders", now - 60_000).await.unwrap();
    assert_eq!((young.deleted_files, young.recent_files_kept), (0, 2), "younger than the age");
    let removal = lake.tables.remove_orphan_files("bronze.orders", now + 60_000).await.unwrap();
    assert_eq!((removal.deleted_files, removal.recent_files_kept), (2, 0));
    assert!(orphans.iter().all(|o| !o.exists()));
    let mut after = walk(&table_dir);
    let mut expected = before.clone();
    after.sort();
    expected.sort();
    assert_eq!(after, expected, "every referenced and metadata file is kept");
    assert_eq!(lake.rows("bronze.orders", None).await, 20);
    lake.store.close().await;
}

/// Record batches go into a table as a stream, each commit carrying the writer's own summary
/// properties (a stream's source offset, the snapshot it derived from). Later commits carry
/// them forward until set anew, so after other appends, a compaction and an expiry the current
/// snapshot still holds the newest marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_summary_markers_survive_appends_compaction_and_expiry() {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    for db in common::databases().await {
        let lake = lake(&db).await;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("region", DataType::Utf8, true),
        ]));
        let batch = |from: i64| {
            let ids = Int64Array::from_iter_values(from..from + 5);
            let regions = StringArray::from_iter_values((0..5).map(|i| ["eu", "us"][i % 2]));
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(regions)]).unwrap()
        };
        let marker = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let write = async |from: i64, summary: BTreeMap<String, String>| {
            let batches = futures::stream::iter([Ok(batch(from)), Ok(batch(from + 5))]);
            lake.tables
                .write_batches("bronze.events", &schema, batches, &[], WriteMode::Append, &summary)
                .await
                .unwrap()
        };
        let first = write(0, marker(&[("lakeward.source-offset", "10")])).await;
        assert!(first.created);
        assert_eq!(first.rows, 10);
        write(10, marker(&[("lakeward.source-offset", "20"), ("lakeward.derived-from", "42")]))
            .await;
        write(20, BTreeMap::new()).await; // a writer that sets no marker
        let newest = marker(&[("lakeward.source-offset", "20"), ("lakeward.derived-from", "42")]);
        assert_eq!(lake.tables.custom_summary("bronze.events").await.unwrap(), newest);

        let compaction = lake.tables.compact("bronze.events").await.unwrap();
        assert!(compaction.snapshot_id.is_some(), "{}", db.backend);
        let expiry = lake.tables.expire_snapshots("bronze.events", i64::MAX, 1).await.unwrap();
        assert_eq!(expiry.expired_snapshots.len(), 3, "{}", db.backend);
        assert_eq!(
            lake.tables.custom_summary("bronze.events").await.unwrap(),
            newest,
            "{}: the marker survives compaction and expiry",
            db.backend
        );
        assert_eq!(lake.rows("bronze.events", None).await, 30);
        let history = lake.tables.history("bronze.events").await.unwrap();
        assert_eq!(history.last().unwrap().operation, "replace");
        lake.store.close().await;
    }
}

/// Each try records the lineage of its data: the dataset versions and table snapshots it read
/// and wrote, readable from the store and from the task's API endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_records_what_it_read_and_wrote() {
    use lakeward::domain::{AssetKind, Direction};
    let pipeline = dag(r#"
        [tasks.enrich]
        kind = "sql"
        inputs = { orders = "bronze/orders" }
        outputs."silver/orders" = { query = "SELECT * FROM orders" }
        outputs."gold/daily" = { query = "SELECT order_date, SUM(amount) AS total FROM orders GROUP BY order_date" }
        [tasks.promote]
        kind = "iceberg"
        table = "silver.orders"
        input = "silver/orders"
        depends_on = ["enrich"]
    "#);
    for db in common::databases().await {
        let (_dir, warehouse, h) = harness_with_orders(&db, 0..2, 5).await;
        let run = h.trigger(&pipeline, manual(serde_json::json!({}))).await;
        assert_eq!(h.wait(&run, Duration::from_secs(60)).await.state, RunState::Success);
        let tasks = h.tasks(&run).await;
        let ti = |id: &str| tasks.iter().find(|t| t.task_id == id).unwrap().clone();
        let version = |name: &str| warehouse.dataset(name).unwrap().current_version().unwrap();

        let enrich = lineage::of_try(h.store.read(), ti("enrich").id, 1).await.unwrap();
        let seen: Vec<(Direction, AssetKind, String, String)> = enrich
            .iter()
            .map(|r| (r.direction, r.kind, r.name.clone(), r.version.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    Direction::Read,
                    AssetKind::Dataset,
                    "bronze/orders".into(),
                    version("bronze/orders")
                ),
                (
                    Direction::Wrote,
                    AssetKind::Dataset,
                    "silver/orders".into(),
                    version("silver/orders")
                ),
                (Direction::Wrote, AssetKind::Dataset, "gold/daily".into(), version("gold/daily")),
            ],
            "{}",
            db.backend
        );
        assert_eq!(enrich[1].rows, Some(10));
        assert!(version("silver/orders").starts_with("v-"));

        let promote = lineage::of_try(h.store.read(), ti("promote").id, 1).await.unwrap();
        assert_eq!(promote.len(), 2, "{promote:?}");
        assert_eq!(
            (promote[0].direction, promote[0].version.clone()),
            (Direction::Read, version("silver/orders"))
        );
        let snapshot = ti("promote").outputs["snapshot_id"].as_i64().unwrap().to_string();
        assert_eq!(
            (promote[1].kind, promote[1].name.as_str(), promote[1].version.clone()),
            (AssetKind::Table, "silver.orders", snapshot.clone())
        );
        assert_eq!((promote[1].operation.as_deref(), promote[1].rows), (Some("append"), Some(10)));

        let router = lakeward::web::app(lakeward::web::AppState::new(
            h.store.clone(),
            h.versions.clone(),
            &lakeward::config::Config::default(),
        ));
        let users = (lakeward::users::create_user, lakeward::users::create_api_token);
        users.0(&h.store, "robot", "robot-password", lakeward::domain::Role::Admin).await.unwrap();
        let token = users.1(&h.store, "robot", "tests", None).await.unwrap();
        let path = format!("/api/v1/dags/test_dag/runs/{}/tasks/promote", run.run_id);
        let request = common::web::api_request(axum::http::Method::GET, &path, &token, None);
        let body = common::web::send(&router, request).await.json();
        assert_eq!(body["lineage"][1]["kind"], "table", "{body}");
        assert_eq!(body["lineage"][1]["version"], snapshot.as_str(), "{body}");
        h.stop().await;
    }
}

/// Two writes that began from the same offsets: the first to commit wins, the other commits
/// nothing and says why (what keeps a stream's rows from being written twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_commits_only_if_what_it_began_from_is_unchanged() {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow_array::Int64Array;
    use arrow_schema::{DataType, Field, Schema};
    use lakeward::lake::tables::TableError;

    for db in common::databases().await {
        let lake = lake(&db).await;
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let batch = |from: i64| {
            let ids = Arc::new(Int64Array::from_iter_values(from..from + 5));
            RecordBatch::try_new(schema.clone(), vec![ids]).unwrap()
        };
        let mut slow = lake.tables.writer("bronze.events", &schema, &[]).await.unwrap();
        let mut fast = lake.tables.writer("bronze.events", &schema, &[]).await.unwrap();
        assert!(slow.summary().is_empty());
        slow.write(&batch(0)).await.unwrap();
        fast.write(&batch(0)).await.unwrap();
        let began = BTreeMap::from([("offsets".to_string(), None)]);
        let next = BTreeMap::from([("offsets".to_string(), "5".to_string())]);
        fast.commit(WriteMode::Append, &next, &began).await.unwrap();
        let lost = slow.commit(WriteMode::Append, &next, &began).await.err().unwrap();
        assert!(matches!(lost, TableError::Superseded { .. }), "{}: {lost}", db.backend);
        assert!(lost.to_string().contains("another writer changed `offsets`"), "{lost}");
        assert_eq!(lake.rows("bronze.events", None).await, 5, "{}", db.backend);
        lake.store.close().await;
    }
}

/// A stream's appends: past a hundred manifests an append merges them into one, so later
/// commits do not carry a growing manifest list; the data and the incremental reader's view of
/// each append stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frequent_appends_merge_their_manifests() {
    use lakeward::lake::tables::MERGE_MANIFESTS_AT;
    let db = common::sqlite();
    let lake = lake(&db).await;
    write_orders(&lake.warehouse, "bronze/orders", 0..1, 3, 1.0);
    let appends = MERGE_MANIFESTS_AT + 20;
    let mut snapshots = Vec::new();
    for _ in 0..appends {
        snapshots
            .push(lake.promote("bronze.orders", "bronze/orders", &[], WriteMode::Append).await);
    }
    let table = lake.tables.load("bronze.orders").await.unwrap();
    let current = table.metadata().current_snapshot().unwrap();
    let manifests = table.manifest_list_reader(current).load().await.unwrap();
    assert!(
        manifests.entries().len() < MERGE_MANIFESTS_AT,
        "{} manifests after {appends} appends",
        manifests.entries().len()
    );
    assert_eq!(lake.rows("bronze.orders", None).await, 3 * appends);
    // Each manifest carries the sequence number of the snapshot that added it (appends reuse
    // the manifests of the list the previous commit wrote).
    for manifest in manifests.entries() {
        let added = table.metadata().snapshot_by_id(manifest.added_snapshot_id).unwrap();
        assert_eq!(manifest.sequence_number, added.sequence_number());
        assert!((1..=manifest.sequence_number).contains(&manifest.min_sequence_number));
    }
    let history = lake.tables.history("bronze.orders").await.unwrap();
    assert!(history.iter().all(|s| s.operation == "append"), "merging is still an append");
    // Before the merge, across it, and after it, a reader following appends sees each append's
    // own file, once.
    for after in [10, MERGE_MANIFESTS_AT - 5, MERGE_MANIFESTS_AT + 5] {
        let read =
            lake.tables.appended_since("bronze.orders", Some(snapshots[after])).await.unwrap();
        let mut seen: Vec<i64> = read.files.iter().map(|f| f.snapshot_id).collect();
        seen.dedup();
        assert_eq!(seen, snapshots[after + 1..], "after append {after}");
        assert_eq!(read.files.len(), appends - after - 1);
    }
}

/// A dataset laid out one file per day, with columns of several types (an 8-bit integer, a
/// timestamp, text with nulls), is promoted into a table partitioned by day without
/// rewriting: each table data file holds the dataset file's very bytes before a new footer,
/// with the table's field ids, so pyiceberg (which refuses files without them) and DuckDB on
/// pyiceberg's plan read the same rows as lakeward, and a one-day filter plans one file. A
/// file spanning several days is laid out by day by Polars first, and reads the same; one
/// for a bucketed table (a hash Polars does not compute) is decoded and split instead. A file
/// clustered by day (a row group per day) becomes a table file per day holding its row group's
/// very bytes, and reads the same too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_fit_the_table_are_added_without_rewriting() {
    let python = common::python_with_pyiceberg();
    let db = common::sqlite();
    let lake = lake(&db).await;
    let days: Vec<i32> = (0..30).map(|i| 19723 + i % 3).collect();
    let frame = df!(
        "order_id" => (0..30i64).collect::<Vec<_>>(),
        "order_date" => days,
        "quantity" => (0..30).map(|i| (i % 5) as i8).collect::<Vec<_>>(),
        "note" => (0..30).map(|i| (i % 4 != 0).then(|| format!("note {i}"))).collect::<Vec<_>>(),
        "placed_at" => (0..30i64).map(|i| 1_704_067_200_000_000 + i * 3_600_000_000).collect::<Vec<_>>(),
        "paid" => (0..30).map(|i| i % 2 == 0).collect::<Vec<_>>(),
        "amount" => (0..30).map(|i| i as f64 * 1.5).collect::<Vec<_>>(),
    )
    .unwrap()
    .lazy()
    .with_columns([
        col("order_date").cast(DataType::Date),
        col("placed_at").cast(DataType::Datetime(polars::prelude::TimeUnit::Microseconds, None)),
    ]);
    let laid_out = lake.warehouse.dataset("bronze/orders_by_day").unwrap();
    sink_parquet(frame.clone(), &laid_out, &["order_date".to_string()]).unwrap();
    sink_parquet(frame.clone(), &lake.warehouse.dataset("bronze/orders_whole").unwrap(), &[])
        .unwrap();
    let clustered_data = lake.warehouse.dataset("bronze/orders_clustered").unwrap();
    let (version, _) =
        write_parquet_clustered(frame, &clustered_data, &["order_date".to_string()]).unwrap();
    version.commit().unwrap();

    let by_day = "bronze.orders_by_day";
    lake.promote(
        by_day,
        "bronze/orders_by_day",
        &["day(order_date)"],
        WriteMode::ReplacePartitions,
    )
    .await;
    let parquet = |dir: &std::path::Path| -> Vec<_> {
        walk(dir).into_iter().filter(|f| f.extension().is_some_and(|e| e == "parquet")).collect()
    };
    let dataset_files = parquet(&lake.data("bronze/orders_by_day"));
    assert_eq!(dataset_files.len(), 3, "one file per day");
    let table_dir = lake.warehouse.root().join("iceberg/bronze/orders_by_day/data");
    let table_files = parquet(&table_dir);
    assert_eq!(table_files.len(), 3);
    for file in &dataset_files {
        let data = data_section(file);
        assert!(
            table_files.iter().any(|t| std::fs::read(t).unwrap().starts_with(&data)),
            "{} was rewritten, not copied",
            file.display()
        );
    }
    let whole = "bronze.orders_whole";
    lake.promote(whole, "bronze/orders_whole", &["day(order_date)"], WriteMode::ReplacePartitions)
        .await;
    let whole_data = data_section(&parquet(&lake.data("bronze/orders_whole"))[0]);
    let whole_files = parquet(&lake.warehouse.root().join("iceberg/bronze/orders_whole/data"));
    assert_eq!(whole_files.len(), 3, "the file spanning three days is split by day");
    assert!(whole_files.iter().all(|t| !std::fs::read(t).unwrap().starts_with(&whole_data)));
    assert!(whole_files.iter().all(|t| created_by(t).contains("Polars")), "laid out by Polars");
    let clustered = "bronze.orders_clustered";
    lake.promote(
        clustered,
        "bronze/orders_clustered",
        &["day(order_date)"],
        WriteMode::ReplacePartitions,
    )
    .await;
    let clustered_bytes = std::fs::read(&parquet(&lake.data("bronze/orders_clustered"))[0]);
    let clustered_bytes = clustered_bytes.unwrap();
    let clustered_files =
        parquet(&lake.warehouse.root().join("iceberg/bronze/orders_clustered/data"));
    assert_eq!(clustered_files.len(), 3, "the clustered file's row groups, a file per day");
    for file in &clustered_files {
        let row_group = &data_section(file)[4..];
        assert!(
            clustered_bytes.windows(row_group.len()).any(|bytes| bytes == row_group),
            "{} does not hold a row group of the dataset's file as it is",
            file.display()
        );
        assert!(created_by(file).contains("Polars"), "copied, not rewritten");
    }
    lake.promote(
        "bronze.bucketed",
        "bronze/orders_whole",
        &["bucket(2, order_id)"],
        WriteMode::Append,
    )
    .await;
    let bucketed = parquet(&lake.warehouse.root().join("iceberg/bronze/bucketed/data"));
    assert_eq!(bucketed.len(), 2);
    assert!(bucketed.iter().all(|t| created_by(t).contains("parquet-rs")), "split by lakeward");
    assert_eq!(lake.rows("bronze.bucketed", None).await, 30);
    // An hour a row, and ten ids a partition: laid out by Polars, partitions as Iceberg's.
    for (table, field, count) in
        [("bronze.hourly", "hour(placed_at)", 30), ("bronze.by_ten", "truncate(10, order_id)", 3)]
    {
        lake.promote(table, "bronze/orders_whole", &[field], WriteMode::Append).await;
        let partitions = lake.tables.partitions(table).await.unwrap();
        assert_eq!(partitions.len(), count, "{table}: {partitions:?}");
        assert!(partitions.iter().all(|p| p.files == 1), "{table}");
        let dir = lake.warehouse.root().join("iceberg").join(table.replace('.', "/")).join("data");
        assert!(parquet(&dir).iter().all(|t| created_by(t).contains("Polars")), "{table}");
    }
    // A dataset without rows adds nothing, laid out or not.
    let empty = lake.warehouse.dataset("bronze/no_orders").unwrap();
    let none =
        df!("order_id" => Vec::<i64>::new(), "placed_at" => Vec::<i64>::new()).unwrap().lazy();
    let none = none.with_column(
        col("placed_at").cast(DataType::Datetime(polars::prelude::TimeUnit::Microseconds, None)),
    );
    sink_parquet(none, &empty, &[]).unwrap();
    lake.promote("bronze.hourly", "bronze/no_orders", &["hour(placed_at)"], WriteMode::Append)
        .await;
    lake.promote("bronze.none", "bronze/no_orders", &["hour(placed_at)"], WriteMode::Append).await;
    assert_eq!(lake.rows("bronze.hourly", None).await, 30);
    assert_eq!(lake.rows("bronze.none", None).await, 0);
    let hours = lake.tables.partitions("bronze.hourly").await.unwrap();
    assert!(hours.iter().any(|p| p.partition == "placed_at_hour=2024-01-02-05"), "{hours:?}");

    for table in [by_day, whole, clustered] {
        let all = lake.tables.scan(table, &ScanRequest::default()).await.unwrap();
        assert_eq!(rows(&all.batches), 30, "{table}");
        assert!((total_amount(&all.batches) - 652.5).abs() < 1e-9, "{table}");
        let one_day =
            ScanRequest { filter: Some("order_date = '2024-01-02'".into()), ..Default::default() };
        let pruned = lake.tables.scan(table, &one_day).await.unwrap();
        assert_eq!((rows(&pruned.batches), pruned.planned_files, pruned.total_files), (10, 1, 3));
        let info = lake.tables.describe(table).await.unwrap();
        assert_eq!(info.rows, 30, "{table}: the snapshot summary counts the rows");
    }

    let Some(python) = python else { return };
    let db_file = db.url.trim_start_matches("sqlite://").split('?').next().unwrap().to_string();
    let script = format!(
        r#"
import json, duckdb, pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
catalog = SqlCatalog("lakeward", uri="sqlite:///{db_file}", warehouse="file://{warehouse}")
seen = {{}}
for name in ["bronze.orders_by_day", "bronze.orders_whole", "bronze.orders_clustered"]:
    table = catalog.load_table(name)
    rows = table.scan().to_arrow()
    day = table.scan(row_filter="order_date == '2024-01-02'")
    files = [t.file.file_path.removeprefix("file://") for t in table.scan().plan_files()]
    duck = duckdb.connect().execute(
        f"SELECT COUNT(*), SUM(amount), SUM(quantity), COUNT(note), SUM(CASE WHEN paid THEN 1 ELSE 0 END), "
        f"MAX(placed_at)::VARCHAR FROM read_parquet({{files!r}})").fetchone()
    seen[name] = {{
        "rows": rows.num_rows,
        "amount": pc.sum(rows["amount"]).as_py(),
        "quantity": pc.sum(rows["quantity"]).as_py(),
        "quantity_type": str(rows.schema.field("quantity").type),
        "notes": rows.num_rows - rows["note"].null_count,
        "paid": pc.sum(rows["paid"].cast("int64")).as_py(),
        "latest": str(pc.max(rows["placed_at"]).as_py()),
        "day_files": len(list(day.plan_files())),
        "day_rows": day.to_arrow().num_rows,
        "duckdb": list(duck),
    }}
print(json.dumps(seen))
"#,
        warehouse = lake.warehouse.root().join("iceberg").canonicalize().unwrap().display(),
    );
    let seen = common::run_python_json(&python, &script);
    for table in [by_day, whole, clustered] {
        let expected = serde_json::json!({
            "rows": 30, "amount": 652.5, "quantity": 60, "quantity_type": "int32", "notes": 22,
            "paid": 15, "latest": "2024-01-02 05:00:00", "day_files": 1, "day_rows": 10,
            "duckdb": [30, 652.5, 60, 22, 15, "2024-01-02 05:00:00"],
        });
        assert_eq!(seen[table], expected, "{table}");
    }
}
