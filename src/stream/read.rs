//! A bounded read of one topic: every partition (or a given set) from where the stream
//! stopped, decoded into record batches handed to the caller as they fill, until a record
//! count, a wait, or (for a one-off catch-up) the end of the partitions. Returns where each
//! partition got to: the caller commits that together with the rows, then may call
//! [`commit_group`] so that standard lag tools see the consumer group's progress.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use super::client::METADATA_TIMEOUT;
use super::decode::{dead_letter, DeadLetter, Decoder};
use super::offsets::{self, Marker, ResetPolicy, Watermarks};
use super::{Brokers, StreamError};

/// How long a read polls for more records once it has reached the end it set out to read:
/// some brokers under-report high watermarks, so the end is where a poll finds nothing more.
const SETTLE: Duration = Duration::from_millis(250);
/// How long the probe of a partition's true end waits for its first record.
const PROBE: Duration = Duration::from_secs(3);
/// Records a read may take beyond its limit to end where a fetch ended.
const DRAIN_CAP: u64 = 100_000;
/// The longest single poll, so cancellation and deadlines are noticed quickly.
const POLL: Duration = Duration::from_millis(100);

/// What to read.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub brokers: Brokers,
    pub topic: String,
    /// Partitions to read; all of the topic's when `None`.
    pub partitions: Option<Vec<i32>>,
    /// The consumer group the progress is reported to (for lag tools only).
    pub group: String,
    /// Where the stream stopped.
    pub marker: Marker,
    pub on_offsets_reset: ResetPolicy,
    /// Stop after this many records (rows and dead letters), plus what the client has already
    /// fetched (a read ends at the end of a record batch).
    pub max_records: u64,
    /// Stop after reading for this long.
    pub max_wait: Duration,
    /// Stop as soon as every partition is read to the end it had when the read started.
    pub stop_at_end: bool,
    /// Rows per record batch handed over.
    pub batch_rows: usize,
}

/// How far one partition got.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionRead {
    pub partition: i32,
    /// The first offset this read asked for.
    pub from: i64,
    /// The next offset to read (what the marker now says).
    pub to: i64,
    pub records: u64,
    pub dead_letters: u64,
    /// Offsets between `from` and `to` the broker did not return (transaction markers,
    /// compacted records).
    pub skipped: u64,
    /// Records left in the partition when the read ended (as its high watermark says).
    pub lag: i64,
}

/// What a read did.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    pub partitions: Vec<PartitionRead>,
    pub dead_letters: Vec<DeadLetter>,
    /// Where the stream now stops.
    pub marker: Marker,
    pub rows: u64,
}

impl ReadOutcome {
    pub fn records(&self) -> u64 {
        self.partitions.iter().map(|p| p.records).sum()
    }
}

/// Reads as `request` says; `emit` receives each filled batch of rows; `cancelled` is checked
/// between polls. Blocking: run it on the blocking pool.
pub fn read(
    request: &ReadRequest,
    decoder: &mut Decoder,
    emit: &mut dyn FnMut(RecordBatch) -> Result<(), StreamError>,
    cancelled: &dyn Fn() -> bool,
) -> Result<ReadOutcome, StreamError> {
    let ReadRequest { brokers, topic, .. } = request;
    let consumer = brokers.consumer(&request.group)?;
    let partitions = chosen_partitions(request, &consumer)?;
    let mut progress: BTreeMap<i32, PartitionRead> = BTreeMap::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            .map_err(|e| brokers.error(e))?;
        let marker = request.marker.next.get(&partition).copied();
        let from = offsets::start(
            topic,
            partition,
            marker,
            Watermarks { low, high },
            request.on_offsets_reset,
            || true_end(request, partition, low, high),
        )?;
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(from))
            .map_err(|e| brokers.error(e))?;
        let read = PartitionRead {
            partition,
            from,
            to: from,
            records: 0,
            dead_letters: 0,
            skipped: 0,
            lag: 0,
        };
        progress.insert(partition, read);
        ends.insert(partition, high);
    }
    consumer.assign(&assignment).map_err(|e| brokers.error(e))?;

    let mut dead_letters = Vec::new();
    let mut records = 0u64;
    let deadline = Instant::now() + request.max_wait;
    // Once a limit is reached, what the client has already fetched is still taken (up to
    // DRAIN_CAP records), so a read ends where a fetch ended: at the end of a record batch.
    // (Some brokers answer a fetch from the middle of a batch with the batches after it,
    // which would skip the rest of that batch.)
    let mut draining: Option<u64> = None;
    loop {
        let now = Instant::now();
        if draining.is_none() && (records >= request.max_records || now >= deadline) {
            draining = Some(records);
        }
        if draining.is_some_and(|from| records - from >= DRAIN_CAP) {
            break;
        }
        if cancelled() {
            return Err(StreamError::Cancelled);
        }
        let at_end = request.stop_at_end
            && progress.values().all(|p| p.to >= ends.get(&p.partition).copied().unwrap_or(0));
        let wait = match draining {
            Some(_) => Duration::ZERO,
            None if at_end => SETTLE.min(deadline - now),
            None => POLL.min(deadline - now),
        };
        let message = match consumer.poll(wait) {
            None if at_end || draining.is_some() => break,
            None => continue,
            Some(Err(e)) => return Err(brokers.error(e)),
            Some(Ok(message)) => message,
        };
        let (partition, offset) = (message.partition(), message.offset());
        let Some(read) = progress.get_mut(&partition) else { continue };
        if offset < read.to {
            continue;
        }
        // Offsets a broker leaves out (transaction markers, compacted records).
        read.skipped += (offset - read.to) as u64;
        let ingested_at = chrono::Utc::now().timestamp_micros();
        if let Err(reason) = decoder.push(message.payload(), partition, offset, ingested_at) {
            let letter = dead_letter(message.payload(), message.key(), partition, offset, reason);
            dead_letters.push(letter);
            read.dead_letters += 1;
        }
        read.to = offset + 1;
        read.records += 1;
        records += 1;
        if decoder.rows() >= request.batch_rows {
            emit(decoder.finish().map_err(|e| StreamError::Kafka(e.to_string()))?)?;
        }
    }
    if decoder.rows() > 0 {
        emit(decoder.finish().map_err(|e| StreamError::Kafka(e.to_string()))?)?;
    }
    for read in progress.values_mut() {
        if let Ok((_, high)) = consumer.fetch_watermarks(topic, read.partition, METADATA_TIMEOUT) {
            read.lag = (high - read.to).max(0);
        }
    }
    let marker = Marker { next: progress.values().map(|p| (p.partition, p.to)).collect() };
    let rows = records - dead_letters.len() as u64;
    Ok(ReadOutcome { partitions: progress.into_values().collect(), dead_letters, marker, rows })
}

/// The partitions a request reads, checked against the topic's.
fn chosen_partitions(
    request: &ReadRequest,
    consumer: &BaseConsumer,
) -> Result<Vec<i32>, StreamError> {
    let existing = request.brokers.partitions(consumer, &request.topic)?;
    let Some(wanted) = &request.partitions else { return Ok(existing) };
    if let Some(missing) = wanted.iter().find(|p| !existing.contains(p)) {
        return Err(StreamError::Invalid(format!(
            "topic `{}` has no partition {missing} (it has {})",
            request.topic,
            existing.len()
        )));
    }
    Ok(wanted.clone())
}

/// The true end of `partition`, whose reported watermarks are `low` and `high`: one past the
/// last record found reading from the record before `high` until a poll finds nothing more.
/// (Some brokers report the start of the last batch as `high`, and fetch nothing from there.)
fn true_end(
    request: &ReadRequest,
    partition: i32,
    low: i64,
    high: i64,
) -> Result<i64, StreamError> {
    if high <= low {
        return Ok(high);
    }
    let from = high - 1;
    let consumer = request.brokers.consumer(&request.group)?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&request.topic, partition, Offset::Offset(from))
        .map_err(|e| request.brokers.error(e))?;
    consumer.assign(&assignment).map_err(|e| request.brokers.error(e))?;
    let mut end = high;
    // The first fetch includes connecting: give it longer than the polls that follow.
    let mut wait = PROBE;
    while let Some(message) = consumer.poll(wait) {
        match message {
            Ok(message) => end = end.max(message.offset() + 1),
            // Nothing at `from` (out of range): the partition ends at `high` or below.
            Err(_) => break,
        }
        wait = SETTLE;
    }
    Ok(end)
}

/// Reports `marker` as the consumer group's committed offsets of `topic`.
pub fn commit_group(
    brokers: &Brokers,
    group: &str,
    topic: &str,
    marker: &Marker,
) -> Result<(), StreamError> {
    let consumer = brokers.consumer(group)?;
    let mut offsets = TopicPartitionList::new();
    for (partition, next) in &marker.next {
        offsets
            .add_partition_offset(topic, *partition, Offset::Offset(*next))
            .map_err(|e| brokers.error(e))?;
    }
    consumer.commit(&offsets, CommitMode::Sync).map_err(|e| brokers.error(e))
}
