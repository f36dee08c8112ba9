//! A bounded read of one topic: every partition (or a given set) from where the stream
//! stopped, decoded into record batches handed to the caller as they fill, until a record
//! count, a wait, or (for a one-off catch-up) the end of the partitions. Returns where each
//! partition got to: the caller commits that together with the rows. The consumer group is
//! told where the previous read's commit left off (lag tools see the stream one read behind);
//! it is never where a read starts from.

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
    pub time: ReadTime,
}

/// Where a read's time went: what limits a stream's throughput.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadTime {
    /// Waiting for the broker's records.
    pub broker_ms: u64,
    /// Turning messages into rows.
    pub decode_ms: u64,
    /// Waiting for the table writer to take filled batches.
    pub writer_ms: u64,
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
    let mut starts: BTreeMap<i32, Start> = BTreeMap::new();
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
            || true_end(&consumer, request, partition, Watermarks { low, high }, marker),
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
        starts.insert(partition, Start::new(from, low));
        ends.insert(partition, high);
    }
    consumer.assign(&assignment).map_err(|e| brokers.error(e))?;
    // Only for lag tools: the consumer group learns what the table's last commit holds.
    if !request.marker.next.is_empty() {
        let mut committed = TopicPartitionList::new();
        for (partition, next) in &request.marker.next {
            committed
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| brokers.error(e))?;
        }
        // A failure here costs lag tools an update, not the read.
        let _ = consumer.commit(&committed, CommitMode::Sync);
    }

    let mut dead_letters = Vec::new();
    let mut records = 0u64;
    let deadline = Instant::now() + request.max_wait;
    // Once a limit is reached, what the client has already fetched is still taken (up to
    // DRAIN_CAP records), so a read ends where a fetch ended: at the end of a record batch.
    // (Some brokers answer a fetch from the middle of a batch with the batches after it,
    // which would skip the rest of that batch.)
    let mut draining: Option<u64> = None;
    let (mut waited, mut decoded, mut handed) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
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
        let polled = Instant::now();
        let message = consumer.poll(wait);
        waited += polled.elapsed();
        let message = match message {
            None if at_end || draining.is_some() => break,
            None => continue,
            Some(Err(e)) => return Err(brokers.error(e)),
            Some(Ok(message)) => message,
        };
        let (partition, offset) = (message.partition(), message.offset());
        let (Some(read), Some(start)) = (progress.get_mut(&partition), starts.get_mut(&partition))
        else {
            continue;
        };
        if offset < read.to {
            start.confirmed = true;
            continue;
        }
        if offset > read.to && !start.confirmed {
            if let Some(earlier) = start.rewind(read.to) {
                consumer
                    .seek(topic, partition, Offset::Offset(earlier), METADATA_TIMEOUT)
                    .map_err(|e| brokers.error(e))?;
                continue;
            }
        }
        start.confirmed = true;
        // Offsets a broker leaves out (transaction markers, compacted records).
        read.skipped += (offset - read.to) as u64;
        let decoding = Instant::now();
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
            let batch = decoder.finish().map_err(|e| StreamError::Kafka(e.to_string()))?;
            decoded += decoding.elapsed();
            let handing = Instant::now();
            emit(batch)?;
            handed += handing.elapsed();
        } else {
            decoded += decoding.elapsed();
        }
    }
    if decoder.rows() > 0 {
        let handing = Instant::now();
        emit(decoder.finish().map_err(|e| StreamError::Kafka(e.to_string()))?)?;
        handed += handing.elapsed();
    }
    for read in progress.values_mut() {
        if let Ok((_, high)) = consumer.fetch_watermarks(topic, read.partition, METADATA_TIMEOUT) {
            read.lag = (high - read.to).max(0);
        }
    }
    let marker = Marker { next: progress.values().map(|p| (p.partition, p.to)).collect() };
    let rows = records - dead_letters.len() as u64;
    let time = ReadTime {
        broker_ms: waited.as_millis() as u64,
        decode_ms: decoded.as_millis() as u64,
        writer_ms: handed.as_millis() as u64,
    };
    let partitions = progress.into_values().collect();
    Ok(ReadOutcome { partitions, dead_letters, marker, rows, time })
}

/// Whether a partition's read is known to have begun where it asked. A broker may answer a
/// fetch from inside a record batch with the batches after it (tansu 0.6 does), which would
/// skip the rest of that batch: a read that stopped inside a batch (at its record limit)
/// would lose records on the next one. So when the first record is past where the read
/// asked to start, the read fetches again from further back (skipping what it already has)
/// until a record at or before the start shows nothing was skipped, or the partition's
/// first offset shows the gap is real (transaction markers, compaction).
#[derive(Debug)]
struct Start {
    /// The partition's first offset.
    low: i64,
    confirmed: bool,
    /// How far back the last refetch went.
    lookback: i64,
    reached_low: bool,
}

impl Start {
    fn new(from: i64, low: i64) -> Start {
        Start { low, confirmed: from <= low, lookback: 0, reached_low: false }
    }

    /// Where to fetch from again, when the first record came after `from`: 1,024 records
    /// back, then eight times further each time; `None` once the first offset was tried.
    fn rewind(&mut self, from: i64) -> Option<i64> {
        if self.reached_low {
            return None;
        }
        self.lookback = (self.lookback * 8).max(1024);
        let earlier = from.saturating_sub(self.lookback).max(self.low);
        self.reached_low = earlier == self.low;
        Some(earlier)
    }
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

/// The end of `partition` (whose reported watermarks are `watermarks`) as far as the stream
/// needs it: one past the last record found reading from the record before the high
/// watermark, stopping once past `marker`. (Some brokers report the start of the last batch
/// as the high watermark, and fetch nothing from there.) Uses `consumer`, whose assignment
/// the read then replaces.
fn true_end(
    consumer: &BaseConsumer,
    request: &ReadRequest,
    partition: i32,
    watermarks: Watermarks,
    marker: Option<i64>,
) -> Result<i64, StreamError> {
    let Watermarks { low, high } = watermarks;
    if high <= low {
        return Ok(high);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&request.topic, partition, Offset::Offset(high - 1))
        .map_err(|e| request.brokers.error(e))?;
    consumer.assign(&assignment).map_err(|e| request.brokers.error(e))?;
    let mut end = high;
    // The first fetch includes connecting: give it longer than the polls that follow.
    let mut wait = PROBE;
    while let Some(message) = consumer.poll(wait) {
        match message {
            Ok(message) => end = end.max(message.offset() + 1),
            // Nothing there (out of range): the partition ends at `high` or below.
            Err(_) => break,
        }
        if marker.is_some_and(|m| end >= m) {
            break;
        }
        wait = SETTLE;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::Start;

    #[test]
    fn a_start_inside_a_batch_is_refetched_from_further_back_down_to_the_first_offset() {
        let mut start = Start::new(100_000, 90_000);
        assert!(!start.confirmed);
        assert_eq!(start.rewind(100_000), Some(98_976));
        assert_eq!(start.rewind(100_000), Some(91_808));
        assert_eq!(start.rewind(100_000), Some(90_000), "never before the first offset");
        assert_eq!(start.rewind(100_000), None, "from there, the gap is real");
        assert!(Start::new(5, 5).confirmed, "a read from the first offset skips nothing");
    }
}
