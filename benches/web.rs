//! Web UI and API latency with a big history (issue 4's benchmark): 100 DAGs × 1,000 runs of
//! 5 tasks each, plus one continuous stream DAG with 100,000 runs (issue 14:
//! `LAKEWARD_BENCH_STREAM_RUNS`), are seeded into a fresh database, then concurrent clients on
//! loopback request the DAG list, DAG pages (grid, history, the stream's throughput chart) and
//! API run lists. Prints p50/p99 latency, requests/s and
//! errors per endpoint. SQLite always; Postgres too when `LAKEWARD_TEST_POSTGRES_URL` is set.
//!
//! Run: `cargo bench --bench web` (`LAKEWARD_BENCH_SECONDS`, `LAKEWARD_BENCH_CLIENTS` tune it).

use std::sync::Arc;
use std::time::Instant;

use lakeward::config::Config;
use lakeward::dag::compile;
use lakeward::jobs::Registry;
use lakeward::runtime::shutdown_channel;
use lakeward::store::dags;
use lakeward::store::{DagRecord, Store};
use lakeward::time::now_micros;
use lakeward::versions::DagVersions;
use lakeward::web::{serve, AppState};
use sqlx::Connection;
use support::{env_number, load, PgSchema};

mod support;

const DAGS: usize = 100;
const RUNS_PER_DAG: i64 = 1000;
const TASKS: [&str; 5] = ["extract", "clean", "enrich", "load", "report"];
const DAY_MICROS: i64 = 86_400_000_000;

fn dag_source() -> String {
    let mut src =
        String::from("schedule = \"@daily\"\nstart_date = \"2020-01-01\"\ntags = [\"bench\"]\n");
    let mut previous: Option<&str> = None;
    for task in TASKS {
        src.push_str(&format!("[tasks.{task}]\nkind = \"noop\"\n"));
        if let Some(up) = previous {
            src.push_str(&format!("depends_on = [\"{up}\"]\n"));
        }
        previous = Some(task);
    }
    src
}

/// The continuous DAG of the stream part: one `kafka_ingest`-like task whose runs report
/// records and lag.
const STREAM_SOURCE: &str =
    "schedule = \"@continuous\"\nkeep_runs = 200000\n[tasks.ingest]\nkind = \"noop\"\n";

/// Seeds the stream DAG with `runs` finished runs a second apart, each with one task whose
/// outputs say how many records it read and the lag it left.
async fn seed_stream(url: &str, store: &Store, versions: &DagVersions, runs: i64) {
    let dag = Arc::new(
        compile("dags/stream.toml", STREAM_SOURCE, "stream", &Registry::builtin()).unwrap(),
    );
    dags::register(store.write(), &DagRecord::from(dag.as_ref()), now_micros()).await.unwrap();
    let version = dag.version.clone();
    versions.insert(dag);
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let start = now_micros() - runs * 1_000_000;
    // Seconds as BIGINT: Postgres would multiply INT4s and overflow past 2,147 runs.
    let second = "CAST(1000000 AS BIGINT)";
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) \
         INSERT INTO dag_runs (dag_id, run_id, version, run_type, state, logical_date, \
         interval_start, interval_end, params, created_at, started_at, ended_at) \
         SELECT 'stream', 'scheduled__' || CAST(i AS TEXT), '{version}', 'scheduled', 'success', \
         {start} + (i + 1) * {second}, {start} + i * {second}, {start} + (i + 1) * {second}, \
         '{{}}', {start} + i * {second}, {start} + i * {second}, {start} + i * {second} + 950000 \
         FROM n",
        last = runs - 1,
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO task_instances (run_pk, dag_id, task_id, state, queue, try_number, \
         max_tries, started_at, ended_at, outputs) \
         SELECT r.id, r.dag_id, 'ingest', 'success', 'default', 1, 1, r.started_at, r.ended_at, \
         '{\"records\": ' || CAST(9000 + r.id % 2000 AS TEXT) || ', \"lag\": ' || CAST(r.id % 300 AS TEXT) || '}' \
         FROM dag_runs r WHERE r.dag_id = 'stream'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Seeds `DAGS` DAGs with `RUNS_PER_DAG` finished runs each, with set-based SQL (seconds, not
/// minutes).
async fn seed(url: &str, store: &Store, versions: &DagVersions) {
    let source = dag_source();
    let mut records = Vec::new();
    for i in 0..DAGS {
        let id = format!("dag_{i:03}");
        let dag = Arc::new(
            compile(&format!("dags/{id}.toml"), &source, &id, &Registry::builtin()).unwrap(),
        );
        records.push(DagRecord::from(dag.as_ref()));
        versions.insert(dag);
    }
    dags::sync(store.write(), &records, &[], now_micros()).await.unwrap();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let start = 1_577_836_800_000_000_i64; // 2020-01-01
    let tasks: Vec<String> = TASKS.iter().map(|t| format!("SELECT '{t}' AS task_id")).collect();
    for record in &records {
        sqlx::query(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) \
             INSERT INTO dag_runs (dag_id, run_id, version, run_type, state, logical_date, \
             interval_start, interval_end, params, created_at, started_at, ended_at) \
             SELECT '{id}', 'scheduled__' || CAST(i AS TEXT), '{version}', 'scheduled', \
             CASE WHEN i % 17 = 0 THEN 'failed' ELSE 'success' END, {start} + i * {DAY_MICROS}, \
             {start} + i * {DAY_MICROS}, {start} + (i + 1) * {DAY_MICROS}, '{{}}', \
             {start} + (i + 1) * {DAY_MICROS}, {start} + (i + 1) * {DAY_MICROS}, \
             {start} + (i + 1) * {DAY_MICROS} + 1000000 * (30 + i % 50) FROM n",
            RUNS_PER_DAG - 1,
            id = record.dag_id,
            version = record.version,
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(&format!(
            "INSERT INTO task_instances (run_pk, dag_id, task_id, state, queue, try_number, \
             max_tries, started_at, ended_at) \
             SELECT r.id, r.dag_id, t.task_id, r.state, 'default', 1, 1, r.started_at, r.ended_at \
             FROM dag_runs r CROSS JOIN ({}) t WHERE r.dag_id = '{}'",
            tasks.join(" UNION ALL "),
            record.dag_id
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

async fn bench(backend: &str, url: &str) {
    let store = Store::open(url).await.unwrap();
    let versions = Arc::new(DagVersions::new(store.clone(), Registry::builtin()));
    let started = Instant::now();
    seed(url, &store, &versions).await;
    let stream_runs = env_number("LAKEWARD_BENCH_STREAM_RUNS", 100_000) as i64;
    seed_stream(url, &store, &versions, stream_runs).await;
    println!(
        "{backend}: seeded {DAGS} DAGs × {RUNS_PER_DAG} runs × {} tasks and a stream DAG of \
         {stream_runs} runs in {:.1} s",
        TASKS.len(),
        started.elapsed().as_secs_f64()
    );
    let (cookie, bearer) = support::admin_headers(&store).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, shutdown) = shutdown_channel();
    let state = AppState::new(store.clone(), versions, &Config::default());
    let server = lakeward::process::spawn_owned(serve(listener, state, shutdown));

    let seconds = env_number("LAKEWARD_BENCH_SECONDS", 10);
    let clients = env_number("LAKEWARD_BENCH_CLIENTS", 8) as usize;
    println!("  {clients} clients, {seconds} s per endpoint");
    load(&base, "/dags", &cookie, clients, seconds).await;
    load(&base, "/dags/dag_050", &cookie, clients, seconds).await;
    load(&base, "/dags/dag_050?tab=history&page=20", &cookie, clients, seconds).await;
    load(&base, "/api/v1/dags/dag_050/runs?limit=100", &bearer, clients, seconds).await;
    load(&base, "/api/v1/dags", &bearer, clients, seconds).await;
    load(&base, "/dags/stream", &cookie, clients, seconds).await;
    load(&base, "/dags/stream?tab=history&page=500", &cookie, clients, seconds).await;
    load(&base, "/api/v1/dags/stream/runs?limit=100", &bearer, clients, seconds).await;
    stop.trigger();
    let _ = server.await;
    store.close().await;
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
    bench("sqlite", &sqlite).await;
    if let Ok(base) = std::env::var("LAKEWARD_TEST_POSTGRES_URL") {
        let schema = PgSchema::create(&base, "lw_bench_web").await;
        bench("postgres", &schema.url).await;
        schema.drop().await;
    }
}
