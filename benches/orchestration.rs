//! Orchestration overhead benchmark (issue 2's targets), on SQLite and, when
//! `LAKEWARD_TEST_POSTGRES_URL` is set, on Postgres:
//!
//! (a) a 20-task chain of `noop` tasks, trigger to success;
//! (b) task-start latency, upstream end → downstream start, median and p99;
//! (c) 1 → 100 → 1 and 1 → 1,000 → 1 fan-outs of `noop` tasks, trigger to success;
//! (e) the same 1 → 1,000 → 1 by dynamic task mapping: a shell task publishes a list of 1,000
//!     items, a `noop` task mapped over it runs once per item, a last task waits for all;
//! (d) idle RSS of `lakeward standalone` and its time from start to serving (needs the release
//!     binary: `cargo build --release` first).
//!
//! Run: `cargo bench --bench orchestration`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lakeward::dag::{compile, Dag};
use lakeward::domain::RunState;
use lakeward::jobs::Registry;
use lakeward::runtime::shutdown_channel;
use lakeward::scheduler::trigger::{create_run, RunRequest};
use lakeward::scheduler::{Scheduler, SchedulerOptions};
use lakeward::store::{dags, runs, tasks};
use lakeward::store::{DagRecord, Store};
use lakeward::time::now_micros;
use lakeward::versions::DagVersions;
use lakeward::worker::{Worker, WorkerOptions};

fn chain(n: usize) -> String {
    let mut src = String::new();
    for i in 0..n {
        src.push_str(&format!("[tasks.t{i}]\nkind = \"noop\"\n"));
        if i > 0 {
            src.push_str(&format!("depends_on = [\"t{}\"]\n", i - 1));
        }
    }
    src
}

fn fan_out(width: usize) -> String {
    let mut src = String::from("[tasks.start]\nkind = \"noop\"\n");
    let mut middle = Vec::new();
    for i in 0..width {
        src.push_str(&format!("[tasks.m{i}]\nkind = \"noop\"\ndepends_on = [\"start\"]\n"));
        middle.push(format!("\"m{i}\""));
    }
    src.push_str(&format!("[tasks.end]\nkind = \"noop\"\ndepends_on = [{}]\n", middle.join(", ")));
    src
}

/// A task publishing `width` items, a task mapped over them, and one after all of them.
fn mapped_fan_out(width: usize) -> String {
    format!(
        r#"[tasks.start]
kind = "shell"
command = "printf '{{\"items\": [%s]}}' $(seq -s, 1 {width}) > \"$LAKEWARD_OUTPUTS\""
[tasks.each]
kind = "noop"
depends_on = ["start"]
for_each = "{{{{ outputs.start.items }}}}"
[tasks.end]
kind = "noop"
depends_on = ["each"]
"#
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Bench {
    store: Store,
    versions: Arc<DagVersions>,
}

impl Bench {
    async fn new(url: &str) -> Bench {
        let store = Store::open(url).await.unwrap();
        let versions = Arc::new(DagVersions::new(store.clone(), Registry::builtin()));
        Bench { store, versions }
    }

    async fn dag(&self, id: &str, source: &str) -> Arc<Dag> {
        let dag =
            Arc::new(compile(&format!("{id}.toml"), source, id, &Registry::builtin()).unwrap());
        dags::register(self.store.write(), &DagRecord::from(dag.as_ref()), now_micros())
            .await
            .unwrap();
        self.versions.insert(dag.clone());
        dag
    }

    /// Triggers a run and returns (trigger → success time, the run's task instances).
    async fn run(&self, dag: &Dag) -> (Duration, Vec<lakeward::store::TaskInstanceRow>) {
        let started = Instant::now();
        let run = create_run(
            &self.store,
            dag,
            RunRequest::manual(chrono::Utc::now(), Default::default()),
        )
        .await
        .unwrap();
        loop {
            let current = runs::by_pk(self.store.read(), run.pk).await.unwrap().unwrap();
            if current.state.is_finished() {
                assert_eq!(current.state, RunState::Success);
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let elapsed = started.elapsed();
        (elapsed, tasks::of_runs(self.store.read(), &[run.pk]).await.unwrap())
    }
}

async fn measure(backend: &str, url: &str) {
    let bench = Bench::new(url).await;
    let (stop, shutdown) = shutdown_channel();
    let scheduler_options = SchedulerOptions {
        pools: Default::default(),
        max_map_length: 1024,
        dags_folder: None,
        create_scheduled_runs: false,
        poll_interval: Duration::from_secs(1),
        dag_refresh_interval: Duration::from_secs(2),
        heartbeat_timeout: Duration::from_secs(60),
    };
    let worker_options = WorkerOptions {
        slots: 16,
        queues: vec!["default".into()],
        heartbeat_interval: Duration::from_secs(5),
        poll_interval: Duration::from_secs(1),
        // noop tasks never touch it
        warehouse: lakeward::lake::Warehouse::open(std::env::temp_dir().to_str().unwrap()).unwrap(),
        catalog: Default::default(),
        kafka: None,
    };
    let scheduler = Scheduler::new(bench.store.clone(), bench.versions.clone(), scheduler_options);
    let worker = Worker::new(bench.store.clone(), bench.versions.clone(), worker_options);
    let listen = bench.store.listen();
    let handles = [
        lakeward::process::spawn_owned(scheduler.run(shutdown.clone())),
        lakeward::process::spawn_owned(worker.run(shutdown)),
    ];

    let chain20 = bench.dag("chain20", &chain(20)).await;
    bench.run(&chain20).await; // warm-up
    let mut totals = Vec::new();
    let mut starts = Vec::new();
    for _ in 0..20 {
        let (elapsed, tis) = bench.run(&chain20).await;
        totals.push(elapsed.as_secs_f64() * 1e3);
        let by_task: std::collections::HashMap<_, _> =
            tis.iter().map(|t| (t.task_id.clone(), t)).collect();
        for i in 1..20 {
            let up = by_task[&format!("t{}", i - 1)];
            let down = by_task[&format!("t{i}")];
            starts.push((down.started_at.unwrap() - up.ended_at.unwrap()) as f64 / 1e3);
        }
    }
    totals.sort_by(f64::total_cmp);
    starts.sort_by(f64::total_cmp);
    println!(
        "{backend:<8} (a) 20-task noop chain, trigger→success: median {:.1} ms, p99 {:.1} ms (20 runs)",
        percentile(&totals, 0.5),
        percentile(&totals, 0.99)
    );
    println!(
        "{backend:<8} (b) task-start latency, upstream end→downstream start: median {:.2} ms, p99 {:.2} ms ({} starts)",
        percentile(&starts, 0.5),
        percentile(&starts, 0.99),
        starts.len()
    );
    for width in [100, 1000] {
        let dag = bench.dag(&format!("fan{width}"), &fan_out(width)).await;
        let mut times = Vec::new();
        for _ in 0..3 {
            times.push(bench.run(&dag).await.0.as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{backend:<8} (c) 1 → {width} → 1 noop fan-out, trigger→success: median {:.0} ms (min {:.0}, max {:.0}; 3 runs)",
            times[1], times[0], times[2]
        );
    }
    let dag = bench.dag("mapped1000", &mapped_fan_out(1000)).await;
    let mut times = Vec::new();
    for _ in 0..3 {
        let (elapsed, tis) = bench.run(&dag).await;
        assert_eq!(tis.iter().filter(|t| t.task_id == "each").count(), 1000);
        times.push(elapsed.as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{backend:<8} (e) 1 → 1,000 mapped → 1 (for_each over an upstream's list), trigger→success: median {:.0} ms (min {:.0}, max {:.0}; 3 runs)",
        times[1], times[0], times[2]
    );
    stop.trigger();
    for handle in handles {
        let _ = handle.await;
    }
    if let Some(listen) = listen {
        listen.abort();
    }
}

/// Starts the release binary, times start → serving, then reads its idle RSS.
fn standalone_footprint() {
    let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/lakeward");
    let binary = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| std::path::PathBuf::from(dir).join("release/lakeward"))
        .filter(|p| p.exists())
        .unwrap_or(binary);
    if !binary.exists() {
        println!("(d) skipped: build {} first (cargo build --release)", binary.display());
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = std::process::Command::new(&binary)
        .arg("standalone")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("LAKEWARD_HOME", home.path())
        .env("LAKEWARD_WEB_BIND", &address)
        .env_remove("LAKEWARD_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "standalone did not start serving");
        std::thread::sleep(Duration::from_millis(1));
    }
    let to_serving = started.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: ?").to_string();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "sqlite   (d) standalone: start→serving {:.0} ms, idle {} (after running the example DAG)",
        to_serving.as_secs_f64() * 1e3,
        rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
        measure("sqlite", &sqlite).await;
        if let Ok(base) = std::env::var("LAKEWARD_TEST_POSTGRES_URL") {
            let schema = format!("lw_bench_{}", std::process::id());
            let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap();
            let reset = format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}");
            sqlx::raw_sql(&reset).execute(&mut admin).await.unwrap();
            let separator = if base.contains('?') { '&' } else { '?' };
            measure("postgres", &format!("{base}{separator}options[search_path]={schema}")).await;
            let drop = format!("DROP SCHEMA {schema} CASCADE");
            sqlx::raw_sql(&drop).execute(&mut admin).await.unwrap();
        }
    });
    standalone_footprint();
}
