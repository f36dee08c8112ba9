//! Read-only aggregates for the web UI and `/metrics`: run counts, recent runs of many DAGs,
//! queue depth, task duration histograms. Each is one query, whatever the number of runs, on
//! the executor the caller gives (see [`super::runs`]).

use std::collections::HashMap;

use sqlx::FromRow;
use sqlx::{Any, Executor};

use super::model::RUN_COLUMNS;
use super::{placeholders, Result, RunRow};
use crate::time::Micros;

/// Finished task instances of one task, bucketed by duration (for a Prometheus histogram).
#[derive(Debug, Clone)]
pub struct DurationHistogram {
    pub dag_id: String,
    pub task_id: String,
    /// Cumulative counts, one per bound of [`DURATION_BUCKETS`].
    pub buckets: Vec<i64>,
    pub count: i64,
    pub sum_micros: i64,
}

/// Upper bounds of the task duration buckets, in seconds.
pub const DURATION_BUCKETS: &[f64] =
    &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0];

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

/// How many rows of `table` (`dag_runs` or `task_instances`) are in each state.
pub async fn count_by_state(
    db: impl Executor<'_, Database = Any>,
    table: StateTable,
) -> Result<Vec<(String, i64)>> {
    let sql = format!("SELECT state, COUNT(*) FROM {} GROUP BY state", table.name());
    Ok(sqlx::query_as(&sql).fetch_all(db).await?)
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

/// Durations of finished task instances (last try), per DAG and task.
pub async fn task_duration_histograms(
    db: impl Executor<'_, Database = Any>,
) -> Result<Vec<DurationHistogram>> {
    /// Finished task instances of one task whose duration falls in one bucket.
    #[derive(FromRow)]
    struct BucketCount {
        dag_id: String,
        task_id: String,
        bucket: i64,
        n: i64,
        total: i64,
    }
    // The index of the first bucket whose bound holds the duration; past the last: +Inf.
    let bounds = placeholders(1, DURATION_BUCKETS.len());
    let bucket_of = bounds
        .split(", ")
        .enumerate()
        .map(|(i, bound)| format!("WHEN ended_at - started_at <= {bound} THEN {i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let sql = format!(
        "SELECT dag_id, task_id, bucket, COUNT(*) AS n, CAST(SUM(duration) AS BIGINT) AS total \
         FROM (SELECT dag_id, task_id, ended_at - started_at AS duration, \
         CASE {bucket_of} ELSE {past_last} END AS bucket FROM task_instances \
         WHERE state IN ('success', 'failed') AND started_at IS NOT NULL AND ended_at IS NOT NULL) AS d \
         GROUP BY dag_id, task_id, bucket ORDER BY dag_id, task_id, bucket",
        past_last = DURATION_BUCKETS.len(),
    );
    let mut query = sqlx::query_as(&sql);
    for seconds in DURATION_BUCKETS {
        query = query.bind((seconds * 1e6) as i64);
    }
    let counts: Vec<BucketCount> = query.fetch_all(db).await?;
    let mut histograms: Vec<DurationHistogram> = Vec::new();
    for count in counts {
        let same_task = histograms
            .last()
            .is_some_and(|h| h.dag_id == count.dag_id && h.task_id == count.task_id);
        if !same_task {
            histograms.push(DurationHistogram {
                dag_id: count.dag_id,
                task_id: count.task_id,
                buckets: vec![0; DURATION_BUCKETS.len()],
                count: 0,
                sum_micros: 0,
            });
        }
        let histogram = histograms.last_mut().expect("pushed above");
        // Cumulative: a duration counts in its own bucket and every wider one.
        for bucket in histogram.buckets.iter_mut().skip(count.bucket as usize) {
            *bucket += count.n;
        }
        histogram.count += count.n;
        histogram.sum_micros += count.total;
    }
    Ok(histograms)
}

/// Tables that have a `state` column.
#[derive(Debug, Clone, Copy)]
pub enum StateTable {
    Runs,
    TaskInstances,
}

impl StateTable {
    fn name(self) -> &'static str {
        match self {
            StateTable::Runs => "dag_runs",
            StateTable::TaskInstances => "task_instances",
        }
    }
}
