//! Workers: claim queued task instances, run them, heartbeat, record results.
//!
//! A worker runs up to `slots` tries at once. It claims with one atomic statement, and records
//! the results of the tries that ended with the claim that refills their slots, in one
//! transaction (see `results`); each result with a guarded update, so a late result cannot
//! overwrite a newer try. It holds no transaction while a task runs, and heartbeats its running
//! tries so the scheduler can tell a dead worker from a slow task. A try the heartbeat
//! finds taken from it (presumed dead, or marked by hand) is stopped, processes and all: asked
//! first (its job sees the cancellation), dropped after a grace period. A try the heartbeat
//! finds claimed by this worker but unknown to it (the claim committed, its answer lost with
//! the connection) is run then. Each heartbeat also stores what the running jobs reported of
//! their progress.

mod execute;
mod logs;
mod outage;
mod results;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::config::Config;
use crate::jobs::{cancellation, Cancellation, Canceller, Lineage, Metrics, ProgressCell, Stream};
use crate::lake::tables::{CatalogConfig, TablesHandle};
use crate::lake::Warehouse;
use crate::process::{hostname, process_id, Shutdown};
use crate::store::{processes, runs, tasks};
use crate::store::{ClaimedTask, RunRow, Store, StoreError, TaskOutcome};
use crate::stream::Brokers;
use crate::time::now_micros;
use crate::versions::DagVersions;
use results::Results;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub slots: usize,
    pub queues: Vec<String>,
    pub heartbeat_interval: Duration,
    pub poll_interval: Duration,
    pub warehouse: Warehouse,
    /// The Iceberg catalog of the `iceberg` tasks.
    pub catalog: CatalogConfig,
    /// The Kafka cluster of streaming tasks that do not name their own.
    pub kafka: Option<Brokers>,
}

impl WorkerOptions {
    /// The table catalog these options name, opened on first use.
    pub fn tables(&self, store: &Store) -> TablesHandle {
        TablesHandle::new(store.clone(), self.warehouse.clone(), self.catalog.clone())
    }

    /// The options `config` asks for, on the already opened `warehouse`.
    pub fn from_config(config: &Config, warehouse: Warehouse) -> WorkerOptions {
        WorkerOptions {
            slots: config.worker.slots,
            queues: config.worker.queues.clone(),
            heartbeat_interval: config.worker.heartbeat_interval,
            poll_interval: config.worker.poll_interval,
            warehouse,
            catalog: config.catalog.clone(),
            // Checked when the configuration was loaded.
            kafka: Brokers::new(&config.kafka.brokers).ok(),
        }
    }
}

pub struct Worker {
    id: String,
    store: Store,
    versions: Arc<DagVersions>,
    options: WorkerOptions,
    /// Runs whose tasks this worker executed lately. What a try reads of its run (dates,
    /// params, DAG version) never changes, so it is read from the database once per run.
    runs: Mutex<HashMap<i64, Arc<RunRow>>>,
    /// The Iceberg catalog, shared by this worker's `iceberg` tasks.
    tables: TablesHandle,
}

/// Runs remembered at most; the cache is emptied when it grows past this.
const RUN_CACHE_LIMIT: usize = 4096;

impl Worker {
    pub fn new(store: Store, versions: Arc<DagVersions>, options: WorkerOptions) -> Worker {
        let tables = options.tables(&store);
        Worker {
            id: process_id("worker"),
            store,
            versions,
            options,
            runs: Mutex::default(),
            tables,
        }
    }

    /// The run a claimed task belongs to.
    async fn run_of(&self, task: &ClaimedTask) -> Result<Option<Arc<RunRow>>, StoreError> {
        if let Some(run) = self.runs.lock().unwrap().get(&task.run_pk) {
            return Ok(Some(run.clone()));
        }
        let Some(run) = runs::by_pk(self.store.read(), task.run_pk).await? else { return Ok(None) };
        let run = Arc::new(run);
        let mut runs = self.runs.lock().unwrap();
        if runs.len() >= RUN_CACHE_LIMIT {
            runs.clear();
        }
        runs.insert(task.run_pk, run.clone());
        Ok(Some(run))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Claims and runs tasks until shutdown. On shutdown, tries still running are asked to
    /// stop, given [`STOP_GRACE`], then dropped, and recorded as cancelled (retried at once).
    pub async fn run(self, mut shutdown: Shutdown) {
        let worker = Arc::new(self);
        let mut waiter = worker.store.wakeups().workers_waiter();
        let mut running: JoinSet<TaskOutcome> = JoinSet::new();
        let mut claimed: HashMap<tokio::task::Id, Running> = HashMap::new();
        let mut results = Results::default();
        // Tasks that drop a try some time after asking it to stop.
        let mut stoppers: JoinSet<()> = JoinSet::new();
        let mut heartbeat = tokio::time::interval(worker.options.heartbeat_interval);
        // Whether a try ended since the freed memory was last given back (done when idle).
        let mut worked = false;
        tracing::info!(id = %worker.id, slots = worker.options.slots, queues = ?worker.options.queues, "worker started");
        // The last claim found fewer queued tasks than it asked for, and no wakeup came
        // since: results are then recorded without a claim, which would only delay the
        // scheduler waiting for them (a chain's next task is queued after the result).
        let mut queue_empty = false;
        loop {
            let free = worker.options.slots.saturating_sub(running.len());
            let ask = if shutdown.is_requested() || queue_empty { 0 } else { free };
            if ask > 0 || !results.is_empty() {
                if let Some(tasks) = results.record_and_claim(&worker, ask).await {
                    if ask > 0 {
                        queue_empty = tasks.len() < ask;
                    }
                    for task in tasks {
                        start_try(&worker, task, &mut running, &mut claimed);
                    }
                }
            }
            let pause = results.backoff_left().map_or(worker.options.poll_interval, |left| {
                left.min(worker.options.poll_interval)
            });
            tokio::select! {
                _ = waiter.wait() => queue_empty = false,
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    // Every try that ended by now goes into the same write.
                    let mut done = Some(done);
                    while let Some(ended) = done.take().or_else(|| running.try_join_next_with_id()) {
                        if let Some((task, outcome)) = ended_try(&mut claimed, ended) {
                            results.push(task, outcome);
                        }
                    }
                    worked = true;
                }
                _ = heartbeat.tick() => {
                    if let Some(owned) = worker.heartbeat(&claimed).await {
                        worker.stop_taken_over(&claimed, &owned, &mut stoppers).await;
                        for task in worker.lost_claims(&claimed, &results, &owned).await {
                            start_try(&worker, task, &mut running, &mut claimed);
                        }
                    }
                    // Reap the stoppers that are done.
                    while stoppers.try_join_next().is_some() {}
                    if running.is_empty() && std::mem::take(&mut worked) {
                        let _ = crate::process::blocking(crate::process::release_free_memory).await;
                    }
                }
                _ = tokio::time::sleep(pause) => queue_empty = false,
                _ = shutdown.wait() => break,
            }
        }
        for Running { controls, .. } in claimed.values() {
            controls.canceller.trigger();
        }
        let _ = tokio::time::timeout(STOP_GRACE, async {
            while let Some(ended) = running.join_next_with_id().await {
                if let Some((task, outcome)) = ended_try(&mut claimed, ended) {
                    results.push(task, outcome);
                }
            }
        })
        .await;
        running.abort_all();
        for (_, Running { task, .. }) in claimed.drain() {
            let reason = "worker shut down while the task was running".to_string();
            results.push(task, TaskOutcome::cancelled(reason, now_micros()));
        }
        // One attempt: a result lost here leaves its try to be handed on as a dead worker's.
        results.record_last(&worker).await;
        let _ = processes::remove(worker.store.write(), &worker.id).await;
        tracing::info!(id = %worker.id, "worker stopped");
    }

    /// Heartbeats this process and its tries, and stores the progress they reported since the
    /// last heartbeat; returns the task instances still this worker's, or `None` if the
    /// database could not be reached.
    async fn heartbeat(&self, claimed: &HashMap<tokio::task::Id, Running>) -> Option<HashSet<i64>> {
        let now = now_micros();
        let beat = async {
            processes::heartbeat(self.store.write(), &self.id, "worker", &hostname(), now, None)
                .await?;
            for Running { task, controls, .. } in claimed.values() {
                if let Some((progress, at)) = controls.progress.take_unseen() {
                    let json = serde_json::to_string(&progress).unwrap_or_default();
                    tasks::record_progress(self.store.write(), task.id, task.try_number, &json, at)
                        .await?;
                }
            }
            tasks::heartbeat(self.store.write(), &self.id, now).await
        };
        match self.store.connectivity().observe(beat.await) {
            Ok(owned) => Some(owned.into_iter().collect()),
            Err(e) => {
                if !e.is_unavailable() {
                    tracing::warn!("heartbeat failed: {e}");
                }
                None
            }
        }
    }

    /// The tries the database says this worker runs (`owned`, from the heartbeat) that it
    /// neither runs nor holds a result of: claims whose answer was lost when the connection
    /// broke as they committed. Left alone they would stay running, heartbeated, forever; they
    /// are run now, as the try that was claimed.
    async fn lost_claims(
        &self,
        claimed: &HashMap<tokio::task::Id, Running>,
        results: &Results,
        owned: &HashSet<i64>,
    ) -> Vec<ClaimedTask> {
        let known: HashSet<i64> = claimed.values().map(|r| r.task.id).collect();
        let unknown: Vec<i64> =
            owned.iter().copied().filter(|id| !known.contains(id) && !results.holds(*id)).collect();
        if unknown.is_empty() {
            return Vec::new();
        }
        match tasks::running_on(self.store.read(), &self.id, &unknown).await {
            Ok(lost) => {
                for task in &lost {
                    tracing::warn!(dag = %task.dag_id, task = %task.task_id, try_number = task.try_number,
                        "this worker's claim of the try was committed but its answer was lost: running it now");
                }
                lost
            }
            Err(e) => {
                tracing::warn!("cannot read the tries this worker claimed without knowing: {e}");
                Vec::new()
            }
        }
    }

    /// Stops the tries that are no longer this worker's: the scheduler presumed it dead and
    /// handed them on (after the database was unreachable from here but not from there), or
    /// a user marked them by hand. Their results would be discarded; their commands must not
    /// run beside the retry. Each is asked to stop, and dropped after [`STOP_GRACE`].
    async fn stop_taken_over(
        &self,
        claimed: &HashMap<tokio::task::Id, Running>,
        owned: &HashSet<i64>,
        stoppers: &mut JoinSet<()>,
    ) {
        for Running { task, handle, controls } in claimed.values() {
            if owned.contains(&task.id) {
                continue;
            }
            let text = format!(
                "try {} is no longer this worker's (taken over, or marked by hand): stopping it",
                task.try_number
            );
            tracing::warn!(dag = %task.dag_id, task = %task.task_id, "{text}");
            controls.canceller.trigger();
            let handle = handle.clone();
            stoppers.spawn(async move {
                tokio::time::sleep(STOP_GRACE).await;
                handle.abort();
            });
            let line = crate::jobs::LogLine { at: now_micros(), stream: Stream::System, text };
            let _ =
                crate::store::logs::append(self.store.write(), task.id, task.try_number, &[line])
                    .await;
        }
    }
}

/// Runs a claimed try on its own task, remembering it among the running ones.
fn start_try(
    worker: &Arc<Worker>,
    task: ClaimedTask,
    running: &mut JoinSet<TaskOutcome>,
    claimed: &mut HashMap<tokio::task::Id, Running>,
) {
    let controls = TryControls::new();
    let handle = running.spawn(execute::execute(worker.clone(), task.clone(), controls.clone()));
    claimed.insert(handle.id(), Running { task, handle, controls });
}

/// The try of a `JoinSet` task that ended, and its outcome: the one it returned, or, if the
/// task was dropped (taken over, shutdown) or crashed, an outcome saying so.
fn ended_try(
    claimed: &mut HashMap<tokio::task::Id, Running>,
    ended: Result<(tokio::task::Id, TaskOutcome), tokio::task::JoinError>,
) -> Option<(ClaimedTask, TaskOutcome)> {
    let id = match &ended {
        Ok((id, _)) => *id,
        Err(e) => e.id(),
    };
    let Running { task, .. } = claimed.remove(&id)?;
    let outcome = match ended {
        Ok((_, outcome)) => outcome,
        Err(e) if e.is_cancelled() => {
            TaskOutcome::cancelled("the try was stopped".to_string(), now_micros())
        }
        Err(e) => {
            tracing::error!(dag = %task.dag_id, task = %task.task_id, "task execution crashed: {e}");
            let error = format!("the worker's execution of this try crashed: {e}");
            let (try_number, max_tries) = (task.try_number, task.max_tries);
            TaskOutcome::failure(
                try_number,
                max_tries,
                Some(Duration::ZERO),
                error,
                None,
                now_micros(),
            )
        }
    };
    Some((task, outcome))
}

/// How long a try asked to stop may take to end cleanly before it is dropped (which kills a
/// shell command's processes).
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// A try this worker is running.
struct Running {
    task: ClaimedTask,
    handle: tokio::task::AbortHandle,
    controls: TryControls,
}

/// What the worker and one running try share.
#[derive(Clone)]
struct TryControls {
    /// Asks the job to stop.
    canceller: Arc<Canceller>,
    cancellation: Cancellation,
    /// The job's latest progress report.
    progress: ProgressCell,
    /// What the job read and wrote.
    lineage: Lineage,
    /// What the job measured.
    metrics: Metrics,
}

impl TryControls {
    fn new() -> TryControls {
        let (canceller, cancellation) = cancellation();
        TryControls {
            canceller: Arc::new(canceller),
            cancellation,
            progress: ProgressCell::default(),
            lineage: Lineage::default(),
            metrics: Metrics::default(),
        }
    }
}
