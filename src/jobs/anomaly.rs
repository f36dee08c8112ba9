//! `kind = "anomaly"`: anomaly detection over metrics tables (the `window` kind's output),
//! writing what it finds to an anomalies table.
//!
//! Each check scores one metric of one table per window and key (see [`crate::anomaly`]). A
//! try reads the windows each check has not scored yet plus its `lookback` of earlier ones
//! (the baseline), and appends one row per anomaly. How far each check has scored is kept in
//! the anomalies table's commit (`lakeward.anomaly.scored`), changed on condition that it
//! still holds what the try began from: a window is scored once, whatever crashes or retries.
//! Windows already found anomalous stay out of later baselines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, SecondsFormat};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{Job, JobContext, JobError, Stage};
use crate::anomaly::{evaluate, series_key, Baseline, Check, Detector, Finding, Metric, Point};
use crate::lake::tables::{number_column, text_column, ScanRequest, TableError, Tables, WriteMode};
use crate::time::parse_duration;

/// ```toml
/// [tasks.detect]
/// kind = "anomaly"
/// table = "speed.anomalies"
/// [tasks.detect.checks.traffic_spike]
/// source = "speed.endpoint_minutes"
/// keys = ["endpoint"]
/// metric = "requests"               # or a ratio: "errors / requests"
/// detector = "ratio_to_mean"        # zscore, ewma, mad
/// threshold = 3.0
/// min_count = 20
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Where anomalies go (created on first use).
    pub table: String,
    /// Check name (written with each anomaly) → check.
    pub checks: IndexMap<String, CheckConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// A metrics table with `window_start` (and `window_end`), as `window` writes.
    pub source: String,
    /// The key columns (one series per key).
    #[serde(default)]
    pub keys: Vec<String>,
    /// A column, or `column / column`.
    pub metric: String,
    pub detector: Detector,
    /// Scores at or above it are anomalies; default 3 (`ratio_to_mean`), 4 (`zscore`,
    /// `ewma`), 5 (`mad`).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// `history` (the key's previous windows, default) or `keys` (the window's other keys).
    #[serde(default)]
    pub baseline: Baseline,
    /// With `history`: how many previous windows make the baseline. Default 30.
    #[serde(default = "default_history")]
    pub history: usize,
    /// Fewest baseline values a score needs. Default 5.
    #[serde(default = "default_min_baseline")]
    pub min_baseline: usize,
    /// Windows with fewer events than this (in `count`) are not scored. Default 0.
    #[serde(default)]
    pub min_count: f64,
    /// The column holding each window's event count; default the metric's column (its
    /// denominator for a ratio).
    #[serde(default)]
    pub count: Option<String>,
    /// The smallest deviation a score divides by, in the metric's unit (for rates, their
    /// sampling noise: `0.05` for an error rate). Default 0.
    #[serde(default)]
    pub min_deviation: f64,
    /// How far back a try reads windows for baselines. Default `1h`.
    #[serde(default = "default_lookback")]
    pub lookback: String,
}

fn default_history() -> usize {
    30
}
fn default_min_baseline() -> usize {
    5
}
fn default_lookback() -> String {
    "1h".into()
}

/// The anomalies table's summary property: check name → last window start scored (µs).
const SCORED: &str = "lakeward.anomaly.scored";

impl CheckConfig {
    fn check(&self) -> Result<(Check, Metric, String, i64), String> {
        let metric = Metric::parse(&self.metric)?;
        let count = self.count.clone().unwrap_or_else(|| match &metric {
            Metric::Column(c) => c.clone(),
            Metric::Ratio(_, bottom) => bottom.clone(),
        });
        let lookback = parse_duration(&self.lookback).map_err(|e| format!("`lookback`: {e}"))?;
        let threshold = self.threshold.unwrap_or_else(|| self.detector.default_threshold());
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err(format!("`threshold` must be a positive number, got {threshold}"));
        }
        let check = Check {
            detector: self.detector,
            threshold,
            baseline: self.baseline,
            history: self.history.max(1),
            min_baseline: self.min_baseline,
            min_count: self.min_count,
            min_deviation: self.min_deviation,
        };
        Ok((check, metric, count, lookback.as_micros() as i64))
    }
}

pub struct Anomaly;

impl Job for Anomaly {
    const KIND: &'static str = "anomaly";
    type Config = AnomalyConfig;
    type Output = Detected;

    fn validate(&self, config: &AnomalyConfig, stage: Stage) -> Vec<String> {
        let sources = config.checks.values().map(|c| c.source.as_str());
        let mut problems =
            stage.table_name_problems(std::iter::once(config.table.as_str()).chain(sources));
        if config.checks.is_empty() {
            problems.push("`checks` must name at least one check".into());
        }
        for (name, check) in &config.checks {
            if let Err(e) = check.check() {
                problems.push(format!("check `{name}`: {e}"));
            }
        }
        problems
    }

    async fn run(&self, config: AnomalyConfig, ctx: JobContext) -> Result<Detected, JobError> {
        let started = Instant::now();
        let tables = ctx.tables.get().await?;
        let mut writer = tables.writer(&config.table, &output_schema(), &[]).await?;
        let begun = writer.summary();
        let mut scored: BTreeMap<String, i64> = match begun.get(SCORED) {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                JobError::Failed(format!("{}: `{SCORED}` cannot be read: {e}", config.table))
            })?,
            None => BTreeMap::new(),
        };
        let mut done = Detected { table: config.table.clone(), ..Detected::default() };
        let mut rows = Vec::new();
        for (name, check_config) in &config.checks {
            let (check, metric, count, lookback) =
                check_config.check().map_err(JobError::Config)?;
            let until = scored.get(name).copied();
            let from = until.map(|u| u - lookback);
            let Some(points) = read_points(&tables, check_config, &metric, &count, from).await?
            else {
                ctx.log.info(format!("check {name}: {} does not exist yet", check_config.source));
                continue;
            };
            if let Some(snapshot) = points.snapshot_id {
                ctx.lineage.read_table(&check_config.source, snapshot);
            }
            let flagged = flagged(&tables, &config.table, name, from).await?;
            let findings = evaluate(&check, &points.points, until, &flagged);
            let newest = points.points.iter().map(|p| p.window_start).max();
            let windows: HashSet<i64> = points
                .points
                .iter()
                .map(|p| p.window_start)
                .filter(|s| until.is_none_or(|u| *s > u))
                .collect();
            ctx.log.info(format!(
                "check {name} ({} of {} by {}): {} windows scored, {} anomalies",
                metric.text(),
                check_config.source,
                check.detector.as_str(),
                windows.len(),
                findings.len()
            ));
            done.checks.push(CheckOutcome {
                name: name.clone(),
                windows_scored: windows.len() as u64,
                anomalies: findings.len() as u64,
            });
            if let Some(newest) = newest.filter(|n| until.is_none_or(|u| *n > u)) {
                scored.insert(name.clone(), newest);
            }
            rows.extend(findings.into_iter().map(|finding| Row {
                check: name.clone(),
                metric: metric.text(),
                detector: check.detector,
                window_end: points.ends.get(&finding.window_start).copied(),
                finding,
            }));
        }
        done.anomalies = rows.len() as u64;
        let advanced = done.checks.iter().any(|c| c.windows_scored > 0);
        if advanced {
            if !rows.is_empty() {
                writer.write(&anomaly_rows(&rows)?).await?;
            }
            let text = serde_json::to_string(&scored).map_err(|e| JobError::Bug(e.to_string()))?;
            let summary = BTreeMap::from([(SCORED.to_string(), text)]);
            let expected = BTreeMap::from([(SCORED.to_string(), begun.get(SCORED).cloned())]);
            let promotion = writer.commit(WriteMode::Append, &summary, &expected).await?;
            done.snapshot_id = Some(promotion.snapshot_id);
            ctx.lineage.wrote_table(
                &config.table,
                promotion.snapshot_id,
                "append",
                promotion.rows,
                promotion.files as u64,
            );
        }
        for row in &rows {
            let help = "Anomalies found, by check.";
            ctx.metrics.count("lakeward_anomalies_total", help, &[("check", &row.check)], 1.0);
        }
        done.seconds = started.elapsed().as_secs_f64();
        Ok(done)
    }
}

/// A check's points as read, each window's end, and the snapshot they were read from.
struct Points {
    points: Vec<Point>,
    ends: HashMap<i64, i64>,
    snapshot_id: Option<i64>,
}

/// An anomaly as written.
struct Row {
    check: String,
    metric: String,
    detector: Detector,
    window_end: Option<i64>,
    finding: Finding,
}

fn timestamp_text(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, false))
        .unwrap_or_default()
}

/// The windows of the check's table starting at or after `from` (all for `None`); `None` if
/// the table does not exist yet.
async fn read_points(
    tables: &Tables,
    config: &CheckConfig,
    metric: &Metric,
    count: &str,
    from: Option<i64>,
) -> Result<Option<Points>, JobError> {
    let filter = from.map(|f| format!("window_start >= '{}'", timestamp_text(f)));
    let request = ScanRequest { filter, ..ScanRequest::default() };
    let scan = match tables.scan(&config.source, &request).await {
        Err(TableError::Missing(_)) => return Ok(None),
        other => other?,
    };
    let (mut points, mut ends) = (Vec::new(), HashMap::new());
    let missing =
        |column: &str| JobError::Config(format!("{} has no column `{column}`", config.source));
    for batch in &scan.batches {
        let starts = batch
            .column_by_name("window_start")
            .ok_or_else(|| missing("window_start"))?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| {
                JobError::Config(format!("{}: `window_start` is not a timestamp", config.source))
            })?;
        let number = |column: &str| -> Result<Arc<Float64Array>, JobError> {
            batch.column_by_name(column).ok_or_else(|| missing(column))?;
            number_column(batch, column).map(Arc::new).ok_or_else(|| {
                JobError::Config(format!("{}: `{column}` is not a number", config.source))
            })
        };
        let values = match metric {
            Metric::Column(c) => number(c)?,
            Metric::Ratio(top, bottom) => {
                let (top, bottom) = (number(top)?, number(bottom)?);
                Arc::new(
                    top.iter()
                        .zip(bottom.iter())
                        .map(|(a, b)| match (a, b) {
                            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                            _ => None,
                        })
                        .collect::<Float64Array>(),
                )
            }
        };
        let counts = number(count)?;
        let window_ends = batch
            .column_by_name("window_end")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>());
        let keys = config
            .keys
            .iter()
            .map(|k| {
                batch.column_by_name(k).ok_or_else(|| missing(k))?;
                text_column(batch, k).ok_or_else(|| {
                    JobError::Config(format!("{}: key `{k}` cannot be read as text", config.source))
                })
            })
            .collect::<Result<Vec<StringArray>, JobError>>()?;
        for row in 0..batch.num_rows() {
            if starts.is_null(row) || values.is_null(row) {
                continue;
            }
            let key =
                series_key(keys.iter().map(|k| if k.is_null(row) { "" } else { k.value(row) }));
            if let Some(end) = window_ends.filter(|e| e.is_valid(row)) {
                ends.insert(starts.value(row), end.value(row));
            }
            points.push(Point {
                window_start: starts.value(row),
                key,
                value: values.value(row),
                count: if counts.is_null(row) { 0.0 } else { counts.value(row) },
            });
        }
    }
    Ok(Some(Points { points, ends, snapshot_id: scan.snapshot_id }))
}

/// The (window start, key) pairs check `name` found anomalous from `from` on.
async fn flagged(
    tables: &Tables,
    table: &str,
    name: &str,
    from: Option<i64>,
) -> Result<HashSet<(i64, String)>, JobError> {
    let filter = from.map(|f| format!("window_start >= '{}'", timestamp_text(f)));
    let request = ScanRequest { filter, ..ScanRequest::default() };
    let mut out = HashSet::new();
    let scan = match tables.scan(table, &request).await {
        Err(TableError::Missing(_)) => return Ok(out),
        other => other?,
    };
    for batch in scan.batches {
        let starts = batch.column(0).as_primitive::<TimestampMicrosecondType>();
        let checks = batch.column(2).as_string::<i32>();
        let keys = batch.column(3).as_string::<i32>();
        for row in 0..batch.num_rows() {
            if checks.value(row) == name {
                out.insert((starts.value(row), keys.value(row).to_string()));
            }
        }
    }
    Ok(out)
}

fn output_schema() -> Arc<Schema> {
    let time = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    Arc::new(Schema::new(vec![
        Field::new("window_start", time.clone(), true),
        Field::new("window_end", time, true),
        Field::new("anomaly", DataType::Utf8, true),
        Field::new("key", DataType::Utf8, true),
        Field::new("metric", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
        Field::new("baseline", DataType::Float64, true),
        Field::new("score", DataType::Float64, true),
        Field::new("detector", DataType::Utf8, true),
        Field::new("severity", DataType::Utf8, true),
    ]))
}

fn anomaly_rows(rows: &[Row]) -> Result<RecordBatch, JobError> {
    let time = |values: Vec<Option<i64>>| {
        Arc::new(TimestampMicrosecondArray::from(values).with_timezone("+00:00")) as ArrayRef
    };
    let text = |f: &dyn Fn(&Row) -> &str| {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>()) as ArrayRef
    };
    let number = |f: &dyn Fn(&Finding) -> f64| {
        Arc::new(rows.iter().map(|r| Some(f(&r.finding))).collect::<Float64Array>()) as ArrayRef
    };
    let columns = vec![
        time(rows.iter().map(|r| Some(r.finding.window_start)).collect()),
        time(rows.iter().map(|r| r.window_end).collect()),
        text(&|r| &r.check),
        text(&|r| &r.finding.key),
        text(&|r| &r.metric),
        number(&|f| f.value),
        number(&|f| f.baseline),
        number(&|f| f.score),
        text(&|r| r.detector.as_str()),
        text(&|r| r.finding.severity.as_str()),
    ];
    RecordBatch::try_new(output_schema(), columns).map_err(|e| JobError::Bug(e.to_string()))
}

/// How one check went.
#[derive(Debug, Default, Serialize)]
pub struct CheckOutcome {
    pub name: String,
    /// Windows scored for the first time.
    pub windows_scored: u64,
    pub anomalies: u64,
}

/// The outputs of an `anomaly` try.
#[derive(Debug, Default, Serialize)]
pub struct Detected {
    pub table: String,
    pub checks: Vec<CheckOutcome>,
    pub anomalies: u64,
    /// The anomalies table's snapshot committed, if any window was scored.
    pub snapshot_id: Option<i64>,
    pub seconds: f64,
}
