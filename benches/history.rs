//! Flat at a million runs (issue 17): how lakeward behaves with a long history.
//!
//! A folder of 1,000 DAGs — 999 daily DAGs of 12 tasks and one continuous DAG (a stream's
//! micro-batches, one run a second) — plus a 10-task `probe` chain triggered by hand. The
//! database is filled with set-based SQL: by default 1,000,000 finished runs, 200,000 of them
//! the continuous DAG's (a week-ish of micro-batches) and the rest ~800 days of the daily
//! DAGs, 10,000,000 task instances, one try and two log lines each. Then, with a scheduler and
//! a worker running over the folder (the continuous DAG keeps running throughout):
//!
//! 1. the probe's task-start latency (upstream end → downstream start) and the scheduler's
//!    slowest pass per heartbeat, against the same folder over an empty database;
//! 2. every UI page and API list that a long history could slow, p50/p99 under 8 clients;
//! 3. `db clean` of the older half of the history while the probe keeps running: its duration,
//!    and the probe's latency and the scheduler's passes meanwhile;
//! 4. the database's size per million task instances.
//!
//! SQLite always; Postgres too when `LAKEWARD_TEST_POSTGRES_URL` is set.
//! Run: `cargo bench --bench history` (`LAKEWARD_BENCH_RUNS` scales the history,
//! `LAKEWARD_BENCH_SECONDS` the load per endpoint, `LAKEWARD_BENCH_CLIENTS` the clients,
//! `LAKEWARD_BENCH_BACKENDS=sqlite|postgres` keeps one, `LAKEWARD_BENCH_CLEAN=0` skips step 3).

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lakeward::config::Config;
use lakeward::dag::folder::load_folder;
use lakeward::dag::Dag;
use lakeward::domain::RunState;
use lakeward::jobs::Registry;
use lakeward::process::{shutdown_channel, Shutdown, ShutdownTrigger};
use lakeward::scheduler::control::clean;
use lakeward::scheduler::trigger::{create_run, RunRequest};
use lakeward::scheduler::{Scheduler, SchedulerOptions};
use lakeward::store::{dags, finished, runs, tasks};
use lakeward::store::{DagRecord, Store};
use lakeward::time::now_micros;
use lakeward::versions::DagVersions;
use lakeward::web::{serve, AppState};
use lakeward::worker::{Worker, WorkerOptions};
use sqlx::Connection;
use support::{env_number, load, percentile, PgSchema};

const DAILY_DAGS: usize = 999;
/// The daily DAGs' tasks: one extract, ten in parallel after it, one publish after them.
const DAILY_TASKS: [&str; 12] =
    ["extract", "t01", "t02", "t03", "t04", "t05", "t06", "t07", "t08", "t09", "t10", "publish"];
const STREAM_TASKS: [&str; 2] = ["ingest", "publish"];
const PROBE_TASKS: usize = 10;
/// Probe runs per measurement, at least, and for at least this long (a few heartbeats).
const PROBE_RUNS: usize = 20;
const PROBE_TIME: Duration = Duration::from_secs(12);
const SECOND: i64 = 1_000_000;
const DAY: i64 = 86_400 * SECOND;
/// How often the scheduler reports its slowest pass (its housekeeping interval).
const HEARTBEAT: Duration = Duration::from_secs(2);

/// How much history to put in the database.
#[derive(Clone, Copy)]
struct History {
    /// Runs of each daily DAG, one a day up to yesterday.
    daily_runs: i64,
    /// Runs of the continuous DAG, one a second up to now.
    stream_runs: i64,
}

impl History {
    /// Yesterday's run of each daily DAG (so none is due) and nothing else.
    const EMPTY: History = History { daily_runs: 1, stream_runs: 0 };

    /// `total` runs, a fifth of them the continuous DAG's.
    fn of(total: i64) -> History {
        let stream_runs = total / 5;
        History {
            daily_runs: (total - stream_runs + DAILY_DAGS as i64 - 1) / DAILY_DAGS as i64,
            stream_runs,
        }
    }

    fn runs(&self) -> i64 {
        self.daily_runs * DAILY_DAGS as i64 + self.stream_runs
    }

    fn task_instances(&self) -> i64 {
        self.daily_runs * (DAILY_DAGS * DAILY_TASKS.len()) as i64
            + self.stream_runs * STREAM_TASKS.len() as i64
    }
}

fn write_folder(dir: &Path) {
    let mut daily = String::from(
        "schedule = \"@daily\"\nstart_date = \"2020-01-01\"\ncatchup = false\ntags = [\"bench\"]\n\
         [tasks.extract]\nkind = \"noop\"\n",
    );
    for task in &DAILY_TASKS[1..11] {
        daily.push_str(&format!("[tasks.{task}]\nkind = \"noop\"\ndepends_on = [\"extract\"]\n"));
    }
    let middle: Vec<String> = DAILY_TASKS[1..11].iter().map(|t| format!("\"{t}\"")).collect();
    daily.push_str(&format!(
        "[tasks.publish]\nkind = \"noop\"\ndepends_on = [{}]\n",
        middle.join(", ")
    ));
    for i in 0..DAILY_DAGS {
        std::fs::write(dir.join(format!("daily_{i:03}.toml")), &daily).unwrap();
    }
    std::fs::write(
        dir.join("stream.toml"),
        "schedule = \"@continuous\"\nmin_interval = \"1s\"\nkeep_runs = \"30d\"\n\
         tags = [\"bench\"]\n[tasks.ingest]\nkind = \"noop\"\n\
         [tasks.publish]\nkind = \"noop\"\ndepends_on = [\"ingest\"]\n",
    )
    .unwrap();
    let mut probe = String::new();
    for i in 0..PROBE_TASKS {
        probe.push_str(&format!("[tasks.p{i}]\nkind = \"noop\"\n"));
        if i > 0 {
            probe.push_str(&format!("depends_on = [\"p{}\"]\n", i - 1));
        }
    }
    std::fs::write(dir.join("probe.toml"), probe).unwrap();
}

/// `SELECT … AS task_id, … AS k` rows: each task with its position.
fn task_rows(tasks: &[&str]) -> String {
    let rows: Vec<String> = tasks
        .iter()
        .enumerate()
        .map(|(k, t)| format!("SELECT '{t}' AS task_id, {k} AS k"))
        .collect();
    rows.join(" UNION ALL ")
}

/// Fills the database with finished runs, their task instances, one try and two log lines
/// each, with set-based SQL. The DAGs must be registered.
async fn seed(url: &str, history: History, now: i64) {
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let today = now - now.rem_euclid(DAY);
    let second = format!("CAST({SECOND} AS BIGINT)");
    let numbers = |count: i64| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {})",
            count - 1
        )
    };
    let mut statements = vec![format!(
        "{numbers} INSERT INTO dag_runs (dag_id, run_id, version, run_type, state, logical_date, \
         interval_start, interval_end, params, created_at, started_at, ended_at) \
         SELECT d.dag_id, 'scheduled__' || CAST(i AS TEXT), d.version, 'scheduled', \
         CASE WHEN i % 17 = 5 THEN 'failed' ELSE 'success' END, \
         {today} - ({runs} - i) * {DAY}, {today} - ({runs} - i) * {DAY}, \
         {today} - ({runs} - i - 1) * {DAY}, '{{}}', {today} - ({runs} - i - 1) * {DAY}, \
         {today} - ({runs} - i - 1) * {DAY} + 60 * {second}, \
         {today} - ({runs} - i - 1) * {DAY} + (90 + i % 50) * {second} \
         FROM dags d CROSS JOIN n WHERE d.dag_id LIKE 'daily%'",
        numbers = numbers(history.daily_runs),
        runs = history.daily_runs,
    )];
    if history.stream_runs > 0 {
        let start = now - (history.stream_runs + 60) * SECOND;
        statements.push(format!(
            "{numbers} INSERT INTO dag_runs (dag_id, run_id, version, run_type, state, \
             logical_date, interval_start, interval_end, params, created_at, started_at, ended_at) \
             SELECT d.dag_id, 'scheduled__' || CAST(i AS TEXT), d.version, 'scheduled', 'success', \
             {start} + i * {second}, {start} + i * {second}, {start} + i * {second}, '{{}}', \
             {start} + i * {second}, {start} + i * {second}, {start} + i * {second} + 900000 \
             FROM dags d CROSS JOIN n WHERE d.dag_id = 'stream'",
            numbers = numbers(history.stream_runs),
        ));
    }
    for (dag, tasks) in [("daily%", &DAILY_TASKS[..]), ("stream", &STREAM_TASKS[..])] {
        statements.push(format!(
            "INSERT INTO task_instances (run_pk, dag_id, task_id, state, queue, try_number, \
             max_tries, worker_id, queued_at, started_at, ended_at, heartbeat_at, outputs) \
             SELECT r.id, r.dag_id, t.task_id, \
             CASE WHEN r.state = 'failed' AND t.task_id = 'publish' THEN 'failed' ELSE 'success' END, \
             'default', 1, 1, 'bench-worker', r.started_at, r.started_at + t.k * 1000, \
             r.started_at + t.k * 1000 + 500, r.started_at + t.k * 1000 + 500, \
             CASE WHEN t.task_id = 'ingest' THEN '{{\"records\": ' || CAST(9000 + r.id % 2000 AS TEXT) \
             || ', \"lag\": ' || CAST(r.id % 300 AS TEXT) || '}}' ELSE NULL END \
             FROM dag_runs r CROSS JOIN ({}) t WHERE r.dag_id LIKE '{dag}'",
            task_rows(tasks)
        ));
    }
    statements.push(
        "INSERT INTO task_tries (ti_id, try_number, worker_id, state, started_at, ended_at, error) \
         SELECT id, 1, worker_id, state, started_at, ended_at, \
         CASE WHEN state = 'failed' THEN 'exit status 1' ELSE NULL END FROM task_instances"
            .into(),
    );
    for (at, line) in [
        ("started_at", "'starting ' || task_id || ' (try 1) on bench-worker'"),
        ("ended_at", "'done: ' || CAST(id % 10000 AS TEXT) || ' rows in 0.5 ms'"),
    ] {
        statements.push(format!(
            "INSERT INTO task_logs (ti_id, try_number, at, stream, line) \
             SELECT id, 1, {at}, 'stderr', {line} FROM task_instances"
        ));
    }
    for sql in statements {
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    if url.starts_with("postgres") {
        // What autovacuum does after bulk inserts on a live database.
        sqlx::query("VACUUM ANALYZE").execute(&mut conn).await.unwrap();
    }
}

/// The database's size in bytes (tables and indexes).
async fn size(url: &str, sqlite_file: Option<&Path>) -> u64 {
    if let Some(file) = sqlite_file {
        let wal = file.with_extension("db-wal");
        return [file, wal.as_path()]
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
    }
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let bytes: i64 = sqlx::query_scalar(
        "SELECT CAST(SUM(pg_total_relation_size(c.oid)) AS BIGINT) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    bytes as u64
}

/// A scheduler and a worker over the folder, as `standalone` runs them.
struct Running {
    store: Store,
    versions: Arc<DagVersions>,
    stop: ShutdownTrigger,
    handles: Vec<lakeward::process::Owned<()>>,
    probe: Arc<Dag>,
}

impl Running {
    async fn start(
        store: &Store,
        versions: &Arc<DagVersions>,
        folder: &Path,
        probe: Arc<Dag>,
    ) -> Running {
        let (stop, shutdown) = shutdown_channel();
        let options = SchedulerOptions {
            pools: Default::default(),
            max_map_length: 1024,
            dags_folder: Some(folder.to_path_buf()),
            create_scheduled_runs: true,
            poll_interval: Duration::from_secs(1),
            dag_refresh_interval: HEARTBEAT,
            heartbeat_timeout: Duration::from_secs(60),
        };
        let worker = WorkerOptions {
            slots: 16,
            queues: vec!["default".into()],
            heartbeat_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            warehouse: lakeward::lake::Warehouse::open(folder.to_str().unwrap()).unwrap(),
            catalog: Default::default(),
            kafka: None,
        };
        let scheduler = Scheduler::new(store.clone(), versions.clone(), options);
        let worker = Worker::new(store.clone(), versions.clone(), worker);
        let handles = vec![
            lakeward::process::spawn_owned(scheduler.run(shutdown.clone())),
            lakeward::process::spawn_owned(worker.run(shutdown)),
        ];
        Running { store: store.clone(), versions: versions.clone(), stop, handles, probe }
    }

    async fn stop(self) {
        self.stop.trigger();
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// Task-start latencies and trigger → success times of the probe, in milliseconds.
#[derive(Default)]
struct Probe {
    starts: Vec<f64>,
    totals: Vec<f64>,
}

impl Probe {
    async fn run(&mut self, running: &Running) {
        let started = Instant::now();
        let request = RunRequest::manual(chrono::Utc::now(), Default::default());
        let run = create_run(&running.store, &running.probe, request).await.unwrap();
        loop {
            let current = runs::by_pk(running.store.read(), run.pk).await.unwrap().unwrap();
            if current.state.is_finished() {
                assert_eq!(current.state, RunState::Success);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.totals.push(started.elapsed().as_secs_f64() * 1e3);
        let tis = tasks::of_runs(running.store.read(), &[run.pk]).await.unwrap();
        let by_task: std::collections::HashMap<_, _> =
            tis.iter().map(|t| (t.task_id.clone(), t)).collect();
        for i in 1..PROBE_TASKS {
            let up = by_task[&format!("p{}", i - 1)];
            let down = by_task[&format!("p{i}")];
            self.starts.push((down.started_at.unwrap() - up.ended_at.unwrap()) as f64 / 1e3);
        }
    }

    fn summary(mut self) -> String {
        self.starts.sort_by(f64::total_cmp);
        self.totals.sort_by(f64::total_cmp);
        format!(
            "task start p50 {:.2} ms, p99 {:.2} ms; trigger→success p50 {:.0} ms ({} runs)",
            percentile(&self.starts, 0.5),
            percentile(&self.starts, 0.99),
            percentile(&self.totals, 0.5),
            self.totals.len()
        )
    }
}

/// Samples the scheduler's slowest pass per heartbeat until `done`; returns them in ms.
async fn sample_passes(store: Store, mut done: Shutdown) -> Vec<f64> {
    let mut samples = Vec::new();
    let mut last_heartbeat = 0;
    loop {
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT heartbeat_at, loop_micros FROM processes WHERE kind = 'scheduler'",
        )
        .fetch_optional(store.read())
        .await
        .unwrap();
        if let Some((heartbeat, Some(micros))) = row {
            if heartbeat != last_heartbeat {
                last_heartbeat = heartbeat;
                samples.push(micros as f64 / 1e3);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = done.wait() => break,
        }
    }
    samples.sort_by(f64::total_cmp);
    samples
}

fn passes_summary(samples: &[f64]) -> String {
    format!(
        "scheduler slowest pass per {} s: median {:.1} ms, max {:.1} ms ({} samples)",
        HEARTBEAT.as_secs(),
        percentile(samples, 0.5),
        samples.last().copied().unwrap_or(f64::NAN),
        samples.len()
    )
}

/// Runs the probe (see [`PROBE_RUNS`]) while sampling the scheduler's passes.
async fn probe_runs(running: &Running) -> (Probe, Vec<f64>) {
    let (done, until_done) = shutdown_channel();
    let sampler = lakeward::process::spawn_owned(sample_passes(running.store.clone(), until_done));
    let mut probe = Probe::default();
    let started = Instant::now();
    while probe.totals.len() < PROBE_RUNS || started.elapsed() < PROBE_TIME {
        probe.run(running).await;
    }
    // At least one heartbeat after the last run.
    tokio::time::sleep(HEARTBEAT + Duration::from_millis(500)).await;
    done.trigger();
    (probe, sampler.await.unwrap())
}

/// Registers the folder's DAGs, as the scheduler would, so the history can refer to them;
/// returns the probe.
async fn register(store: &Store, versions: &DagVersions, folder: &Path) -> Arc<Dag> {
    let bag = load_folder(folder, &Registry::builtin());
    assert!(bag.errors.is_empty(), "{:?}", bag.errors);
    let records: Vec<DagRecord> = bag.dags.values().map(|d| DagRecord::from(d.as_ref())).collect();
    dags::sync(store.write(), &records, &[], now_micros()).await.unwrap();
    for dag in bag.dags.values() {
        versions.insert(dag.clone());
    }
    bag.dags["probe"].clone()
}

/// Opens a database at `url`, registers the DAGs, fills in `history`; reports how long that took.
async fn prepare(
    url: &str,
    folder: &Path,
    history: History,
) -> (Store, Arc<DagVersions>, Arc<Dag>) {
    let store = Store::open(url).await.unwrap();
    let versions = Arc::new(DagVersions::new(store.clone(), Registry::builtin()));
    let probe = register(&store, &versions, folder).await;
    let started = Instant::now();
    seed(url, history, now_micros()).await;
    println!(
        "  seeded {} runs and {} task instances ({} tries, {} log lines) in {:.1} s",
        history.runs(),
        history.task_instances(),
        history.task_instances(),
        2 * history.task_instances(),
        started.elapsed().as_secs_f64()
    );
    // A live deployment keeps its `/metrics` counters rolled up as work finishes; a seeded
    // history is rolled up here, in the scheduler's steps but without its pauses.
    let started = Instant::now();
    let upto = now_micros() - finished::LATE_COMMIT_MARGIN;
    while !finished::roll_up(store.write(), upto, 1_000_000).await.unwrap() {}
    println!(
        "  rolled the history up into /metrics' counters in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (store, versions, probe)
}

/// The pages and lists a long history could slow, under concurrent clients.
async fn load_pages(running: &Running, history: History) {
    let store = &running.store;
    let (cookie, bearer) = support::admin_headers(store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, shutdown) = shutdown_channel();
    let state = AppState::new(store.clone(), running.versions.clone(), &Config::default());
    let server = lakeward::process::spawn_owned(serve(listener, state, shutdown));

    let seconds = env_number("LAKEWARD_BENCH_SECONDS", 5);
    let clients = env_number("LAKEWARD_BENCH_CLIENTS", 8) as usize;
    let old_run = format!("scheduled__{}", history.daily_runs / 2);
    let stream_pages = (history.stream_runs / 25).max(1);
    let stream_run = format!("scheduled__{}", history.stream_runs / 2);
    println!("  {clients} clients, {seconds} s per endpoint");
    let pages = [
        "/dags".to_string(),
        "/dags?page=40".into(),
        "/dags/daily_500".into(),
        "/dags/daily_500?tab=history&page=20".into(),
        format!("/dags/daily_500/runs/{old_run}"),
        format!("/dags/daily_500/runs/{old_run}/tasks/t05"),
        "/dags/stream".into(),
        format!("/dags/stream?tab=history&page={}", stream_pages / 2),
        format!("/dags/stream?tab=history&page={stream_pages}"),
        format!("/dags/stream/runs/{stream_run}"),
        "/metrics".into(),
    ];
    for page in &pages {
        load(&base, page, &cookie, clients, seconds).await;
    }
    let lists = [
        "/api/v1/dags?limit=100".to_string(),
        "/api/v1/dags/daily_500/runs?limit=100".into(),
        format!("/api/v1/dags/stream/runs?limit=100&offset={}", history.stream_runs / 2),
        format!("/api/v1/dags/daily_500/runs/{old_run}"),
        format!("/api/v1/dags/daily_500/runs/{old_run}/tasks/t05/logs"),
    ];
    for list in &lists {
        load(&base, list, &bearer, clients, seconds).await;
    }
    stop.trigger();
    let _ = server.await;
}

/// `db clean` of the older half of the history while the probe keeps running.
async fn clean_half(running: &Running, history: History) {
    let cutoff: i64 = sqlx::query_scalar(
        "SELECT ended_at FROM dag_runs WHERE dag_id <> 'probe' ORDER BY ended_at LIMIT 1 OFFSET $1",
    )
    .bind(history.runs() / 2)
    .fetch_one(running.store.read())
    .await
    .unwrap();
    let (done, until_done) = shutdown_channel();
    let sampler = lakeward::process::spawn_owned(sample_passes(running.store.clone(), until_done));
    let store = running.store.clone();
    let cleaned = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let cleaning = lakeward::process::spawn_owned({
        let cleaned = cleaned.clone();
        async move {
            let deleted = clean(&store, cutoff, 1_000, |_| {}).await.unwrap();
            cleaned.store(true, Ordering::Release);
            (deleted, started.elapsed())
        }
    });
    let mut probe = Probe::default();
    while !cleaned.load(Ordering::Acquire) || probe.totals.len() < PROBE_RUNS {
        probe.run(running).await;
    }
    let (deleted, took) = cleaning.await.unwrap();
    tokio::time::sleep(HEARTBEAT + Duration::from_millis(500)).await;
    done.trigger();
    let passes = sampler.await.unwrap();
    println!(
        "  db clean: {deleted} runs (with their task instances, tries and logs) in {:.1} s, \
         {:.0} runs/s",
        took.as_secs_f64(),
        deleted as f64 / took.as_secs_f64()
    );
    println!("  during the clean: {}", probe.summary());
    println!("  during the clean: {}", passes_summary(&passes));
}

async fn bench(backend: &str, url: &str, sqlite_file: Option<&Path>, folder: &Path, full: bool) {
    let history = if full {
        History::of(env_number("LAKEWARD_BENCH_RUNS", 1_000_000) as i64)
    } else {
        History::EMPTY
    };
    println!("{backend}, {} history:", if full { "full" } else { "empty" });
    let (store, versions, probe) = prepare(url, folder, history).await;
    let bytes = size(url, sqlite_file).await;
    println!(
        "  database size {:.0} MB, {:.0} MB per million task instances",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / (history.task_instances() as f64 / 1e6)
    );
    let running = Running::start(&store, &versions, folder, probe).await;
    // Let the first passes plan every DAG and the continuous DAG get going.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (probe_figures, passes) = probe_runs(&running).await;
    println!("  {}", probe_figures.summary());
    println!("  {}", passes_summary(&passes));
    if full {
        load_pages(&running, history).await;
        if env_number("LAKEWARD_BENCH_CLEAN", 1) != 0 {
            clean_half(&running, history).await;
        }
    }
    running.stop().await;
    store.close().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let folder = tempfile::tempdir().unwrap();
        write_folder(folder.path());
        let backends = std::env::var("LAKEWARD_BENCH_BACKENDS").unwrap_or_default();
        let wanted = |name: &str| backends.is_empty() || backends.contains(name);
        if wanted("sqlite") {
            for full in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let file = dir.path().join("history.db");
                let url = format!("sqlite://{}", file.display());
                bench("sqlite", &url, Some(&file), folder.path(), full).await;
            }
        }
        if let Some(base) =
            std::env::var("LAKEWARD_TEST_POSTGRES_URL").ok().filter(|_| wanted("postgres"))
        {
            for full in [false, true] {
                let schema = PgSchema::create(&base, "lw_bench_history").await;
                bench("postgres", &schema.url, None, folder.path(), full).await;
                schema.drop().await;
            }
        }
    });
}
