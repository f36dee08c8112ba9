//! Which messages a state change queues, per the `on_failure`, `on_retry` and `on_success`
//! settings of the task or the DAG: the rows its maker writes in the same transaction as the
//! change.

use chrono::{DateTime, Utc};

use super::message::{Event, Message};
use crate::dag::{Dag, Task};
use crate::domain::{RunState, TaskState};
use crate::store::notifications::NewNotification;
use crate::store::{RunRow, TaskOutcome};

/// The messages for try `try_number` of `task` (the instance named `name`: the task id, or
/// `task[3]` when mapped) ending with `outcome`. A try stopped (not failed) tells nobody: it
/// is retried at once.
pub fn for_try(
    task: &Task,
    name: &str,
    run: &RunRow,
    try_number: i64,
    max_tries: i64,
    outcome: &TaskOutcome,
    at: DateTime<Utc>,
) -> Vec<NewNotification> {
    let event = match outcome.state {
        TaskState::Success => Event::TaskSucceeded,
        TaskState::UpForRetry if !outcome.cancelled => Event::TaskRetry,
        TaskState::Failed => Event::TaskFailed,
        _ => return Vec::new(),
    };
    let channels = event.subscribers(&task.notify);
    if channels.is_empty() {
        return Vec::new();
    }
    let message = Message::run(event, &run.dag_id, &run.run_id, Vec::new(), at);
    let message = message.about_try(name, try_number, max_tries, outcome.error.as_deref());
    message.queue_for(channels, 0)
}

/// The messages for `run` ending `state` at `at` (each end is told: a run that ends again
/// after a task was cleared is told again).
pub fn for_run_end(
    dag: &Dag,
    run: &RunRow,
    state: RunState,
    failed_tasks: Vec<String>,
    at: DateTime<Utc>,
) -> Vec<NewNotification> {
    let event = match state {
        RunState::Success => Event::RunSucceeded,
        RunState::Failed => Event::RunFailed,
        _ => return Vec::new(),
    };
    let channels = event.subscribers(&dag.notify);
    if channels.is_empty() {
        return Vec::new();
    }
    let message = Message::run(event, &run.dag_id, &run.run_id, failed_tasks, at);
    message.queue_for(channels, at.timestamp_micros())
}

/// The messages for `run` passing its deadline (told once).
pub fn for_missed_deadline(dag: &Dag, run: &RunRow, at: DateTime<Utc>) -> Vec<NewNotification> {
    let channels = Event::DeadlineMissed.subscribers(&dag.notify);
    let message = Message::run(Event::DeadlineMissed, &run.dag_id, &run.run_id, Vec::new(), at);
    message.queue_for(channels, 0)
}
