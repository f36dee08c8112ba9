//! Rows as stored: runs and task instances, read into the domain's types.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{json_column, Result};
use crate::domain::{RunState, RunType, TaskState};
use crate::time::Micros;

/// One DAG run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// Database key.
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
    pub params: serde_json::Map<String, serde_json::Value>,
    pub created_at: Micros,
    pub started_at: Option<Micros>,
    pub ended_at: Option<Micros>,
}

pub(super) const RUN_COLUMNS: &str =
    "id, dag_id, run_id, version, run_type, state, logical_date, interval_start, \
     interval_end, params, created_at, started_at, ended_at";

impl RunRow {
    pub(super) fn from_row(row: &AnyRow) -> Result<RunRow> {
        Ok(RunRow {
            pk: row.try_get("id")?,
            dag_id: row.try_get("dag_id")?,
            run_id: row.try_get("run_id")?,
            version: row.try_get("version")?,
            run_type: RunType::parse(&row.try_get::<String, _>("run_type")?)?,
            state: RunState::parse(&row.try_get::<String, _>("state")?)?,
            logical_date: row.try_get("logical_date")?,
            interval_start: row.try_get("interval_start")?,
            interval_end: row.try_get("interval_end")?,
            params: json_column(row, "params")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            ended_at: row.try_get("ended_at")?,
        })
    }
}

/// One task of one run.
#[derive(Debug, Clone, Serialize)]
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
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// What the current or last try last reported of its progress (rows, bytes, message).
    pub progress: serde_json::Map<String, serde_json::Value>,
    /// When the try last reported progress or a sign of life: its own heartbeat.
    pub progress_at: Option<Micros>,
}

pub(super) const TASK_COLUMNS: &str = "id, run_pk, dag_id, task_id, state, queue, try_number, max_tries, \
     worker_id, queued_at, started_at, ended_at, heartbeat_at, next_try_at, exit_code, error, outputs, \
     progress, progress_at";

impl TaskInstanceRow {
    pub(super) fn from_row(row: &AnyRow) -> Result<TaskInstanceRow> {
        Ok(TaskInstanceRow {
            id: row.try_get("id")?,
            run_pk: row.try_get("run_pk")?,
            dag_id: row.try_get("dag_id")?,
            task_id: row.try_get("task_id")?,
            state: TaskState::parse(&row.try_get::<String, _>("state")?)?,
            queue: row.try_get("queue")?,
            try_number: row.try_get("try_number")?,
            max_tries: row.try_get("max_tries")?,
            worker_id: row.try_get("worker_id")?,
            queued_at: row.try_get("queued_at")?,
            started_at: row.try_get("started_at")?,
            ended_at: row.try_get("ended_at")?,
            heartbeat_at: row.try_get("heartbeat_at")?,
            next_try_at: row.try_get("next_try_at")?,
            exit_code: row.try_get("exit_code")?,
            error: row.try_get("error")?,
            outputs: json_column(row, "outputs")?,
            progress: json_column(row, "progress")?,
            progress_at: row.try_get("progress_at")?,
        })
    }
}
