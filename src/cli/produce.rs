//! `lakeward produce`: sends simulated events (or a folder's JSON lines) to a Kafka topic,
//! the same sender as the `kafka_produce` task kind.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::jobs::{ProducePlan, Source};
use crate::simulate::{Profile, Simulation};
use crate::stream::produce::{Compression, Limits};
use crate::stream::Brokers;

/// What `lakeward produce` was asked.
#[derive(clap::Args)]
pub struct ProduceArgs {
    /// The topic (created with `--partitions` partitions if missing).
    #[arg(long)]
    pub topic: String,
    /// web_logs, connection_logs, sensors, or files (with --folder).
    #[arg(long, default_value = "web_logs")]
    pub profile: String,
    /// Folder of *.json / *.jsonl files whose lines are sent (profile files).
    #[arg(long)]
    pub folder: Option<PathBuf>,
    /// Events per second; 0 sends as fast as the brokers take them.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long (`30s`, `5m`); without --count or --duration, runs until stopped.
    #[arg(long, value_parser = crate::time::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// The same seed sends the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of anomalous events.
    #[arg(long, default_value_t = 0.01)]
    pub anomaly_rate: f64,
    /// Share of late, out-of-order events.
    #[arg(long, default_value_t = 0.02)]
    pub late_share: f64,
    /// How late a late event can be.
    #[arg(long, default_value = "30s", value_parser = crate::time::parse_duration)]
    pub max_delay: std::time::Duration,
    /// Event time of the first event (RFC 3339); default now.
    #[arg(long)]
    pub start: Option<DateTime<Utc>>,
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// host:port,…; default `[kafka] brokers`.
    #[arg(long)]
    pub brokers: Option<String>,
    /// How record batches are compressed.
    #[arg(long, default_value = "none")]
    pub compression: Compression,
}

pub async fn produce(config: Config, args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let list = args.brokers.clone().unwrap_or(config.kafka.brokers.clone());
    anyhow::ensure!(
        !list.trim().is_empty(),
        "no Kafka brokers: pass --brokers or set [kafka] brokers (LAKEWARD_KAFKA_BROKERS)"
    );
    let brokers = Brokers::new(&list)?;
    let source = if args.profile == "files" {
        let folder =
            args.folder.clone().ok_or_else(|| anyhow::anyhow!("--profile files needs --folder"))?;
        Source::Files(folder)
    } else {
        let profile = Profile::named(&args.profile).map_err(anyhow::Error::msg)?;
        Source::Simulated(Simulation {
            profile,
            seed: args.seed,
            rate: if args.rate > 0.0 { args.rate } else { 1000.0 },
            start: args.start.unwrap_or_else(Utc::now),
            anomaly_rate: args.anomaly_rate,
            late_share: args.late_share,
            max_delay: args.max_delay,
        })
    };
    let plan = ProducePlan {
        topic: args.topic.clone(),
        partitions: args.partitions,
        source,
        rate: args.rate,
        limits: Limits { count: args.count, duration: args.duration, paced: args.rate > 0.0 },
        compression: args.compression,
    };
    let sent = plan.run(brokers, || false).await?;
    println!(
        "sent {} events ({} bytes, {} anomalous) to {} in {:.2}s: {:.0} events/s",
        sent.events,
        sent.bytes,
        sent.anomalies,
        args.topic,
        sent.seconds,
        sent.events as f64 / sent.seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
