//! DAG runs: creation (with their task instances), lookup, state changes and deletion.
//!
//! Every function takes the executor it runs on (`store.read()`, `store.write()`, or `&mut *tx`
//! to compose several in one transaction); those that run several statements take anything
//! that can open a transaction, and nest as a savepoint inside a caller's.

use sqlx::{Acquire, Any, Executor};

use super::model::RUN_COLUMNS;
use super::{placeholders, Result, RunRow};
use crate::domain::{RunState, RunType, TaskState};
use crate::time::Micros;

/// A run to create, with one task instance per task.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub dag_id: String,
    pub run_id: String,
    pub version: String,
    pub run_type: RunType,
    pub logical_date: Micros,
    pub interval_start: Micros,
    pub interval_end: Micros,
    pub params: serde_json::Map<String, serde_json::Value>,
    /// (task id, queue, max tries) of every task.
    pub tasks: Vec<(String, String, i64)>,
}

/// Rows per multi-row INSERT: well under both backends' bound-parameter limits.
const INSERT_CHUNK: usize = 200;

/// Creates a `queued` run and its `scheduled` task instances in one transaction.
///
/// Returns `None` if the DAG already has a run at that logical date or with that run id:
/// the database enforces one run per (dag, logical date), whoever tries to create it.
pub async fn create(
    db: impl Acquire<'_, Database = Any>,
    run: &NewRun,
    now: Micros,
) -> Result<Option<i64>> {
    let mut tx = db.begin().await?;
    let params = serde_json::to_string(&run.params).unwrap_or_else(|_| "{}".into());
    let pk: Option<i64> = sqlx::query_scalar(
        "INSERT INTO dag_runs (dag_id, run_id, version, run_type, state, logical_date, interval_start, \
         interval_end, params, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(&run.dag_id)
    .bind(&run.run_id)
    .bind(&run.version)
    .bind(run.run_type.as_str())
    .bind(RunState::Queued.as_str())
    .bind(run.logical_date)
    .bind(run.interval_start)
    .bind(run.interval_end)
    .bind(params)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(pk) = pk else { return Ok(None) };
    for chunk in run.tasks.chunks(INSERT_CHUNK) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("({})", placeholders(1 + i * 6, 6))).collect();
        let sql = format!(
            "INSERT INTO task_instances (run_pk, dag_id, task_id, queue, max_tries, state) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (task_id, queue, max_tries) in chunk {
            query = query
                .bind(pk)
                .bind(&run.dag_id)
                .bind(task_id)
                .bind(queue)
                .bind(*max_tries)
                .bind(TaskState::Scheduled.as_str());
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Some(pk))
}

/// Records that run `pk`, still unfinished, missed its deadline at `now`; `false` when it had
/// finished or the miss was already recorded (by this or another scheduler), so each miss is
/// reported once.
pub async fn record_missed_deadline(
    db: impl Executor<'_, Database = Any>,
    pk: i64,
    now: Micros,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE dag_runs SET deadline_missed_at = $2 WHERE id = $1 \
         AND deadline_missed_at IS NULL AND state IN ('queued', 'running')",
    )
    .bind(pk)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Kept runs that missed their deadline.
pub async fn count_missed_deadlines(db: impl Executor<'_, Database = Any>) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM dag_runs WHERE deadline_missed_at IS NOT NULL")
        .fetch_one(db)
        .await?)
}

/// Runs that are queued or running, oldest logical date first.
pub async fn active(db: impl Executor<'_, Database = Any>) -> Result<Vec<RunRow>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM dag_runs WHERE state IN ('queued', 'running') ORDER BY logical_date, id"
    );
    Ok(sqlx::query_as(&sql).fetch_all(db).await?)
}

/// Moves a run from `from` to `to`, stamping start or end time. False if it was not in `from`.
pub async fn set_state(
    db: impl Executor<'_, Database = Any>,
    pk: i64,
    from: RunState,
    to: RunState,
    now: Micros,
) -> Result<bool> {
    let (started, ended) = match to {
        RunState::Running => (Some(now), None),
        RunState::Success | RunState::Failed => (None, Some(now)),
        RunState::Queued => (None, None),
    };
    let done = sqlx::query(
        "UPDATE dag_runs SET state = $1, started_at = COALESCE($2, started_at), ended_at = $3 \
         WHERE id = $4 AND state = $5",
    )
    .bind(to.as_str())
    .bind(started)
    .bind(ended)
    .bind(pk)
    .bind(from.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Data interval (start, end) of the DAG's latest scheduled run.
pub async fn last_scheduled_interval(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
) -> Result<Option<(Micros, Micros)>> {
    Ok(sqlx::query_as(
        "SELECT interval_start, interval_end FROM dag_runs WHERE dag_id = $1 AND run_type = $2 \
         ORDER BY logical_date DESC LIMIT 1",
    )
    .bind(dag_id)
    .bind(RunType::Scheduled.as_str())
    .fetch_optional(db)
    .await?)
}

/// The newest logical date among the DAG's runs of type `run_type`.
pub async fn last_of_type(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    run_type: RunType,
) -> Result<Option<Micros>> {
    Ok(sqlx::query_scalar(
        "SELECT MAX(logical_date) FROM dag_runs WHERE dag_id = $1 AND run_type = $2",
    )
    .bind(dag_id)
    .bind(run_type.as_str())
    .fetch_one(db)
    .await?)
}

/// `limit` of the DAG's runs after its newest `offset`, newest logical date first.
///
/// A page past the first is found by its newest logical date, read from the `(dag_id,
/// logical_date)` index alone and counted from whichever end of the history is nearer, then
/// fetched by that key: an `OFFSET` over the runs themselves would read every run before the
/// page (the oldest page of a 200,000-run DAG took 118 ms that way).
pub async fn list<'c, E>(db: E, dag_id: &str, limit: i64, offset: i64) -> Result<Vec<RunRow>>
where
    E: Executor<'c, Database = Any> + Copy,
{
    if offset <= 0 {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 \
             ORDER BY logical_date DESC LIMIT $2"
        );
        return Ok(sqlx::query_as(&sql).bind(dag_id).bind(limit).fetch_all(db).await?);
    }
    let total = super::stats::count_runs(db, dag_id).await?;
    // The page's newest run is `offset` runs from the newest, or this many from the oldest.
    let from_oldest = total - 1 - offset;
    if from_oldest < 0 {
        return Ok(Vec::new());
    }
    let (order, skip) = if from_oldest < offset { ("ASC", from_oldest) } else { ("DESC", offset) };
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 AND logical_date <= \
         (SELECT logical_date FROM dag_runs WHERE dag_id = $1 \
         ORDER BY logical_date {order} LIMIT 1 OFFSET $2) \
         ORDER BY logical_date DESC LIMIT $3"
    );
    Ok(sqlx::query_as(&sql).bind(dag_id).bind(skip).bind(limit).fetch_all(db).await?)
}

/// The run `run_id` of a DAG.
pub async fn get(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    run_id: &str,
) -> Result<Option<RunRow>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 AND run_id = $2");
    Ok(sqlx::query_as(&sql).bind(dag_id).bind(run_id).fetch_optional(db).await?)
}

/// The run with database key `pk`.
pub async fn by_pk(db: impl Executor<'_, Database = Any>, pk: i64) -> Result<Option<RunRow>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM dag_runs WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(pk).fetch_optional(db).await?)
}

/// The DAG's run at `logical_date`.
pub async fn at(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    logical_date: Micros,
) -> Result<Option<RunRow>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 AND logical_date = $2");
    Ok(sqlx::query_as(&sql).bind(dag_id).bind(logical_date).fetch_optional(db).await?)
}

/// Deletes runs with their task instances, tries, lineage and logs, in one transaction.
pub async fn delete(db: impl Acquire<'_, Database = Any>, pks: &[i64]) -> Result<()> {
    if pks.is_empty() {
        return Ok(());
    }
    let list = placeholders(1, pks.len());
    let of_runs = format!("SELECT id FROM task_instances WHERE run_pk IN ({list})");
    let statements = [
        format!("DELETE FROM task_logs WHERE ti_id IN ({of_runs})"),
        format!("DELETE FROM task_tries WHERE ti_id IN ({of_runs})"),
        format!("DELETE FROM task_lineage WHERE ti_id IN ({of_runs})"),
        format!("DELETE FROM task_instances WHERE run_pk IN ({list})"),
        format!("DELETE FROM run_triggers WHERE run_pk IN ({list})"),
        format!("DELETE FROM dag_runs WHERE id IN ({list})"),
    ];
    let mut tx = db.begin().await?;
    for sql in &statements {
        let mut query = sqlx::query(sql);
        for pk in pks {
            query = query.bind(*pk);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Up to `limit` finished runs that ended before `cutoff`, first ended first (read from the
/// `ended_at` index: only the rows returned).
pub async fn finished_before(
    db: impl Executor<'_, Database = Any>,
    cutoff: Micros,
    limit: i64,
) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM dag_runs WHERE ended_at < $1 AND state IN ('success', 'failed') \
         ORDER BY ended_at LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Whether the DAG has a run that is queued or running.
pub async fn has_unfinished(db: impl Executor<'_, Database = Any>, dag_id: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM dag_runs WHERE state IN ('queued', 'running') AND dag_id = $1 LIMIT 1",
    )
    .bind(dag_id)
    .fetch_optional(db)
    .await?;
    Ok(found.is_some())
}

/// Whether the DAG has a run waiting for a `max_active_runs` slot.
pub async fn has_queued(db: impl Executor<'_, Database = Any>, dag_id: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        // The first term is the partial index's own: SQLite uses it only then.
        "SELECT id FROM dag_runs WHERE state IN ('queued', 'running') AND state = 'queued' \
         AND dag_id = $1 LIMIT 1",
    )
    .bind(dag_id)
    .fetch_optional(db)
    .await?;
    Ok(found.is_some())
}

/// Up to `limit` finished runs of the DAG beyond its newest `keep` finished runs, oldest first.
pub async fn finished_beyond_newest(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    keep: i64,
    limit: i64,
) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM (SELECT id, logical_date FROM dag_runs \
         WHERE dag_id = $1 AND state IN ('success', 'failed') \
         ORDER BY logical_date DESC LIMIT $2 OFFSET $3) AS old ORDER BY logical_date",
    )
    .bind(dag_id)
    .bind(limit)
    .bind(keep)
    .fetch_all(db)
    .await?)
}

/// Up to `limit` finished runs of the DAG that ended before `cutoff`, oldest first. Only runs
/// whose logical date is before `cutoff` too are looked at, so the query reads the old end of
/// the DAG's index and never the whole history (a run dated in the future waits for its date).
pub async fn finished_of_dag_before(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    cutoff: Micros,
    limit: i64,
) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM dag_runs WHERE dag_id = $1 AND logical_date < $2 \
         AND state IN ('success', 'failed') AND ended_at < $2 \
         ORDER BY logical_date LIMIT $3",
    )
    .bind(dag_id)
    .bind(cutoff)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Marks a run `success` or `failed`; its unfinished task instances get the same state.
/// A try still running elsewhere keeps running, but its result will be discarded.
pub async fn mark(
    db: impl Acquire<'_, Database = Any>,
    run_pk: i64,
    state: RunState,
    now: Micros,
) -> Result<()> {
    let task_state =
        if state == RunState::Success { TaskState::Success } else { TaskState::Failed };
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE task_instances SET state = $1, ended_at = $2 \
         WHERE run_pk = $3 AND state IN ('scheduled', 'queued', 'running', 'up_for_retry')",
    )
    .bind(task_state.as_str())
    .bind(now)
    .bind(run_pk)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE task_tries SET state = 'cancelled', ended_at = $1 WHERE ended_at IS NULL \
         AND ti_id IN (SELECT id FROM task_instances WHERE run_pk = $2)",
    )
    .bind(now)
    .bind(run_pk)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE dag_runs SET state = $1, ended_at = $2 WHERE id = $3")
        .bind(state.as_str())
        .bind(now)
        .bind(run_pk)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Sends a finished run back to `queued` so the scheduler settles it again (after a task of
/// it was cleared or marked by hand).
pub(super) async fn requeue_finished(
    db: impl Executor<'_, Database = Any>,
    run_pk: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE dag_runs SET state = 'queued', ended_at = NULL WHERE id = $1 AND state IN ('success', 'failed')",
    )
    .bind(run_pk)
    .execute(db)
    .await?;
    Ok(())
}
