//! `kind = "kafka_ingest"`: a Kafka topic into an Iceberg table, exactly once.
//!
//! One try reads every partition from where the table's last commit says the stream stopped
//! (a snapshot summary property, [`Marker`]) until `max_records`, `max_wait` or, with
//! `stop_at_end`, the end; rows stream into the table's data files as they are decoded, and
//! the new offsets are committed **in the same Iceberg commit** as the rows, on condition that
//! the table's offsets are still the ones the try started from. A crash anywhere before that
//! commit leaves the offsets where they were (the files it wrote are orphans that upkeep
//! removes); after it, the next try starts past what was committed: nothing is lost or
//! doubled. Messages that cannot be rows go to `<table>_dead_letters`, which carries its own
//! marker, so a dead letter is written once too. The consumer group's offsets are set from
//! the table's (when the next try starts) for lag tools only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::values::Templated;
use super::{Job, JobContext, JobError, Stage};
use crate::domain::ColumnType;
use crate::lake::tables::{PartitionField, Tables, WriteMode};
use crate::stream::decode::{
    dead_letter_batch, dead_letter_schema, Decoder, RowSpec, UnknownFields,
};
use crate::stream::read::{read, PartitionRead, ReadOutcome, ReadRequest, ReadTime};
use crate::stream::{Brokers, Marker, ResetPolicy, StreamError};
use crate::time::parse_duration;

/// ```toml
/// [tasks.ingest]
/// kind = "kafka_ingest"
/// topic = "web_logs"
/// table = "bronze.web_logs"
/// event_time = "timestamp"          # partitioned by its hour unless partition_by says
/// max_wait = "1s"
/// [tasks.ingest.columns]
/// event_id = "string"
/// timestamp = "datetime"
/// status_code = "integer"
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaIngestConfig {
    /// `host:port,…`; default: the deployment's `[kafka] brokers` (or standalone's demo broker).
    #[serde(default)]
    pub brokers: Option<String>,
    pub topic: String,
    /// Partitions to read; default all.
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    /// `namespace.table` the rows go to (created on first use).
    pub table: String,
    /// Declared fields and their types (`string`, `integer`, `float`, `boolean`, `date`,
    /// `datetime`), in column order.
    pub columns: IndexMap<String, ColumnType>,
    /// The `datetime` field holding the event time; a message without it is a dead letter.
    pub event_time: String,
    /// Partition fields; default `["hour(<event_time>)"]`: one partition per event day and
    /// hour (readers prune it with predicates on the event time).
    #[serde(default)]
    pub partition_by: Option<Vec<String>>,
    /// Stop after this many records. Default 1,000,000.
    #[serde(default = "default_max_records")]
    pub max_records: Templated<u64>,
    /// Stop after reading for this long. Default `10s`.
    #[serde(default = "default_max_wait")]
    pub max_wait: String,
    /// Stop as soon as the partitions are read to the end they had when the try started.
    #[serde(default)]
    pub stop_at_end: bool,
    /// `keep` (in an `_extra` JSON column, default), `drop` or `dead_letter`.
    #[serde(default)]
    pub unknown_fields: UnknownFields,
    /// Larger messages are dead letters. Default 1 MiB.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: Templated<u64>,
    /// When the topic no longer holds the stored offsets (recreated, or expired unread):
    /// `fail` (default), `earliest` or `latest`.
    #[serde(default)]
    pub on_offsets_reset: ResetPolicy,
    /// The consumer group the progress is reported to; default `lakeward.<dag>.<task>`.
    #[serde(default)]
    pub group: Option<String>,
    /// Where dead letters go; default `<table>_dead_letters`.
    #[serde(default)]
    pub dead_letters: Option<String>,
}

fn default_max_records() -> Templated<u64> {
    Templated::Value(1_000_000)
}
fn default_max_wait() -> String {
    "10s".into()
}
fn default_max_message_bytes() -> Templated<u64> {
    Templated::Value(1024 * 1024)
}

/// Rows per record batch handed from the reader to the table writer.
const BATCH_ROWS: usize = 32 * 1024;

impl KafkaIngestConfig {
    fn row_spec(&self) -> Result<RowSpec, JobError> {
        Ok(RowSpec {
            columns: self.columns.iter().map(|(n, t)| (n.clone(), *t)).collect(),
            event_time: self.event_time.clone(),
            unknown_fields: self.unknown_fields,
            max_message_bytes: self.max_message_bytes.get("max_message_bytes")? as usize,
        })
    }

    fn partition_fields(&self) -> Result<Vec<PartitionField>, String> {
        // Iceberg's hour transform is the event's day and hour in one (a day transform of the
        // same column beside it would be redundant, and Iceberg refuses it).
        let default = [format!("hour({})", self.event_time)];
        let fields = self.partition_by.as_deref().unwrap_or(&default);
        PartitionField::parse_all(fields)
    }

    fn dead_letter_table(&self) -> String {
        self.dead_letters.clone().unwrap_or_else(|| format!("{}_dead_letters", self.table))
    }
}

/// The brokers a task names, else the deployment's.
pub(super) fn brokers(named: Option<&str>, ctx: &JobContext) -> Result<Brokers, JobError> {
    match named.map(str::trim).filter(|b| !b.is_empty()) {
        Some(list) => Ok(Brokers::new(list)?),
        None => ctx.kafka.clone().ok_or_else(|| {
            JobError::Config(
                "no Kafka brokers: set `brokers` on the task or `[kafka] brokers` \
                 (LAKEWARD_KAFKA_BROKERS) for the deployment"
                    .into(),
            )
        }),
    }
}

/// The problem with a task's `brokers`, if any (empty means the deployment's).
pub(super) fn check_brokers(named: Option<&str>, stage: Stage) -> Option<String> {
    let list = named.filter(|b| !b.trim().is_empty() && !stage.defers(b))?;
    Brokers::new(list).err().map(|e| e.to_string())
}

pub struct KafkaIngest;

impl Job for KafkaIngest {
    const KIND: &'static str = "kafka_ingest";
    type Config = KafkaIngestConfig;
    type Output = KafkaIngested;

    fn validate(&self, config: &KafkaIngestConfig, stage: Stage) -> Vec<String> {
        let dead_letters = config.dead_letter_table();
        let mut problems = stage.table_name_problems([config.table.as_str(), &dead_letters]);
        if config.topic.trim().is_empty() {
            problems.push("`topic` is empty".into());
        }
        if config.columns.is_empty() {
            problems.push("`columns` must declare at least the event time field".into());
        }
        if let Ok(spec) = config.row_spec() {
            problems.extend(spec.problems());
        }
        if let Err(e) = config.partition_fields() {
            problems.push(e);
        }
        if !stage.defers(&config.max_wait) {
            if let Err(e) = parse_duration(&config.max_wait) {
                problems.push(format!("`max_wait`: {e}"));
            }
        }
        if !config.max_records.check(|n| *n > 0) {
            problems.push("`max_records` must be at least 1".into());
        }
        problems.extend(check_brokers(config.brokers.as_deref(), stage));
        problems
    }

    async fn run(
        &self,
        config: KafkaIngestConfig,
        ctx: JobContext,
    ) -> Result<KafkaIngested, JobError> {
        let started = Instant::now();
        let brokers = brokers(config.brokers.as_deref(), &ctx)?;
        let spec = Arc::new(config.row_spec()?);
        let partition_by = config.partition_fields().map_err(JobError::Config)?;
        // Nothing is created or read until the brokers have answered.
        let (checked, topic) = (brokers.clone(), config.topic.clone());
        super::blocking(move || Ok(checked.check_topic(&topic)?)).await?;
        let tables = ctx.tables.get().await?;
        let property = Marker::property(&config.topic);
        let mut writer = tables.writer(&config.table, &spec.schema(), &partition_by).await?;
        let begun = writer.summary();
        let marker = Marker::from_summary(&begun, &config.topic)?;
        let request = ReadRequest {
            brokers: brokers.clone(),
            topic: config.topic.clone(),
            partitions: config.partitions.clone(),
            group: config
                .group
                .clone()
                .unwrap_or_else(|| format!("lakeward.{}.{}", ctx.dag_id, ctx.task_id)),
            marker,
            on_offsets_reset: config.on_offsets_reset,
            max_records: config.max_records.get("max_records")?,
            max_wait: parse_duration(&config.max_wait).map_err(JobError::Config)?,
            stop_at_end: config.stop_at_end,
            batch_rows: BATCH_ROWS,
        };

        // The reader decodes on the blocking pool while this task writes data files.
        let (sender, mut batches) = tokio::sync::mpsc::channel::<RecordBatch>(2);
        let cancellation = ctx.cancellation.clone();
        let reader_request = request.clone();
        let reading = crate::process::blocking(move || {
            let mut decoder = Decoder::new(spec);
            let mut emit = |batch| sender.blocking_send(batch).map_err(|_| StreamError::Cancelled);
            read(&reader_request, &mut decoder, &mut emit, &|| cancellation.is_requested())
        });
        let writing = async {
            while let Some(batch) = batches.recv().await {
                writer.write(&batch).await?;
            }
            Ok::<_, JobError>(())
        };
        let (read_result, written) = tokio::join!(reading, writing);
        written?;
        let outcome =
            read_result.map_err(|e| JobError::Failed(format!("the reader crashed: {e}")))??;
        let read_seconds = started.elapsed().as_secs_f64();

        let mut done = KafkaIngested::from_read(&config, &outcome);
        if outcome.records() == 0 {
            ctx.log.info(format!("no new records in `{}`; nothing committed", config.topic));
            report(&ctx, &done);
            return Ok(done);
        }
        let dead_table = config.dead_letter_table();
        let commit_started = Instant::now();
        done.dead_letters_written =
            write_dead_letters(&tables, &dead_table, &config.topic, &outcome).await?;
        let summary = BTreeMap::from([(property.clone(), outcome.marker.to_property())]);
        let expected = BTreeMap::from([(property.clone(), begun.get(&property).cloned())]);
        let promotion = writer.commit(WriteMode::Append, &summary, &expected).await?;
        done.commit_ms = commit_started.elapsed().as_millis() as u64;
        done.snapshot_id = Some(promotion.snapshot_id);
        ctx.lineage.wrote_table(
            &config.table,
            promotion.snapshot_id,
            "append",
            promotion.rows,
            promotion.files as u64,
        );
        ctx.log.info(format!(
            "{} records from `{}` in {read_seconds:.2}s: {} rows into {} (snapshot {}, {} files), \
             {} dead letters; committed in {} ms",
            done.records,
            config.topic,
            done.rows,
            config.table,
            promotion.snapshot_id,
            promotion.files,
            done.dead_letters,
            done.commit_ms
        ));
        for p in &done.partitions {
            let skipped = match p.skipped {
                0 => String::new(),
                n => format!(" ({n} offsets without a record: transaction markers, compaction)"),
            };
            ctx.log.info(format!(
                "partition {}: offsets {} → {}, {} records, {} dead letters, lag {}{skipped}",
                p.partition, p.from, p.to, p.records, p.dead_letters, p.lag
            ));
        }
        report(&ctx, &done);
        Ok(done)
    }
}

/// Reports a try's progress for `/metrics`.
fn report(ctx: &JobContext, done: &KafkaIngested) {
    let (topic, table) = (done.topic.as_str(), done.table.as_str());
    let stream = [("topic", topic), ("table", table)];
    let metrics = &ctx.metrics;
    let records = "Kafka records read into tables (rows and dead letters).";
    metrics.count("lakeward_stream_records_total", records, &stream, done.records as f64);
    let dead = "Kafka records that went to a dead-letter table.";
    metrics.count("lakeward_stream_dead_letters_total", dead, &stream, done.dead_letters as f64);
    if done.snapshot_id.is_some() {
        let commit = "Duration of the latest Iceberg commit of a stream.";
        metrics.gauge(
            "lakeward_stream_commit_seconds",
            commit,
            &stream,
            done.commit_ms as f64 / 1e3,
        );
    }
    for p in &done.partitions {
        let partition = p.partition.to_string();
        let labels = [("topic", topic), ("partition", partition.as_str()), ("table", table)];
        let lag = "Records left in a partition after the latest read (consumer lag).";
        metrics.gauge("lakeward_stream_consumer_lag", lag, &labels, p.lag as f64);
        let next = "The next offset a stream reads from a partition.";
        metrics.gauge("lakeward_stream_next_offset", next, &labels, p.to as f64);
    }
}

/// Writes the dead letters of `outcome` its dead-letter table does not hold yet (as its own
/// marker says); returns how many.
async fn write_dead_letters(
    tables: &Tables,
    name: &str,
    topic: &str,
    outcome: &ReadOutcome,
) -> Result<u64, JobError> {
    if outcome.dead_letters.is_empty() {
        return Ok(0);
    }
    let property = Marker::property(topic);
    let schema = dead_letter_schema();
    let mut writer = tables.writer(name, &schema, &[]).await?;
    let begun = writer.summary();
    let written = Marker::from_summary(&begun, topic)?;
    let fresh: Vec<_> = outcome
        .dead_letters
        .iter()
        .filter(|d| d.offset >= written.next.get(&d.partition).copied().unwrap_or(0))
        .cloned()
        .collect();
    if fresh.is_empty() {
        return Ok(0);
    }
    let now = chrono::Utc::now().timestamp_micros();
    let batch = dead_letter_batch(topic, &fresh, now).map_err(JobError::failed)?;
    writer.write(&batch).await?;
    let summary = BTreeMap::from([(property.clone(), outcome.marker.to_property())]);
    let expected = BTreeMap::from([(property.clone(), begun.get(&property).cloned())]);
    writer.commit(WriteMode::Append, &summary, &expected).await?;
    Ok(fresh.len() as u64)
}

/// The outputs of a `kafka_ingest` try.
#[derive(Debug, Serialize)]
pub struct KafkaIngested {
    pub topic: String,
    pub table: String,
    /// Records read: rows plus dead letters.
    pub records: u64,
    pub rows: u64,
    pub dead_letters: u64,
    /// Dead letters this try added to the dead-letter table (fewer than `dead_letters` when
    /// an earlier try had written some before failing).
    pub dead_letters_written: u64,
    /// The snapshot committed, if there was anything to commit.
    pub snapshot_id: Option<i64>,
    /// Records left in the topic when the try ended.
    pub lag: i64,
    pub commit_ms: u64,
    /// Where the read's time went (broker, decoding, writer).
    pub read_time: ReadTime,
    pub partitions: Vec<PartitionRead>,
}

impl KafkaIngested {
    fn from_read(config: &KafkaIngestConfig, outcome: &ReadOutcome) -> KafkaIngested {
        KafkaIngested {
            topic: config.topic.clone(),
            table: config.table.clone(),
            records: outcome.records(),
            rows: outcome.rows,
            dead_letters: outcome.dead_letters.len() as u64,
            dead_letters_written: 0,
            snapshot_id: None,
            lag: outcome.partitions.iter().map(|p| p.lag).sum(),
            commit_ms: 0,
            read_time: outcome.time.clone(),
            partitions: outcome.partitions.clone(),
        }
    }
}
