//! Where a stream resumes: the next offset of each partition of a topic ([`Marker`]), written
//! as one snapshot summary property of the table the records went to, and read back from it.
//! Also the decision of where a partition starts when its offsets no longer contain the
//! marker ([`ResetPolicy`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::StreamError;

/// The next offset to read of each partition of one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marker {
    pub next: BTreeMap<i32, i64>,
}

impl Marker {
    /// The summary property holding the marker of `topic`.
    pub fn property(topic: &str) -> String {
        format!("lakeward.kafka.{topic}.offsets")
    }

    /// The marker of `topic` in a table's summary properties (empty if it has none).
    pub fn from_summary(
        summary: &BTreeMap<String, String>,
        topic: &str,
    ) -> Result<Marker, StreamError> {
        let key = Marker::property(topic);
        let Some(text) = summary.get(&key) else { return Ok(Marker::default()) };
        let parsed: BTreeMap<String, i64> = serde_json::from_str(text).map_err(|e| {
            StreamError::Invalid(format!("the table's `{key}` property is not offsets: {e}"))
        })?;
        let mut next = BTreeMap::new();
        for (partition, offset) in parsed {
            let partition = partition.parse().map_err(|_| {
                StreamError::Invalid(format!("the table's `{key}` names partition `{partition}`"))
            })?;
            next.insert(partition, offset);
        }
        Ok(Marker { next })
    }

    /// The marker as a summary property value: `{"0":1200,"1":1187}`.
    pub fn to_property(&self) -> String {
        let map: BTreeMap<String, i64> =
            self.next.iter().map(|(p, o)| (p.to_string(), *o)).collect();
        serde_json::to_string(&map).unwrap_or_default()
    }
}

/// What to do when a partition no longer holds the offset a stream stopped at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetPolicy {
    /// Fail the try, saying what happened (nothing is read or skipped).
    #[default]
    Fail,
    /// Read the partition from its first offset.
    Earliest,
    /// Skip to the partition's end.
    Latest,
}

/// A partition's offsets as the broker reports them: `low` is the first offset it holds,
/// `high` the next one it will write (some brokers report less, see [`start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub low: i64,
    pub high: i64,
}

/// Where to start reading `partition`: the marker's offset when the partition still holds it,
/// else what `policy` says. A partition the marker does not know starts at its first offset.
/// `end` finds the partition's true end when the marker is past the reported `high` (some
/// brokers report the start of the last batch as the high watermark).
pub fn start(
    topic: &str,
    partition: i32,
    marker: Option<i64>,
    watermarks: Watermarks,
    policy: ResetPolicy,
    end: impl FnOnce() -> Result<i64, StreamError>,
) -> Result<i64, StreamError> {
    let Watermarks { low, high } = watermarks;
    let Some(marker) = marker else { return Ok(low) };
    let end = if marker < low {
        None
    } else if marker <= high {
        return Ok(marker);
    } else {
        Some(end()?)
    };
    match end {
        Some(end) if marker <= end => Ok(marker),
        end => match policy {
            ResetPolicy::Fail => Err(StreamError::OffsetsReset {
                topic: topic.to_string(),
                partition,
                marker,
                low,
                high: end.unwrap_or(high),
            }),
            ResetPolicy::Earliest => Ok(low),
            ResetPolicy::Latest => Ok(end.unwrap_or(high)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_round_trips_through_a_summary_property() {
        let marker = Marker { next: [(0, 1200), (2, 7)].into() };
        let summary = [(Marker::property("web_logs"), marker.to_property())].into();
        assert_eq!(Marker::from_summary(&summary, "web_logs").unwrap(), marker);
        assert_eq!(Marker::from_summary(&summary, "other").unwrap(), Marker::default());
        let broken = [(Marker::property("t"), "{\"x\":1}".to_string())].into();
        assert!(Marker::from_summary(&broken, "t").is_err());
    }

    #[test]
    fn a_partition_starts_at_its_marker_unless_its_offsets_went_backwards() {
        let w = |low, high| Watermarks { low, high };
        let never = || -> Result<i64, StreamError> { panic!("end probed") };
        assert_eq!(start("t", 0, None, w(5, 10), ResetPolicy::Fail, never).unwrap(), 5);
        assert_eq!(start("t", 0, Some(8), w(5, 10), ResetPolicy::Fail, never).unwrap(), 8);
        // Past the reported high watermark but within the true end: a lagging watermark.
        assert_eq!(start("t", 0, Some(12), w(0, 10), ResetPolicy::Fail, || Ok(12)).unwrap(), 12);
        // Recreated topic: the marker is past the end.
        let err = start("t", 3, Some(50), w(0, 10), ResetPolicy::Fail, || Ok(10)).unwrap_err();
        assert!(err.to_string().contains("partition 3: the stream stopped at offset 50"), "{err}");
        assert_eq!(start("t", 0, Some(50), w(0, 10), ResetPolicy::Earliest, || Ok(10)).unwrap(), 0);
        assert_eq!(start("t", 0, Some(50), w(0, 10), ResetPolicy::Latest, || Ok(10)).unwrap(), 10);
        // Retention deleted records the stream had not read.
        assert!(start("t", 0, Some(2), w(5, 10), ResetPolicy::Fail, never).is_err());
        assert_eq!(start("t", 0, Some(2), w(5, 10), ResetPolicy::Latest, never).unwrap(), 10);
    }
}
