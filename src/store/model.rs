//! Rows as stored: runs and task instances, read into the domain's types by derived `FromRow`.
//! The column lists name exactly the fields, in the order the derive reads them.

use serde::Serialize;
use sqlx::FromRow;

use super::columns::JsonObject;
use crate::domain::{RunState, RunType, TaskState};
use crate::time::Micros;

/// One DAG run.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct RunRow {
    /// Database key.
    #[sqlx(rename = "id")]
    pub pk: i64,
    pub dag_id: String,
    pub run_id: String,
    /// The DAG version the run executes.
    pub version: String,
    pub run_type: RunType,
    pub state: RunState,
    pub logical_date: Micros,
    pub interval_start: Micros,
    pub interval_end: Micros,
    /// Resolved run parameters.
    #[sqlx(try_from = "JsonObject")]
    pub params: serde_json::Map<String, serde_json::Value>,
    pub created_at: Micros,
    pub started_at: Option<Micros>,
    pub ended_at: Option<Micros>,
    /// When the run passed its DAG's deadline unfinished.
    pub deadline_missed_at: Option<Micros>,
}

pub(super) const RUN_COLUMNS: &str =
    "id, dag_id, run_id, version, run_type, state, logical_date, interval_start, \
     interval_end, params, created_at, started_at, ended_at, deadline_missed_at";

/// One task of one run.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct TaskInstanceRow {
    pub id: i64,
    pub run_pk: i64,
    pub dag_id: String,
    pub task_id: String,
    pub state: TaskState,
    pub queue: String,
    /// Tries started so far; the current or last try's number.
    pub try_number: i64,
    pub max_tries: i64,
    pub worker_id: Option<String>,
    pub queued_at: Option<Micros>,
    pub started_at: Option<Micros>,
    pub ended_at: Option<Micros>,
    pub heartbeat_at: Option<Micros>,
    pub next_try_at: Option<Micros>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    #[sqlx(try_from = "JsonObject")]
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// What the current or last try last reported of its progress (rows, bytes, message).
    #[sqlx(try_from = "JsonObject")]
    pub progress: serde_json::Map<String, serde_json::Value>,
    /// When the try last reported progress or a sign of life: its own heartbeat.
    pub progress_at: Option<Micros>,
    /// Which instance of a mapped task this is, from 0; -1 for a task that is not mapped (or
    /// a mapped one not expanded yet).
    pub map_index: i64,
}

impl TaskInstanceRow {
    /// How the instance is named to users: `load`, or `load[3]` for a mapped instance.
    pub fn display_id(&self) -> String {
        display_id(&self.task_id, self.map_index)
    }
}

/// `task_id`, with `[map_index]` for an instance of a mapped task.
pub fn display_id(task_id: &str, map_index: i64) -> String {
    if map_index < 0 {
        task_id.to_string()
    } else {
        format!("{task_id}[{map_index}]")
    }
}

/// Reads [`display_id`] back: `load[3]` is `("load", 3)`, `load` is `("load", -1)`.
pub fn parse_display_id(text: &str) -> Option<(&str, i64)> {
    match text.strip_suffix(']').and_then(|rest| rest.split_once('[')) {
        Some((task, index)) => Some((task, index.parse().ok().filter(|i: &i64| *i >= 0)?)),
        None => Some((text, -1)),
    }
}

pub(super) const TASK_COLUMNS: &str = "id, run_pk, dag_id, task_id, state, queue, try_number, max_tries, \
     worker_id, queued_at, started_at, ended_at, heartbeat_at, next_try_at, exit_code, error, outputs, \
     progress, progress_at, map_index";
