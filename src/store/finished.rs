//! Counters of finished runs and task instances for `/metrics`, which must not count the
//! whole history on every scrape (ten million task instances take seconds to count).
//!
//! What finished up to a mark is rolled up into `finished_runs` and `finished_tasks` (per DAG,
//! task, state and duration bucket) and never counted again; what finished since is counted
//! on the fly, through the `ended_at` indexes, so counters are exact at every scrape. The mark
//! trails the clock by [`LATE_COMMIT_MARGIN`], so an instance whose end is written slightly
//! before its transaction commits is still counted. Rolled-up counts only grow: deleting old
//! runs (`db clean`, `keep_runs`) does not lower them, as Prometheus counters expect. The
//! scheduler rolls up at housekeeping; several schedulers may at once: the mark moves by
//! compare-and-set, in the transaction that adds the counts, so each finish is added once.

use std::collections::BTreeMap;

use sqlx::{Acquire, Any, Executor, FromRow};

use super::{placeholders, Result};
use crate::time::Micros;

/// Upper bounds of the task duration buckets, in seconds.
pub const DURATION_BUCKETS: &[f64] =
    &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0];

/// How far the roll-up mark trails the time it runs at.
pub const LATE_COMMIT_MARGIN: Micros = 10_000_000;

/// Finished task instances of one task in one state and duration bucket (-1 for those that
/// never started: skipped, upstream failed).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct FinishedTasks {
    pub dag_id: String,
    pub task_id: String,
    pub state: String,
    pub bucket: i64,
    pub count: i64,
    pub micros: i64,
}

/// Everything that finished: runs per state, task instances per DAG (and task, if `by` says
/// so; else `task_id` is empty), state and bucket (the index in [`DURATION_BUCKETS`], its
/// length past the last bound, -1 without duration).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Finished {
    pub runs: BTreeMap<String, i64>,
    pub tasks: Vec<FinishedTasks>,
    pub by: DurationsBy,
}

/// `SELECT` of finished task instance counts of `task_instances` rows matching `filter`
/// (bound after the duration bounds, from `$N` where N is one past them).
fn task_counts(filter: &str) -> String {
    let bounds = placeholders(1, DURATION_BUCKETS.len());
    let bucket_of = bounds
        .split(", ")
        .enumerate()
        .map(|(i, bound)| format!("WHEN ended_at - started_at <= {bound} THEN {i}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "SELECT dag_id, task_id, state, bucket, COUNT(*) AS count, \
         CAST(SUM(COALESCE(ended_at - started_at, 0)) AS BIGINT) AS micros \
         FROM (SELECT dag_id, task_id, state, started_at, ended_at, \
         CASE WHEN started_at IS NULL THEN -1 {bucket_of} ELSE {past_last} END AS bucket \
         FROM task_instances WHERE {filter} \
         AND state IN ('success', 'failed', 'skipped', 'upstream_failed')) AS d \
         GROUP BY dag_id, task_id, state, bucket",
        past_last = DURATION_BUCKETS.len(),
    )
}

fn bind_bounds<'q, O>(
    mut query: sqlx::query::QueryAs<'q, Any, O, sqlx::any::AnyArguments<'q>>,
) -> sqlx::query::QueryAs<'q, Any, O, sqlx::any::AnyArguments<'q>> {
    for seconds in DURATION_BUCKETS {
        query = query.bind((seconds * 1e6) as i64);
    }
    query
}

/// Runs per final state that ended in ($1, $2].
const RUN_COUNTS: &str = "SELECT state, COUNT(*) FROM dag_runs \
     WHERE ended_at > $1 AND ended_at <= $2 AND state IN ('success', 'failed') GROUP BY state";

/// Adds what finished after the current mark, up to `upto` but no more than about `max_tasks`
/// task instances, to the counters and moves the mark past them. Returns whether the mark
/// reached `upto` (else call again); does nothing and returns false if another process moved
/// the mark meanwhile.
pub async fn roll_up(
    db: impl Acquire<'_, Database = Any>,
    upto: Micros,
    max_tasks: i64,
) -> Result<bool> {
    let mut tx = db.begin().await?;
    let mark: Micros = sqlx::query_scalar("SELECT upto FROM rollup_marks WHERE name = 'finished'")
        .fetch_one(&mut *tx)
        .await?;
    if upto <= mark {
        return Ok(true);
    }
    // A bounded step: up to the end of the `max_tasks`-th instance that finished after the mark.
    let step_end: Option<Micros> = sqlx::query_scalar(
        "SELECT ended_at FROM task_instances WHERE ended_at > $1 AND ended_at <= $2 \
         ORDER BY ended_at LIMIT 1 OFFSET $3",
    )
    .bind(mark)
    .bind(upto)
    .bind(max_tasks.max(1) - 1)
    .fetch_optional(&mut *tx)
    .await?;
    let upto = step_end.unwrap_or(upto);
    // Moved first: a second process rolling up at once waits on this row, then finds the mark
    // gone and leaves (its counts would be the same ones again).
    let moved =
        sqlx::query("UPDATE rollup_marks SET upto = $1 WHERE name = 'finished' AND upto = $2")
            .bind(upto)
            .bind(mark)
            .execute(&mut *tx)
            .await?;
    if moved.rows_affected() != 1 {
        return Ok(false);
    }
    let n = DURATION_BUCKETS.len();
    let filter = format!("ended_at > ${} AND ended_at <= ${}", n + 1, n + 2);
    let tasks: Vec<FinishedTasks> = bind_bounds(sqlx::query_as(&task_counts(&filter)))
        .bind(mark)
        .bind(upto)
        .fetch_all(&mut *tx)
        .await?;
    for row in &tasks {
        sqlx::query(
            "INSERT INTO finished_tasks (dag_id, task_id, state, bucket, count, micros) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dag_id, task_id, state, bucket) \
             DO UPDATE SET count = finished_tasks.count + excluded.count, \
             micros = finished_tasks.micros + excluded.micros",
        )
        .bind(&row.dag_id)
        .bind(&row.task_id)
        .bind(&row.state)
        .bind(row.bucket)
        .bind(row.count)
        .bind(row.micros)
        .execute(&mut *tx)
        .await?;
    }
    let runs: Vec<(String, i64)> =
        sqlx::query_as(RUN_COUNTS).bind(mark).bind(upto).fetch_all(&mut *tx).await?;
    for (state, count) in &runs {
        sqlx::query(
            "INSERT INTO finished_runs (state, count) VALUES ($1, $2) \
             ON CONFLICT (state) DO UPDATE SET count = finished_runs.count + excluded.count",
        )
        .bind(state)
        .bind(count)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(step_end.is_none())
}

/// What `/metrics`' task duration histograms are kept per: a DAG (the default; a dozen series
/// each) or each task of it (a dozen series per task: with thousands of DAGs, hundreds of
/// thousands of lines per scrape).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DurationsBy {
    #[default]
    Dag,
    Task,
}

/// The bucket of the row a task counting statement adds for the mark it read (see
/// [`counts`]); the runs' statement adds a row of state [`MARK_STATE`].
const MARK_BUCKET: i64 = -2;
const MARK_STATE: &str = "";

/// Everything finished so far: the rolled-up counts plus what finished after the mark, task
/// instances summed per DAG, or per DAG and task (`by`).
///
/// The mark is read first and bound into the counting statements, so the planner sees how few
/// instances lie past it: behind a subquery, Postgres planned for a third of ten million rows
/// (a parallel scan, JIT compilation) to count a few hundred. Each statement also returns the
/// mark it saw, in the snapshot of its counters: if a roll-up moved the mark in between, the
/// counts are read again, so a window is never added twice nor left out.
pub async fn counts<'c, E>(db: E, by: DurationsBy) -> Result<Finished>
where
    E: Executor<'c, Database = Any> + Copy,
{
    loop {
        let mark: Micros =
            sqlx::query_scalar("SELECT upto FROM rollup_marks WHERE name = 'finished'")
                .fetch_one(db)
                .await?;
        if let Some(finished) = counts_past(db, by, mark).await? {
            return Ok(finished);
        }
    }
}

/// [`counts`] with the mark at `mark`; `None` if a roll-up moved it.
async fn counts_past<'c, E>(db: E, by: DurationsBy, mark: Micros) -> Result<Option<Finished>>
where
    E: Executor<'c, Database = Any> + Copy,
{
    const SEEN_MARK: &str = "FROM rollup_marks WHERE name = 'finished'";
    let run_rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT state, count FROM finished_runs UNION ALL \
         SELECT state, COUNT(*) FROM dag_runs WHERE ended_at > $1 \
         AND state IN ('success', 'failed') GROUP BY state UNION ALL \
         SELECT '{MARK_STATE}', upto {SEEN_MARK}"
    ))
    .bind(mark)
    .fetch_all(db)
    .await?;
    let mut runs: BTreeMap<String, i64> = BTreeMap::new();
    for (state, count) in run_rows {
        if state == MARK_STATE {
            if count != mark {
                return Ok(None);
            }
            continue;
        }
        *runs.entry(state).or_default() += count;
    }
    // Summed in the database: per DAG, a twelfth of the rows of a 12-task DAG cross over.
    let (task, group) = match by {
        DurationsBy::Dag => ("''", ""),
        DurationsBy::Task => ("task_id", "task_id, "),
    };
    let sql = format!(
        "SELECT dag_id, {task} AS task_id, state, bucket, CAST(SUM(count) AS BIGINT) AS count, \
         CAST(SUM(micros) AS BIGINT) AS micros FROM (\
         SELECT dag_id, task_id, state, bucket, count, micros FROM finished_tasks UNION ALL {}\
         ) AS f GROUP BY dag_id, {group}state, bucket UNION ALL \
         SELECT '', '', '', {MARK_BUCKET}, 0, upto {SEEN_MARK}",
        task_counts(&format!("ended_at > ${}", DURATION_BUCKETS.len() + 1))
    );
    let mut tasks: Vec<FinishedTasks> =
        bind_bounds(sqlx::query_as(&sql)).bind(mark).fetch_all(db).await?;
    let Some(seen) = tasks.iter().position(|row| row.bucket == MARK_BUCKET) else {
        return Ok(None);
    };
    if tasks.swap_remove(seen).micros != mark {
        return Ok(None);
    }
    tasks.sort_by(|a, b| {
        (&a.dag_id, &a.task_id, &a.state, a.bucket)
            .cmp(&(&b.dag_id, &b.task_id, &b.state, b.bucket))
    });
    Ok(Some(Finished { runs, tasks, by }))
}

/// Finished task instances of one DAG or task, bucketed by duration (for a Prometheus
/// histogram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationHistogram {
    pub dag_id: String,
    /// `None` for a DAG's histogram ([`DurationsBy::Dag`]).
    pub task_id: Option<String>,
    /// Cumulative counts, one per bound of [`DURATION_BUCKETS`].
    pub buckets: Vec<i64>,
    pub count: i64,
    pub sum_micros: i64,
}

impl Finished {
    /// Task instances finished in each state, all DAGs together.
    pub fn task_states(&self) -> BTreeMap<&str, i64> {
        let mut states = BTreeMap::new();
        for row in &self.tasks {
            *states.entry(row.state.as_str()).or_default() += row.count;
        }
        states
    }

    /// Durations of the task instances that ran and finished (`success` or `failed`), per DAG
    /// or per DAG and task (as counted), ordered by them.
    pub fn duration_histograms(&self) -> Vec<DurationHistogram> {
        let mut histograms: BTreeMap<(&str, &str), DurationHistogram> = BTreeMap::new();
        let ran = self
            .tasks
            .iter()
            .filter(|r| r.bucket >= 0 && matches!(r.state.as_str(), "success" | "failed"));
        for row in ran {
            let histogram = histograms.entry((&row.dag_id, &row.task_id)).or_insert_with(|| {
                DurationHistogram {
                    dag_id: row.dag_id.clone(),
                    task_id: (self.by == DurationsBy::Task).then(|| row.task_id.clone()),
                    buckets: vec![0; DURATION_BUCKETS.len()],
                    count: 0,
                    sum_micros: 0,
                }
            });
            // Cumulative: a duration counts in its own bucket and every wider one.
            for bucket in histogram.buckets.iter_mut().skip(row.bucket as usize) {
                *bucket += row.count;
            }
            histogram.count += row.count;
            histogram.sum_micros += row.micros;
        }
        histograms.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(task: &str, state: &str, bucket: i64, count: i64) -> FinishedTasks {
        FinishedTasks {
            dag_id: "d".into(),
            task_id: task.into(),
            state: state.into(),
            bucket,
            count,
            micros: count * 1_000,
        }
    }

    #[test]
    fn histograms_are_cumulative_and_leave_out_what_never_ran() {
        let finished = Finished {
            runs: BTreeMap::new(),
            tasks: vec![
                row("a", "success", 0, 2),
                row("a", "failed", 3, 1),
                row("a", "upstream_failed", -1, 5),
                row("a", "skipped", 1, 4),
                row("b", "success", DURATION_BUCKETS.len() as i64, 1),
            ],
            by: DurationsBy::Task,
        };
        let histograms = finished.duration_histograms();
        assert_eq!(histograms.len(), 2);
        assert_eq!(histograms[0].buckets, vec![2, 2, 2, 3, 3, 3, 3, 3, 3, 3]);
        assert_eq!((histograms[0].count, histograms[0].sum_micros), (3, 3_000));
        assert_eq!(histograms[1].buckets, vec![0; DURATION_BUCKETS.len()]);
        assert_eq!(histograms[1].count, 1);
        assert_eq!(histograms[1].task_id.as_deref(), Some("b"));
        let states = finished.task_states();
        assert_eq!(states["upstream_failed"], 5);
        assert_eq!(states["success"], 3);
    }
}
