//! Kafka into Iceberg: simulated web logs produced to a real Kafka-protocol broker (tansu,
//! started by `.ci/run`), ingested by `kafka_ingest` tasks exactly once, bad messages in the
//! dead-letter table, offsets that went backwards, a broker that is down, and the demo broker
//! (librdkafka's mock cluster) carrying a stream end to end.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_array::RecordBatch;
use common::{dag, manual, rows, unique_topic, Harness, HarnessOptions};
use lakeward::domain::{RunState, TaskState};
use lakeward::jobs::{ProducePlan, Source};
use lakeward::lake::tables::{ScanRequest, TableError, Tables, WriteMode};
use lakeward::lake::Warehouse;
use lakeward::simulate::{Profile, Simulation};
use lakeward::stream::produce::{Compression, Limits};
use lakeward::stream::{ensure_topic, Brokers, Marker};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// Sends `count` simulated web-log events with `seed` to `topic`, as fast as possible.
pub(crate) async fn produce(brokers: &str, topic: &str, count: u64, seed: u64) {
    produce_compressed(brokers, topic, count, seed, Compression::None).await
}

/// [`produce`], with the record batches compressed by `compression`.
async fn produce_compressed(
    brokers: &str,
    topic: &str,
    count: u64,
    seed: u64,
    compression: Compression,
) {
    let plan = ProducePlan {
        topic: topic.to_string(),
        partitions: 3,
        source: Source::Simulated(Simulation {
            profile: Profile::WebLogs,
            seed,
            rate: 1000.0,
            start: "2026-11-26T09:30:00Z".parse().unwrap(),
            anomaly_rate: 0.02,
            late_share: 0.05,
            max_delay: Duration::from_secs(600),
        }),
        rate: 0.0,
        limits: Limits { count: Some(count), duration: None, paced: false },
        compression,
    };
    let sent = plan.run(Brokers::new(brokers).unwrap(), || false).await.unwrap();
    assert_eq!(sent.events, count);
}

/// Sends raw payloads to partition 0 of `topic`.
pub(crate) fn send_raw(brokers: &str, topic: &str, payloads: &[Vec<u8>]) {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    for payload in payloads {
        producer.send(BaseRecord::<(), _>::to(topic).partition(0).payload(payload)).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// A DAG reading `topic` into `bronze.web_logs` until the end of the partitions.
fn ingest_dag(brokers: &str, topic: &str, extra: &str) -> std::sync::Arc<lakeward::dag::Dag> {
    dag(&ingest_dag_source(brokers, topic, extra))
}

pub(crate) fn ingest_dag_source(brokers: &str, topic: &str, extra: &str) -> String {
    format!(
        r#"
        [tasks.ingest]
        kind = "kafka_ingest"
        brokers = "{brokers}"
        topic = "{topic}"
        table = "bronze.web_logs"
        event_time = "timestamp"
        stop_at_end = true
        max_wait = "60s"
        max_message_bytes = 2048
        {extra}
        [tasks.ingest.columns]
        {columns}
        "#,
        columns = web_log_columns(),
    )
}

/// The `columns` table declaring the fields of simulated web logs.
pub(crate) fn web_log_columns() -> String {
    let fields = Profile::WebLogs.fields().iter();
    fields.map(|(name, ty)| format!("{name} = \"{}\"\n", ty.name())).collect()
}

struct Lake {
    _dir: tempfile::TempDir,
    warehouse: Warehouse,
    harness: Harness,
}

async fn lake(db: &common::TestDb) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let options = HarnessOptions { warehouse: Some(warehouse.clone()), ..Default::default() };
    let harness = Harness::start_with(db, options).await;
    Lake { _dir: dir, warehouse, harness }
}

impl Lake {
    /// Runs `dag` once; returns the ingest task's final row.
    async fn run(
        &self,
        dag: &std::sync::Arc<lakeward::dag::Dag>,
    ) -> lakeward::store::TaskInstanceRow {
        let run = self.harness.trigger(dag, manual(serde_json::json!({}))).await;
        self.harness.wait(&run, Duration::from_secs(120)).await;
        self.harness.tasks(&run).await.remove(0)
    }

    async fn tables(&self) -> Tables {
        Tables::open(&self.harness.store, &self.warehouse, &Default::default()).await.unwrap()
    }

    async fn scan(&self, table: &str) -> Vec<RecordBatch> {
        self.tables().await.scan(table, &ScanRequest::default()).await.unwrap().batches
    }
}

pub(crate) fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let values = b.column_by_name(column).unwrap().as_string::<i32>().clone();
            (0..values.len()).map(move |i| values.value(i).to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_logs_are_ingested_exactly_once_and_bad_messages_become_dead_letters() {
    let Some(brokers) = common::kafka() else { return };
    let topic = unique_topic("web_logs");
    ensure_topic(&Brokers::new(&brokers).unwrap(), &topic, 3).await.unwrap();
    produce(&brokers, &topic, 2_000, 7).await;
    let bad: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        b"[1, 2]".to_vec(),
        br#"{"event_id":"no-time"}"#.to_vec(),
        br#"{"event_id":"bad-type","timestamp":"2026-11-26T10:00:00Z","status_code":"abc"}"#
            .to_vec(),
        format!(
            r#"{{"event_id":"big","timestamp":"2026-11-26T10:00:00Z","ip":"{}"}}"#,
            "1".repeat(3000)
        )
        .into_bytes(),
    ];
    send_raw(&brokers, &topic, &bad);

    let db = common::sqlite();
    let lake = lake(&db).await;
    let ingest = ingest_dag(&brokers, &topic, "");
    let first = lake.run(&ingest).await;
    assert_eq!(first.state, TaskState::Success, "{}", lake.harness.log_text(&first).await);
    assert_eq!(first.outputs["records"], 2_005);
    assert_eq!(first.outputs["rows"], 2_000);
    assert_eq!(first.outputs["dead_letters"], 5);
    let partitions = first.outputs["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    let per_partition: u64 = partitions.iter().map(|p| p["records"].as_u64().unwrap()).sum();
    assert_eq!(per_partition, 2_005);

    let data = lake.scan("bronze.web_logs").await;
    let ids: BTreeSet<String> = strings(&data, "event_id").into_iter().collect();
    assert_eq!((rows(&data), ids.len()), (2_000, 2_000));
    let dead = lake.scan("bronze.web_logs_dead_letters").await;
    let mut reasons = strings(&dead, "reason");
    reasons.sort();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    for expected in [
        "invalid JSON",
        "expected a JSON object",
        "no event time",
        "field `status_code`: expected integer",
        "larger than max_message_bytes",
    ] {
        assert!(reasons.iter().any(|r| r.contains(expected)), "{expected} in {reasons:?}");
    }

    // Nothing new: nothing read, nothing committed.
    let idle = lake.run(&ingest).await;
    assert_eq!(idle.state, TaskState::Success, "{}", lake.harness.log_text(&idle).await);
    assert_eq!(
        (idle.outputs["records"].as_u64(), idle.outputs["snapshot_id"].is_null()),
        (Some(0), true)
    );

    // More events: only they are read, from where the table's commit says.
    produce(&brokers, &topic, 300, 8).await;
    let more = lake.run(&ingest).await;
    assert_eq!(more.outputs["records"], 300, "{}", lake.harness.log_text(&more).await);
    for (before, after) in partitions.iter().zip(more.outputs["partitions"].as_array().unwrap()) {
        assert_eq!(before["to"], after["from"]);
    }
    let data = lake.scan("bronze.web_logs").await;
    let ids: BTreeSet<String> = strings(&data, "event_id").into_iter().collect();
    assert_eq!((rows(&data), ids.len()), (2_300, 2_300));
    assert_eq!(rows(&lake.scan("bronze.web_logs_dead_letters").await), 5);

    // Compaction and expiry keep the offsets: another run reads nothing again.
    let tables = lake.tables().await;
    tables.compact("bronze.web_logs").await.unwrap();
    tables.expire_snapshots("bronze.web_logs", i64::MAX, 1).await.unwrap();
    let after_upkeep = lake.run(&ingest).await;
    assert_eq!(after_upkeep.outputs["records"], 0);
    assert_eq!(rows(&lake.scan("bronze.web_logs").await), 2_300);

    // What /metrics shows: records and dead letters over all tries, lag per partition.
    let samples = lakeward::store::metrics::all(lake.harness.store.read()).await.unwrap();
    let value =
        |name: &str| samples.iter().filter(|s| s.name == name).map(|s| s.value).sum::<f64>();
    assert_eq!(value("lakeward_stream_records_total"), 2_305.0);
    assert_eq!(value("lakeward_stream_dead_letters_total"), 5.0);
    let lags = samples.iter().filter(|s| s.name == "lakeward_stream_consumer_lag").count();
    assert_eq!(lags, 3, "one lag gauge per partition");
    lake.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_compressed_by_every_codec_are_read() {
    let Some(brokers) = common::kafka() else { return };
    let topic = unique_topic("compressed");
    ensure_topic(&Brokers::new(&brokers).unwrap(), &topic, 3).await.unwrap();
    let codecs = ["gzip", "snappy", "lz4", "zstd"];
    for (seed, codec) in codecs.iter().enumerate() {
        let compression = codec.parse().unwrap();
        produce_compressed(&brokers, &topic, 500, 100 + seed as u64, compression).await;
    }
    assert!("brotli".parse::<Compression>().unwrap_err().contains("gzip, snappy, lz4, zstd"));

    let db = common::sqlite();
    let lake = lake(&db).await;
    let ingest = lake.run(&ingest_dag(&brokers, &topic, "")).await;
    assert_eq!(ingest.state, TaskState::Success, "{}", lake.harness.log_text(&ingest).await);
    assert_eq!(
        (ingest.outputs["rows"].as_u64(), ingest.outputs["dead_letters"].as_u64()),
        (Some(2_000), Some(0))
    );
    let data = lake.scan("bronze.web_logs").await;
    let ids: BTreeSet<String> = strings(&data, "event_id").into_iter().collect();
    assert_eq!((rows(&data), ids.len()), (2_000, 2_000));
    lake.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_that_went_backwards_fail_the_try_unless_a_policy_says_where_to_go() {
    let Some(brokers) = common::kafka() else { return };
    let topic = unique_topic("recreated");
    ensure_topic(&Brokers::new(&brokers).unwrap(), &topic, 3).await.unwrap();
    produce(&brokers, &topic, 100, 1).await;
    let db = common::sqlite();
    let lake = lake(&db).await;
    assert_eq!(lake.run(&ingest_dag(&brokers, &topic, "")).await.outputs["rows"], 100);

    // As if the topic had been recreated: the table says the stream stopped far beyond its end.
    let beyond = Marker { next: [(0, 1_000_000), (1, 1_000_000), (2, 1_000_000)].into() };
    let summary = [(Marker::property(&topic), beyond.to_property())].into();
    let nothing = futures::stream::iter(Vec::<Result<RecordBatch, TableError>>::new());
    let tables = lake.tables().await;
    let no_columns = arrow_schema::Schema::empty();
    tables
        .write_batches("bronze.web_logs", &no_columns, nothing, &[], WriteMode::Append, &summary)
        .await
        .unwrap();
    let failed = lake.run(&ingest_dag(&brokers, &topic, "retries = 2")).await;
    assert_eq!(failed.state, TaskState::Failed);
    assert_eq!(failed.try_number, 1, "a definition problem is not retried");
    let log = lake.harness.log_text(&failed).await;
    assert!(log.contains("the stream stopped at offset 1000000"), "{log}");
    assert!(log.contains("on_offsets_reset"), "{log}");

    let earliest =
        lake.run(&ingest_dag(&brokers, &topic, r#"on_offsets_reset = "earliest""#)).await;
    assert_eq!(earliest.state, TaskState::Success, "{}", lake.harness.log_text(&earliest).await);
    assert_eq!(earliest.outputs["records"], 100, "read again from the first offset");
    lake.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_fails_the_try_clearly_and_creates_nothing() {
    let db = common::sqlite();
    let lake = lake(&db).await;
    let ingest = ingest_dag("127.0.0.1:9", "nowhere", "");
    let run = lake.harness.trigger(&ingest, manual(serde_json::json!({}))).await;
    let run = lake.harness.wait(&run, Duration::from_secs(60)).await;
    assert_eq!(run.state, RunState::Failed);
    let ti = lake.harness.tasks(&run).await.remove(0);
    let log = lake.harness.log_text(&ti).await;
    assert!(log.contains("cannot reach the Kafka brokers 127.0.0.1:9"), "{log}");
    assert!(lake.tables().await.list().await.unwrap().is_empty(), "no table was created");
    lake.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_broker_carries_a_stream_from_producer_to_table() {
    let demo = lakeward::stream::demo::DemoBroker::start(&[("demo_logs", 2)]).unwrap();
    let brokers = demo.brokers().as_str().to_string();
    produce(&brokers, "demo_logs", 500, 3).await;
    let db = common::sqlite();
    let lake = lake(&db).await;
    let ti = lake.run(&ingest_dag(&brokers, "demo_logs", "")).await;
    assert_eq!(ti.state, TaskState::Success, "{}", lake.harness.log_text(&ti).await);
    assert_eq!(ti.outputs["rows"], 500);
    let data = lake.scan("bronze.web_logs").await;
    assert_eq!(strings(&data, "endpoint").len(), 500);
    lake.harness.stop().await;
}

/// Percent-encodes everything but letters, digits and `-_.~` (a run id in a URL path).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_ingest_shows_partitions_throughput_and_lag() {
    use axum::body::Body;
    use axum::http::Request;
    use lakeward::store::runs;

    let demo = lakeward::stream::demo::DemoBroker::start(&[("ui_logs", 2)]).unwrap();
    let brokers = demo.brokers().as_str().to_string();
    produce(&brokers, "ui_logs", 400, 5).await;
    let folder = tempfile::tempdir().unwrap();
    let source = ingest_dag_source(&brokers, "ui_logs", "").replacen(
        "[tasks.ingest]",
        "schedule = \"@continuous\"\n[tasks.ingest]",
        1,
    );
    std::fs::write(folder.path().join("stream.toml"), source).unwrap();
    let db = common::sqlite();
    let options =
        HarnessOptions { dags_folder: Some(folder.path().to_path_buf()), ..Default::default() };
    let h = Harness::start_with(&db, options).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let finished = loop {
        let all = runs::list(h.store.read(), "stream", 100, 0).await.unwrap();
        let finished: Vec<_> = all.into_iter().filter(|r| r.state.is_finished()).collect();
        if finished.len() >= 3 {
            break finished;
        }
        assert!(tokio::time::Instant::now() < deadline, "too few runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut config = lakeward::config::Config::default();
    config.web.auth = false;
    let router = lakeward::web::app(lakeward::web::AppState::new(
        h.store.clone(),
        h.versions.clone(),
        &config,
    ));
    let get = |path: String| {
        let request = Request::get(path).header("host", "127.0.0.1").body(Body::empty()).unwrap();
        common::web::send(&router, request)
    };
    let dag_page = get("/dags/stream".into()).await;
    assert!(dag_page.body.contains("id=\"stream-chart\""), "{}", dag_page.body);
    assert!(dag_page.body.contains("<polyline class=\"line lag\""));
    let first = finished.last().unwrap();
    let task_page = get(format!("/dags/stream/runs/{}/tasks/ingest", encode(&first.run_id))).await;
    assert!(task_page.body.contains("<h2>Kafka partitions</h2>"), "{}", task_page.body);
    assert!(task_page.body.contains("<td>0 → "), "{}", task_page.body);
    let metrics = get("/metrics".into()).await;
    assert!(
        metrics.body.contains(
            "lakeward_stream_records_total{table=\"bronze.web_logs\",topic=\"ui_logs\"} 400"
        ),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("# TYPE lakeward_stream_consumer_lag gauge"));
    h.stop().await;
}

/// Seed 002's flow, from the reference DAG: each run drops a file of sensor readings; the
/// incremental ingest reads only the new files into bronze (exactly once, even when a task is
/// run again), and the cleaned readings go to silver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensor_files_are_ingested_once_each_into_bronze_and_cleaned_into_silver() {
    let source = include_str!("../../dags/sensor_files.toml");
    let sensors = std::sync::Arc::new(
        lakeward::dag::compile(
            "dags/sensor_files.toml",
            source,
            "sensor_files",
            &lakeward::jobs::Registry::builtin(),
        )
        .unwrap(),
    );
    let db = common::sqlite();
    let lake = lake(&db).await;
    let first = lake.harness.trigger(&sensors, manual(serde_json::json!({}))).await;
    if lake.harness.wait(&first, Duration::from_secs(120)).await.state != RunState::Success {
        let mut why = String::new();
        for ti in lake.harness.tasks(&first).await {
            why += &format!(
                "{} {} {:?}\n{}",
                ti.task_id,
                ti.state,
                ti.error,
                lake.harness.log_text(&ti).await
            );
        }
        panic!("the first run failed:\n{why}");
    }
    let ingest = |tasks: Vec<lakeward::store::TaskInstanceRow>| {
        tasks.into_iter().find(|t| t.task_id == "ingest_bronze").unwrap()
    };
    let ti = ingest(lake.harness.tasks(&first).await);
    assert_eq!(ti.outputs["sensor_readings"]["files"], 1, "{:?}", ti.outputs);
    assert_eq!(rows(&lake.scan("bronze.sensor_readings").await), 600);
    let silver = rows(&lake.scan("silver.sensor_readings").await);
    assert!((500..600).contains(&silver), "cleaning drops the readings without humidity: {silver}");

    let second = lake.harness.trigger(&sensors, manual(serde_json::json!({}))).await;
    assert_eq!(lake.harness.wait(&second, Duration::from_secs(120)).await.state, RunState::Success);
    assert_eq!(ingest(lake.harness.tasks(&second).await).outputs["sensor_readings"]["files"], 1);
    assert_eq!(rows(&lake.scan("bronze.sensor_readings").await), 1_200);

    // The ingest run again: no file is new, nothing is added.
    let run =
        lakeward::store::runs::by_pk(lake.harness.store.read(), second.pk).await.unwrap().unwrap();
    lakeward::scheduler::control::clear(
        &lake.harness.store,
        &sensors,
        &run,
        "ingest_bronze",
        false,
    )
    .await
    .unwrap();
    assert_eq!(lake.harness.wait(&second, Duration::from_secs(120)).await.state, RunState::Success);
    let again = ingest(lake.harness.tasks(&second).await);
    assert_eq!(again.outputs["sensor_readings"]["files"], 0, "{:?}", again.outputs);
    assert_eq!(rows(&lake.scan("bronze.sensor_readings").await), 1_200);
    let ids: BTreeSet<String> =
        strings(&lake.scan("bronze.sensor_readings").await, "event_id").into_iter().collect();
    assert_eq!(ids.len(), 1_200);
    lake.harness.stop().await;
}

/// A read that starts in the middle of a record batch gets the rest of that batch. (tansu
/// answers a fetch from inside a batch with the batches after it; a read that stopped inside
/// a batch, at its record limit, lost the rest of the batch on the next read: 2,658 of
/// 5,000,000 events in a benchmark run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_starts_inside_a_record_batch_gets_the_rest_of_it() {
    use lakeward::domain::ColumnType;
    use lakeward::stream::decode::{Decoder, RowSpec, UnknownFields};
    use lakeward::stream::read::{read, ReadRequest};

    let Some(brokers) = common::kafka() else { return };
    let topic = unique_topic("mid_batch");
    let list = Brokers::new(&brokers).unwrap();
    ensure_topic(&list, &topic, 1).await.unwrap();
    // Two batches, of 200 and 100 records: nothing is sent before a flush.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "2000")
        .create()
        .unwrap();
    for batch in [0..200, 200..300] {
        for i in batch {
            let payload = format!(r#"{{"id": "e{i}", "ts": "2026-11-28T06:00:00Z"}}"#);
            let record = BaseRecord::<(), _>::to(&topic).partition(0).payload(&payload);
            producer.send(record).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    let spec = RowSpec {
        columns: vec![("id".into(), ColumnType::String), ("ts".into(), ColumnType::Datetime)],
        event_time: "ts".into(),
        unknown_fields: UnknownFields::Drop,
        max_message_bytes: 1024,
    };
    let request = ReadRequest {
        brokers: list,
        topic: topic.clone(),
        partitions: None,
        group: format!("{topic}.test"),
        marker: Marker { next: [(0, 77)].into() },
        on_offsets_reset: Default::default(),
        max_records: 1_000,
        max_wait: Duration::from_secs(30),
        stop_at_end: true,
        batch_rows: 1_000,
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let mut decoder = Decoder::new(std::sync::Arc::new(spec));
        let mut batches = Vec::new();
        let mut keep = |batch| {
            batches.push(batch);
            Ok(())
        };
        let outcome = read(&request, &mut decoder, &mut keep, &|| false);
        (outcome.unwrap(), batches)
    });
    let (outcome, batches) = outcome.await.unwrap();
    let read = &outcome.partitions[0];
    assert_eq!((read.from, read.to, read.records, read.skipped), (77, 300, 223, 0), "{read:?}");
    let ids = strings(&batches, "id");
    assert_eq!(ids.first().map(String::as_str), Some("e77"));
    assert_eq!(ids.len(), 223);
}
