//! Read-only aggregates for the web UI and `/metrics`: run counts, recent runs of many DAGs,
//! unfinished work by state, queue depth. Each is one query that reads what is live or a
//! bounded slice, whatever the length of the history, on the executor the caller gives (see
//! [`super::runs`]); counts of finished work are [`super::finished`]'s.

use std::collections::HashMap;

use sqlx::{Any, Executor};

use super::model::RUN_COLUMNS;
use super::{Result, RunRow};
use crate::time::Micros;

/// How many runs the DAG has: one row read, whatever the number of runs (triggers keep
/// `dag_run_counts` in step with `dag_runs`, see migration 0007).
pub async fn count_runs(db: impl Executor<'_, Database = Any>, dag_id: &str) -> Result<i64> {
    let runs: Option<i64> = sqlx::query_scalar("SELECT runs FROM dag_run_counts WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_optional(db)
        .await?;
    Ok(runs.unwrap_or(0))
}

/// The newest `per_dag` runs of each DAG in `dag_ids`, newest first within a DAG.
pub async fn recent_runs(
    db: impl Executor<'_, Database = Any>,
    dag_ids: &[String],
    per_dag: i64,
) -> Result<HashMap<String, Vec<RunRow>>> {
    let mut recent: HashMap<String, Vec<RunRow>> = HashMap::new();
    if dag_ids.is_empty() {
        return Ok(recent);
    }
    // One index-ordered LIMIT per DAG, glued with UNION ALL: reads `per_dag` rows per DAG
    // however many runs each has (a window function would rank all of them).
    let parts: Vec<String> = (0..dag_ids.len())
        .map(|i| {
            format!(
                "SELECT * FROM (SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = ${} \
                 ORDER BY logical_date DESC LIMIT $1) AS r{i}",
                i + 2
            )
        })
        .collect();
    let sql = parts.join(" UNION ALL ");
    let mut query = sqlx::query_as(&sql).bind(per_dag);
    for id in dag_ids {
        query = query.bind(id);
    }
    let runs: Vec<RunRow> = query.fetch_all(db).await?;
    for run in runs {
        recent.entry(run.dag_id.clone()).or_default().push(run);
    }
    for runs in recent.values_mut() {
        runs.sort_by_key(|r| std::cmp::Reverse(r.logical_date));
    }
    Ok(recent)
}

/// Runs that are queued or running, per state (finished ones are counted by
/// [`super::finished`]).
pub async fn unfinished_runs(db: impl Executor<'_, Database = Any>) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT state, COUNT(*) FROM dag_runs WHERE state IN ('queued', 'running') GROUP BY state",
    )
    .fetch_all(db)
    .await?)
}

/// Task instances not finished yet, per state: those of the runs not finished yet.
pub async fn unfinished_task_instances(
    db: impl Executor<'_, Database = Any>,
) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT state, COUNT(*) FROM task_instances WHERE run_pk IN \
         (SELECT id FROM dag_runs WHERE state IN ('queued', 'running')) \
         AND state NOT IN ('success', 'failed', 'skipped', 'upstream_failed') GROUP BY state",
    )
    .fetch_all(db)
    .await?)
}

/// Task instances waiting for a worker, per queue.
pub async fn queue_depth(db: impl Executor<'_, Database = Any>) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT queue, COUNT(*) FROM task_instances WHERE state = 'queued' GROUP BY queue",
    )
    .fetch_all(db)
    .await?)
}

/// How many files of the DAG folder failed to load.
pub async fn count_import_errors(db: impl Executor<'_, Database = Any>) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM import_errors").fetch_one(db).await?)
}

/// The slowest recent scheduling pass of each live scheduler (heartbeat after `since`).
pub async fn scheduler_loop_times(
    db: impl Executor<'_, Database = Any>,
    since: Micros,
) -> Result<Vec<(String, Micros)>> {
    Ok(sqlx::query_as(
        "SELECT id, loop_micros FROM processes \
         WHERE kind = 'scheduler' AND heartbeat_at > $1 AND loop_micros IS NOT NULL",
    )
    .bind(since)
    .fetch_all(db)
    .await?)
}
