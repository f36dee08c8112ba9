//! Read-only aggregates for the web UI and `/metrics`: run counts, recent runs of many DAGs,
//! queue depth, task duration histograms. Each is one query, whatever the number of runs.

use std::collections::HashMap;

use sqlx::Row;

use super::model::RUN_COLUMNS;
use super::{Result, RunRow, Store};
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

impl Store {
    pub async fn count_runs(&self, dag_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM dag_runs WHERE dag_id = $1")
            .bind(dag_id)
            .fetch_one(&self.reader)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// The newest `per_dag` runs of each DAG in `dag_ids`, newest first within a DAG.
    pub async fn recent_runs(
        &self,
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
        let mut query = sqlx::query(&sql).bind(per_dag);
        for id in dag_ids {
            query = query.bind(id);
        }
        for row in query.fetch_all(&self.reader).await? {
            let run = RunRow::from_row(&row)?;
            recent.entry(run.dag_id.clone()).or_default().push(run);
        }
        for runs in recent.values_mut() {
            runs.sort_by_key(|r| std::cmp::Reverse(r.logical_date));
        }
        Ok(recent)
    }

    /// How many rows of `table` (`dag_runs` or `task_instances`) are in each state.
    pub async fn count_by_state(&self, table: StateTable) -> Result<Vec<(String, i64)>> {
        let sql = format!("SELECT state, COUNT(*) AS n FROM {} GROUP BY state", table.name());
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await?;
        rows.iter().map(|r| Ok((r.try_get("state")?, r.try_get("n")?))).collect()
    }

    /// Task instances waiting for a worker, per queue.
    pub async fn queue_depth(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT queue, COUNT(*) AS n FROM task_instances WHERE state = 'queued' GROUP BY queue",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("queue")?, r.try_get("n")?))).collect()
    }

    pub async fn count_import_errors(&self) -> Result<i64> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM import_errors").fetch_one(&self.reader).await?;
        Ok(row.try_get("n")?)
    }

    /// The slowest recent scheduling pass of each live scheduler (heartbeat after `since`).
    pub async fn scheduler_loop_times(&self, since: Micros) -> Result<Vec<(String, Micros)>> {
        let rows = sqlx::query(
            "SELECT id, loop_micros FROM processes \
             WHERE kind = 'scheduler' AND heartbeat_at > $1 AND loop_micros IS NOT NULL",
        )
        .bind(since)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("loop_micros")?))).collect()
    }

    /// Durations of finished task instances (last try), per DAG and task.
    pub async fn task_duration_histograms(&self) -> Result<Vec<DurationHistogram>> {
        let buckets: Vec<String> = DURATION_BUCKETS
            .iter()
            .enumerate()
            .map(|(i, seconds)| {
                let micros = (seconds * 1e6) as i64;
                format!("CAST(SUM(CASE WHEN ended_at - started_at <= {micros} THEN 1 ELSE 0 END) AS BIGINT) AS le{i}")
            })
            .collect();
        let sql = format!(
            "SELECT dag_id, task_id, COUNT(*) AS n, CAST(SUM(ended_at - started_at) AS BIGINT) AS total, {} \
             FROM task_instances WHERE state IN ('success', 'failed') \
             AND started_at IS NOT NULL AND ended_at IS NOT NULL \
             GROUP BY dag_id, task_id ORDER BY dag_id, task_id",
            buckets.join(", ")
        );
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|row| {
                let buckets = (0..DURATION_BUCKETS.len())
                    .map(|i| row.try_get::<i64, _>(format!("le{i}").as_str()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(DurationHistogram {
                    dag_id: row.try_get("dag_id")?,
                    task_id: row.try_get("task_id")?,
                    buckets,
                    count: row.try_get("n")?,
                    sum_micros: row.try_get("total")?,
                })
            })
            .collect()
    }
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
