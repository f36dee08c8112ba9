//! The vocabulary every layer shares: the lifecycle of task instances and runs (their states
//! and the transitions between them), how a run came to be, what a user may do, the lines of
//! a task's log, the lineage of the data a try read and wrote, the default queue, what kind of
//! failure an error is, and the paths of the pages of DAGs, runs and tasks (the web serves
//! them; notifications link to them).
//!
//! Pure values: this module knows nothing of the database, the scheduler or the web. The store
//! saves these values as their `as_str()` text; everything above reads them from here.

use serde::{Deserialize, Serialize};

/// Percent-encodes `text` for use as one URL path segment or query value.
pub fn encode_path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The path of a DAG's page.
pub fn dag_path(dag_id: &str) -> String {
    format!("/dags/{}", encode_path_segment(dag_id))
}

/// The path of a run's page.
pub fn run_path(dag_id: &str, run_id: &str) -> String {
    format!("{}/runs/{}", dag_path(dag_id), encode_path_segment(run_id))
}

/// The path of a task instance's page (`task_id`, or `task[3]` for a mapped instance).
pub fn task_path(dag_id: &str, run_id: &str, task_id: &str) -> String {
    format!("{}/tasks/{}", run_path(dag_id, run_id), encode_path_segment(task_id))
}

/// A stored text that names no value of the type it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{text}`")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub text: String,
}

/// An enum stored as text: `as_str`, `parse`, `ALL` and `Display`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Result<$name, UnknownValue> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownValue { kind: stringify!($name), text: other.to_string() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

string_enum! {
    /// The life of a task instance:
    /// `scheduled` → `queued` → `running` → `success` | `failed` | `up_for_retry` (→ `queued` again),
    /// or straight from `scheduled` to `upstream_failed` | `skipped` when its upstreams decide so.
    /// A user may settle any instance by hand (`success` or `failed`) or clear it (`scheduled`).
    TaskState {
        /// Created with its run; waits for its upstreams.
        Scheduled => "scheduled",
        /// Its trigger rule allows it to run and a pool and DAG slot were free: a worker may take it.
        Queued => "queued",
        /// A worker is running a try of it and heartbeats.
        Running => "running",
        Success => "success",
        /// Its last try failed and no retry is left, or it could not be scheduled at all.
        Failed => "failed",
        /// A try failed and another is due at `next_try_at`.
        UpForRetry => "up_for_retry",
        /// An upstream failure means it will not run.
        UpstreamFailed => "upstream_failed",
        /// Its upstreams' outcome says it need not run, or its job found nothing to do.
        Skipped => "skipped",
    }
}

impl TaskState {
    /// No further transition happens without a user clearing the task.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::UpstreamFailed | TaskState::Skipped
        )
    }

    /// One state standing for the instances of a mapped task: the least advanced of them
    /// (running before waiting, failures before successes); `None` for no instances.
    pub fn summary(states: impl IntoIterator<Item = TaskState>) -> Option<TaskState> {
        use TaskState::*;
        const PRECEDENCE: [TaskState; 8] =
            [Running, Queued, UpForRetry, Scheduled, Failed, UpstreamFailed, Success, Skipped];
        let states: Vec<TaskState> = states.into_iter().collect();
        PRECEDENCE.into_iter().find(|s| states.contains(s))
    }

    /// Whether the scheduler or a worker may move an instance from `self` to `next` (what a
    /// user does by hand, marking or clearing, is not bound by this).
    pub fn can_become(self, next: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, next),
            (Scheduled, Queued | UpstreamFailed | Skipped | Failed)
                | (Queued, Running)
                | (Running, Success | Failed | UpForRetry | Skipped)
                | (UpForRetry, Queued)
        )
    }
}

string_enum! {
    /// `queued` runs wait for a `max_active_runs` slot; `running` runs have task instances moving.
    RunState {
        Queued => "queued",
        Running => "running",
        Success => "success",
        Failed => "failed",
    }
}

impl RunState {
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }
}

string_enum! {
    /// How a run came to be.
    RunType {
        Manual => "manual",
        Scheduled => "scheduled",
        Backfill => "backfill",
        /// Created because tables or datasets its schedule watches (`on`) changed.
        AssetTriggered => "asset_triggered",
    }
}

string_enum! {
    /// What a web or API user may do: viewers read, admins also trigger, pause, clear and mark.
    Role {
        Admin => "admin",
        Viewer => "viewer",
    }
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Written by lakeward itself (start, end, errors).
    System,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::System => "system",
        }
    }
}

/// One line of a try's log.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub at: crate::time::Micros,
    pub stream: Stream,
    pub text: String,
}

/// The queue tasks go to unless their DAG says otherwise.
pub const DEFAULT_QUEUE: &str = "default";

string_enum! {
    /// Whether a try read or wrote an asset.
    Direction {
        Read => "read",
        Wrote => "wrote",
    }
}

string_enum! {
    /// The assets of the lake.
    AssetKind {
        /// A versioned Parquet (or raw) dataset of the warehouse.
        Dataset => "dataset",
        /// An Iceberg table.
        Table => "table",
    }
}

/// A table or dataset named in a DAG file: `bronze.orders` is an Iceberg table (namespace and
/// name joined by dots), `bronze/orders` a dataset (a path of the warehouse).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AssetRef {
    pub kind: AssetKind,
    pub name: String,
}

impl AssetRef {
    /// Reads a name as written in `schedule.on`; the separator tells the kind.
    pub fn parse(name: &str) -> Result<AssetRef, String> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        };
        let kind = if name.contains('/') { AssetKind::Dataset } else { AssetKind::Table };
        let separator = if kind == AssetKind::Dataset { '/' } else { '.' };
        let parts: Vec<&str> = name.split(separator).collect();
        if parts.len() < 2 || !parts.iter().all(|p| valid(p)) {
            return Err(format!(
                "`{name}` names neither a table (`namespace.table`) nor a dataset \
                 (`folder/name`)"
            ));
        }
        Ok(AssetRef { kind, name: name.to_string() })
    }
}

impl std::fmt::Display for AssetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// One dataset version or table snapshot a try read or wrote: the lineage of the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineageRecord {
    pub direction: Direction,
    pub kind: AssetKind,
    /// `bronze/orders` for a dataset, `bronze.orders` for a table.
    pub name: String,
    /// A dataset's version (`v-…`; `external` for data other tools wrote), or a table's
    /// snapshot id.
    pub version: String,
    /// For a table write: `append`, `overwrite`, `replace_partitions`, `replace` (compaction).
    pub operation: Option<String>,
    pub rows: Option<u64>,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
}

/// How a job-reported metric accumulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Only goes up: each report adds to it.
    Counter,
    /// A current value: each report replaces it.
    Gauge,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// A value a job reports for `/metrics`: `lakeward_stream_records_total{topic="web_logs"} 12`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSample {
    /// A Prometheus metric name.
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    /// Label names and values, in name order.
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Column types a declared schema can name (`ingest` and `kafka_ingest` tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    String,
    Integer,
    Float,
    Boolean,
    /// `YYYY-MM-DD`.
    Date,
    /// A date and time (RFC 3339 in JSON), stored as a UTC timestamp in microseconds.
    #[serde(alias = "timestamp")]
    Datetime,
}

impl ColumnType {
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Integer => "integer",
            ColumnType::Float => "float",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Datetime => "datetime",
        }
    }
}

/// What kind of failure an error is, which decides whether a try is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The user's definition is wrong (a path, a name, a query, a schema change): the same
    /// definition fails the same way, so it is never retried.
    Definition,
    /// Something outside the definition failed (I/O, the network, a concurrent writer, the
    /// data at hand): a retry may succeed.
    Transient,
    /// lakeward broke one of its own rules: a retry would fail the same way; worth a report.
    Bug,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_text() {
        for state in TaskState::ALL {
            assert_eq!(TaskState::parse(state.as_str()), Ok(*state));
        }
        let unknown = RunState::parse("paused").unwrap_err();
        assert_eq!(unknown.to_string(), "unknown RunState `paused`");
    }

    #[test]
    fn finished_states_go_nowhere_on_their_own() {
        for from in TaskState::ALL.iter().filter(|s| s.is_finished()) {
            assert!(TaskState::ALL.iter().all(|to| !from.can_become(*to)), "{from}");
        }
    }
}
