//! Task instances: the scheduler's transitions, the workers' claims and results.
//!
//! Every transition is a guarded UPDATE (`… WHERE state = <expected>`), so two schedulers, or a
//! worker presumed dead and its replacement, can never both apply the same change.
//!
//! Every function takes the executor it runs on (see [`super::runs`]).

use sqlx::FromRow;
use sqlx::{Acquire, Any, Executor};

use super::columns::JsonObject;
use super::model::TASK_COLUMNS;
use super::{placeholders, Backend, Result, TaskInstanceRow};
use crate::domain::{LineageRecord, MetricSample, TaskState};
use crate::time::Micros;

/// A task instance a worker has just claimed: it is `running`, owned by that worker.
#[derive(Debug, Clone, FromRow)]
pub struct ClaimedTask {
    pub id: i64,
    pub run_pk: i64,
    pub dag_id: String,
    pub task_id: String,
    /// The number of this try, starting at 1.
    pub try_number: i64,
    pub max_tries: i64,
    /// The instance of a mapped task (from 0), or -1.
    pub map_index: i64,
    /// A mapped instance's item, as JSON.
    pub map_item: Option<String>,
}

/// What the scheduler needs to know of a task instance to plan its run.
#[derive(Debug, Clone, FromRow)]
pub struct TaskStateRow {
    pub id: i64,
    pub run_pk: i64,
    pub task_id: String,
    pub state: TaskState,
    pub next_try_at: Option<Micros>,
    pub map_index: i64,
}

/// How a try ended.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    /// `success`, `skipped`, `failed` or `up_for_retry`.
    pub state: TaskState,
    pub next_try_at: Option<Micros>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// The try was stopped, not failed: it is recorded as `cancelled`.
    pub cancelled: bool,
    /// The dataset versions and table snapshots the try read and wrote.
    pub lineage: Vec<LineageRecord>,
    /// Metrics the job reported.
    pub metrics: Vec<MetricSample>,
    /// Messages to queue if this outcome is recorded (the task's `on_*` channels).
    pub notifications: Vec<super::notifications::NewNotification>,
}

/// Ids per `IN (…)` list.
const ID_CHUNK: usize = 500;

/// The condition of the `task_instances_live` partial index, which queries on running tries
/// repeat before their own: SQLite uses a partial index only when a query's terms contain the
/// index's condition (`state = 'running'` alone would scan the whole history).
const LIVE: &str = "state IN ('running', 'up_for_retry')";

/// Task instances of the given runs.
pub async fn of_runs(
    db: impl Acquire<'_, Database = Any>,
    run_pks: &[i64],
) -> Result<Vec<TaskInstanceRow>> {
    of_runs_as(db, TASK_COLUMNS, run_pks).await
}

/// The instance `map_index` (-1 for a task that is not mapped) of task `task_id` in run
/// `run_pk`.
pub async fn get(
    db: impl Executor<'_, Database = Any>,
    run_pk: i64,
    task_id: &str,
    map_index: i64,
) -> Result<Option<TaskInstanceRow>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM task_instances WHERE run_pk = $1 AND task_id = $2 \
         AND map_index = $3"
    );
    Ok(sqlx::query_as(&sql).bind(run_pk).bind(task_id).bind(map_index).fetch_optional(db).await?)
}

/// The instance named `name` in run `run_pk`: a task id, or `task[3]` for an instance of a
/// mapped task (as [`TaskInstanceRow::display_id`] writes it).
pub async fn get_named(
    db: impl Executor<'_, Database = Any>,
    run_pk: i64,
    name: &str,
) -> Result<Option<TaskInstanceRow>> {
    match super::model::parse_display_id(name) {
        Some((task_id, map_index)) => get(db, run_pk, task_id, map_index).await,
        None => Ok(None),
    }
}

/// The published outputs of a run's task instances, by task id (tasks without outputs
/// are left out). A mapped task's are a list, one entry per instance in index order (`null`
/// for an instance that published nothing).
pub async fn outputs(
    db: impl Executor<'_, Database = Any>,
    run_pk: i64,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    use serde_json::Value;
    #[derive(FromRow)]
    struct Outputs {
        task_id: String,
        map_index: i64,
        #[sqlx(try_from = "JsonObject")]
        outputs: serde_json::Map<String, Value>,
    }
    let rows: Vec<Outputs> = sqlx::query_as(
        "SELECT task_id, map_index, outputs FROM task_instances \
         WHERE run_pk = $1 AND (outputs IS NOT NULL OR map_index >= 0) ORDER BY task_id, map_index",
    )
    .bind(run_pk)
    .fetch_all(db)
    .await?;
    let mut all = serde_json::Map::new();
    for row in rows {
        let outputs = (!row.outputs.is_empty()).then_some(Value::Object(row.outputs));
        if row.map_index < 0 {
            all.extend(outputs.map(|o| (row.task_id, o)));
            continue;
        }
        let list = all.entry(row.task_id).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.push(outputs.unwrap_or(Value::Null));
        }
    }
    Ok(all)
}

/// Expands mapped task instance `id` (still `scheduled`, not expanded) into one instance per
/// item (JSON texts): it becomes instance 0 and the others are created beside it. Returns
/// false if it had been expanded already (by another scheduler).
pub async fn expand(
    db: impl Acquire<'_, Database = Any>,
    id: i64,
    items: &[String],
) -> Result<bool> {
    let Some((first, rest)) = items.split_first() else { return Ok(false) };
    let mut tx = db.begin().await?;
    let expanded = sqlx::query_as::<_, (i64, String, String, String, i64)>(
        "UPDATE task_instances SET map_index = 0, map_item = $1 \
         WHERE id = $2 AND map_index = -1 AND state = 'scheduled' \
         RETURNING run_pk, dag_id, task_id, queue, max_tries",
    )
    .bind(first)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((run_pk, dag_id, task_id, queue, max_tries)) = expanded else {
        return Ok(false);
    };
    let numbered: Vec<(i64, &String)> = (1..).zip(rest).collect();
    for chunk in numbered.chunks(ID_CHUNK / 5) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, $2, $3, $4, $5, 'scheduled', ${}, ${})", 6 + 2 * i, 7 + 2 * i))
            .collect();
        let sql = format!(
            "INSERT INTO task_instances (run_pk, dag_id, task_id, queue, max_tries, state, \
             map_index, map_item) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(run_pk)
            .bind(&dag_id)
            .bind(&task_id)
            .bind(&queue)
            .bind(max_tries);
        for (index, item) in chunk {
            query = query.bind(*index).bind(*item);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// `scheduled` → `queued` for the given ids; returns how many moved.
pub async fn queue(db: impl Acquire<'_, Database = Any>, ids: &[i64], now: Micros) -> Result<u64> {
    transition(db, ids, TaskState::Scheduled, TaskState::Queued, Stamp::QueuedAt, now).await
}

/// `scheduled` → `upstream_failed` or `skipped`: tasks that will not run in this run.
pub async fn settle(
    db: impl Acquire<'_, Database = Any>,
    ids: &[i64],
    state: TaskState,
    now: Micros,
) -> Result<u64> {
    transition(db, ids, TaskState::Scheduled, state, Stamp::EndedAt, now).await
}

/// `up_for_retry` → `queued` for the given ids (tries whose retry delay has passed).
pub async fn requeue_retries(
    db: impl Acquire<'_, Database = Any>,
    ids: &[i64],
    now: Micros,
) -> Result<u64> {
    transition(db, ids, TaskState::UpForRetry, TaskState::Queued, Stamp::QueuedAt, now).await
}

/// `scheduled` → `failed` with `error`: tasks that cannot be scheduled at all (for example,
/// their pool is not defined). They are not retried.
pub async fn fail_unschedulable(
    db: impl Executor<'_, Database = Any>,
    id: i64,
    error: &str,
    now: Micros,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE task_instances SET state = $1, error = $2, ended_at = $3 WHERE id = $4 AND state = $5",
    )
    .bind(TaskState::Failed.as_str())
    .bind(error)
    .bind(now)
    .bind(id)
    .bind(TaskState::Scheduled.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The time column a transition stamps.
#[derive(Clone, Copy)]
enum Stamp {
    QueuedAt,
    EndedAt,
}

async fn transition(
    db: impl Acquire<'_, Database = Any>,
    ids: &[i64],
    from: TaskState,
    to: TaskState,
    stamp: Stamp,
    now: Micros,
) -> Result<u64> {
    debug_assert!(from.can_become(to), "{from} → {to} is not a transition");
    let stamp = match stamp {
        Stamp::QueuedAt => "queued_at",
        Stamp::EndedAt => "ended_at",
    };
    let mut conn = db.acquire().await?;
    let mut moved = 0;
    for chunk in ids.chunks(ID_CHUNK) {
        let sql = format!(
            "UPDATE task_instances SET state = $1, {stamp} = $2 WHERE state = $3 AND id IN ({})",
            placeholders(4, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(to.as_str()).bind(now).bind(from.as_str());
        for id in chunk {
            query = query.bind(*id);
        }
        moved += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(moved)
}

/// Atomically takes up to `limit` queued task instances from `queues` for `worker_id`,
/// oldest first, marking them `running` and starting a new try of each.
pub async fn claim(
    db: impl Acquire<'_, Database = Any>,
    worker_id: &str,
    queues: &[String],
    limit: usize,
    now: Micros,
) -> Result<Vec<ClaimedTask>> {
    let (_, claimed) = finish_and_claim(db, worker_id, &[], queues, limit, now).await?;
    Ok(claimed)
}

/// Records the end of a try. Applies only if the try is still this worker's running try, so a
/// late result from a worker presumed dead cannot overwrite a newer try. Returns whether it applied.
pub async fn finish(
    db: impl Acquire<'_, Database = Any>,
    task: &ClaimedTask,
    worker_id: &str,
    outcome: &TaskOutcome,
    now: Micros,
) -> Result<bool> {
    let (applied, _) = finish_and_claim(db, worker_id, &[(task, outcome)], &[], 0, now).await?;
    Ok(applied[0])
}

/// In one transaction, records the end of each try of `finished` (see [`finish`]) and claims
/// up to `limit` more (see [`claim`]): a worker refilling the slots its ended tries freed pays
/// for one commit, not one per try plus one for the claim. Returns whether each record
/// applied, in order, and the claimed task instances.
pub async fn finish_and_claim(
    db: impl Acquire<'_, Database = Any>,
    worker_id: &str,
    finished: &[(&ClaimedTask, &TaskOutcome)],
    queues: &[String],
    limit: usize,
    now: Micros,
) -> Result<(Vec<bool>, Vec<ClaimedTask>)> {
    let claiming = limit > 0 && !queues.is_empty();
    if finished.is_empty() && !claiming {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut tx = db.begin().await?;
    let mut applied = Vec::with_capacity(finished.len());
    for (task, outcome) in finished {
        applied.push(finish_in(&mut tx, task, worker_id, outcome, now).await?);
    }
    let claimed =
        if claiming { claim_in(&mut tx, worker_id, queues, limit, now).await? } else { Vec::new() };
    tx.commit().await?;
    Ok((applied, claimed))
}

async fn claim_in(
    tx: &mut sqlx::AnyConnection,
    worker_id: &str,
    queues: &[String],
    limit: usize,
    now: Micros,
) -> Result<Vec<ClaimedTask>> {
    let lock = Backend::of_connection(tx).claim_lock();
    // The ids are picked once, in a materialized CTE: as a plain `IN (subquery)`, Postgres
    // may run the `LIMIT … SKIP LOCKED` subquery again for every candidate row (for
    // instance when a concurrent claim makes it recheck one), and one claim could then
    // take every queued task. SQLite evaluates an uncorrelated CTE once either way.
    let sql = format!(
        "WITH picked AS MATERIALIZED (SELECT id FROM task_instances WHERE state = 'queued' \
         AND queue IN ({}) ORDER BY queued_at, id LIMIT $3 {lock}) \
         UPDATE task_instances SET state = 'running', try_number = try_number + 1, worker_id = $1, \
         started_at = {started}, heartbeat_at = {started}, ended_at = NULL, next_try_at = NULL, exit_code = NULL, \
         error = NULL, progress = NULL, progress_at = NULL \
         WHERE state = 'queued' AND id IN (SELECT id FROM picked) \
         RETURNING id, run_pk, dag_id, task_id, try_number, max_tries, map_index, map_item",
        placeholders(4, queues.len()),
        started = NOT_BEFORE_QUEUED,
    );
    let mut query = sqlx::query_as(&sql).bind(worker_id).bind(now).bind(limit as i64);
    for queue in queues {
        query = query.bind(queue);
    }
    let claimed: Vec<ClaimedTask> = query.fetch_all(&mut *tx).await?;
    for chunk in claimed.chunks(ID_CHUNK / 2) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, $1, 'running', $2)", 3 + 2 * i, 4 + 2 * i))
            .collect();
        let sql = format!(
            "INSERT INTO task_tries (ti_id, try_number, worker_id, state, started_at) VALUES {}",
            values.join(", ")
        );
        let mut insert = sqlx::query(&sql).bind(worker_id).bind(now);
        for task in chunk {
            insert = insert.bind(task.id).bind(task.try_number);
        }
        insert.execute(&mut *tx).await?;
    }
    Ok(claimed)
}

async fn finish_in(
    tx: &mut sqlx::AnyConnection,
    task: &ClaimedTask,
    worker_id: &str,
    outcome: &TaskOutcome,
    now: Micros,
) -> Result<bool> {
    let outputs = if outcome.outputs.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&outcome.outputs).unwrap_or_default())
    };
    let sql = format!(
        "UPDATE task_instances SET state = $1, ended_at = {NOT_BEFORE_HEARTBEAT}, next_try_at = $3, \
         exit_code = $4, error = $5, outputs = $6 \
         WHERE id = $7 AND try_number = $8 AND worker_id = $9 AND state = 'running'",
    );
    let done = sqlx::query(&sql)
        .bind(outcome.state.as_str())
        .bind(now)
        .bind(outcome.next_try_at)
        .bind(outcome.exit_code)
        .bind(&outcome.error)
        .bind(outputs)
        .bind(task.id)
        .bind(task.try_number)
        .bind(worker_id)
        .execute(&mut *tx)
        .await?;
    let applied = done.rows_affected() > 0;
    if applied {
        end_try(tx, task.id, task.try_number, outcome, now).await?;
    }
    Ok(applied)
}

/// Marks every running try of `worker_id` as alive at `now`. Returns the ids of the task
/// instances still running on this worker: a try missing from them was taken from it
/// (presumed dead, or marked by hand) and must stop.
pub async fn heartbeat(
    db: impl Executor<'_, Database = Any>,
    worker_id: &str,
    now: Micros,
) -> Result<Vec<i64>> {
    let sql = format!(
        "UPDATE task_instances SET heartbeat_at = {NOT_BEFORE_HEARTBEAT} \
         WHERE {LIVE} AND worker_id = $1 AND state = 'running' RETURNING id",
    );
    Ok(sqlx::query_scalar(&sql).bind(worker_id).bind(now).fetch_all(db).await?)
}

/// The tries among `ids` that the database says `worker_id` is running, as its claim returned
/// them. A worker asks for the running tries it does not know: claims whose answer it never
/// received (the connection broke as the claim committed).
pub async fn running_on(
    db: impl Acquire<'_, Database = Any>,
    worker_id: &str,
    ids: &[i64],
) -> Result<Vec<ClaimedTask>> {
    let mut conn = db.acquire().await?;
    let mut found = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let sql = format!(
            "SELECT id, run_pk, dag_id, task_id, try_number, max_tries, map_index, map_item \
             FROM task_instances WHERE worker_id = $1 AND state = 'running' AND id IN ({}) \
             ORDER BY id",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query_as(&sql).bind(worker_id);
        for id in chunk {
            query = query.bind(*id);
        }
        found.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// Records what a running try reported of its progress (JSON) at `at`; ignored once the
/// try is over or taken over.
pub async fn record_progress(
    db: impl Executor<'_, Database = Any>,
    ti_id: i64,
    try_number: i64,
    progress: &str,
    at: Micros,
) -> Result<()> {
    sqlx::query(
        "UPDATE task_instances SET progress = $1, progress_at = $2 \
         WHERE id = $3 AND try_number = $4 AND state = 'running'",
    )
    .bind(progress)
    .bind(at)
    .bind(ti_id)
    .bind(try_number)
    .execute(db)
    .await?;
    Ok(())
}

/// The scheduler's lightweight view of the task instances of the given runs.
pub async fn states_of_runs(
    db: impl Acquire<'_, Database = Any>,
    run_pks: &[i64],
) -> Result<Vec<TaskStateRow>> {
    of_runs_as(db, "id, run_pk, task_id, state, next_try_at, map_index", run_pks).await
}

/// `columns` of the task instances of the given runs, by run and id, an `IN` list per chunk.
async fn of_runs_as<T>(
    db: impl Acquire<'_, Database = Any>,
    columns: &'static str,
    run_pks: &[i64],
) -> Result<Vec<T>>
where
    T: for<'r> FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let mut conn = db.acquire().await?;
    let mut out = Vec::new();
    for chunk in run_pks.chunks(ID_CHUNK) {
        let sql = format!(
            "SELECT {columns} FROM task_instances WHERE run_pk IN ({}) ORDER BY run_pk, id",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query_as(&sql);
        for pk in chunk {
            query = query.bind(*pk);
        }
        out.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// Running tries whose worker has not heartbeated since `cutoff`.
pub async fn stale(
    db: impl Executor<'_, Database = Any>,
    cutoff: Micros,
) -> Result<Vec<TaskInstanceRow>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM task_instances WHERE {LIVE} AND state = 'running' AND heartbeat_at < $1"
    );
    Ok(sqlx::query_as(&sql).bind(cutoff).fetch_all(db).await?)
}

/// Ends a stale try, unless its worker heartbeated or finished in the meantime.
pub async fn fail_stale(
    db: impl Acquire<'_, Database = Any>,
    task: &TaskInstanceRow,
    outcome: &TaskOutcome,
    cutoff: Micros,
    now: Micros,
) -> Result<bool> {
    let mut tx = db.begin().await?;
    let sql = format!(
        "UPDATE task_instances SET state = $1, ended_at = {NOT_BEFORE_HEARTBEAT}, next_try_at = $3, \
         error = $4 WHERE id = $5 AND try_number = $6 AND state = 'running' AND heartbeat_at < $7",
    );
    let done = sqlx::query(&sql)
        .bind(outcome.state.as_str())
        .bind(now)
        .bind(outcome.next_try_at)
        .bind(&outcome.error)
        .bind(task.id)
        .bind(task.try_number)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    let applied = done.rows_affected() > 0;
    if applied {
        end_try(&mut tx, task.id, task.try_number, outcome, now).await?;
    }
    tx.commit().await?;
    Ok(applied)
}

/// Every try of a task instance, first first.
pub async fn tries(db: impl Executor<'_, Database = Any>, ti_id: i64) -> Result<Vec<TryRow>> {
    Ok(sqlx::query_as(
        "SELECT try_number, worker_id, state, started_at, ended_at, error FROM task_tries \
         WHERE ti_id = $1 ORDER BY try_number",
    )
    .bind(ti_id)
    .fetch_all(db)
    .await?)
}

/// Sets one task instance to `success` or `failed` by hand. A try still running is
/// stopped by its worker at its next heartbeat (its result would be discarded); a finished run
/// goes back to `queued` so the scheduler settles it again with the new state.
pub async fn mark(
    db: impl Acquire<'_, Database = Any>,
    ti: &TaskInstanceRow,
    state: TaskState,
    now: Micros,
) -> Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE task_instances SET state = $1, ended_at = $2, next_try_at = NULL WHERE id = $3",
    )
    .bind(state.as_str())
    .bind(now)
    .bind(ti.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE task_tries SET state = 'cancelled', ended_at = $1 WHERE ti_id = $2 AND ended_at IS NULL",
    )
    .bind(now)
    .bind(ti.id)
    .execute(&mut *tx)
    .await?;
    super::runs::requeue_finished(&mut *tx, ti.run_pk).await?;
    tx.commit().await?;
    Ok(())
}

/// What to clear: a task (all its instances), or one instance of a mapped task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearTarget {
    pub task_id: String,
    /// `None`: the whole task.
    pub map_index: Option<i64>,
    /// Tries it gets from now.
    pub extra_tries: i64,
}

/// Resets finished or waiting task instances of a run so they run again, each getting its
/// `extra_tries` more tries; the run goes back to `queued` if it had finished. Running task
/// instances are left alone. A mapped task cleared whole (none of its instances running) goes
/// back to one unexpanded instance, expanded again from its list when it runs (the other
/// instances are deleted with their logs). Returns the instances (display ids) reset.
pub async fn clear(
    db: impl Acquire<'_, Database = Any>,
    run_pk: i64,
    targets: &[ClearTarget],
) -> Result<Vec<String>> {
    const BUSY: &str = "state IN ('running', 'queued')";
    let mut tx = db.begin().await?;
    let mut cleared = Vec::new();
    for target in targets {
        let task_id = &target.task_id;
        if target.map_index.is_none() {
            let idle = format!(
                "NOT EXISTS (SELECT 1 FROM task_instances WHERE run_pk = $1 AND task_id = $2 AND {BUSY})"
            );
            let collapse = [
                format!("DELETE FROM task_instances WHERE run_pk = $1 AND task_id = $2 AND map_index > 0 AND {idle}"),
                format!("UPDATE task_instances SET map_index = -1, map_item = NULL WHERE run_pk = $1 AND task_id = $2 AND map_index = 0 AND {idle}"),
            ];
            for sql in collapse {
                sqlx::query(&sql).bind(run_pk).bind(task_id).execute(&mut *tx).await?;
            }
        }
        let sql = format!(
            "UPDATE task_instances SET state = 'scheduled', max_tries = try_number + $1, \
             worker_id = NULL, queued_at = NULL, started_at = NULL, ended_at = NULL, \
             heartbeat_at = NULL, next_try_at = NULL, exit_code = NULL, error = NULL, outputs = NULL \
             WHERE run_pk = $2 AND task_id = $3 AND ($4 < 0 OR map_index = $4) AND NOT {BUSY} \
             RETURNING map_index"
        );
        let reset: Vec<i64> = sqlx::query_scalar(&sql)
            .bind(target.extra_tries)
            .bind(run_pk)
            .bind(task_id)
            .bind(target.map_index.unwrap_or(-1))
            .fetch_all(&mut *tx)
            .await?;
        cleared.extend(reset.into_iter().map(|index| super::model::display_id(task_id, index)));
    }
    if !cleared.is_empty() {
        super::runs::requeue_finished(&mut *tx, run_pk).await?;
    }
    tx.commit().await?;
    Ok(cleared)
}

/// One try of a task instance.
#[derive(Debug, Clone, serde::Serialize, FromRow)]
pub struct TryRow {
    pub try_number: i64,
    pub worker_id: Option<String>,
    /// `running`, then the state the try ended the task instance in (`success`, `failed`,
    /// `up_for_retry`), or `cancelled` when it was stopped before it ended: its task or run
    /// was marked by hand, or its worker shut down (the task is then retried).
    pub state: String,
    pub started_at: Micros,
    pub ended_at: Option<Micros>,
    pub error: Option<String>,
}

/// `$2` (the time a statement binds), or the named column if it holds a later time: a stamp
/// never goes back before the one it follows, whatever the clock of the process writing it
/// says (clocks differ between machines, and a write delayed by an outage carries the time it
/// was prepared).
const NOT_BEFORE_HEARTBEAT: &str = "CASE WHEN $2 < heartbeat_at THEN heartbeat_at ELSE $2 END";
const NOT_BEFORE_QUEUED: &str = "CASE WHEN $2 < queued_at THEN queued_at ELSE $2 END";
const NOT_BEFORE_STARTED: &str = "CASE WHEN $2 < started_at THEN started_at ELSE $2 END";

async fn end_try(
    tx: &mut sqlx::AnyConnection,
    ti_id: i64,
    try_number: i64,
    outcome: &TaskOutcome,
    now: Micros,
) -> Result<()> {
    let sql = format!(
        "UPDATE task_tries SET state = $1, ended_at = {NOT_BEFORE_STARTED}, error = $3 \
         WHERE ti_id = $4 AND try_number = $5",
    );
    let state = if outcome.cancelled { "cancelled" } else { outcome.state.as_str() };
    sqlx::query(&sql)
        .bind(state)
        .bind(now)
        .bind(&outcome.error)
        .bind(ti_id)
        .bind(try_number)
        .execute(&mut *tx)
        .await?;
    super::lineage::insert(tx, ti_id, try_number, &outcome.lineage).await?;
    super::assets::record_dataset_versions(tx, &outcome.lineage, now).await?;
    super::metrics::record(tx, &outcome.metrics, now).await?;
    super::notifications::enqueue(tx, &outcome.notifications, now).await?;
    Ok(())
}

impl TaskOutcome {
    pub fn success(outputs: serde_json::Map<String, serde_json::Value>) -> TaskOutcome {
        TaskOutcome {
            state: TaskState::Success,
            next_try_at: None,
            exit_code: None,
            error: None,
            outputs,
            cancelled: false,
            lineage: Vec::new(),
            metrics: Vec::new(),
            notifications: Vec::new(),
        }
    }

    /// A try whose job found nothing to do: the task is `skipped`, with the reason as its
    /// `skipped` output.
    pub fn skipped(reason: String) -> TaskOutcome {
        let mut outputs = serde_json::Map::new();
        outputs.insert("skipped".into(), serde_json::Value::String(reason));
        TaskOutcome { state: TaskState::Skipped, ..TaskOutcome::success(outputs) }
    }

    /// A try stopped before it ended (its worker is shutting down): the task is retried at
    /// once, and the try is recorded as `cancelled`, not failed.
    pub fn cancelled(reason: String, now: Micros) -> TaskOutcome {
        TaskOutcome {
            state: TaskState::UpForRetry,
            next_try_at: Some(now),
            exit_code: None,
            error: Some(reason),
            outputs: Default::default(),
            cancelled: true,
            lineage: Vec::new(),
            metrics: Vec::new(),
            notifications: Vec::new(),
        }
    }

    /// A failed try: `up_for_retry` after `retry_delay` if a retry is allowed and tries remain,
    /// else `failed`.
    pub fn failure(
        try_number: i64,
        max_tries: i64,
        retry_delay: Option<std::time::Duration>,
        error: String,
        exit_code: Option<i64>,
        now: Micros,
    ) -> TaskOutcome {
        let (state, next_try_at) = match retry_delay {
            Some(delay) if try_number < max_tries => {
                let delay = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
                (TaskState::UpForRetry, Some(now.saturating_add(delay)))
            }
            _ => (TaskState::Failed, None),
        };
        TaskOutcome {
            state,
            next_try_at,
            exit_code,
            error: Some(error),
            outputs: Default::default(),
            cancelled: false,
            lineage: Vec::new(),
            metrics: Vec::new(),
            notifications: Vec::new(),
        }
    }
}
