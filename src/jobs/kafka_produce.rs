//! `kind = "kafka_produce"`: sends simulated events (web logs, connection logs, sensor
//! readings; see [`crate::simulate`]) or the lines of the JSON files in a warehouse folder to a
//! Kafka topic, at a rate, for a count or a duration. The topic is created if it is missing.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::kafka_ingest::{brokers, check_brokers};
use super::values::Templated;
use super::{Job, JobContext, JobError, Stage};
use crate::lake::check_relative;
use crate::simulate::{Profile, Simulation, Simulator};
use crate::stream::produce::{file_lines, json_files, send, Compression, Limits, Outgoing, Sent};
use crate::stream::{ensure_topic, Brokers};
use crate::time::parse_duration;

/// ```toml
/// [tasks.produce]
/// kind = "kafka_produce"
/// topic = "web_logs"
/// profile = "web_logs"      # connection_logs, sensors, or files (with `folder`)
/// rate = 1000               # events per second; 0: as fast as the brokers take them
/// duration = "1m"           # and/or count = 60000
/// compression = "zstd"      # none (default), gzip, snappy, lz4
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaProduceConfig {
    /// `host:port,…`; default: the deployment's `[kafka] brokers`.
    #[serde(default)]
    pub brokers: Option<String>,
    pub topic: String,
    /// `web_logs`, `connection_logs`, `sensors`, or `files`.
    pub profile: String,
    /// For `files`: the warehouse folder whose `*.json`/`*.jsonl` lines are sent.
    #[serde(default)]
    pub folder: Option<String>,
    /// Events per second (0: as fast as possible). Default 100.
    #[serde(default = "default_rate")]
    pub rate: Templated<f64>,
    /// Stop after this many events.
    #[serde(default)]
    pub count: Option<Templated<u64>>,
    /// Stop after this long.
    #[serde(default)]
    pub duration: Option<String>,
    /// The same seed sends the same events. Default: one per run.
    #[serde(default)]
    pub seed: Option<Templated<u64>>,
    /// Share of anomalous events. Default 0.01.
    #[serde(default = "default_anomaly_rate")]
    pub anomaly_rate: Templated<f64>,
    /// Share of events that arrive late, out of order. Default 0.02.
    #[serde(default = "default_late_share")]
    pub late_share: Templated<f64>,
    /// How late a late event can be. Default `30s`.
    #[serde(default = "default_max_delay")]
    pub max_delay: String,
    /// Event time of the first event (RFC 3339). Default: now.
    #[serde(default)]
    pub start: Option<String>,
    /// Partitions of the topic when this task creates it. Default 3.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// How record batches are compressed. Default none.
    #[serde(default)]
    pub compression: Compression,
}

fn default_rate() -> Templated<f64> {
    Templated::Value(100.0)
}
fn default_anomaly_rate() -> Templated<f64> {
    Templated::Value(0.01)
}
fn default_late_share() -> Templated<f64> {
    Templated::Value(0.02)
}
fn default_max_delay() -> String {
    "30s".into()
}
fn default_partitions() -> i32 {
    3
}

/// What to send, where: everything a send needs once templates are rendered.
pub struct ProducePlan {
    pub topic: String,
    pub partitions: i32,
    pub source: Source,
    pub rate: f64,
    pub limits: Limits,
    pub compression: Compression,
}

/// Where the events come from.
pub enum Source {
    Simulated(Simulation),
    Files(PathBuf),
}

impl ProducePlan {
    /// The messages to send (simulated ones are endless: the limits stop them).
    pub fn messages(&self) -> Result<Box<dyn Iterator<Item = Outgoing> + Send>, JobError> {
        Ok(match &self.source {
            Source::Simulated(simulation) => {
                let start = simulation.start;
                Box::new(Simulator::new(simulation.clone()).map(move |event| Outgoing {
                    due: (event.sent_at - start).to_std().unwrap_or_default(),
                    key: Some(event.key),
                    payload: event.payload,
                    anomaly: event.anomaly,
                }))
            }
            Source::Files(folder) => {
                Box::new(file_lines(&json_files(folder)?, self.rate)?.into_iter())
            }
        })
    }

    /// Creates the topic if needed, then sends; blocking work runs on the blocking pool.
    pub async fn run(
        self,
        brokers: Brokers,
        cancelled: impl Fn() -> bool + Send + 'static,
    ) -> Result<Sent, JobError> {
        ensure_topic(&brokers, &self.topic, self.partitions).await?;
        let messages = self.messages()?;
        let (topic, limits, compression) = (self.topic, self.limits, self.compression);
        super::blocking(move || {
            Ok(send(&brokers, &topic, messages, limits, compression, &cancelled)?)
        })
        .await
    }
}

impl KafkaProduceConfig {
    fn profile(&self) -> Result<Option<Profile>, String> {
        if self.profile == "files" {
            return Ok(None);
        }
        Profile::named(&self.profile).map(Some)
    }

    /// The plan of this task, for the run of `ctx` (seed and start default from the run).
    fn plan(&self, ctx: &JobContext) -> Result<ProducePlan, JobError> {
        let rate = self.rate.get("rate")?;
        let duration =
            self.duration.as_deref().map(parse_duration).transpose().map_err(JobError::Config)?;
        let count = self.count.as_ref().map(|c| c.get("count")).transpose()?;
        let limits = Limits { count, duration, paced: rate > 0.0 };
        let source = match self.profile().map_err(JobError::Config)? {
            None => {
                let folder = self.folder.as_deref().unwrap_or_default();
                check_relative(folder)?;
                if ctx.warehouse.is_remote() {
                    return Err(JobError::Config(
                        "the `files` profile reads a local warehouse folder".into(),
                    ));
                }
                Source::Files(ctx.warehouse.root().join(folder))
            }
            Some(profile) => Source::Simulated(Simulation {
                profile,
                seed: match &self.seed {
                    Some(seed) => seed.get("seed")?,
                    None => ctx.logical_date.timestamp_micros() as u64,
                },
                rate: if rate > 0.0 { rate } else { 1000.0 },
                start: match &self.start {
                    Some(text) => text.parse::<DateTime<Utc>>().map_err(|e| {
                        JobError::Config(format!("`start` is not an RFC 3339 time: {e}"))
                    })?,
                    None => Utc::now(),
                },
                anomaly_rate: self.anomaly_rate.get("anomaly_rate")?,
                late_share: self.late_share.get("late_share")?,
                max_delay: parse_duration(&self.max_delay).map_err(JobError::Config)?,
            }),
        };
        Ok(ProducePlan {
            topic: self.topic.clone(),
            partitions: self.partitions,
            source,
            rate,
            limits,
            compression: self.compression,
        })
    }
}

pub struct KafkaProduce;

impl Job for KafkaProduce {
    const KIND: &'static str = "kafka_produce";
    type Config = KafkaProduceConfig;
    type Output = Produced;

    fn validate(&self, config: &KafkaProduceConfig, stage: Stage) -> Vec<String> {
        let mut problems = Vec::new();
        if config.topic.trim().is_empty() {
            problems.push("`topic` is empty".into());
        }
        match config.profile() {
            Err(e) => problems.push(e),
            Ok(None) if config.folder.is_none() => {
                problems.push("the `files` profile needs `folder`".into())
            }
            Ok(_) => {}
        }
        if config.count.is_none() && config.duration.is_none() {
            problems.push("set `count` or `duration` (or both): a task must end".into());
        }
        for (name, text) in [
            ("duration", config.duration.as_deref()),
            ("max_delay", Some(config.max_delay.as_str())),
        ] {
            if let Some(text) = text.filter(|t| !stage.defers(t)) {
                if let Err(e) = parse_duration(text) {
                    problems.push(format!("`{name}`: {e}"));
                }
            }
        }
        for (name, share) in
            [("anomaly_rate", &config.anomaly_rate), ("late_share", &config.late_share)]
        {
            if !share.check(|v| (0.0..=1.0).contains(v)) {
                problems.push(format!("`{name}` must be between 0 and 1"));
            }
        }
        if !config.rate.check(|r| *r >= 0.0) {
            problems.push("`rate` must be 0 (as fast as possible) or more".into());
        }
        if config.partitions < 1 {
            problems.push("`partitions` must be at least 1".into());
        }
        problems.extend(check_brokers(config.brokers.as_deref(), stage));
        problems
    }

    async fn run(&self, config: KafkaProduceConfig, ctx: JobContext) -> Result<Produced, JobError> {
        let brokers = brokers(config.brokers.as_deref(), &ctx)?;
        let plan = config.plan(&ctx)?;
        let topic = plan.topic.clone();
        let cancellation = ctx.cancellation.clone();
        let sent = plan.run(brokers, move || cancellation.is_requested()).await?;
        ctx.log.info(format!(
            "sent {} events ({} bytes, {} anomalous) to `{topic}` in {:.2}s",
            sent.events, sent.bytes, sent.anomalies, sent.seconds
        ));
        Ok(Produced { topic, sent })
    }
}

/// The outputs of a `kafka_produce` try.
#[derive(Debug, Serialize)]
pub struct Produced {
    pub topic: String,
    #[serde(flatten)]
    pub sent: Sent,
}
