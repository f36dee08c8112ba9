//! Operator actions on existing runs: clear tasks so they run again, mark runs and tasks done,
//! and delete old metadata.

use std::time::Duration;

use crate::dag::Dag;
use crate::domain::{RunState, TaskState};
use crate::store::tasks::ClearTarget;
use crate::store::{parse_display_id, runs, tasks, users};
use crate::store::{RunRow, Store, StoreError, TaskInstanceRow};
use crate::time::{now_micros, Micros};

/// `task_id` and, with `downstream`, every task that depends on it directly or transitively.
pub fn with_downstream(dag: &Dag, task_id: &str, downstream: bool) -> Vec<String> {
    let mut selected = vec![task_id.to_string()];
    if downstream {
        let mut i = 0;
        while i < selected.len() {
            let current = selected[i].clone();
            for task in dag.downstream_of(&current) {
                if !selected.contains(&task.id) {
                    selected.push(task.id.clone());
                }
            }
            i += 1;
        }
    }
    selected
}

/// Clears `name` (and its downstream tasks) in `run`: they run again with their full retry
/// budget; earlier tries keep their logs. `name` is a task id, or `task[3]` for one instance of
/// a mapped task (only it runs again; its downstream tasks, if asked, whole). Returns the
/// instances that were reset (running ones are not).
pub async fn clear(
    store: &Store,
    dag: &Dag,
    run: &RunRow,
    name: &str,
    downstream: bool,
) -> Result<Vec<String>, StoreError> {
    let Some((task_id, map_index)) = parse_display_id(name) else { return Ok(Vec::new()) };
    let targets: Vec<ClearTarget> = with_downstream(dag, task_id, downstream)
        .into_iter()
        .filter_map(|id| {
            let extra_tries = i64::from(dag.tasks.get(&id)?.max_tries());
            let map_index = (id == task_id && map_index >= 0).then_some(map_index);
            Some(ClearTarget { task_id: id, map_index, extra_tries })
        })
        .collect();
    let cleared = tasks::clear(store.write(), run.pk, &targets).await?;
    if !cleared.is_empty() {
        store.wake_scheduler().await;
    }
    Ok(cleared)
}

/// Marks `run` as `success` or `failed`, with its unfinished task instances.
pub async fn mark(store: &Store, run: &RunRow, state: RunState) -> Result<(), StoreError> {
    runs::mark(store.write(), run.pk, state, now_micros()).await?;
    store.wake_scheduler().await;
    Ok(())
}

/// Marks one task instance `success` or `failed`; the scheduler then carries the run on (its
/// downstream tasks run if their trigger rules now allow it).
pub async fn mark_task(
    store: &Store,
    ti: &TaskInstanceRow,
    state: TaskState,
) -> Result<(), StoreError> {
    tasks::mark(store.write(), ti, state, now_micros()).await?;
    store.wake_scheduler().await;
    Ok(())
}

/// How long one `clean` batch may hold the database: on SQLite, the one writer everybody
/// else waits for.
const CLEAN_BATCH_TARGET: Duration = Duration::from_millis(40);

/// Deletes finished runs that ended before `cutoff` (with their task instances, tries and logs)
/// in batches of at most `batch` runs, each its own short transaction followed by a pause as
/// long, so schedulers and workers are never locked out for long. Batches start small and
/// grow or shrink so each takes about [`CLEAN_BATCH_TARGET`] (a run may have one task or
/// thousands). Calls `progress` with the total so far after each batch; returns the number of
/// runs deleted.
pub async fn clean(
    store: &Store,
    cutoff: Micros,
    batch: i64,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    let mut size = batch.clamp(1, 10);
    loop {
        let pks = runs::finished_before(store.read(), cutoff, size).await?;
        if pks.is_empty() {
            break;
        }
        let started = std::time::Instant::now();
        runs::delete(store.write(), &pks).await?;
        let took = started.elapsed();
        deleted += pks.len() as u64;
        progress(deleted);
        size = if took < CLEAN_BATCH_TARGET / 2 {
            (size * 2).min(batch.max(1))
        } else if took > CLEAN_BATCH_TARGET {
            (size / 2).max(1)
        } else {
            size
        };
        tokio::time::sleep(took.max(Duration::from_millis(5))).await;
    }
    users::delete_expired_sessions(store.write(), now_micros()).await?;
    Ok(deleted)
}
