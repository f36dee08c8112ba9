//! Streaming benchmarks (issue 14), Kafka → `kafka_ingest` → Iceberg, with one scheduler and
//! one worker in this process on SQLite and a local warehouse:
//!
//! - **throughput**: `LAKEWARD_BENCH_EVENTS` (default 3,000,000) simulated web-log events of
//!   about 300 bytes are produced to a 3-partition topic first, then ingested by tries of up to
//!   1,000,000 records each; reports events/s over the tries' durations and the peak RSS of this
//!   process while ingesting (VmHWM, reset after producing). `LAKEWARD_BENCH_COMPRESSION`
//!   (`zstd`, `lz4`, …; default `none`) compresses the produced batches: with `zstd`, the
//!   75,000,000 events of a 5-minute run at 250,000/s fit an in-memory broker.
//! - **freshness**: a producer thread sends 10,000 events/s (paced, event time = send time)
//!   for `LAKEWARD_BENCH_SECONDS` (default 60) while a `@continuous` DAG ingests with
//!   `max_wait = "1s"`; each row is visible from the end of the try that read it (a try's
//!   window is found from the row's `_ingested_at`), so produce → visible = that end − the
//!   row's event time. Reports p50 and p99.
//! - **commits**: `LAKEWARD_BENCH_COMMITS` (default 3,600) micro-batches of 1,000 events, one
//!   commit each, standing for one-second micro-batches: every 600 (ten simulated minutes, as
//!   `dags/weblogs_upkeep.toml` runs) compaction and expiry of the snapshots older than a
//!   simulated minute; reports the commit time of the first and last 60 commits.
//!
//! - **commit_cost**: the same micro-batch commits without the broker round trips:
//!   `LAKEWARD_BENCH_COMMITS` appends of 1,000 decoded events through the table writer, each
//!   with an offsets-like summary property and the condition `kafka_ingest` puts on it, with
//!   compaction and snapshot expiry every 600; reports the first and last 60 commit times.
//! - **decode** (no broker needed): `LAKEWARD_BENCH_EVENTS` simulated web-log messages, made
//!   first, decoded into record batches of 64k rows as `kafka_ingest` decodes them, on one
//!   thread; reports records/s and µs a record (the part of a try that is not the broker's or
//!   the writer's).
//! - **window** (issue 15, no broker needed): `LAKEWARD_BENCH_WINDOW_EVENTS` (default
//!   5,000,000) simulated web-log events are decoded as `kafka_ingest` does and appended to a
//!   bronze table (hour-partitioned) in commits of 500,000; the speed layer's per-endpoint
//!   `window` task (1-minute windows; count, 5xx count, mean, p50/p95/p99, sum, distinct IPs)
//!   then reads them incrementally: one try after each commit, then one try over a backlog of
//!   all of them on a fresh output table. Reports events/s (events over the tries' own
//!   `seconds`) and the peak RSS of this process.
//!
//! - **anomaly_latency** (issue 15): a producer sends web logs at 10,000 events/s (paced,
//!   event time = send time, `anomaly_rate` 0.9) for `LAKEWARD_BENCH_SECONDS` (default 240)
//!   while two continuous DAGs run: the ingest, and the speed layer (10-second windows per
//!   endpoint, 2 s lateness) with the reference anomaly checks. The anomalies table is read
//!   every 250 ms; an anomaly's latency is when it was first seen − its window's end (when its
//!   window's last event was produced). Reports p50 and p90. (The reference DAG's one-minute
//!   windows and two-minute lateness, seed 004's, put a floor of two minutes on it by design.)
//!
//! Broker: `LAKEWARD_BENCH_KAFKA_BROKERS`, else `LAKEWARD_TEST_KAFKA_BROKERS` (tansu, as `.ci/run`
//! starts it), else the in-process demo broker. `LAKEWARD_BENCH_PARTS` picks parts
//! (`throughput,freshness,commits`).
//! Run: `cargo bench --bench streaming`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::Array;
use lakeward::dag::{compile, Dag};
use lakeward::jobs::{ProducePlan, Registry, Source};
use lakeward::lake::tables::{PartitionField, ScanRequest, Tables, WriteMode};
use lakeward::lake::Warehouse;
use lakeward::runtime::{shutdown_channel, ShutdownTrigger};
use lakeward::scheduler::trigger::{create_run, RunRequest};
use lakeward::scheduler::{Scheduler, SchedulerOptions};
use lakeward::simulate::{Profile, Simulation, Simulator};
use lakeward::store::{dags, runs, tasks, DagRecord, Store, TaskInstanceRow};
use lakeward::stream::decode::{Decoder, RowSpec, UnknownFields};
use lakeward::stream::produce::{Compression, Limits};
use lakeward::stream::{ensure_topic, Brokers};
use lakeward::time::now_micros;
use lakeward::versions::DagVersions;
use lakeward::worker::{Worker, WorkerOptions};

/// The allocator the `lakeward` binary runs with (`src/main.rs`), so that allocation-heavy
/// steps (decoding, metadata JSON) cost here what they cost in the product.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// This process's peak resident memory (VmHWM) in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Starts the peak-RSS measurement anew (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Bench {
    _dir: tempfile::TempDir,
    store: Store,
    versions: Arc<DagVersions>,
    warehouse: Warehouse,
    brokers: String,
    stop: ShutdownTrigger,
    handles: Vec<lakeward::process::Owned<()>>,
}

impl Bench {
    /// Starts a scheduler and a worker on a fresh database; `dags` (id, source) are the DAG
    /// folder.
    async fn start(brokers: &str, dags: &[(&str, String)]) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("dags");
        std::fs::create_dir_all(&folder).unwrap();
        for (id, source) in dags {
            std::fs::write(folder.join(format!("{id}.toml")), source).unwrap();
        }
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("lakeward.db").display());
        let store = Store::open(&url).await.unwrap();
        let versions = Arc::new(DagVersions::new(store.clone(), Registry::builtin()));
        let warehouse = Warehouse::open(dir.path().join("warehouse").to_str().unwrap()).unwrap();
        let (stop, shutdown) = shutdown_channel();
        let scheduler = Scheduler::new(
            store.clone(),
            versions.clone(),
            SchedulerOptions {
                pools: Default::default(),
                max_map_length: 1024,
                dags_folder: Some(folder),
                create_scheduled_runs: true,
                poll_interval: Duration::from_millis(200),
                dag_refresh_interval: Duration::from_secs(1),
                heartbeat_timeout: Duration::from_secs(60),
            },
        );
        let worker = Worker::new(
            store.clone(),
            versions.clone(),
            WorkerOptions {
                slots: 4,
                queues: vec!["default".into()],
                heartbeat_interval: Duration::from_secs(5),
                poll_interval: Duration::from_millis(200),
                warehouse: warehouse.clone(),
                catalog: Default::default(),
                kafka: Some(Brokers::new(brokers).unwrap()),
            },
        );
        let handles = vec![
            lakeward::process::spawn_owned(scheduler.run(shutdown.clone())),
            lakeward::process::spawn_owned(worker.run(shutdown)),
        ];
        Bench { _dir: dir, store, versions, warehouse, brokers: brokers.into(), stop, handles }
    }

    async fn register(&self, source: &str, id: &str) -> Arc<Dag> {
        let file = format!("{id}.toml");
        let dag = Arc::new(compile(&file, source, id, &Registry::builtin()).unwrap());
        dags::register(self.store.write(), &DagRecord::from(dag.as_ref()), now_micros())
            .await
            .unwrap();
        self.versions.insert(dag.clone());
        dag
    }

    /// Runs `dag` once and returns its one task.
    async fn run_once(&self, dag: &Arc<Dag>) -> TaskInstanceRow {
        let request = RunRequest::manual(chrono::Utc::now(), Default::default());
        let run = create_run(&self.store, dag, request).await.unwrap();
        loop {
            let current = runs::by_pk(self.store.read(), run.pk).await.unwrap().unwrap();
            if current.state.is_finished() {
                let ti = tasks::of_runs(self.store.read(), &[run.pk]).await.unwrap().remove(0);
                assert!(ti.error.is_none(), "the ingest failed: {:?}", ti.error);
                return ti;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn tables(&self) -> Tables {
        Tables::open(&self.store, &self.warehouse, &Default::default()).await.unwrap()
    }

    async fn stop(self) {
        self.stop.trigger();
        for handle in self.handles {
            let _ = handle.await;
        }
        self.store.close().await;
    }
}

/// A DAG ingesting `topic` into `table`; `options` are more task fields.
fn ingest_source(topic: &str, table: &str, schedule: &str, options: &str) -> String {
    format!(
        r#"
        {schedule}
        [tasks.ingest]
        kind = "kafka_ingest"
        topic = "{topic}"
        table = "{table}"
        event_time = "timestamp"
        {options}
        [tasks.ingest.columns]
        {columns}
        "#,
        columns = Profile::WebLogs
            .fields()
            .iter()
            .map(|(name, ty)| format!("{name} = \"{}\"\n", ty.name()))
            .collect::<String>(),
    )
}

/// A plan sending web logs to `topic`: `count` events, paced at `rate` (0: as fast as
/// possible), event time starting now.
fn web_logs(topic: &str, count: u64, rate: f64, seed: u64, anomaly_rate: f64) -> ProducePlan {
    ProducePlan {
        topic: topic.into(),
        partitions: 3,
        source: Source::Simulated(Simulation {
            profile: Profile::WebLogs,
            seed,
            rate: if rate > 0.0 { rate } else { 10_000.0 },
            start: chrono::Utc::now(),
            anomaly_rate,
            late_share: 0.0,
            max_delay: Duration::ZERO,
        }),
        rate,
        limits: Limits { count: Some(count), duration: None, paced: rate > 0.0 },
        compression: Compression::None,
    }
}

/// The topic of a part of this benchmark.
fn topic(part: &str) -> String {
    format!("bench_{part}_{}", std::process::id())
}

const THROUGHPUT_OPTIONS: &str = r#"max_records = 1000000
        max_wait = "10m"
        stop_at_end = true"#;
const COMMITS_OPTIONS: &str = r#"max_wait = "30s"
        stop_at_end = true"#;

/// The DAG files of the benchmark: manual ingests for throughput and commits, and the
/// continuous ingest of the freshness part (paused until that part starts).
fn dag_files() -> Vec<(&'static str, String)> {
    let continuous = "schedule = \"@continuous\"\npaused_on_creation = true";
    vec![
        (
            "throughput",
            ingest_source(&topic("throughput"), "bronze.bench_throughput", "", THROUGHPUT_OPTIONS),
        ),
        (
            "freshness",
            ingest_source(
                &topic("freshness"),
                "bronze.bench_freshness",
                continuous,
                "max_wait = \"1s\"",
            ),
        ),
        ("commits", ingest_source(&topic("commits"), "bronze.bench_commits", "", COMMITS_OPTIONS)),
        (
            "latency_ingest",
            ingest_source(&topic("latency"), LATENCY_BRONZE, continuous, "max_wait = \"1s\""),
        ),
        ("latency_speed", format!("{continuous}\nmin_interval = \"1s\"\n{}", latency_speed())),
    ]
}

const LATENCY_BRONZE: &str = "bronze.bench_latency";
const LATENCY_ANOMALIES: &str = "speed.bench_latency_anomalies";

/// The speed layer of the latency part: 10-second windows per endpoint and the reference
/// pipeline's endpoint checks (dags/weblogs_speed.toml).
fn latency_speed() -> String {
    let reference = include_str!("../dags/weblogs_speed.toml");
    let from = reference.find("[tasks.detect.checks.traffic_spike]").unwrap();
    let to = reference.find("[tasks.detect.checks.abusive_ip]").unwrap();
    let checks = reference[from..to].replace("speed.endpoint_minutes", "speed.bench_latency");
    format!(
        r#"
        [tasks.windows]
        kind = "window"
        source = "{LATENCY_BRONZE}"
        table = "speed.bench_latency"
        event_time = "timestamp"
        size = "10s"
        keys = ["endpoint"]
        allowed_lateness = "2s"
        late = "update"
        [tasks.windows.aggregates]
        requests = "count"
        errors = "count_if(status_code >= 500)"
        p95_ms = "p95(response_time_ms)"

        [tasks.detect]
        kind = "anomaly"
        depends_on = ["windows"]
        table = "{LATENCY_ANOMALIES}"
        {checks}
        "#
    )
}

async fn throughput(bench: &Bench) {
    let events = env_number("LAKEWARD_BENCH_EVENTS", 3_000_000);
    let compression = std::env::var("LAKEWARD_BENCH_COMPRESSION").unwrap_or("none".into());
    let topic = topic("throughput");
    let brokers = Brokers::new(&bench.brokers).unwrap();
    ensure_topic(&brokers, &topic, 3).await.unwrap();
    // Produced by `lakeward produce` in its own process, so that this process's memory is the
    // ingest's alone.
    let home = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lakeward"))
        .args(["produce", "--topic", &topic, "--rate", "0", "--seed", "1", "--late-share", "0"])
        .args(["--count", &events.to_string(), "--brokers", brokers.as_str()])
        .args(["--compression", &compression])
        .env_clear()
        .env("LAKEWARD_HOME", home.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    println!("throughput: {}", String::from_utf8_lossy(&output.stdout).trim());
    let source = ingest_source(&topic, "bronze.bench_throughput", "", THROUGHPUT_OPTIONS);
    let dag = bench.register(&source, "throughput").await;
    reset_peak_rss();
    let (mut read, mut busy) = (0u64, 0.0f64);
    let started = Instant::now();
    while read < events {
        let ti = bench.run_once(&dag).await;
        let records = ti.outputs["records"].as_u64().unwrap_or(0);
        let seconds = (ti.ended_at.unwrap() - ti.started_at.unwrap()) as f64 / 1e6;
        println!(
            "  try: {records} records in {seconds:.2} s ({:.0}/s), commit {} ms; read time {}",
            records as f64 / seconds,
            ti.outputs["commit_ms"],
            ti.outputs["read_time"]
        );
        read += records;
        busy += seconds;
        if records == 0 {
            break;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "throughput: ingested {read} events in {busy:.1} s of tries ({:.0} events/s; {wall:.1} s \
         wall, {:.0} events/s with scheduling); peak RSS while ingesting {:.0} MB",
        read as f64 / busy,
        read as f64 / wall,
        peak_rss_mb()
    );
}

async fn freshness(bench: &Bench) {
    let seconds = env_number("LAKEWARD_BENCH_SECONDS", 60);
    let rate = 10_000.0;
    let topic = topic("freshness");
    let brokers = Brokers::new(&bench.brokers).unwrap();
    ensure_topic(&brokers, &topic, 3).await.unwrap();
    let table = "bronze.bench_freshness";
    let producer = web_logs(&topic, (rate as u64) * seconds, rate, 2, 0.01);
    let sending = lakeward::process::spawn_owned(producer.run(brokers, || false));
    dags::set_paused(bench.store.write(), "freshness", false).await.unwrap();
    let sent = sending.await.unwrap().unwrap();
    // Let the last events in, then stop the continuous DAG.
    tokio::time::sleep(Duration::from_secs(3)).await;
    dags::set_paused(bench.store.write(), "freshness", true).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let all = runs::list(bench.store.read(), "freshness", 100_000, 0).await.unwrap();
    let pks: Vec<i64> = all.iter().map(|r| r.pk).collect();
    let mut windows: Vec<(i64, i64)> = tasks::of_runs(bench.store.read(), &pks)
        .await
        .unwrap()
        .iter()
        .filter_map(|t| Some((t.started_at?, t.ended_at?)))
        .collect();
    windows.sort();
    let scan = bench.tables().await.scan(table, &ScanRequest::default()).await.unwrap();
    let mut delays = Vec::new();
    for batch in &scan.batches {
        let times =
            batch.column_by_name("timestamp").unwrap().as_primitive::<TimestampMicrosecondType>();
        let read = batch
            .column_by_name("_ingested_at")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            if times.is_null(i) {
                continue;
            }
            let at = read.value(i);
            let window = windows.partition_point(|(start, _)| *start <= at);
            if let Some((_, end)) = windows.get(window.wrapping_sub(1)) {
                delays.push((end - times.value(i)) as f64 / 1e6);
            }
        }
    }
    delays.sort_by(f64::total_cmp);
    println!(
        "freshness: {} events sent at {rate:.0}/s for {seconds} s, {} rows visible, {} runs; \
         produce → visible p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        sent.events,
        delays.len(),
        windows.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or_default()
    );
}

async fn anomaly_latency(bench: &Bench) {
    let seconds = env_number("LAKEWARD_BENCH_SECONDS", 240);
    let rate = 10_000.0;
    let topic = topic("latency");
    let brokers = Brokers::new(&bench.brokers).unwrap();
    ensure_topic(&brokers, &topic, 3).await.unwrap();
    // Episodes start on whole minutes: a high share makes several in a few minutes.
    let producer = web_logs(&topic, (rate as u64) * seconds, rate, 3, 0.9);
    let sending = lakeward::process::spawn_owned(producer.run(brokers, || false));
    for dag in ["latency_ingest", "latency_speed"] {
        dags::set_paused(bench.store.write(), dag, false).await.unwrap();
    }
    let tables = bench.tables().await;
    // (window end, key, check) → when it was first seen, both in µs since the epoch.
    let mut seen: std::collections::HashMap<(i64, String, String), i64> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(seconds + 20);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(scan) = tables.scan(LATENCY_ANOMALIES, &ScanRequest::default()).await else {
            continue;
        };
        let now = now_micros();
        for batch in &scan.batches {
            let ends = batch
                .column_by_name("window_end")
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>();
            let keys = batch.column_by_name("key").unwrap().as_string::<i32>();
            let checks = batch.column_by_name("anomaly").unwrap().as_string::<i32>();
            for i in 0..batch.num_rows() {
                let id = (ends.value(i), keys.value(i).to_string(), checks.value(i).to_string());
                seen.entry(id).or_insert(now);
            }
        }
    }
    let sent = sending.await.unwrap().unwrap();
    for dag in ["latency_ingest", "latency_speed"] {
        dags::set_paused(bench.store.write(), dag, true).await.unwrap();
    }
    let mut latencies: Vec<f64> =
        seen.iter().map(|((end, _, _), at)| (at - end) as f64 / 1e6).collect();
    latencies.sort_by(f64::total_cmp);
    let mut per_check: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, _, check) in seen.keys() {
        *per_check.entry(check.as_str()).or_default() += 1;
    }
    println!(
        "anomaly_latency: {} events sent at {rate:.0}/s for {seconds} s; {} anomalies {per_check:?}; \
         last event of the window → anomaly visible: p50 {:.2} s, p90 {:.2} s, max {:.2} s",
        sent.events,
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        latencies.last().copied().unwrap_or_default()
    );
}

/// A window DAG over `source` writing per-endpoint minutes to `table` (as
/// `dags/weblogs_speed.toml` does).
fn window_source(source: &str, table: &str) -> String {
    format!(
        r#"
        [tasks.window]
        kind = "window"
        source = "{source}"
        table = "{table}"
        event_time = "timestamp"
        size = "1m"
        keys = ["endpoint"]
        allowed_lateness = "2m"
        late = "update"
        [tasks.window.aggregates]
        requests = "count"
        errors = "count_if(status_code >= 500)"
        avg_ms = "avg(response_time_ms)"
        p50_ms = "p50(response_time_ms)"
        p95_ms = "p95(response_time_ms)"
        p99_ms = "p99(response_time_ms)"
        bytes = "sum(bytes)"
        clients = "count_distinct(ip)"
        "#
    )
}

/// Web-log messages as `kafka_ingest` decodes them into rows.
fn web_log_spec() -> Arc<RowSpec> {
    Arc::new(RowSpec {
        columns: Profile::WebLogs.fields().iter().map(|(n, t)| (n.to_string(), *t)).collect(),
        event_time: "timestamp".into(),
        unknown_fields: UnknownFields::Keep,
        max_message_bytes: 1 << 20,
    })
}

fn decode() {
    let count = env_number("LAKEWARD_BENCH_EVENTS", 3_000_000);
    let mut simulator = Simulator::new(Simulation {
        profile: Profile::WebLogs,
        seed: 14,
        rate: 10_000.0,
        start: chrono::Utc::now(),
        anomaly_rate: 0.01,
        late_share: 0.05,
        max_delay: Duration::from_secs(30),
    });
    let messages: Vec<String> = (0..count).map(|_| simulator.next_event().payload).collect();
    let bytes: usize = messages.iter().map(String::len).sum();
    let mut decoder = Decoder::new(web_log_spec());
    let started = Instant::now();
    let mut rows = 0;
    for (offset, message) in messages.iter().enumerate() {
        decoder.push(Some(message.as_bytes()), 0, offset as i64, now_micros()).unwrap();
        if decoder.rows() == 64 * 1024 {
            rows += decoder.finish().unwrap().num_rows();
        }
    }
    rows += decoder.finish().unwrap().num_rows();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(rows as u64, count);
    println!(
        "decode: {count} web-log messages ({:.0} bytes on average) in {seconds:.2} s: \
         {:.0} records/s, {:.2} µs a record",
        bytes as f64 / count as f64,
        count as f64 / seconds,
        seconds * 1e6 / count as f64
    );
}

/// Appends `count` simulated web-log events to `table`, decoded as `kafka_ingest` decodes
/// them, in one commit.
async fn append_web_logs(tables: &Tables, table: &str, simulator: &mut Simulator, count: u64) {
    let spec = web_log_spec();
    let partition = [PartitionField::parse("hour(timestamp)").unwrap()];
    let mut writer = tables.writer(table, &spec.schema(), &partition).await.unwrap();
    let mut decoder = Decoder::new(spec);
    for offset in 0..count {
        let event = simulator.next_event();
        decoder.push(Some(event.payload.as_bytes()), 0, offset as i64, now_micros()).unwrap();
        if decoder.rows() == 64 * 1024 {
            writer.write(&decoder.finish().unwrap()).await.unwrap();
        }
    }
    writer.write(&decoder.finish().unwrap()).await.unwrap();
    writer.commit(WriteMode::Append, &Default::default(), &Default::default()).await.unwrap();
}

async fn window(bench: &Bench) {
    let total = env_number("LAKEWARD_BENCH_WINDOW_EVENTS", 5_000_000);
    let per_commit = 500_000.min(total);
    let source = "bronze.bench_window";
    let tables = bench.tables().await;
    let mut simulator = Simulator::new(Simulation {
        profile: Profile::WebLogs,
        seed: 15,
        rate: 10_000.0,
        start: chrono::Utc::now() - chrono::Duration::hours(2),
        anomaly_rate: 0.01,
        late_share: 0.02,
        max_delay: Duration::from_secs(30),
    });
    let incremental =
        bench.register(&window_source(source, "speed.bench_incremental"), "window_inc").await;
    let backlog = bench.register(&window_source(source, "speed.bench_backlog"), "window_all").await;
    reset_peak_rss();
    let (mut events, mut seconds) = (0.0, 0.0);
    let mut written = 0;
    while written < total {
        append_web_logs(&tables, source, &mut simulator, per_commit).await;
        written += per_commit;
        let ti = bench.run_once(&incremental).await;
        events += ti.outputs["events"].as_f64().unwrap_or(0.0);
        seconds += ti.outputs["seconds"].as_f64().unwrap_or(0.0);
    }
    println!(
        "window: incremental, {} tries of {per_commit} events: {:.0} events/s ({events} events \
         in {seconds:.2} s of tries)",
        total / per_commit,
        events / seconds
    );
    let ti = bench.run_once(&backlog).await;
    let (events, seconds) = (
        ti.outputs["events"].as_f64().unwrap_or(0.0),
        ti.outputs["seconds"].as_f64().unwrap_or(1.0),
    );
    println!(
        "window: one try over the backlog of {events} events: {:.0} events/s ({seconds:.2} s, \
         {} windows); peak RSS {:.0} MB",
        events / seconds,
        ti.outputs["windows_emitted"],
        peak_rss_mb()
    );
}

async fn commit_cost(bench: &Bench) {
    let count = env_number("LAKEWARD_BENCH_COMMITS", 3_600) as usize;
    let table = "bronze.bench_commit_cost";
    let tables = bench.tables().await;
    let mut simulator = Simulator::new(Simulation {
        profile: Profile::WebLogs,
        seed: 14,
        rate: 1_000.0,
        start: chrono::Utc::now(),
        anomaly_rate: 0.01,
        late_share: 0.0,
        max_delay: Duration::ZERO,
    });
    let spec = web_log_spec();
    let partition = [PartitionField::parse("hour(timestamp)").unwrap()];
    let property = "lakeward.kafka.bench.offsets".to_string();
    let mut times = CommitTimes::new();
    for i in 0..count {
        let mut decoder = Decoder::new(spec.clone());
        for offset in 0..1_000 {
            let event = simulator.next_event();
            decoder.push(Some(event.payload.as_bytes()), 0, offset, now_micros()).unwrap();
        }
        let mut writer = tables.writer(table, &spec.schema(), &partition).await.unwrap();
        let begun = writer.summary();
        writer.write(&decoder.finish().unwrap()).await.unwrap();
        let summary =
            std::collections::BTreeMap::from([(property.clone(), (i * 1_000).to_string())]);
        let expected =
            std::collections::BTreeMap::from([(property.clone(), begun.get(&property).cloned())]);
        let commit_started = Instant::now();
        writer.commit(WriteMode::Append, &summary, &expected).await.unwrap();
        times.record(commit_started.elapsed().as_secs_f64() * 1e3, &tables, table).await;
    }
    times.report("commit_cost: micro-batches of 1000 events (no broker)");
}

/// Commit times of a run of micro-batches standing for one-second ones, with upkeep every 600
/// of them (ten simulated minutes): compaction, and expiry of snapshots older than a simulated
/// minute.
struct CommitTimes {
    ms: Vec<f64>,
    started: Instant,
}

impl CommitTimes {
    fn new() -> CommitTimes {
        CommitTimes { ms: Vec::new(), started: Instant::now() }
    }

    async fn record(&mut self, ms: f64, tables: &Tables, table: &str) {
        self.ms.push(ms);
        if self.ms.len() % 600 == 0 {
            tables.compact(table).await.unwrap();
            // Snapshots older than a minute of the simulated hour (one commit a second): all
            // but the last 60, whatever the wall clock says.
            tables.expire_snapshots(table, i64::MAX, 60).await.unwrap();
            println!(
                "  {} commits in {:.0} s: last 60 commits {:.1} ms on average",
                self.ms.len(),
                self.started.elapsed().as_secs_f64(),
                mean(&self.ms[self.ms.len() - 60..])
            );
        }
    }

    fn report(&self, what: &str) {
        let n = self.ms.len().min(60);
        let (first, last) = (mean(&self.ms[..n]), mean(&self.ms[self.ms.len() - n..]));
        println!(
            "{what}: {} commits, first 60 {first:.1} ms on average, last 60 {last:.1} ms \
             ({:.2}x)",
            self.ms.len(),
            last / first
        );
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

async fn commits(bench: &Bench) {
    let count = env_number("LAKEWARD_BENCH_COMMITS", 3_600) as usize;
    let topic = topic("commits");
    let brokers = Brokers::new(&bench.brokers).unwrap();
    ensure_topic(&brokers, &topic, 3).await.unwrap();
    let table = "bronze.bench_commits";
    let dag = bench.register(&ingest_source(&topic, table, "", COMMITS_OPTIONS), "commits").await;
    let tables = bench.tables().await;
    let mut times = CommitTimes::new();
    for i in 0..count {
        web_logs(&topic, 1_000, 0.0, 100 + i as u64, 0.01)
            .run(brokers.clone(), || false)
            .await
            .unwrap();
        let ti = bench.run_once(&dag).await;
        times.record(ti.outputs["commit_ms"].as_f64().unwrap_or(0.0), &tables, table).await;
    }
    times.report("commits: micro-batches of 1000 events");
}

fn main() {
    // As the `lakeward` binary starts (src/main.rs).
    lakeward::process::limit_c_heap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let configured = std::env::var("LAKEWARD_BENCH_KAFKA_BROKERS")
            .or_else(|_| std::env::var("LAKEWARD_TEST_KAFKA_BROKERS"))
            .ok();
        let demo = match configured {
            Some(_) => None,
            None => {
                // The demo broker offers no topic administration: its topics are made here.
                let names: Vec<String> = ["throughput", "freshness", "commits", "latency"]
                    .iter()
                    .map(|p| topic(p))
                    .collect();
                let topics: Vec<(&str, i32)> = names.iter().map(|t| (t.as_str(), 3)).collect();
                Some(lakeward::stream::demo::DemoBroker::start(&topics).unwrap())
            }
        };
        let brokers =
            configured.unwrap_or_else(|| demo.as_ref().unwrap().brokers().as_str().into());
        println!(
            "broker: {brokers}{}",
            if demo.is_some() { " (in-process demo broker)" } else { "" }
        );
        let parts = std::env::var("LAKEWARD_BENCH_PARTS")
            .unwrap_or_else(|_| "throughput,freshness,commits".into());
        let bench = Bench::start(&brokers, &dag_files()).await;
        // The scheduler registers the DAG folder on its first pass.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for part in parts.split(',') {
            match part.trim() {
                "throughput" => throughput(&bench).await,
                "freshness" => freshness(&bench).await,
                "commits" => commits(&bench).await,
                "window" => window(&bench).await,
                "commit_cost" => commit_cost(&bench).await,
                "decode" => decode(),
                "anomaly_latency" => anomaly_latency(&bench).await,
                other => panic!("unknown part `{other}`"),
            }
        }
        bench.stop().await;
    });
}
