//! Deadlines (`deadline = "2h"` in a DAG file): a run still queued or running that long after
//! it was created has missed its deadline. The miss is recorded once, by whichever scheduler
//! sees it first, logged, shown on the run page and counted in `/metrics`, where an alert rule
//! picks it up. The run itself carries on.

use std::time::Duration;

use crate::store::{runs, RunRow, Store, StoreError};
use crate::time::Micros;

/// Records `run`'s missed `deadline` if it is past at `now` and not recorded yet.
pub async fn check(
    store: &Store,
    run: &RunRow,
    deadline: Duration,
    now: Micros,
) -> Result<(), StoreError> {
    let limit = i64::try_from(deadline.as_micros()).unwrap_or(i64::MAX);
    if run.deadline_missed_at.is_some() || now < run.created_at.saturating_add(limit) {
        return Ok(());
    }
    if runs::record_missed_deadline(store.write(), run.pk, now).await? {
        tracing::warn!(
            dag = %run.dag_id,
            run = %run.run_id,
            "run missed its deadline: still {} {} after it was queued",
            run.state.as_str(),
            humantime::format_duration(deadline)
        );
    }
    Ok(())
}
