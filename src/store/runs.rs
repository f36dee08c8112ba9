//! DAG runs: creation (with their task instances), lookup and state changes.

use sqlx::Row;

use super::model::RUN_COLUMNS;
use super::{placeholders, Result, RunRow, Store};
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

impl Store {
    /// Creates a `queued` run and its `scheduled` task instances in one transaction.
    ///
    /// Returns `None` if the DAG already has a run at that logical date or with that run id:
    /// the database enforces one run per (dag, logical date), whoever tries to create it.
    pub async fn create_run(&self, run: &NewRun, now: Micros) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let params = serde_json::to_string(&run.params).unwrap_or_else(|_| "{}".into());
        let row = sqlx::query(
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
        let Some(row) = row else { return Ok(None) };
        let pk: i64 = row.try_get("id")?;
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

    /// Runs that are queued or running, oldest logical date first.
    pub async fn active_runs(&self) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM dag_runs WHERE state IN ('queued', 'running') ORDER BY logical_date, id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Moves a run from `from` to `to`, stamping start or end time. False if it was not in `from`.
    pub async fn set_run_state(
        &self,
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
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Data interval (start, end) of the DAG's latest scheduled run.
    pub async fn last_scheduled_interval(&self, dag_id: &str) -> Result<Option<(Micros, Micros)>> {
        let row = sqlx::query(
            "SELECT interval_start, interval_end FROM dag_runs WHERE dag_id = $1 AND run_type = $2 \
             ORDER BY logical_date DESC LIMIT 1",
        )
        .bind(dag_id)
        .bind(RunType::Scheduled.as_str())
        .fetch_optional(&self.reader)
        .await?;
        Ok(match row {
            Some(row) => Some((row.try_get("interval_start")?, row.try_get("interval_end")?)),
            None => None,
        })
    }

    /// The DAG's runs, newest logical date first.
    pub async fn list_runs(&self, dag_id: &str, limit: i64, offset: i64) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 ORDER BY logical_date DESC LIMIT $2 OFFSET $3"
        );
        let rows =
            sqlx::query(&sql).bind(dag_id).bind(limit).bind(offset).fetch_all(&self.reader).await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    pub async fn get_run(&self, dag_id: &str, run_id: &str) -> Result<Option<RunRow>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 AND run_id = $2");
        let row = sqlx::query(&sql).bind(dag_id).bind(run_id).fetch_optional(&self.reader).await?;
        row.as_ref().map(RunRow::from_row).transpose()
    }

    pub async fn get_run_by_pk(&self, pk: i64) -> Result<Option<RunRow>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM dag_runs WHERE id = $1");
        let row = sqlx::query(&sql).bind(pk).fetch_optional(&self.reader).await?;
        row.as_ref().map(RunRow::from_row).transpose()
    }

    pub async fn get_run_at(&self, dag_id: &str, logical_date: Micros) -> Result<Option<RunRow>> {
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 AND logical_date = $2");
        let row =
            sqlx::query(&sql).bind(dag_id).bind(logical_date).fetch_optional(&self.reader).await?;
        row.as_ref().map(RunRow::from_row).transpose()
    }

    /// Deletes a run with its task instances, tries and logs.
    pub async fn delete_run(&self, pk: i64) -> Result<()> {
        self.delete_runs(&[pk]).await
    }

    /// Deletes runs with their task instances, tries and logs, in one transaction.
    pub async fn delete_runs(&self, pks: &[i64]) -> Result<()> {
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
            format!("DELETE FROM dag_runs WHERE id IN ({list})"),
        ];
        let mut tx = self.pool.begin().await?;
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

    /// Up to `limit` finished runs that ended before `cutoff`, oldest first.
    pub async fn finished_runs_before(&self, cutoff: Micros, limit: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT id FROM dag_runs WHERE state IN ('success', 'failed') \
             AND COALESCE(ended_at, created_at) < $1 ORDER BY id LIMIT $2",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }
}

impl Store {
    /// Resets finished or waiting task instances of a run so they run again, each getting
    /// `extra_tries` more tries; the run goes back to `queued` if it had finished. Running task
    /// instances are left alone. Returns the task ids that were reset.
    pub async fn clear_tasks(&self, run_pk: i64, tasks: &[(String, i64)]) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        let mut cleared = Vec::new();
        for (task_id, extra_tries) in tasks {
            let done = sqlx::query(
                "UPDATE task_instances SET state = 'scheduled', max_tries = try_number + $1, \
                 worker_id = NULL, queued_at = NULL, started_at = NULL, ended_at = NULL, \
                 heartbeat_at = NULL, next_try_at = NULL, exit_code = NULL, error = NULL, outputs = NULL \
                 WHERE run_pk = $2 AND task_id = $3 AND state NOT IN ('running', 'queued')",
            )
            .bind(*extra_tries)
            .bind(run_pk)
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 {
                cleared.push(task_id.clone());
            }
        }
        if !cleared.is_empty() {
            sqlx::query(
                "UPDATE dag_runs SET state = 'queued', ended_at = NULL WHERE id = $1 AND state IN ('success', 'failed')",
            )
            .bind(run_pk)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(cleared)
    }

    /// Marks a run `success` or `failed`; its unfinished task instances get the same state.
    /// A try still running elsewhere keeps running, but its result will be discarded.
    pub async fn mark_run(&self, run_pk: i64, state: RunState, now: Micros) -> Result<()> {
        let task_state =
            if state == RunState::Success { TaskState::Success } else { TaskState::Failed };
        let mut tx = self.pool.begin().await?;
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
}
