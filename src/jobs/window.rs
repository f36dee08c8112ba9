//! `kind = "window"`: metrics over event-time windows of an Iceberg table, incrementally and
//! exactly once (the speed layer of a lambda pipeline).
//!
//! A try reads only the data files the source gained since the snapshot the output table's
//! last commit names (`lakeward.window.source_snapshot`), adds their events to the windows
//! they fall in, moves the watermark (largest event time − `allowed_lateness`) and appends a
//! row per window and key the watermark passed. The open windows' partial aggregates are saved
//! in a state file beside the table's data (`state/`, named by `lakeward.window.state`), and
//! both properties change in the same commit as the rows, on condition that they still hold
//! what the try began from: a crash or a retry can neither skip nor double-count an event.
//! Late events (behind the watermark of an emitted window) are counted and dropped, written to
//! `<table>_late`, or merged into their window, whose row is then rewritten (the window's day
//! partition is replaced in the same commit).

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, BooleanArray, RecordBatch};
use chrono::{DateTime, SecondsFormat};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{Job, JobContext, JobError, Stage};
use crate::lake::tables::{
    current_arrow_schema, decode_columns, Appended, PartitionField, ScanRequest, TableError,
    Tables, WriteMode,
};
use crate::time::parse_duration;
use crate::window::{Definition, LatePolicy, Measure, SavedState, WindowError, Windower, Windows};

/// ```toml
/// [tasks.speed]
/// kind = "window"
/// source = "bronze.web_logs"
/// table = "speed.endpoint_minutes"
/// event_time = "timestamp"
/// size = "1m"                      # slide = "10s" for hopping windows
/// keys = ["endpoint"]
/// allowed_lateness = "2m"
/// late = "update"                  # drop (default), side_output, update
/// [tasks.speed.aggregates]
/// requests = "count"
/// errors = "count_if(status_code >= 500)"
/// p95_ms = "p95(response_time_ms)"
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// The Iceberg table (`namespace.table`) whose appended rows are the events.
    pub source: String,
    /// Where window rows go (created on first use, partitioned by `day(window_start)`).
    pub table: String,
    /// The event-time column (a timestamp).
    pub event_time: String,
    /// Window length (`30s`, `1m`, `1h`).
    pub size: String,
    /// How far apart windows start; default `size` (tumbling windows). Shorter: hopping
    /// windows, each event in `size / slide` of them.
    #[serde(default)]
    pub slide: Option<String>,
    /// Columns that split the windows (one row per window and key).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Output column → aggregate: `count`, `count_if(column op value)`, `sum`, `avg`, `min`,
    /// `max`, `count_distinct`, `p50`, `p90`, `p95`, `p99` (`(column)`), `quantile(column, q)`.
    /// Quantiles come from a sketch accurate to ±1 % of the value.
    pub aggregates: IndexMap<String, String>,
    /// How far the watermark trails the largest event time seen. Default `0s`.
    #[serde(default = "default_lateness")]
    pub allowed_lateness: String,
    /// What a late event does: `drop` (counted), `side_output` (to `late_table`) or `update`
    /// (its window's row is corrected).
    #[serde(default)]
    pub late: LatePolicy,
    /// Late events go here (`side_output`, or `update` past its horizon); default
    /// `<table>_late`.
    #[serde(default)]
    pub late_table: Option<String>,
    /// With `update`: how long after the watermark passed it a window can still be corrected;
    /// default `1h`.
    #[serde(default = "default_horizon")]
    pub update_horizon: String,
}

fn default_lateness() -> String {
    "0s".into()
}
fn default_horizon() -> String {
    "1h".into()
}

/// The output table's summary properties.
const SOURCE_SNAPSHOT: &str = "lakeward.window.source_snapshot";
const STATE_FILE: &str = "lakeward.window.state";
/// The late-events table's: `<from>:<to>` source snapshots whose late events it holds.
const LATE_SPAN: &str = "lakeward.window.late_span";

const RESERVED: [&str; 2] = ["window_start", "window_end"];

fn micros(text: &str, field: &str) -> Result<i64, String> {
    let duration = parse_duration(text).map_err(|e| format!("`{field}`: {e}"))?;
    Ok(duration.as_micros() as i64)
}

impl WindowConfig {
    fn definition(&self) -> Result<Definition, String> {
        let size = micros(&self.size, "size")?;
        let slide = match &self.slide {
            Some(s) => micros(s, "slide")?,
            None => size,
        };
        let aggregates = self
            .aggregates
            .iter()
            .map(|(name, text)| Ok((name.clone(), Measure::parse(text)?)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Definition {
            event_time: self.event_time.clone(),
            windows: Windows::new(size, slide)?,
            keys: self.keys.clone(),
            aggregates,
            allowed_lateness: micros(&self.allowed_lateness, "allowed_lateness")?,
            late: self.late,
            update_horizon: micros(&self.update_horizon, "update_horizon")?,
        })
    }

    fn late_table(&self) -> String {
        self.late_table.clone().unwrap_or_else(|| format!("{}_late", self.table))
    }
}

pub struct Window;

impl Job for Window {
    const KIND: &'static str = "window";
    type Config = WindowConfig;
    type Output = Windowed;

    fn validate(&self, config: &WindowConfig, stage: Stage) -> Vec<String> {
        let late_table = config.late_table();
        let mut problems =
            stage.table_name_problems([config.source.as_str(), &config.table, &late_table]);
        let deferred = [&config.size, &config.allowed_lateness, &config.update_horizon]
            .into_iter()
            .chain(config.slide.as_ref())
            .chain(config.aggregates.values())
            .any(|text| stage.defers(text));
        if !deferred {
            if let Err(e) = config.definition() {
                problems.push(e);
            }
        }
        if config.aggregates.is_empty() {
            problems.push(
                "`aggregates` must name at least one (for example `requests = \"count\"`)".into(),
            );
        }
        let mut names: HashSet<&str> = HashSet::new();
        for name in config.keys.iter().chain(config.aggregates.keys()) {
            if RESERVED.contains(&name.as_str()) {
                problems.push(format!(
                    "`{name}` names a column every window table has (window_start, window_end): \
                     call the key or aggregate otherwise"
                ));
            } else if !names.insert(name) {
                problems.push(format!(
                    "output column `{name}` is named twice (keys and aggregates share the table)"
                ));
            }
        }
        problems
    }

    async fn run(&self, config: WindowConfig, ctx: JobContext) -> Result<Windowed, JobError> {
        let started = Instant::now();
        let definition = config.definition().map_err(JobError::Config)?;
        let tables = ctx.tables.get().await?;
        let fresh = Windower::new(definition.clone());
        let day = PartitionField::parse("day(window_start)").map_err(JobError::Bug)?;
        let mut writer = tables.writer(&config.table, &fresh.output_schema(), &[day]).await?;
        let begun = writer.summary();
        let last: Option<i64> = match begun.get(SOURCE_SNAPSHOT) {
            Some(id) => Some(id.parse().map_err(|_| {
                JobError::Failed(format!(
                    "{}: `{SOURCE_SNAPSHOT}` is not a snapshot id: {id}",
                    config.table
                ))
            })?),
            None => None,
        };
        let mut windower = match begun.get(STATE_FILE) {
            Some(path) => {
                let bytes = Tables::fetch_file(writer.table(), path).await?;
                let saved: SavedState = serde_json::from_slice(&bytes).map_err(|e| {
                    JobError::Failed(format!("the window state {path} cannot be read: {e}"))
                })?;
                Windower::restore(definition, saved).map_err(window_error)?
            }
            None => fresh,
        };
        let mut done = Windowed::new(&config);
        let appended = match tables.appended_since(&config.source, last).await {
            Err(TableError::Missing(_)) => {
                ctx.log.info(format!("{} does not exist yet; nothing to do", config.source));
                return Ok(done);
            }
            other => other?,
        };
        done.source_snapshot = appended.snapshot_id;
        if appended.snapshot_id == last {
            ctx.log.info(format!("{} has no new snapshot since {last:?}", config.source));
            done.open_windows = windower.open_groups();
            return Ok(done);
        }
        if let Some(id) = appended.snapshot_id {
            ctx.lineage.read_table(&config.source, id);
        }

        let schema = current_arrow_schema(&appended.table)?;
        // Late events keep every column of the source; otherwise read only what is used.
        let columns: Vec<String> = match config.late {
            LatePolicy::Drop => windower.columns(),
            _ => schema.fields().iter().map(|f| f.name().clone()).collect(),
        };
        let mut late_rows: Vec<(i64, RecordBatch)> = Vec::new();
        for file in &appended.files {
            if ctx.is_cancelled() {
                return Err(JobError::Cancelled("asked to stop".into()));
            }
            let bytes = Tables::fetch_file(&appended.table, &file.path).await?;
            let (columns, schema) = (columns.clone(), schema.clone());
            let (back, added) = super::blocking(move || {
                let mut totals = crate::window::Added::default();
                let mut late = Vec::new();
                for batch in decode_columns(bytes, &columns, &schema)? {
                    let added = windower.add(&batch).map_err(window_error)?;
                    totals.events += added.events;
                    totals.late += added.late;
                    late.extend(added.late_rows);
                }
                Ok((windower, (totals, late)))
            })
            .await?;
            windower = back;
            done.files_read += 1;
            done.events += added.0.events;
            done.late_events += added.0.late;
            late_rows.extend(added.1.into_iter().map(|b| (file.snapshot_id, b)));
        }
        let closed = windower.close().map_err(window_error)?;
        done.windows_emitted = closed.emitted as u64;
        done.windows_corrected = closed.corrected as u64;
        done.open_windows = windower.open_groups();
        done.late_dropped = windower.late_totals().1;
        done.watermark =
            closed.watermark.and_then(DateTime::from_timestamp_micros).map(|t| t.to_rfc3339());

        if !late_rows.is_empty() {
            done.late_written =
                write_late(&tables, &config.late_table(), &begun, &appended, late_rows).await?;
        }
        let mode = if closed.corrected > 0 {
            for batch in rows_kept_beside(&tables, &config.table, &closed.rows).await? {
                writer.write(&batch).await?;
            }
            WriteMode::ReplacePartitions
        } else {
            WriteMode::Append
        };
        if closed.rows.num_rows() > 0 {
            writer.write(&closed.rows).await?;
        }
        let state =
            serde_json::to_vec(&windower.save()).map_err(|e| JobError::Bug(e.to_string()))?;
        let state_path = Tables::put_file(writer.table(), "state", "json", state).await?;
        let source_snapshot = appended.snapshot_id.map(|id| id.to_string()).unwrap_or_default();
        let summary = BTreeMap::from([
            (SOURCE_SNAPSHOT.to_string(), source_snapshot),
            (STATE_FILE.to_string(), state_path),
        ]);
        let expected = BTreeMap::from([
            (SOURCE_SNAPSHOT.to_string(), begun.get(SOURCE_SNAPSHOT).cloned()),
            (STATE_FILE.to_string(), begun.get(STATE_FILE).cloned()),
        ]);
        let promotion = writer.commit(mode, &summary, &expected).await?;
        done.snapshot_id = Some(promotion.snapshot_id);
        ctx.lineage.wrote_table(
            &config.table,
            promotion.snapshot_id,
            mode.as_str(),
            promotion.rows,
            promotion.files as u64,
        );
        done.seconds = started.elapsed().as_secs_f64();
        ctx.log.info(format!(
            "{} events from {} files of {} ({} snapshots) in {:.2}s: {} windows emitted, {} \
             corrected, {} open; {} late ({} written to {}); watermark {}",
            done.events,
            done.files_read,
            config.source,
            appended.snapshots.len(),
            done.seconds,
            done.windows_emitted,
            done.windows_corrected,
            done.open_windows,
            done.late_events,
            done.late_written,
            config.late_table(),
            done.watermark.as_deref().unwrap_or("none yet"),
        ));
        report(&ctx, &done, closed.watermark);
        Ok(done)
    }
}

fn window_error(error: WindowError) -> JobError {
    JobError::of_class(error.class(), error.to_string())
}

/// Writes the late events to `name`, but not those an earlier try that began from the same
/// source snapshot has written already (as the table's `late_span` says); returns how many.
async fn write_late(
    tables: &Tables,
    name: &str,
    begun: &BTreeMap<String, String>,
    appended: &Appended,
    late: Vec<(i64, RecordBatch)>,
) -> Result<u64, JobError> {
    let from = begun.get(SOURCE_SNAPSHOT).cloned().unwrap_or_default();
    let to = appended.snapshot_id.map(|id| id.to_string()).unwrap_or_default();
    let schema = late[0].1.schema();
    let mut writer = tables.writer(name, &schema, &[]).await?;
    let previous = writer.summary().get(LATE_SPAN).cloned();
    let written: HashSet<i64> = match previous.as_deref().and_then(|span| span.split_once(':')) {
        Some((earlier_from, earlier_to)) if earlier_from == from => {
            let through = appended.snapshots.iter().position(|s| s.to_string() == earlier_to);
            through
                .map_or_else(HashSet::new, |i| appended.snapshots[..=i].iter().copied().collect())
        }
        _ => HashSet::new(),
    };
    let mut rows = 0;
    for (_, batch) in late.iter().filter(|(s, _)| !written.contains(s)) {
        writer.write(batch).await?;
        rows += batch.num_rows() as u64;
    }
    if rows == 0 {
        return Ok(0);
    }
    let summary = BTreeMap::from([(LATE_SPAN.to_string(), format!("{from}:{to}"))]);
    let expected = BTreeMap::from([(LATE_SPAN.to_string(), previous)]);
    writer.commit(WriteMode::Append, &summary, &expected).await?;
    Ok(rows)
}

/// The rows of `table` in the day partitions `rows` fall in, except the windows and keys
/// `rows` replaces: with `rows`, the full new content of those partitions.
async fn rows_kept_beside(
    tables: &Tables,
    table: &str,
    rows: &RecordBatch,
) -> Result<Vec<RecordBatch>, JobError> {
    const DAY: i64 = 86_400_000_000;
    let starts = rows.column(0).as_primitive::<TimestampMicrosecondType>();
    let days: std::collections::BTreeSet<i64> =
        starts.values().iter().map(|s| s.div_euclid(DAY) * DAY).collect();
    let replaced: HashSet<String> = (0..rows.num_rows()).map(|r| row_key(rows, r)).collect();
    let text = |micros: i64| {
        DateTime::from_timestamp_micros(micros)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, false))
            .unwrap_or_default()
    };
    let mut kept = Vec::new();
    for day in days {
        let filter =
            format!("window_start >= '{}' and window_start < '{}'", text(day), text(day + DAY));
        let request = ScanRequest { filter: Some(filter), ..ScanRequest::default() };
        for batch in tables.scan(table, &request).await?.batches {
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|r| Some(!replaced.contains(&row_key(&batch, r))))
                .collect();
            let batch = arrow_select::filter::filter_record_batch(&batch, &keep)
                .map_err(|e| JobError::Bug(e.to_string()))?;
            let columns = batch.columns().to_vec();
            kept.push(RecordBatch::try_new(rows.schema(), columns).map_err(|e| {
                JobError::Config(format!(
                    "{table} no longer has the columns this window computation writes: {e}"
                ))
            })?);
        }
    }
    Ok(kept)
}

/// A window row's identity: its start and key values (every column before the aggregates).
fn row_key(batch: &RecordBatch, row: usize) -> String {
    let start = batch.column(0).as_primitive::<TimestampMicrosecondType>().value(row);
    let mut key = start.to_string();
    for column in batch.columns().iter().skip(2) {
        let Some(text) = column.as_string_opt::<i32>() else { break };
        key.push('\u{1f}');
        if text.is_valid(row) {
            key.push_str(text.value(row));
        } else {
            key.push('\u{0}');
        }
    }
    key
}

/// Reports a try for `/metrics`.
fn report(ctx: &JobContext, done: &Windowed, watermark: Option<i64>) {
    let labels = [("source", done.source.as_str()), ("table", done.table.as_str())];
    let metrics = &ctx.metrics;
    let events = "Events added to event-time windows.";
    metrics.count("lakeward_window_events_total", events, &labels, done.events as f64);
    let late = "Events behind the watermark of a window already emitted.";
    metrics.count("lakeward_window_late_events_total", late, &labels, done.late_events as f64);
    let emitted = "Window rows emitted (first emission).";
    metrics.count("lakeward_window_rows_total", emitted, &labels, done.windows_emitted as f64);
    if let Some(watermark) = watermark {
        let help = "How far the watermark is behind the wall clock, in seconds.";
        let delay = (chrono::Utc::now().timestamp_micros() - watermark) as f64 / 1e6;
        metrics.gauge("lakeward_window_watermark_delay_seconds", help, &labels, delay);
    }
}

/// The outputs of a `window` try.
#[derive(Debug, Serialize)]
pub struct Windowed {
    pub source: String,
    pub table: String,
    /// The source snapshot processed up to.
    pub source_snapshot: Option<i64>,
    /// The output snapshot committed, if any.
    pub snapshot_id: Option<i64>,
    pub files_read: u64,
    pub events: u64,
    pub windows_emitted: u64,
    pub windows_corrected: u64,
    pub open_windows: usize,
    pub late_events: u64,
    /// Late events dropped since the computation began (`late = "drop"`).
    pub late_dropped: u64,
    pub late_written: u64,
    /// RFC 3339; windows ending at or before it are emitted.
    pub watermark: Option<String>,
    pub seconds: f64,
}

impl Windowed {
    fn new(config: &WindowConfig) -> Windowed {
        Windowed {
            source: config.source.clone(),
            table: config.table.clone(),
            source_snapshot: None,
            snapshot_id: None,
            files_read: 0,
            events: 0,
            windows_emitted: 0,
            windows_corrected: 0,
            open_windows: 0,
            late_events: 0,
            late_dropped: 0,
            late_written: 0,
            watermark: None,
            seconds: 0.0,
        }
    }
}
