//! Kafka client settings shared by producers and consumers, and the little administration a
//! stream needs (topics, partitions, watermarks).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaRespErr;

use super::StreamError;

/// How long metadata requests may take before the brokers count as unreachable.
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A Kafka cluster's bootstrap servers: `host:port,host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brokers(String);

impl Brokers {
    pub fn new(list: &str) -> Result<Brokers, StreamError> {
        let list = list.trim();
        let valid = !list.is_empty()
            && list.split(',').all(|b| {
                b.trim()
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            });
        if valid {
            Ok(Brokers(list.to_string()))
        } else {
            Err(StreamError::Invalid(format!(
                "invalid Kafka brokers `{list}`: expected host:port[,host:port…]"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Settings every client of these brokers uses: fail fast when nothing answers.
    pub(super) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.0)
            .set("socket.connection.setup.timeout.ms", "5000")
            .set("log_level", "3");
        config
    }

    /// The error for a failure talking to these brokers.
    pub(super) fn error(&self, error: KafkaError) -> StreamError {
        let code = error.rdkafka_error_code();
        match code {
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::MessageTimedOut,
            ) => StreamError::Unreachable { brokers: self.0.clone(), message: error.to_string() },
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                StreamError::MissingTopic(error.to_string())
            }
            _ => StreamError::Kafka(error.to_string()),
        }
    }

    /// The partitions of `topic` (fails when no broker answers or the topic is missing).
    pub fn check_topic(&self, topic: &str) -> Result<Vec<i32>, StreamError> {
        let consumer = self.consumer("lakeward.check")?;
        self.partitions(&consumer, topic)
    }

    /// A consumer that only reads what it is assigned and never commits on its own.
    pub(super) fn consumer(&self, group: &str) -> Result<BaseConsumer, StreamError> {
        self.client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Where to start is always given; a start the broker no longer has is an error,
            // never a silent jump.
            .set("auto.offset.reset", "error")
            // How long a broker may hold a fetch that finds no data. Kafka answers as soon as
            // it has data; tansu 0.6 holds every fetch this long (its fetch loop sleeps before
            // it checks what it found), so with 100 ms a backlog read got 145,000 records/s
            // from it, with 50 ms 215,000-240,000, and with 20 ms and 2 MB fetches 258,000
            // (`cargo bench --bench streaming`). An idle stream costs a fetch per 20 ms.
            .set("fetch.wait.max.ms", "20")
            .set("queued.max.messages.kbytes", "16384")
            // When a fetch leaves more queued than that (one fetch of compressed batches can
            // hold ten times its size), librdkafka waits this long before it fetches again:
            // 1 s by default, which cut a zstd topic's read to 127,000 records/s; at 10 ms,
            // 320,000-390,000 (`LAKEWARD_BENCH_COMPRESSION=zstd`).
            .set("fetch.queue.backoff.ms", "10")
            // A fetch is decompressed whole on arrival: its size in compressed bytes bounds
            // the memory a compressed topic takes. With 8 MB per partition a zstd stream's C
            // heap reached 160 MB (5M events, `LAKEWARD_BENCH_COMPRESSION=zstd`); with these
            // 88-116 MB, at the same throughput. (Kafka's own consumer defaults to 1 MB per
            // partition.)
            .set("fetch.max.bytes", "2097152")
            .set("max.partition.fetch.bytes", "1048576")
            .create()
            .map_err(|e| self.error(e))
    }

    /// The partitions of `topic`, in order.
    pub(super) fn partitions(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
    ) -> Result<Vec<i32>, StreamError> {
        let metadata =
            consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT).map_err(|e| self.error(e))?;
        self.partitions_in(&metadata, topic)
    }

    /// The partitions of `topic` as a producer sees them.
    pub(super) fn partitions_of_producer<C: ProducerContext>(
        &self,
        producer: &BaseProducer<C>,
        topic: &str,
    ) -> Result<Vec<i32>, StreamError> {
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| self.error(e))?;
        self.partitions_in(&metadata, topic)
    }

    fn partitions_in(&self, metadata: &Metadata, topic: &str) -> Result<Vec<i32>, StreamError> {
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(StreamError::MissingTopic(topic.to_string()));
        };
        if let Some(error) = found.error() {
            return Err(match error {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => {
                    StreamError::MissingTopic(topic.to_string())
                }
                other => StreamError::Kafka(format!("topic `{topic}`: {other:?}")),
            });
        }
        let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        if partitions.is_empty() {
            return Err(StreamError::MissingTopic(topic.to_string()));
        }
        partitions.sort_unstable();
        Ok(partitions)
    }
}

/// Creates `topic` with `partitions` partitions unless it exists; returns whether it made it.
pub async fn ensure_topic(
    brokers: &Brokers,
    topic: &str,
    partitions: i32,
) -> Result<bool, StreamError> {
    let topic_owned = topic.to_string();
    let known = brokers.clone();
    let existing = crate::process::blocking(move || {
        let consumer = known.consumer("lakeward.admin")?;
        match known.partitions(&consumer, &topic_owned) {
            Ok(partitions) => Ok(Some(partitions)),
            Err(StreamError::MissingTopic(_)) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| StreamError::Kafka(e.to_string()))??;
    if existing.is_some() {
        return Ok(false);
    }
    let admin: AdminClient<DefaultClientContext> =
        brokers.client_config().create().map_err(|e| brokers.error(e))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = admin.create_topics([&new], &options).await.map_err(|e| brokers.error(e))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => {
            Err(StreamError::Kafka(format!("cannot create topic `{topic}`: {code}")))
        }
        None => Ok(false),
    }
}
