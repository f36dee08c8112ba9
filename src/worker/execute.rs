//! One try of one task instance: load its DAG version (waiting for the database while it is
//! unreachable: an outage costs no try), render its templates, run its job with the task's
//! timeout (asking it to stop, then dropping it), and say how it ended, with the lineage the
//! job reported. Recording it is the worker loop's (see `results`).

use std::sync::Arc;

use super::logs::flush_logs;
use super::outage::until_answered;
use super::{TryControls, Worker, STOP_GRACE};
use crate::dag::template;
use crate::dag::Task;
use crate::domain::AssetKind;
use crate::jobs::{JobContext, JobError, LogSink, Outputs};
use crate::notifications::queue;
use crate::store::assets::{self, RunTrigger};
use crate::store::notifications::NewNotification;
use crate::store::tasks;
use crate::store::{display_id, ClaimedTask, RunRow, StoreError, TaskOutcome};
use crate::time::{from_micros, now_micros};
use crate::versions::VersionError;

/// Runs the try and returns how it ended, with the messages its `on_*` settings ask for; the
/// worker loop records it (see `results`).
pub(super) async fn execute(
    worker: Arc<Worker>,
    task: ClaimedTask,
    controls: TryControls,
) -> TaskOutcome {
    let mut outcome = run_try(&worker, &task, &controls).await;
    outcome.notifications = notifications_for(&worker, &task, &outcome).await;
    outcome
}

/// The messages the task's `on_*` settings ask for, given how the try ended (none if its DAG
/// version cannot be read: the failure is then in the try's log).
async fn notifications_for(
    worker: &Worker,
    claimed: &ClaimedTask,
    outcome: &TaskOutcome,
) -> Vec<NewNotification> {
    let Ok(Some(run)) = worker.run_of(claimed).await else { return Vec::new() };
    let Ok(dag) = worker.versions.get(&run.dag_id, &run.version).await else {
        return Vec::new();
    };
    let Some(task) = dag.tasks.get(&claimed.task_id) else { return Vec::new() };
    let name = display_id(&task.id, claimed.map_index);
    let (try_number, max_tries) = (claimed.try_number, claimed.max_tries);
    queue::for_try(task, &name, &run, try_number, max_tries, outcome, chrono::Utc::now())
}

/// What a try needs before it can start.
struct Prepared {
    task: Task,
    run: Arc<RunRow>,
    config: toml::Table,
}

async fn prepare(
    worker: &Worker,
    claimed: &ClaimedTask,
    controls: &TryControls,
) -> Result<Prepared, JobError> {
    let run = when_reachable(controls, StoreError::is_unavailable, || worker.run_of(claimed))
        .await?
        .map_err(JobError::failed)?
        .ok_or_else(|| JobError::Config(format!("run {} no longer exists", claimed.run_pk)))?;
    let dag = when_reachable(controls, VersionError::is_unavailable, || {
        worker.versions.get(&run.dag_id, &run.version)
    })
    .await?
    .map_err(|e| match e {
        VersionError::Store(e) => JobError::failed(e),
        other => JobError::Config(other.to_string()),
    })?;
    let task = dag.tasks.get(&claimed.task_id).cloned().ok_or_else(|| {
        JobError::Config(format!("DAG version {} has no task `{}`", run.version, claimed.task_id))
    })?;
    let info = crate::versions::run_info(&run, &dag);
    let try_number = u32::try_from(claimed.try_number).unwrap_or(u32::MAX);
    let mut vars = template::context(&info, &task.id, try_number);
    if claimed.map_index >= 0 {
        let item = claimed.map_item.as_deref().and_then(|text| serde_json::from_str(text).ok());
        vars["item"] = item.unwrap_or(serde_json::Value::Null);
        vars["index"] = claimed.map_index.into();
    }
    if template::mentions(&task.config, "outputs") {
        let outputs = when_reachable(controls, StoreError::is_unavailable, || {
            tasks::outputs(worker.store.read(), run.pk)
        })
        .await?
        .map_err(JobError::failed)?;
        vars["outputs"] = serde_json::Value::Object(outputs);
    }
    if template::mentions(&task.config, "triggering_snapshots") {
        let triggers = when_reachable(controls, StoreError::is_unavailable, || {
            assets::triggers_of_run(worker.store.read(), run.pk)
        })
        .await?
        .map_err(JobError::failed)?;
        vars["triggering_snapshots"] = triggering_snapshots(&triggers);
    }
    let quoted = worker.versions.registry().quoted_fields(&task.kind);
    let config = template::render_config(&task.config, &vars, quoted).map_err(JobError::Config)?;
    Ok(Prepared { task, run, config })
}

/// Runs `read` until the database answers it. An outage is no fault of the task, so it costs
/// no try: the try waits for the database (the scheduler does not count the worker's silence
/// meanwhile), and gives up only when it is asked to stop.
async fn when_reachable<T, E, F: std::future::Future<Output = Result<T, E>>>(
    controls: &TryControls,
    unreachable: fn(&E) -> bool,
    read: impl FnMut() -> F,
) -> Result<Result<T, E>, JobError> {
    let mut stop = controls.cancellation.clone();
    match until_answered(read, unreachable, async move { stop.wait().await }).await {
        Err(e) if unreachable(&e) => {
            Err(JobError::Cancelled("stopped while waiting for the database".into()))
        }
        answer => Ok(answer),
    }
}

/// `{{ triggering_snapshots }}`: for each watched table (dataset), the snapshot ids (versions)
/// that triggered the run; an empty map for runs not made by data.
fn triggering_snapshots(triggers: &[RunTrigger]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for trigger in triggers {
        let version = match trigger.version.parse::<i64>() {
            Ok(id) if trigger.kind == AssetKind::Table => serde_json::Value::from(id),
            _ => serde_json::Value::from(trigger.version.clone()),
        };
        let entry = out.entry(trigger.name.clone()).or_insert_with(|| serde_json::json!([]));
        if let serde_json::Value::Array(versions) = entry {
            versions.push(version);
        }
    }
    serde_json::Value::Object(out)
}

async fn run_try(worker: &Worker, claimed: &ClaimedTask, controls: &TryControls) -> TaskOutcome {
    let (log, lines) = LogSink::channel();
    let flusher = crate::process::spawn_owned(flush_logs(
        worker.store.clone(),
        claimed.id,
        claimed.try_number,
        lines,
    ));
    let (result, retry_delay) = match prepare(worker, claimed, controls).await {
        Ok(prepared) => {
            let delay = prepared.task.retry_delay_after(claimed.try_number);
            (run_job(worker, claimed, prepared, log.clone(), controls).await, Some(delay))
        }
        Err(e) => (Err(e), None),
    };
    let outcome = match result {
        Ok(outputs) => TaskOutcome::success(outputs),
        Err(JobError::Cancelled(reason)) => {
            log.info(format!("task stopped: {reason}"));
            TaskOutcome::cancelled(reason, now_micros())
        }
        Err(JobError::Skipped(reason)) => {
            log.info(format!("task skipped: {reason}"));
            TaskOutcome::skipped(reason)
        }
        Err(e) => {
            log.info(format!("task failed: {e}"));
            let retry_delay = retry_delay.filter(|_| e.is_retryable());
            let exit_code = e.exit_code().map(i64::from);
            let mut outcome = TaskOutcome::failure(
                claimed.try_number,
                claimed.max_tries,
                retry_delay,
                e.to_string(),
                exit_code,
                now_micros(),
            );
            outcome.outputs = e.outputs().cloned().unwrap_or_default();
            outcome
        }
    };
    let mut outcome = outcome;
    outcome.lineage = controls.lineage.take();
    outcome.metrics = controls.metrics.take();
    drop(log);
    let _ = flusher.await;
    outcome
}

/// Runs the job on its own task (so a panic is a failed try, not a dead worker) under the
/// task's timeout. A job that times out is asked to stop, and dropped after [`STOP_GRACE`]
/// (which kills a shell command's process group).
async fn run_job(
    worker: &Worker,
    claimed: &ClaimedTask,
    prepared: Prepared,
    log: LogSink,
    controls: &TryControls,
) -> Result<Outputs, JobError> {
    let Prepared { task, run, config } = prepared;
    let ctx = JobContext {
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: task.id.clone(),
        try_number: u32::try_from(claimed.try_number).unwrap_or(u32::MAX),
        logical_date: from_micros(run.logical_date),
        log,
        warehouse: worker.options.warehouse.clone(),
        tables: worker.tables.clone(),
        cancellation: controls.cancellation.clone(),
        progress: controls.progress.clone(),
        lineage: controls.lineage.clone(),
        metrics: controls.metrics.clone(),
        kafka: worker.options.kafka.clone(),
    };
    let registry = worker.versions.registry().clone();
    let kind = task.kind.clone();
    // Owned: stopping this try (timeout, shutdown, taken over) drops the job.
    let mut job =
        crate::process::spawn_owned(async move { registry.run(&kind, config, ctx).await });
    let joined = match task.timeout {
        Some(limit) => match tokio::time::timeout(limit, &mut job).await {
            Ok(joined) => joined,
            Err(_) => {
                controls.canceller.trigger();
                let _ = tokio::time::timeout(STOP_GRACE, &mut job).await;
                return Err(JobError::Failed(format!(
                    "timed out after {}",
                    humantime::format_duration(limit)
                )));
            }
        },
        None => job.await,
    };
    match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(JobError::Failed("the job panicked".to_string())),
        Err(e) => Err(JobError::Failed(format!("the job was cancelled: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_try_stopped_while_waiting_for_the_database_is_cancelled() {
        let controls = TryControls::new();
        let stopper = controls.canceller.clone();
        let stop_soon = async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            stopper.trigger();
        };
        let unreachable = || {
            let e = sqlx::Error::Io(std::io::Error::other("connection reset by peer"));
            std::future::ready(Err::<(), _>(StoreError::Database(e)))
        };
        let read = when_reachable(&controls, StoreError::is_unavailable, unreachable);
        let (result, ()) = tokio::join!(read, stop_soon);
        assert!(matches!(result, Err(JobError::Cancelled(_))), "{result:?}");
    }
}
