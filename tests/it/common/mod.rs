//! Shared test support: isolated databases (SQLite file, Postgres schema) and an in-process
//! scheduler + worker harness.
#![allow(dead_code)]

pub mod process;
pub mod proxy;
pub mod web;
pub mod weblogs;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lakeward::dag::{compile, Dag};
use lakeward::jobs::Registry;
use lakeward::lake::tables::TablesHandle;
use lakeward::lake::Warehouse;
use lakeward::runtime::{shutdown_channel, ShutdownTrigger};
use lakeward::scheduler::trigger::{create_run, RunRequest};
use lakeward::scheduler::{Scheduler, SchedulerOptions};
use lakeward::store::{dags, logs, runs, tasks};
use lakeward::store::{DagRecord, RunRow, Store, TaskInstanceRow};
use lakeward::time::now_micros;
use lakeward::versions::DagVersions;
use lakeward::worker::{Worker, WorkerOptions};
use sqlx::Connection;

/// A harness on SQLite whose worker writes to a warehouse in a temporary folder, and that
/// warehouse's table catalog.
pub struct LakeHarness {
    pub h: Harness,
    pub tables: lakeward::lake::tables::Tables,
    pub warehouse: Warehouse,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

pub async fn lake_harness() -> LakeHarness {
    let db = sqlite();
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let options =
        HarnessOptions { warehouse: Some(warehouse.clone()), ..HarnessOptions::default() };
    let h = Harness::start_with(&db, options).await;
    let tables = lakeward::lake::tables::Tables::open(&h.store, &warehouse, &Default::default())
        .await
        .unwrap();
    LakeHarness { h, tables, warehouse, _db: db, _dir: dir }
}

/// Environment variable naming the Postgres server for tests, e.g. `postgres://postgres@127.0.0.1/test`.
pub const POSTGRES_URL_VAR: &str = "LAKEWARD_TEST_POSTGRES_URL";

/// An isolated database; dropping it removes a SQLite file (Postgres schemas are dropped by `.ci/run`).
pub struct TestDb {
    pub backend: &'static str,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("lakeward.db").display());
    TestDb { backend: "sqlite", url, _dir: Some(dir) }
}

/// A fresh schema on the test Postgres server. `None` (skip) only outside CI: with `CI=true` a
/// missing or unreachable server fails the test.
pub async fn postgres() -> Option<TestDb> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let Ok(base) = std::env::var(POSTGRES_URL_VAR) else {
        assert!(!in_ci, "{POSTGRES_URL_VAR} must be set when CI=true");
        eprintln!("skipping the Postgres half of this test: {POSTGRES_URL_VAR} is not set");
        return None;
    };
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "lw_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        now_micros() % 1_000_000
    );
    match sqlx::PgConnection::connect(&base).await {
        Ok(mut conn) => {
            sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.unwrap();
        }
        Err(e) => {
            assert!(!in_ci, "Postgres at {base} is unreachable: {e}");
            eprintln!("skipping the Postgres half of this test: {e}");
            return None;
        }
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options[search_path]={schema}");
    Some(TestDb { backend: "postgres", url, _dir: None })
}

/// SQLite always, plus Postgres when available.
pub async fn databases() -> Vec<TestDb> {
    let mut dbs = vec![sqlite()];
    dbs.extend(postgres().await);
    dbs
}

pub fn dag(source: &str) -> Arc<Dag> {
    match compile("test.toml", source, "test_dag", &Registry::builtin()) {
        Ok(dag) => Arc::new(dag),
        Err(diagnostics) => panic!("test DAG does not compile: {diagnostics:#?}"),
    }
}

/// A scheduler and a worker running in this process against one database.
pub struct Harness {
    pub store: Store,
    pub versions: Arc<DagVersions>,
    stop: ShutdownTrigger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    listen: Option<lakeward::process::Owned<()>>,
    _scratch: tempfile::TempDir,
}

pub struct HarnessOptions {
    pub registry: Registry,
    /// Default: a fresh temporary folder.
    pub warehouse: Option<Warehouse>,
    pub dags_folder: Option<PathBuf>,
    pub slots: usize,
    pub heartbeat_timeout: Duration,
    pub pools: std::collections::BTreeMap<String, u32>,
    pub max_map_length: usize,
    /// The scheduler's housekeeping period (and DAG folder scan, when not watched).
    pub dag_refresh_interval: Duration,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions {
            registry: Registry::builtin(),
            warehouse: None,
            dags_folder: None,
            slots: 8,
            heartbeat_timeout: Duration::from_secs(60),
            pools: Default::default(),
            max_map_length: 1024,
            dag_refresh_interval: Duration::from_millis(200),
        }
    }
}

impl Harness {
    pub async fn start(db: &TestDb) -> Harness {
        Harness::start_with(db, HarnessOptions::default()).await
    }

    pub async fn start_with(db: &TestDb, options: HarnessOptions) -> Harness {
        let store = Store::open(&db.url).await.unwrap();
        let versions = Arc::new(DagVersions::new(store.clone(), options.registry));
        let scratch = tempfile::tempdir().unwrap();
        let warehouse = options.warehouse.unwrap_or_else(|| {
            Warehouse::open(scratch.path().join("warehouse").to_str().unwrap()).unwrap()
        });
        let (stop, shutdown) = shutdown_channel();
        let scheduler = Scheduler::new(
            store.clone(),
            versions.clone(),
            SchedulerOptions {
                pools: options.pools,
                create_scheduled_runs: options.dags_folder.is_some(),
                dags_folder: options.dags_folder,
                poll_interval: Duration::from_millis(100),
                dag_refresh_interval: options.dag_refresh_interval,
                heartbeat_timeout: options.heartbeat_timeout,
                max_map_length: options.max_map_length,
            },
        )
        .with_tables(TablesHandle::new(
            store.clone(),
            warehouse.clone(),
            Default::default(),
        ));
        let worker = Worker::new(
            store.clone(),
            versions.clone(),
            WorkerOptions {
                slots: options.slots,
                queues: vec!["default".into()],
                heartbeat_interval: Duration::from_millis(200),
                poll_interval: Duration::from_millis(100),
                warehouse,
                catalog: Default::default(),
                kafka: None,
            },
        );
        let tasks =
            vec![tokio::spawn(scheduler.run(shutdown.clone())), tokio::spawn(worker.run(shutdown))];
        let listen = store.listen();
        Harness { store, versions, stop, tasks, listen, _scratch: scratch }
    }

    /// Registers `dag` and triggers a manual run of it.
    pub async fn trigger(&self, dag: &Arc<Dag>, request: RunRequest) -> RunRow {
        dags::register(self.store.write(), &DagRecord::from(dag.as_ref()), now_micros())
            .await
            .unwrap();
        self.versions.insert(dag.clone());
        create_run(&self.store, dag, request).await.unwrap()
    }

    /// Waits until the run has finished (at most `limit`).
    pub async fn wait(&self, run: &RunRow, limit: Duration) -> RunRow {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let current = runs::by_pk(self.store.read(), run.pk).await.unwrap().unwrap();
            if current.state.is_finished() {
                return current;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {} still {} after {limit:?}",
                run.run_id,
                current.state
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn tasks(&self, run: &RunRow) -> Vec<TaskInstanceRow> {
        tasks::of_runs(self.store.read(), &[run.pk]).await.unwrap()
    }

    pub async fn log_text(&self, ti: &TaskInstanceRow) -> String {
        let lines = logs::read(self.store.read(), ti.id, None, 0, 10_000).await.unwrap();
        lines.iter().map(|l| format!("{}\n", l.line)).collect()
    }

    /// Triggers `dag` by hand and waits (up to `limit`) for its run, whose every task must
    /// succeed (a failure shows the task's log). Returns the run's tasks.
    pub async fn run_to_success(&self, dag: &Arc<Dag>, limit: Duration) -> Vec<TaskInstanceRow> {
        let run = self.trigger(dag, manual(serde_json::json!({}))).await;
        let finished = self.wait(&run, limit).await;
        let tasks = self.tasks(&run).await;
        for ti in &tasks {
            let log = self.log_text(ti).await;
            assert_eq!(ti.state.as_str(), "success", "{} {}: {log}", dag.id, ti.task_id);
        }
        assert_eq!(finished.state, lakeward::domain::RunState::Success, "{}", dag.id);
        tasks
    }

    pub async fn stop(self) {
        self.stop.trigger();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if let Some(listen) = self.listen {
            listen.abort();
        }
        self.store.close().await;
    }
}

pub fn manual(params: serde_json::Value) -> RunRequest {
    let params = params.as_object().cloned().unwrap_or_default();
    RunRequest::manual(chrono::Utc::now(), params)
}

/// The rows of a dataset's current version, as JSON objects.
pub fn dataset_rows(warehouse: &Warehouse, dataset: &str) -> Vec<serde_json::Value> {
    use polars::prelude::{JsonFormat, JsonWriter, SerWriter};
    let dataset = warehouse.dataset(dataset).unwrap();
    let mut frame = lakeward::lake::scan(&dataset, &Default::default()).unwrap().collect().unwrap();
    let mut buffer = Vec::new();
    JsonWriter::new(&mut buffer).with_json_format(JsonFormat::Json).finish(&mut frame).unwrap();
    serde_json::from_slice(&buffer).unwrap()
}

/// Every file under `dir`, in its subfolders too.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

/// The bytes of a Parquet file before its footer (its magic, data pages and any page index).
pub fn data_section(file: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(file).unwrap();
    let tail = &bytes[bytes.len() - 8..];
    let footer = u32::from_le_bytes(tail[..4].try_into().unwrap()) as usize;
    bytes[..bytes.len() - 8 - footer].to_vec()
}

/// Which program wrote a Parquet file, from its footer.
pub fn created_by(file: &std::path::Path) -> String {
    let file = std::fs::File::open(file).unwrap();
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&file);
    metadata.unwrap().file_metadata().created_by().unwrap_or_default().to_string()
}

/// A Python with pyiceberg, from `LAKEWARD_TEST_PYTHON` (set by `.ci/run`). `None` (skip) only
/// outside CI.
pub fn python_with_pyiceberg() -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match std::env::var("LAKEWARD_TEST_PYTHON") {
        Ok(python) => Some(python),
        Err(_) => {
            assert!(
                !in_ci,
                "LAKEWARD_TEST_PYTHON (a Python with pyiceberg) must be set when CI=true"
            );
            eprintln!("skipping: LAKEWARD_TEST_PYTHON is not set");
            None
        }
    }
}

/// The Kafka-protocol broker for tests, from `LAKEWARD_TEST_KAFKA_BROKERS` (tansu, started by
/// `.ci/run`). `None` (skip) only outside CI.
pub fn kafka() -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match std::env::var("LAKEWARD_TEST_KAFKA_BROKERS") {
        Ok(brokers) => Some(brokers),
        Err(_) => {
            assert!(!in_ci, "LAKEWARD_TEST_KAFKA_BROKERS must be set when CI=true");
            eprintln!("skipping: LAKEWARD_TEST_KAFKA_BROKERS is not set");
            None
        }
    }
}

/// A topic name no other test uses.
pub fn unique_topic(base: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("{base}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Writes orders `(order_id, order_date, category, amount)` as a new version of `dataset`:
/// `days` days from 2024-01-01, `per_day` orders each, categories cycling a, b, c.
pub fn write_orders(
    warehouse: &Warehouse,
    dataset: &str,
    days: std::ops::Range<i32>,
    per_day: i64,
    amount: f64,
) {
    use polars::prelude::{col, df, DataType, IntoLazy};
    let (mut ids, mut dates, mut categories, mut amounts) = (vec![], vec![], vec![], vec![]);
    for day in days {
        for i in 0..per_day {
            ids.push(i64::from(day) * 1000 + i);
            dates.push(19723 + day); // 2024-01-01 + day
            categories.push(["a", "b", "c"][(i % 3) as usize]);
            amounts.push(amount + i as f64);
        }
    }
    let frame = df!("order_id" => ids, "order_date" => dates, "category" => categories, "amount" => amounts)
        .unwrap()
        .lazy()
        .with_column(col("order_date").cast(DataType::Date));
    lakeward::lake::sink_parquet(frame, &warehouse.dataset(dataset).unwrap(), &[]).unwrap();
}

/// Runs a Python `script` that prints one JSON document; returns it.
pub fn run_python_json(python: &str, script: &str) -> serde_json::Value {
    let out = std::process::Command::new(python).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "pyiceberg failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("pyiceberg saw {seen}");
    seen
}

/// Rows in `batches`.
pub fn rows(batches: &[arrow_array::RecordBatch]) -> usize {
    batches.iter().map(arrow_array::RecordBatch::num_rows).sum()
}

/// The sum of the `amount` column of `batches`, nulls skipped.
pub fn total_amount(batches: &[arrow_array::RecordBatch]) -> f64 {
    batches
        .iter()
        .map(|b| {
            use arrow_array::Array;
            let column = b.column_by_name("amount").unwrap();
            let values = column.as_any().downcast_ref::<arrow_array::Float64Array>().unwrap();
            (0..values.len()).filter(|i| values.is_valid(*i)).map(|i| values.value(i)).sum::<f64>()
        })
        .sum()
}
