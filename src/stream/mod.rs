//! Kafka: sending events to a topic, and reading a topic's partitions from given offsets into
//! Arrow record batches and dead letters, with the offsets to resume from.
//!
//! Everything here is bounded and blocking-free at the edges: a read stops at a record count,
//! a wait, or the end of the partitions, and runs on the blocking pool; a broker that cannot be
//! reached is a [`StreamError::Unreachable`] (retryable) naming the brokers. Where a stream
//! resumes is the caller's to keep ([`offsets::Marker`]): the Kafka ingest task keeps it in the
//! Iceberg commit of the data it read, so the consumer group's offsets are only a courtesy to
//! lag tools. This module knows nothing of tasks, tables or the database.

mod client;
pub mod decode;
pub mod demo;
pub mod offsets;
pub mod produce;
pub mod read;

use thiserror::Error;

use crate::domain::ErrorClass;

pub use client::{ensure_topic, Brokers};
pub use offsets::{Marker, ResetPolicy};

#[derive(Debug, Error)]
pub enum StreamError {
    /// No broker answered: a retry (once the cluster is back) may succeed.
    #[error("cannot reach the Kafka brokers {brokers}: {message}")]
    Unreachable { brokers: String, message: String },
    /// The broker answered with an error.
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("topic `{0}` does not exist")]
    MissingTopic(String),
    /// The partition's offsets no longer contain where the stream stopped: the topic was
    /// recreated or its data expired. The user's `on_offsets_reset` policy decides.
    #[error(
        "topic `{topic}` partition {partition}: the stream stopped at offset {marker} but the \
         partition now holds offsets {low}..{high} (was the topic recreated, or did retention \
         delete unread data?); set `on_offsets_reset = \"earliest\"` or `\"latest\"` to go on"
    )]
    OffsetsReset { topic: String, partition: i32, marker: i64, low: i64, high: i64 },
    /// The task's settings are wrong.
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    Files { path: String, message: String },
    #[error("cancelled")]
    Cancelled,
}

impl StreamError {
    pub fn class(&self) -> ErrorClass {
        match self {
            StreamError::Unreachable { .. }
            | StreamError::Kafka(_)
            | StreamError::MissingTopic(_)
            | StreamError::Files { .. } => ErrorClass::Transient,
            StreamError::OffsetsReset { .. } | StreamError::Invalid(_) => ErrorClass::Definition,
            StreamError::Cancelled => ErrorClass::Transient,
        }
    }
}
