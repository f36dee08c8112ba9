//! Finding what a URL names — a DAG, a run, a task instance — with a 404 naming what is
//! missing, and reading the state a user marks something with. Shared by the pages and the API
//! so both answer the same way.

use std::sync::Arc;

use super::error::WebError;
use super::AppState;
use crate::dag::Dag;
use crate::domain::{RunState, TaskState};
use crate::store::{dags, runs, tasks};
use crate::store::{DagRow, RunRow, TaskInstanceRow};

/// A DAG as recorded and its current compiled version.
pub async fn dag(state: &AppState, dag_id: &str) -> Result<(DagRow, Arc<Dag>), WebError> {
    let row = dags::get(state.store.read(), dag_id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("no DAG `{dag_id}`")))?;
    let dag = state.versions.get(dag_id, &row.version).await?;
    Ok((row, dag))
}

pub async fn run(state: &AppState, dag_id: &str, run_id: &str) -> Result<RunRow, WebError> {
    runs::get(state.store.read(), dag_id, run_id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("no run `{run_id}` of DAG `{dag_id}`")))
}

/// A run, the DAG version it executes, and one of its task instances.
pub async fn task_instance(
    state: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<(RunRow, Arc<Dag>, TaskInstanceRow), WebError> {
    let run = run(state, dag_id, run_id).await?;
    let dag = state.versions.get(dag_id, &run.version).await?;
    let ti = tasks::get_named(state.store.read(), run.pk, task_id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("run `{run_id}` has no task `{task_id}`")))?;
    Ok((run, dag, ti))
}

/// A state a user may set a run or a task instance to by hand.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    Success,
    Failed,
}

impl Mark {
    pub fn parse(text: &str) -> Result<Mark, WebError> {
        match text {
            "success" => Ok(Mark::Success),
            "failed" => Ok(Mark::Failed),
            other => Err(WebError::BadRequest(format!(
                "state must be `success` or `failed`, not `{other}`"
            ))),
        }
    }

    pub fn run_state(self) -> RunState {
        match self {
            Mark::Success => RunState::Success,
            Mark::Failed => RunState::Failed,
        }
    }

    pub fn task_state(self) -> TaskState {
        match self {
            Mark::Success => TaskState::Success,
            Mark::Failed => TaskState::Failed,
        }
    }
}
