//! Sending events to a topic: simulated ones (see [`crate::simulate`]) or the lines of the
//! JSON files in a folder, as fast as possible or paced at a rate, for a count or a duration.
//! Every event is acknowledged by the brokers before the send counts as done.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};

use super::{Brokers, StreamError};

/// One message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub key: Option<String>,
    pub payload: String,
    /// When to send it, from the start of the send (paced sends only).
    pub due: Duration,
    /// The injected anomaly, if any (simulated events).
    pub anomaly: Option<&'static str>,
}

/// When a send stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Send each message when it is due; else as fast as the brokers take them.
    pub paced: bool,
}

/// How the producer compresses its record batches (librdkafka's `compression.codec`). Every
/// consumer of lakeward reads all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Kafka's default.
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    /// About a tenth of the bytes for web logs, for a little more CPU on each side.
    Zstd,
}

impl Compression {
    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(name: &str) -> Result<Compression, String> {
        Compression::ALL.into_iter().find(|c| c.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = Compression::ALL.iter().map(|c| c.as_str()).collect();
            format!("unknown compression `{name}`: expected one of {}", names.join(", "))
        })
    }
}

/// What a send did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sent {
    pub events: u64,
    pub bytes: u64,
    /// Events that carry an injected anomaly.
    pub anomalies: u64,
    pub seconds: f64,
}

/// Counts deliveries that failed and keeps the first reason.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| error.clone());
        }
    }
}

/// Sends `events` to `topic` within `limits`, in batches compressed by `compression`;
/// `cancelled` is checked as it goes. Blocking: run it on the blocking pool.
pub fn send(
    brokers: &Brokers,
    topic: &str,
    events: impl Iterator<Item = Outgoing>,
    limits: Limits,
    compression: Compression,
    cancelled: &dyn Fn() -> bool,
) -> Result<Sent, StreamError> {
    let producer: BaseProducer<Deliveries> = brokers
        .client_config()
        .set("compression.codec", compression.as_str())
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "30000")
        .create_with_context(Deliveries::default())
        .map_err(|e| brokers.error(e))?;
    // Fail at once, and clearly, when no broker answers or the topic is missing.
    brokers.partitions_of_producer(&producer, topic)?;
    let started = Instant::now();
    let mut sent = Sent::default();
    for event in events {
        if limits.count.is_some_and(|n| sent.events >= n)
            || limits.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        // Every event: a paced producer sends a few hundred a second, and a stop must not
        // wait for a thousand of them.
        if cancelled() {
            return Err(StreamError::Cancelled);
        }
        if limits.paced {
            if let Some(wait) = event.due.checked_sub(started.elapsed()) {
                producer.poll(Duration::ZERO);
                std::thread::sleep(wait);
            }
        }
        let mut record = BaseRecord::to(topic).payload(&event.payload);
        if let Some(key) = &event.key {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(brokers.error(e)),
            }
        }
        sent.events += 1;
        sent.bytes += event.payload.len() as u64;
        sent.anomalies += u64::from(event.anomaly.is_some());
    }
    producer.flush(Duration::from_secs(60)).map_err(|e| brokers.error(e))?;
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = context.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let reason = first.map(|e| brokers.error(e).to_string()).unwrap_or_default();
        return Err(StreamError::Kafka(format!(
            "{failed} of {} events were not delivered to `{topic}`: {reason}",
            sent.events
        )));
    }
    sent.seconds = started.elapsed().as_secs_f64();
    Ok(sent)
}

/// The JSON files of `folder` (`*.json`, `*.jsonl`), in name order.
pub fn json_files(folder: &Path) -> Result<Vec<PathBuf>, StreamError> {
    let error = |e: std::io::Error| StreamError::Files {
        path: folder.display().to_string(),
        message: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(error)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
        .collect();
    files.sort();
    Ok(files)
}

/// Each non-empty line of `files` as a message, paced at `rate` lines per second.
pub fn file_lines(files: &[PathBuf], rate: f64) -> Result<Vec<Outgoing>, StreamError> {
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| StreamError::Files {
            path: file.display().to_string(),
            message: e.to_string(),
        })?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let due = Duration::from_secs_f64(lines.len() as f64 / rate.max(1e-3));
            lines.push(Outgoing { key: None, payload: line.to_string(), due, anomaly: None });
        }
    }
    Ok(lines)
}
