//! The scheduler: turns DAG files, schedules and task results into work for the workers.
//!
//! Each pass (a *tick*) it: reloads the DAG folder when it changed (file-system notifications,
//! with a slow full scan as the safety net; only changed files are read and synced), creates the scheduled runs whose
//! data interval has ended, re-queues retries whose delay has passed, fails tries whose worker
//! went silent (counting only time the database was reachable, see [`liveness`]), starts
//! queued runs within `max_active_runs`, creates runs of DAGs whose watched tables and datasets
//! changed (see [`assets`]), records runs past their DAG's deadline (see [`deadline`]), for
//! each running run queues the tasks whose trigger rules allow it (see [`plan`]) and expands
//! the mapped ones into an instance per item (see [`mapping`]), and queues the notifications
//! of the runs it ends; at housekeeping it also deletes the runs `keep_runs` lets go and rolls
//! finished work up into `/metrics`' counters (see [`crate::store::finished`]). It keeps no state that matters across restarts: everything it decides
//! is written to the store with guarded updates, so a restarted scheduler, or two schedulers
//! at once, carry on without duplicating work. (What it saw of database outages is kept in
//! memory only: a scheduler restarted during an outage judges the heartbeats from before it on
//! wall time.)

mod assets;
pub mod control;
mod deadline;
mod liveness;
mod mapping;
pub mod plan;
pub mod trigger;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::dag::folder::{DagBag, LoadedFolder, Refresh};
use crate::dag::watch::FolderWatch;
use crate::dag::{Dag, RunRetention};
use crate::domain::{RunState, RunType, TaskState};
use crate::jobs::Stream;
use crate::lake::tables::TablesHandle;
use crate::notifications::queue;
use crate::process::{process_id, Shutdown};
use crate::schedule::{DataInterval, Timetable};
use crate::store::notifications::{self as store_notifications, NewNotification};
use crate::store::{dags, finished, logs, processes, runs, stats, tasks};
use crate::store::{DagRecord, RunRow, Store, StoreError, TaskOutcome, TaskStateRow};
use crate::time::{from_micros, to_micros, Micros};
use crate::versions::DagVersions;
use liveness::Liveness;
use trigger::{create_run, RunRequest, TriggerError};

/// How a scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Folder to load DAGs from; `None` schedules only runs that already exist.
    pub dags_folder: Option<PathBuf>,
    /// Whether to create runs from DAG schedules.
    pub create_scheduled_runs: bool,
    pub poll_interval: Duration,
    pub dag_refresh_interval: Duration,
    pub heartbeat_timeout: Duration,
    /// Pools and their slots, over all DAGs (from `lakeward.toml`).
    pub pools: BTreeMap<String, u32>,
    /// Most instances a mapped task may expand into.
    pub max_map_length: usize,
}

impl SchedulerOptions {
    pub fn from_config(config: &Config) -> SchedulerOptions {
        SchedulerOptions {
            dags_folder: Some(config.dags_folder.clone()),
            create_scheduled_runs: true,
            poll_interval: config.scheduler.poll_interval,
            dag_refresh_interval: config.scheduler.dag_refresh_interval,
            heartbeat_timeout: config.scheduler.heartbeat_timeout,
            pools: config.pools.clone(),
            max_map_length: config.scheduler.max_map_length,
        }
    }
}

/// Finished task instances added to `/metrics`' counters per housekeeping, at most.
const ROLL_UP_STEP: i64 = 20_000;

/// A process silent for this many heartbeat timeouts is forgotten (its row deleted); until
/// then it is listed as dead, which helps tell what happened.
const DEAD_PROCESS_RETENTION: u32 = 20;

/// With file-system notifications, how often the DAG folder is still scanned in full (they can
/// miss changes: some network file systems, an overflowing event queue).
const FOLDER_RESCAN_INTERVAL: Duration = Duration::from_secs(30);

/// How long a notified change may settle (an editor's save, a copy) before the folder is read.
const FOLDER_SETTLE: Duration = Duration::from_millis(50);

/// A pass longer than this is followed by a rest as long (see [`Scheduler::run`]).
const HEAVY_PASS: Duration = Duration::from_millis(25);

/// Most scheduled runs one DAG gets per tick, so a long catchup cannot stall the loop.
const MAX_NEW_RUNS_PER_TICK: usize = 64;

/// Which scheduled DAGs a pass creates runs for: calendar ones (cron, `@once`) at
/// housekeeping, continuous ones and those that run on data on every pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Only {
    Calendar,
    Continuous,
}

impl Only {
    /// The pass that creates `dag`'s runs; `None` for manual-only DAGs.
    fn pass_of(dag: &Dag) -> Option<Only> {
        if !dag.watches.is_empty() {
            return Some(Only::Continuous);
        }
        let timetable = dag.timetable()?;
        Some(if timetable.is_continuous() { Only::Continuous } else { Only::Calendar })
    }
}

pub struct Scheduler {
    id: String,
    store: Store,
    versions: Arc<DagVersions>,
    options: SchedulerOptions,
    /// The DAG folder as last loaded, and each file's stamp (so a scan reads only changes).
    bag: DagBag,
    folder: Option<LoadedFolder>,
    /// The folder as scanned, while its changes are not in the database yet.
    unsynced: Option<DagBag>,
    /// The DAGs of each pass that creates scheduled runs (see [`Only`]), from `bag`.
    by_pass: HashMap<Only, Vec<Arc<Dag>>>,
    /// Whether the database has been told the whole folder once (later syncs send changes).
    folder_synced: bool,
    /// Whether file-system notifications watch the folder; the scheduler then scans it when
    /// they say so (`folder_changed`) and every [`FOLDER_RESCAN_INTERVAL`].
    folder_watched: bool,
    folder_changed: bool,
    last_folder_scan: Option<Instant>,
    paused: HashSet<String>,
    /// Calendar DAGs: the version last planned and when its next run is due (`None`: never
    /// again), so housekeeping asks the database only about DAGs that are due.
    calendar_due: HashMap<String, (String, Option<Micros>)>,
    next_run_at: HashMap<String, Option<Micros>>,
    last_housekeeping: Option<Instant>,
    /// When the earliest pending retry becomes due, so the loop wakes for it.
    next_retry_at: Option<Micros>,
    /// When the earliest continuous DAG held back by its `min_interval` may run again, or the
    /// earliest cron tick of a DAG that runs on data.
    next_continuous_at: Option<Micros>,
    /// The catalog, to read which snapshots triggered a run on data; `None`: runs record the
    /// metadata files instead.
    tables: Option<TablesHandle>,
    /// The DAG versions whose watched assets are registered (`asset_watches`) already.
    watching: HashSet<(String, String)>,
    /// The slowest pass since the last heartbeat, reported with it (for `/metrics`).
    slowest_pass: Duration,
    /// Which workers' heartbeats count as silent, given this scheduler's contact with the
    /// database.
    liveness: Liveness,
}

impl Scheduler {
    pub fn new(store: Store, versions: Arc<DagVersions>, options: SchedulerOptions) -> Scheduler {
        let liveness = Liveness::new(options.heartbeat_timeout, options.poll_interval);
        Scheduler {
            id: process_id("scheduler"),
            store,
            versions,
            options,
            bag: DagBag::default(),
            folder: None,
            unsynced: None,
            by_pass: HashMap::new(),
            folder_synced: false,
            folder_watched: false,
            folder_changed: false,
            last_folder_scan: None,
            paused: HashSet::new(),
            calendar_due: HashMap::new(),
            next_run_at: HashMap::new(),
            last_housekeeping: None,
            next_retry_at: None,
            next_continuous_at: None,
            slowest_pass: Duration::ZERO,
            liveness,
            tables: None,
            watching: HashSet::new(),
        }
    }

    /// Reads triggering snapshots through `tables` (see [`assets`]).
    pub fn with_tables(mut self, tables: TablesHandle) -> Scheduler {
        self.tables = Some(tables);
        self
    }

    /// Runs ticks until shutdown: on every wake-up, and at least every poll interval.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut waiter = self.store.wakeups().scheduler_waiter();
        let watch =
            self.options.dags_folder.as_deref().and_then(|folder| {
                match FolderWatch::start(folder) {
                    Ok(watch) => Some(watch),
                    Err(e) => {
                        tracing::warn!(
                            folder = %folder.display(),
                            "DAG folder not watched ({e}): it is scanned every {}",
                            humantime::format_duration(self.options.dag_refresh_interval)
                        );
                        None
                    }
                }
            });
        self.folder_watched = watch.is_some();
        let folder_changed = || async {
            match &watch {
                Some(watch) => watch.changed().await,
                None => std::future::pending().await,
            }
        };
        tracing::info!(id = %self.id, "scheduler started");
        loop {
            let started = Instant::now();
            let started_at = crate::time::now_micros();
            match self.tick(Utc::now()).await {
                Ok(()) => self.liveness.pass_succeeded(crate::time::now_micros()),
                Err(e) if e.is_unavailable() => {
                    self.store.connectivity().failed(&e);
                    self.liveness.pass_failed(started_at);
                }
                Err(e) => tracing::error!("scheduler pass failed, retrying: {e}"),
            }
            let took = started.elapsed();
            self.slowest_pass = self.slowest_pass.max(took);
            let next_due = match (self.next_retry_at, self.next_continuous_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let until_retry = next_due.map(|at| {
                Duration::from_micros(u64::try_from(at - crate::time::now_micros()).unwrap_or(0))
            });
            let pause = until_retry
                .map_or(self.options.poll_interval, |d| d.min(self.options.poll_interval));
            tokio::select! {
                _ = waiter.wait() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = folder_changed() => {
                    tokio::time::sleep(FOLDER_SETTLE).await;
                    self.folder_changed = true;
                }
                _ = shutdown.wait() => break,
            }
            // A heavy pass (thousands of runs in flight) is followed by as long a rest, so the
            // scheduler takes at most half of a core from the workers and each pass handles
            // what a whole pass-length of finished tasks brought; light passes go on at once.
            if took > HEAVY_PASS {
                tokio::select! {
                    _ = tokio::time::sleep(took.saturating_sub(started.elapsed() - took)) => {}
                    _ = shutdown.wait() => break,
                }
            }
        }
        let _ = processes::remove(self.store.write(), &self.id).await;
        tracing::info!(id = %self.id, "scheduler stopped");
    }

    /// One scheduling pass at time `now`.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        // A changed DAG folder is read at once, and housekeeping then plans its new DAGs.
        let due = self.folder_changed
            || self
                .last_housekeeping
                .is_none_or(|t| t.elapsed() >= self.options.dag_refresh_interval);
        if due {
            self.last_housekeeping = Some(Instant::now());
            self.housekeeping(now).await?;
        }
        let queued = self.advance_runs(to_micros(now)).await?;
        if queued > 0 {
            self.store.wake_workers().await;
        }
        if self.options.create_scheduled_runs {
            // A continuous DAG's next run starts as soon as the previous one ended (perhaps in
            // the pass just made): checked on every pass, not only at housekeeping. Creating
            // a run wakes this loop again, whose next pass starts it. (The clock read now, as
            // the pass may have taken a while; never before the pass's own time.)
            self.create_scheduled_runs(Utc::now().max(now), Only::Continuous).await?;
        }
        Ok(())
    }

    /// The slower duties: DAG folder, pause flags, schedules, dead workers, own heartbeat.
    async fn housekeeping(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let micros = to_micros(now);
        let slowest = i64::try_from(std::mem::take(&mut self.slowest_pass).as_micros()).ok();
        processes::heartbeat(
            self.store.write(),
            &self.id,
            "scheduler",
            &crate::process::hostname(),
            micros,
            slowest,
        )
        .await?;
        // A write went through: whatever outage this process saw is over.
        self.store.connectivity().succeeded();
        if let Some(folder) = self.options.dags_folder.clone() {
            let rescan = !self.folder_watched
                || self.last_folder_scan.is_none_or(|t| t.elapsed() >= FOLDER_RESCAN_INTERVAL);
            if self.folder_changed || rescan {
                self.reload_folder(folder).await?;
            }
        }
        self.paused = dags::paused(self.store.read()).await?.into_iter().collect();
        if self.options.create_scheduled_runs {
            self.create_scheduled_runs(now, Only::Calendar).await?;
            self.forget_old_runs(now).await?;
        }
        let retention = self.options.heartbeat_timeout.saturating_mul(DEAD_PROCESS_RETENTION);
        let retention = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        processes::forget_silent(self.store.write(), micros.saturating_sub(retention)).await?;
        // `/metrics` counts finished work from these counters; a bounded step per pass, so a
        // long history (after an upgrade) is caught up without a long pass.
        let upto = micros.saturating_sub(finished::LATE_COMMIT_MARGIN);
        finished::roll_up(self.store.write(), upto, ROLL_UP_STEP).await?;
        self.reap_silent_workers(crate::time::now_micros()).await
    }

    /// Scans the DAG folder (reading only new and changed files) and tells the database what
    /// changed: everything on the first scan, then the changed and removed DAGs.
    async fn reload_folder(&mut self, folder: PathBuf) -> Result<(), StoreError> {
        self.folder_changed = false;
        let registry = self.versions.registry().clone();
        let mut loaded = self.folder.take().unwrap_or_else(|| LoadedFolder::new(&folder));
        let scanned = crate::process::blocking(move || {
            let refresh = loaded.refresh(&registry);
            (loaded, refresh)
        })
        .await;
        // A panic while compiling is a bug; the next scan starts afresh.
        let Ok((loaded, Refresh { read, bag })) = scanned else { return Ok(()) };
        self.folder = Some(loaded);
        self.last_folder_scan = Some(Instant::now());
        if bag.is_some() {
            self.unsynced = bag;
        }
        // What changed and has not reached the database yet (if a sync fails, the next scan
        // tries again, even when the folder has not changed since).
        let Some(bag) = self.unsynced.clone() else { return Ok(()) };
        let changed: Vec<DagRecord> = bag
            .dags
            .values()
            .filter(|dag| match self.bag.dags.get(&dag.id) {
                Some(old) => old.version != dag.version || old.file != dag.file,
                None => true,
            })
            .map(|dag| DagRecord::from(dag.as_ref()))
            .collect();
        let removed: Vec<String> =
            self.bag.dags.keys().filter(|id| !bag.dags.contains_key(*id)).cloned().collect();
        if self.folder_synced
            && changed.is_empty()
            && removed.is_empty()
            && bag.errors == self.bag.errors
        {
            self.unsynced = None;
            return Ok(());
        }
        let errors: Vec<(String, String)> = bag
            .errors
            .iter()
            .map(|(file, diags)| {
                (file.clone(), diags.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
            })
            .collect();
        let now = crate::time::now_micros();
        if self.folder_synced {
            dags::sync_changes(self.store.write(), &changed, &removed, &errors, now).await?;
        } else {
            let records: Vec<DagRecord> =
                bag.dags.values().map(|d| DagRecord::from(d.as_ref())).collect();
            dags::sync(self.store.write(), &records, &errors, now).await?;
        }
        for record in &changed {
            if let Some(dag) = bag.dags.get(&record.dag_id) {
                self.versions.insert(dag.clone());
            }
        }
        for (file, message) in &errors {
            if self.bag.errors.get(file) != bag.errors.get(file) || !self.folder_synced {
                tracing::warn!("DAG import error:\n{message}");
            }
        }
        tracing::info!(
            dags = bag.dags.len(),
            changed = changed.len(),
            removed = removed.len(),
            files_read = read,
            import_errors = errors.len(),
            "DAG folder loaded"
        );
        self.bag = bag;
        self.unsynced = None;
        self.folder_synced = true;
        self.sort_by_pass();
        Ok(())
    }

    async fn create_scheduled_runs(
        &mut self,
        now: DateTime<Utc>,
        only: Only,
    ) -> Result<(), StoreError> {
        let dags = self.by_pass.get(&only).cloned().unwrap_or_default();
        if only == Only::Continuous {
            self.next_continuous_at = None;
        }
        for dag in dags {
            let next_at = if self.paused.contains(&dag.id) {
                None
            } else if !dag.watches.is_empty() {
                self.watch(&dag, now).await?;
                assets::create_data_run(&self.store, self.tables.as_ref(), &dag, now).await?
            } else if let Some(timetable) = dag.timetable() {
                self.plan_calendar(&dag, &timetable, now).await?
            } else {
                None
            };
            if let Some(at) = next_at.filter(|_| only == Only::Continuous) {
                self.next_continuous_at = Some(self.next_continuous_at.map_or(at, |n| n.min(at)));
            }
            if self.next_run_at.get(&dag.id) != Some(&next_at) {
                dags::set_next_run(self.store.write(), &dag.id, next_at).await?;
                self.next_run_at.insert(dag.id.clone(), next_at);
            }
        }
        Ok(())
    }

    /// Sorts the loaded DAGs by the pass that creates their runs, so a pass looks only at its
    /// own (most DAGs of a large folder are calendar or manual ones).
    fn sort_by_pass(&mut self) {
        self.by_pass.clear();
        for dag in self.bag.dags.values() {
            if let Some(pass) = Only::pass_of(dag) {
                self.by_pass.entry(pass).or_default().push(dag.clone());
            }
        }
    }

    /// Registers the assets `dag` watches, once per DAG version and process: changes from now
    /// on trigger it.
    async fn watch(&mut self, dag: &Dag, now: DateTime<Utc>) -> Result<(), StoreError> {
        let key = (dag.id.clone(), dag.version.clone());
        if self.watching.contains(&key) {
            return Ok(());
        }
        for asset in &dag.watches {
            crate::store::assets::watch(self.store.write(), &dag.id, asset, to_micros(now)).await?;
        }
        self.watching.insert(key);
        Ok(())
    }

    /// Deletes the finished runs each DAG's `keep_runs` no longer keeps, a batch per pass.
    async fn forget_old_runs(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        const BATCH: i64 = 1_000;
        for dag in self.bag.dags.values() {
            let pks = match dag.keep_runs {
                None => continue,
                Some(RunRetention::Count(keep)) => {
                    let keep = i64::from(keep);
                    // Finding the runs beyond the newest `keep` reads `keep` index entries, so
                    // it waits until the excess is worth it: a tenth of `keep`, at most a batch.
                    let slack = (keep / 10).min(BATCH);
                    if stats::count_runs(self.store.read(), &dag.id).await? <= keep + slack {
                        continue;
                    }
                    runs::finished_beyond_newest(self.store.read(), &dag.id, keep, BATCH).await?
                }
                Some(RunRetention::Age(age)) => {
                    let age = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
                    let cutoff = to_micros(now).saturating_sub(age);
                    runs::finished_of_dag_before(self.store.read(), &dag.id, cutoff, BATCH).await?
                }
            };
            if !pks.is_empty() {
                runs::delete(self.store.write(), &pks).await?;
                tracing::debug!(dag = %dag.id, runs = pks.len(), "old runs deleted (keep_runs)");
            }
        }
        let before = to_micros(now).saturating_sub(crate::store::assets::LATE_COMMIT_MARGIN);
        let forgotten = crate::store::assets::forget_consumed(self.store.write(), before).await?;
        if forgotten > 0 {
            tracing::debug!(changes = forgotten, "consumed data changes deleted");
        }
        Ok(())
    }

    /// [`Scheduler::create_due_runs`] for a calendar DAG, skipped (without asking the
    /// database) while the DAG's version is the one last planned and its next run is not due.
    async fn plan_calendar(
        &mut self,
        dag: &Dag,
        timetable: &Timetable<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Micros>, StoreError> {
        if !timetable.is_continuous() {
            if let Some((version, due)) = self.calendar_due.get(&dag.id) {
                if *version == dag.version && due.is_none_or(|at| to_micros(now) < at) {
                    return Ok(*due);
                }
            }
        }
        let due = self.create_due_runs(dag, timetable, now).await?;
        if !timetable.is_continuous() {
            self.calendar_due.insert(dag.id.clone(), (dag.version.clone(), due));
        }
        Ok(due)
    }

    /// Creates the DAG's due scheduled runs; returns when the next one will be due.
    async fn create_due_runs(
        &self,
        dag: &Dag,
        timetable: &Timetable<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Micros>, StoreError> {
        // One run at a time: the next is due once this one has ended.
        if timetable.is_continuous() && runs::has_unfinished(self.store.read(), &dag.id).await? {
            return Ok(None);
        }
        let last = runs::last_scheduled_interval(self.store.read(), &dag.id).await?;
        let mut last = last
            .map(|(start, end)| DataInterval { start: from_micros(start), end: from_micros(end) });
        for _ in 0..MAX_NEW_RUNS_PER_TICK {
            let Some(interval) = timetable.next_interval(last, now) else { return Ok(None) };
            if !interval.is_due(now) {
                return Ok(Some(to_micros(interval.end)));
            }
            let request = RunRequest {
                run_type: RunType::Scheduled,
                logical_date: timetable.logical_date(&interval),
                interval: Some(interval),
                params: Default::default(),
                queue: None,
                triggered_by: None,
            };
            match create_run(&self.store, dag, request).await {
                Ok(run) => {
                    tracing::info!(dag = %dag.id, run = %run.run_id, "scheduled run created")
                }
                Err(TriggerError::Duplicate { .. }) => {}
                Err(TriggerError::Store(e)) => return Err(e),
                Err(e) => tracing::error!(dag = %dag.id, "cannot create scheduled run: {e}"),
            }
            if timetable.is_continuous() {
                return Ok(None);
            }
            last = Some(interval);
        }
        Ok(Some(to_micros(now)))
    }

    /// Fails the tries of workers that stopped heartbeating; they are retried per their policy.
    /// Silence is measured on the time the database could receive heartbeats (see [`liveness`]).
    async fn reap_silent_workers(&self, now: Micros) -> Result<(), StoreError> {
        let candidates =
            tasks::stale(self.store.read(), self.liveness.candidates_before(now)).await?;
        for ti in candidates {
            let heartbeat = ti.heartbeat_at.or(ti.started_at).unwrap_or_default();
            if !self.liveness.is_silent(heartbeat, now) {
                continue;
            }
            let run = runs::by_pk(self.store.read(), ti.run_pk).await?;
            let task = match &run {
                Some(run) => match self.versions.get(&run.dag_id, &run.version).await {
                    Ok(dag) => dag.tasks.get(&ti.task_id).cloned(),
                    Err(_) => None,
                },
                None => None,
            };
            let retry_delay = task.as_ref().map(|t| t.retry_delay_after(ti.try_number));
            let worker = ti.worker_id.clone().unwrap_or_default();
            let error =
                format!("worker {worker} stopped heartbeating; try {} abandoned", ti.try_number);
            let mut outcome = TaskOutcome::failure(
                ti.try_number,
                ti.max_tries,
                retry_delay,
                error.clone(),
                None,
                now,
            );
            if let (Some(task), Some(run)) = (&task, &run) {
                let at = from_micros(now);
                let name = ti.display_id();
                outcome.notifications =
                    queue::for_try(task, &name, run, ti.try_number, ti.max_tries, &outcome, at);
            }
            // Applies only if no heartbeat arrived since the one judged.
            if tasks::fail_stale(self.store.write(), &ti, &outcome, heartbeat + 1, now).await? {
                tracing::warn!(dag = %ti.dag_id, task = %ti.task_id, "{error}");
                let line = crate::jobs::LogLine { at: now, stream: Stream::System, text: error };
                logs::append(self.store.write(), ti.id, ti.try_number, &[line]).await?;
            }
        }
        Ok(())
    }

    /// Starts queued runs that fit `max_active_runs` and plans every running run.
    /// Returns how many task instances were queued.
    async fn advance_runs(&mut self, now: Micros) -> Result<u64, StoreError> {
        let runs = runs::active(self.store.read()).await?;
        let mut active: HashMap<String, u32> = HashMap::new();
        for run in runs.iter().filter(|r| r.state == RunState::Running) {
            *active.entry(run.dag_id.clone()).or_default() += 1;
        }
        let mut running: Vec<(RunRow, Arc<Dag>)> = Vec::new();
        for mut run in runs {
            let dag = match self.versions.get(&run.dag_id, &run.version).await {
                Ok(dag) => dag,
                Err(e) => {
                    tracing::error!(dag = %run.dag_id, run = %run.run_id, "failing run: {e}");
                    runs::set_state(self.store.write(), run.pk, run.state, RunState::Failed, now)
                        .await?;
                    continue;
                }
            };
            if let Some(limit) = dag.deadline {
                deadline::check(&self.store, &dag, &run, limit, now).await?;
            }
            if run.state == RunState::Queued {
                let count = active.entry(run.dag_id.clone()).or_default();
                if *count >= dag.max_active_runs {
                    continue;
                }
                if !runs::set_state(
                    self.store.write(),
                    run.pk,
                    RunState::Queued,
                    RunState::Running,
                    now,
                )
                .await?
                {
                    continue;
                }
                *count += 1;
                run.state = RunState::Running;
            }
            running.push((run, dag));
        }
        if running.is_empty() {
            return Ok(0);
        }
        let pks: Vec<i64> = running.iter().map(|(r, _)| r.pk).collect();
        let mut by_run: BTreeMap<i64, Vec<TaskStateRow>> = BTreeMap::new();
        for ti in tasks::states_of_runs(self.store.read(), &pks).await? {
            by_run.entry(ti.run_pk).or_default().push(ti);
        }
        let mut slots = TaskSlots::new(&running, &by_run, &self.options.pools);
        let (mut to_queue, mut upstream_failed, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
        let (mut retries, mut unschedulable) = (Vec::new(), Vec::new());
        self.next_retry_at = None;
        let mut finished = Vec::new();
        let mut to_expand = Vec::new();
        for (run, dag) in &running {
            let tis = by_run.remove(&run.pk).unwrap_or_default();
            for ti in tis.iter().filter(|t| t.state == TaskState::UpForRetry) {
                match ti.next_try_at {
                    Some(at) if at > now => {
                        self.next_retry_at =
                            Some(self.next_retry_at.map_or(at, |next| next.min(at)));
                    }
                    _ => match slots.take(dag, &ti.task_id) {
                        Slot::Granted => retries.push(ti.id),
                        Slot::Full => {}
                        Slot::UnknownPool(error) => unschedulable.push((ti.id, error)),
                    },
                }
            }
            let mut states: HashMap<&str, Vec<TaskState>> = HashMap::new();
            let mut waiting: HashMap<&str, Vec<&TaskStateRow>> = HashMap::new();
            for ti in &tis {
                states.entry(ti.task_id.as_str()).or_default().push(ti.state);
                if ti.state == TaskState::Scheduled {
                    waiting.entry(ti.task_id.as_str()).or_default().push(ti);
                }
            }
            let plan = plan::plan_run(dag, &states);
            let waiting_of = |task: &String| waiting.get(task.as_str()).into_iter().flatten();
            for task in &plan.queue {
                for ti in waiting_of(task) {
                    let mapped = dag.tasks.get(task).is_some_and(|t| t.for_each.is_some());
                    if mapped && ti.map_index < 0 {
                        to_expand.push((run, dag, task.clone(), ti.id));
                        continue;
                    }
                    match slots.take(dag, task) {
                        Slot::Granted => to_queue.push(ti.id),
                        Slot::Full => {}
                        Slot::UnknownPool(error) => unschedulable.push((ti.id, error)),
                    }
                }
            }
            upstream_failed.extend(plan.upstream_failed.iter().flat_map(waiting_of).map(|t| t.id));
            skipped.extend(plan.skipped.iter().flat_map(waiting_of).map(|t| t.id));
            if let Some(state) = plan.finished {
                let mut failed: Vec<String> = Vec::new();
                for ti in tis.iter().filter(|t| t.state == TaskState::Failed) {
                    if !failed.contains(&ti.task_id) {
                        failed.push(ti.task_id.clone());
                    }
                }
                finished.push((run, dag, state, failed));
            }
        }
        self.expand_mapped(to_expand, &mut skipped, &mut unschedulable).await?;
        for (id, error) in &unschedulable {
            tracing::error!("{error}");
            tasks::fail_unschedulable(self.store.write(), *id, error, now).await?;
        }
        tasks::settle(self.store.write(), &upstream_failed, TaskState::UpstreamFailed, now).await?;
        tasks::settle(self.store.write(), &skipped, TaskState::Skipped, now).await?;
        let queued = tasks::queue(self.store.write(), &to_queue, now).await?
            + tasks::requeue_retries(self.store.write(), &retries, now).await?;
        for (run, dag, state, failed_tasks) in finished {
            let notifications = queue::for_run_end(dag, run, state, failed_tasks, from_micros(now));
            if self.end_run(run, state, &notifications, now).await? {
                tracing::info!(dag = %run.dag_id, run = %run.run_id, "run finished: {state}");
            }
        }
        Ok(queued)
    }

    /// Expands the mapped tasks due to run (`(run, DAG, task, instance id)`, see [`mapping`]):
    /// one whose list is empty goes to `skipped`, one without a usable list to `unschedulable`.
    async fn expand_mapped(
        &self,
        due: Vec<(&RunRow, &Arc<Dag>, String, i64)>,
        skipped: &mut Vec<i64>,
        unschedulable: &mut Vec<(i64, String)>,
    ) -> Result<(), StoreError> {
        for (run, dag, task_id, id) in due {
            let Some(task) = dag.tasks.get(&task_id) else { continue };
            let max = self.options.max_map_length;
            match mapping::expansion(&self.store, dag, run, task, max).await? {
                mapping::Expansion::Items(items) => {
                    if tasks::expand(self.store.write(), id, &items).await? {
                        tracing::info!(dag = %run.dag_id, run = %run.run_id, task = %task_id,
                            "mapped over {} items", items.len());
                        self.store.wake_scheduler().await;
                    }
                }
                mapping::Expansion::Empty => skipped.push(id),
                mapping::Expansion::Invalid(error) => {
                    let error = format!("task `{task_id}` of DAG `{}`: {error}", dag.id);
                    unschedulable.push((id, error));
                }
            }
        }
        Ok(())
    }

    /// Moves a running run to its final `state`, queueing `notifications` with the change.
    /// Returns whether it applied (another scheduler may have ended the run first).
    async fn end_run(
        &self,
        run: &RunRow,
        state: RunState,
        notifications: &[NewNotification],
        now: Micros,
    ) -> Result<bool, StoreError> {
        if notifications.is_empty() {
            return runs::set_state(self.store.write(), run.pk, RunState::Running, state, now)
                .await;
        }
        let mut tx = self.store.begin().await?;
        let ended = runs::set_state(&mut *tx, run.pk, RunState::Running, state, now).await?;
        if ended {
            store_notifications::enqueue(&mut tx, notifications, now).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }
}

/// Whether a task may be queued now.
enum Slot {
    Granted,
    /// Its DAG's `max_active_tasks` or its pool is used up for now.
    Full,
    /// It names a pool `lakeward.toml` does not define: it can never run.
    UnknownPool(String),
}

/// What is left, in this pass, of each DAG's `max_active_tasks` and of each pool's slots.
struct TaskSlots {
    dag_left: HashMap<String, i64>,
    pool_left: HashMap<String, i64>,
}

impl TaskSlots {
    fn new(
        running: &[(RunRow, Arc<Dag>)],
        tasks: &BTreeMap<i64, Vec<TaskStateRow>>,
        pools: &BTreeMap<String, u32>,
    ) -> TaskSlots {
        let mut dag_left: HashMap<String, i64> = running
            .iter()
            .filter_map(|(_, dag)| dag.max_active_tasks.map(|m| (dag.id.clone(), i64::from(m))))
            .collect();
        let mut pool_left: HashMap<String, i64> =
            pools.iter().map(|(name, slots)| (name.clone(), i64::from(*slots))).collect();
        for (run, dag) in running {
            let busy = tasks
                .get(&run.pk)
                .into_iter()
                .flatten()
                .filter(|t| matches!(t.state, TaskState::Queued | TaskState::Running));
            for ti in busy {
                if let Some(left) = dag_left.get_mut(&dag.id) {
                    *left -= 1;
                }
                let pool = dag.tasks.get(&ti.task_id).and_then(|t| t.pool.as_ref());
                if let Some(left) = pool.and_then(|p| pool_left.get_mut(p)) {
                    *left -= 1;
                }
            }
        }
        TaskSlots { dag_left, pool_left }
    }

    /// Takes a slot of the task's DAG and pool, if both have one left.
    fn take(&mut self, dag: &Dag, task_id: &str) -> Slot {
        let pool = dag.tasks.get(task_id).and_then(|t| t.pool.as_deref());
        if let Some(pool) = pool {
            if !self.pool_left.contains_key(pool) {
                return Slot::UnknownPool(format!(
                    "task `{task_id}` of DAG `{}` uses pool `{pool}`, which lakeward.toml does not \
                     define (add it under [pools])",
                    dag.id
                ));
            }
        }
        let dag_ok = self.dag_left.get(&dag.id).is_none_or(|left| *left > 0);
        let pool_ok = pool.is_none_or(|p| self.pool_left[p] > 0);
        if !(dag_ok && pool_ok) {
            return Slot::Full;
        }
        if let Some(left) = self.dag_left.get_mut(&dag.id) {
            *left -= 1;
        }
        if let Some(left) = pool.and_then(|p| self.pool_left.get_mut(p)) {
            *left -= 1;
        }
        Slot::Granted
    }
}
