//! Sustained load (issue 6's benchmark): a 2-task `noop` DAG triggered continuously at a fixed
//! rate (default 10,000 runs per minute) for a fixed time (default 60 s), with one scheduler
//! and one worker in this process. Reports the achieved trigger and completion rates and the
//! p50/p99 of trigger → success latency (the run's `ended_at - created_at`, both stamped by
//! the database clock of this process). Postgres when `LAKEWARD_TEST_POSTGRES_URL` is set,
//! otherwise SQLite.
//!
//! Run: `cargo bench --bench sustained` (`LAKEWARD_BENCH_SECONDS`, `LAKEWARD_BENCH_RATE` in runs
//! per minute tune it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use lakeward::dag::compile;
use lakeward::domain::RunState;
use lakeward::jobs::Registry;
use lakeward::runtime::shutdown_channel;
use lakeward::scheduler::trigger::{create_run, RunRequest};
use lakeward::scheduler::{Scheduler, SchedulerOptions};
use lakeward::store::{dags, runs};
use lakeward::store::{DagRecord, Store};
use lakeward::time::now_micros;
use lakeward::versions::DagVersions;
use lakeward::worker::{Worker, WorkerOptions};

/// Concurrent triggering tasks (a caller each, as API clients would be).
const TRIGGERS: u64 = 4;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

async fn sustain(backend: &str, url: &str) {
    let seconds = env_number("LAKEWARD_BENCH_SECONDS", 60);
    let per_minute = env_number("LAKEWARD_BENCH_RATE", 10_000);
    let store = Store::open(url).await.unwrap();
    let versions = Arc::new(DagVersions::new(store.clone(), Registry::builtin()));
    let source = "[tasks.a]\nkind = \"noop\"\n[tasks.b]\nkind = \"noop\"\ndepends_on = [\"a\"]\n";
    let dag = Arc::new(compile("pair.toml", source, "pair", &Registry::builtin()).unwrap());
    dags::register(store.write(), &DagRecord::from(dag.as_ref()), now_micros()).await.unwrap();
    versions.insert(dag.clone());

    let (stop, shutdown) = shutdown_channel();
    let scheduler_options = SchedulerOptions {
        pools: Default::default(),
        max_map_length: 1024,
        dags_folder: None,
        create_scheduled_runs: false,
        poll_interval: Duration::from_millis(500),
        dag_refresh_interval: Duration::from_secs(2),
        heartbeat_timeout: Duration::from_secs(60),
    };
    let worker_options = WorkerOptions {
        slots: 64,
        queues: vec!["default".into()],
        heartbeat_interval: Duration::from_secs(5),
        poll_interval: Duration::from_millis(500),
        warehouse: lakeward::lake::Warehouse::open(std::env::temp_dir().to_str().unwrap()).unwrap(),
        catalog: Default::default(),
        kafka: None,
    };
    let listen = store.listen();
    let scheduler = Scheduler::new(store.clone(), versions.clone(), scheduler_options);
    let worker = Worker::new(store.clone(), versions.clone(), worker_options);
    let handles = [
        lakeward::process::spawn_owned(scheduler.run(shutdown.clone())),
        lakeward::process::spawn_owned(worker.run(shutdown)),
    ];

    // Each trigger task owns every TRIGGERS-th logical date, so they never collide.
    let total = per_minute * seconds / 60;
    let gap = Duration::from_secs_f64(60.0 * TRIGGERS as f64 / per_minute as f64);
    let started = Instant::now();
    let mut triggers = Vec::new();
    for lane in 0..TRIGGERS {
        let (store, dag) = (store.clone(), dag.clone());
        triggers.push(lakeward::process::spawn_owned(async move {
            let mut tick = tokio::time::interval(gap);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut i = lane;
            while i < total {
                tick.tick().await;
                let date = Utc.timestamp_micros(1_700_000_000_000_000 + i as i64).unwrap();
                create_run(&store, &dag, RunRequest::manual(date, Default::default()))
                    .await
                    .unwrap();
                i += TRIGGERS;
            }
        }));
    }
    for trigger in triggers {
        trigger.await.unwrap();
    }
    let triggering = started.elapsed();
    loop {
        let runs = runs::list(store.read(), "pair", 1, 0).await.unwrap();
        let open = runs::active(store.read()).await.unwrap().len();
        if open == 0 && !runs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let draining = started.elapsed();
    let runs = runs::list(store.read(), "pair", total as i64 + 10, 0).await.unwrap();
    let failed = runs.iter().filter(|r| r.state != RunState::Success).count();
    let mut latencies: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.ended_at.map(|end| (end - r.created_at) as f64 / 1e3))
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "{backend}: {} runs of 2 noop tasks at a target of {per_minute}/min for {seconds} s: \
         triggered at {:.0}/min, all finished {:.2} s after the last trigger ({:.0}/min overall); \
         trigger→success p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {failed} not successful",
        runs.len(),
        runs.len() as f64 / triggering.as_secs_f64() * 60.0,
        (draining - triggering).as_secs_f64(),
        runs.len() as f64 / draining.as_secs_f64() * 60.0,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    stop.trigger();
    for handle in handles {
        let _ = handle.await;
    }
    if let Some(listen) = listen {
        listen.abort();
    }
    store.close().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        match std::env::var("LAKEWARD_TEST_POSTGRES_URL") {
            Ok(base) => {
                let schema = format!("lw_bench_sustained_{}", std::process::id());
                let mut admin =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap();
                let reset =
                    format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}");
                sqlx::raw_sql(&reset).execute(&mut admin).await.unwrap();
                let separator = if base.contains('?') { '&' } else { '?' };
                sustain("postgres", &format!("{base}{separator}options[search_path]={schema}"))
                    .await;
                sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
            }
            Err(_) => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
                sustain("sqlite", &url).await;
            }
        }
    });
}
