//! `kind = "simulate"`: writes simulated events (web logs, connection logs or sensor readings;
//! see [`crate::simulate`]) as a JSON-lines file into a warehouse folder: the files a
//! file-streaming pipeline (an incremental `ingest`) picks up. The file appears whole (written
//! under a hidden name, then renamed), named after the run's logical date.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::Templated;
use super::{Job, JobContext, JobError, Stage};
use crate::lake::check_relative;
use crate::simulate::{Profile, Simulation, Simulator};

/// ```toml
/// [tasks.drop_files]
/// kind = "simulate"
/// profile = "sensors"
/// folder = "raw/sensor_data"
/// count = 500
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateConfig {
    /// `web_logs`, `connection_logs` or `sensors`.
    pub profile: Profile,
    /// Warehouse folder the file goes to (local warehouses).
    pub folder: String,
    /// Events in the file.
    pub count: Templated<u64>,
    /// Events per second of event time, ending at the run's logical date. Default 10.
    #[serde(default = "default_rate")]
    pub rate: Templated<f64>,
    /// Default: one per run.
    #[serde(default)]
    pub seed: Option<Templated<u64>>,
    #[serde(default = "default_anomaly_rate")]
    pub anomaly_rate: Templated<f64>,
}

fn default_rate() -> Templated<f64> {
    Templated::Value(10.0)
}
fn default_anomaly_rate() -> Templated<f64> {
    Templated::Value(0.01)
}

pub struct Simulate;

impl Job for Simulate {
    const KIND: &'static str = "simulate";
    type Config = SimulateConfig;
    type Output = Simulated;

    fn validate(&self, config: &SimulateConfig, stage: Stage) -> Vec<String> {
        let mut problems = Vec::new();
        if !stage.defers(&config.folder) {
            if let Err(e) = check_relative(&config.folder) {
                problems.push(e.to_string());
            }
        }
        if !config.rate.check(|r| *r > 0.0) {
            problems.push("`rate` must be more than 0".into());
        }
        if !config.anomaly_rate.check(|r| (0.0..=1.0).contains(r)) {
            problems.push("`anomaly_rate` must be between 0 and 1".into());
        }
        problems
    }

    async fn run(&self, config: SimulateConfig, ctx: JobContext) -> Result<Simulated, JobError> {
        if ctx.warehouse.is_remote() {
            return Err(JobError::Config("`simulate` writes to a local warehouse folder".into()));
        }
        check_relative(&config.folder)?;
        let count = config.count.get("count")?;
        let rate = config.rate.get("rate")?;
        let span = chrono::Duration::microseconds((count as f64 / rate * 1e6) as i64);
        let start: DateTime<Utc> = ctx.logical_date - span;
        let simulation = Simulation {
            profile: config.profile,
            seed: match &config.seed {
                Some(seed) => seed.get("seed")?,
                None => ctx.logical_date.timestamp_micros() as u64,
            },
            rate,
            start,
            anomaly_rate: config.anomaly_rate.get("anomaly_rate")?,
            late_share: 0.0,
            max_delay: std::time::Duration::ZERO,
        };
        let folder = ctx.warehouse.root().join(&config.folder);
        let name = format!(
            "{}-{}.jsonl",
            ctx.logical_date.format("%Y%m%dT%H%M%S"),
            config.profile.as_str()
        );
        let path = folder.join(&name);
        let (written, hidden) = (path.clone(), folder.join(format!(".{name}.tmp")));
        let bytes = super::blocking(move || {
            let fail = |e: std::io::Error| JobError::Failed(format!("{}: {e}", written.display()));
            std::fs::create_dir_all(&folder).map_err(fail)?;
            let mut text = String::new();
            for event in Simulator::new(simulation).take(count as usize) {
                text.push_str(&event.payload);
                text.push('\n');
            }
            std::fs::write(&hidden, &text).map_err(fail)?;
            std::fs::rename(&hidden, &written).map_err(fail)?;
            Ok(text.len() as u64)
        })
        .await?;
        ctx.log.info(format!(
            "wrote {count} {} events to {}",
            config.profile.as_str(),
            path.display()
        ));
        Ok(Simulated { file: format!("{}/{name}", config.folder), events: count, bytes })
    }
}

/// The outputs of a `simulate` task.
#[derive(Debug, Serialize)]
pub struct Simulated {
    /// The file written, in the warehouse.
    pub file: String,
    pub events: u64,
    pub bytes: u64,
}
