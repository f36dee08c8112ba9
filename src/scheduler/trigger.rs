//! Creating runs: manual triggers (CLI, API, UI), scheduled runs, runs on data and backfills
//! all come here.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::dag::{params, Dag};
use crate::domain::RunType;
use crate::schedule::DataInterval;
use crate::store::assets::{self, AssetChange, RunTrigger};
use crate::store::runs;
use crate::store::{NewRun, RunRow, Store, StoreError};
use crate::time::{now_micros, to_micros};

#[derive(Debug, Error)]
pub enum TriggerError {
    /// The run's parameters do not match the DAG's declared params.
    #[error("invalid params: {}", .0.join("; "))]
    InvalidParams(Vec<String>),
    #[error("DAG `{dag_id}` already has a run at logical date {logical_date}")]
    Duplicate { dag_id: String, logical_date: String },
    /// Another scheduler's run consumed the data changes first.
    #[error("the data changes were consumed by another run")]
    Consumed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    /// The data interval; for manual runs, derived from the schedule when `None`.
    pub interval: Option<DataInterval>,
    /// Parameter values overriding the DAG's defaults.
    pub params: Map<String, Value>,
    /// Queue override for every task (used by `dags test` to keep its tasks to itself).
    pub queue: Option<String>,
    /// The data changes the run consumes (runs on data only).
    pub triggered_by: Option<DataTrigger>,
}

/// The changes of watched tables and datasets a run on data consumes, and what they added.
#[derive(Debug, Clone)]
pub struct DataTrigger {
    pub changes: Vec<AssetChange>,
    pub triggers: Vec<RunTrigger>,
}

impl RunRequest {
    pub fn manual(logical_date: DateTime<Utc>, params: Map<String, Value>) -> RunRequest {
        RunRequest {
            run_type: RunType::Manual,
            logical_date,
            interval: None,
            params,
            queue: None,
            triggered_by: None,
        }
    }
}

/// Airflow-style run id: `scheduled__2024-01-01T02:00:00Z`.
pub fn run_id(run_type: RunType, logical_date: DateTime<Utc>) -> String {
    format!("{}__{}", run_type.as_str(), logical_date.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// The data interval of a manual run at `logical_date`.
pub fn manual_interval(dag: &Dag, logical_date: DateTime<Utc>) -> DataInterval {
    match dag.timetable() {
        Some(timetable) => timetable.manual_interval(logical_date),
        None => DataInterval { start: logical_date, end: logical_date },
    }
}

/// Creates a queued run of `dag` (whose version must be registered in the store) and wakes the
/// scheduler. Fails without side effects on invalid params or an existing run at that date.
pub async fn create_run(
    store: &Store,
    dag: &Dag,
    request: RunRequest,
) -> Result<RunRow, TriggerError> {
    let params =
        params::resolve(&dag.params, &request.params).map_err(TriggerError::InvalidParams)?;
    let interval = request.interval.unwrap_or_else(|| manual_interval(dag, request.logical_date));
    let tasks = dag
        .tasks
        .values()
        .map(|t| {
            let queue = request.queue.clone().unwrap_or_else(|| t.queue.clone());
            (t.id.clone(), queue, i64::from(t.max_tries()))
        })
        .collect();
    let new_run = NewRun {
        dag_id: dag.id.clone(),
        run_id: run_id(request.run_type, request.logical_date),
        version: dag.version.clone(),
        run_type: request.run_type,
        logical_date: to_micros(request.logical_date),
        interval_start: to_micros(interval.start),
        interval_end: to_micros(interval.end),
        params,
        tasks,
    };
    // Created and read back in one transaction: the caller gets the run as it was created.
    let mut tx = store.begin().await?;
    let Some(pk) = runs::create(&mut *tx, &new_run, now_micros()).await? else {
        return Err(TriggerError::Duplicate {
            dag_id: dag.id.clone(),
            logical_date: request.logical_date.to_rfc3339(),
        });
    };
    if let Some(data) = &request.triggered_by {
        if !assets::consume(&mut *tx, &dag.id, pk, &data.changes, &data.triggers).await? {
            return Err(TriggerError::Consumed);
        }
    }
    let run = runs::by_pk(&mut *tx, pk)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("run {pk} is missing after its creation")))?;
    tx.commit().await.map_err(StoreError::from)?;
    store.wake_scheduler().await;
    Ok(run)
}
