//! Deadlines (`deadline = "2h"` in a DAG file, after the run was queued, or `{ within = "26h",
//! after = "logical_date" }`): a run still queued or running then has missed its deadline.
//! The miss is recorded once, by whichever scheduler sees it first, logged, shown on the run
//! page and counted in `/metrics`, where an alert rule picks it up; the DAG's `on_failure`
//! channels are told, in the same transaction. The run itself carries on.

use crate::dag::{Dag, Deadline, DeadlineFrom};
use crate::notifications::queue;
use crate::store::{notifications, runs, RunRow, Store, StoreError};
use crate::time::{from_micros, Micros};

/// Records `run`'s missed `deadline` if it is past at `now` and not recorded yet.
pub async fn check(
    store: &Store,
    dag: &Dag,
    run: &RunRow,
    deadline: Deadline,
    now: Micros,
) -> Result<(), StoreError> {
    let within = i64::try_from(deadline.within.as_micros()).unwrap_or(i64::MAX);
    let from = match deadline.after {
        DeadlineFrom::Queued => run.created_at,
        DeadlineFrom::LogicalDate => run.logical_date,
    };
    if run.deadline_missed_at.is_some() || now < from.saturating_add(within) {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    let recorded = runs::record_missed_deadline(&mut *tx, run.pk, now).await?;
    if recorded {
        let messages = queue::for_missed_deadline(dag, run, from_micros(now));
        notifications::enqueue(&mut tx, &messages, now).await?;
    }
    tx.commit().await?;
    if recorded {
        tracing::warn!(
            dag = %run.dag_id,
            run = %run.run_id,
            "run missed its deadline: still {} {} after its {}",
            run.state.as_str(),
            humantime::format_duration(deadline.within),
            match deadline.after {
                DeadlineFrom::Queued => "queued time",
                DeadlineFrom::LogicalDate => "logical date",
            }
        );
    }
    Ok(())
}
