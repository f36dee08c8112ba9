//! The results of ended tries on their way to the database. The worker loop records every
//! result waiting at that moment together with the claim that refills the freed slots, in one
//! transaction: one commit per refill rather than one per try plus one per claim, which is
//! what a wide fan-out on Postgres waits for. A write that fails keeps the results waiting and
//! is tried again with backoff; after a failure other than the database being unreachable,
//! each result is written alone, so one the database refuses cannot hold back the others.
//!
//! This module stores what `execute` decided; it never runs jobs or judges outcomes.

use std::time::{Duration, Instant};

use super::Worker;
use crate::store::tasks;
use crate::store::{ClaimedTask, TaskOutcome};
use crate::time::now_micros;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(10);
/// How often a result the database refused is offered again.
const REFUSED_RETRY: Duration = Duration::from_secs(10);

/// Results not recorded yet, and the backoff of the writes that failed.
pub(super) struct Results {
    waiting: Vec<(ClaimedTask, TaskOutcome)>,
    /// Results whose batch failed for another reason than the database being unreachable:
    /// each is written alone, first at once, then every [`REFUSED_RETRY`] while it fails.
    refused: Vec<(ClaimedTask, TaskOutcome)>,
    refused_retry_at: Instant,
    /// Set while the database is unreachable, or after a failed claim: nothing is written (or
    /// claimed) before then.
    retry_at: Option<Instant>,
    delay: Duration,
}

impl Default for Results {
    fn default() -> Results {
        Results {
            waiting: Vec::new(),
            refused: Vec::new(),
            refused_retry_at: Instant::now(),
            retry_at: None,
            delay: FIRST_DELAY,
        }
    }
}

impl Results {
    pub fn push(&mut self, task: ClaimedTask, outcome: TaskOutcome) {
        self.waiting.push((task, outcome));
    }

    /// Whether a result of task instance `id` waits to be written.
    pub fn holds(&self, id: i64) -> bool {
        self.waiting.iter().chain(&self.refused).any(|(task, _)| task.id == id)
    }

    /// Whether no result waits to be written.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.refused.is_empty()
    }

    /// How long until a failed write may be tried again, if one waits for that.
    pub fn backoff_left(&self) -> Option<Duration> {
        let refused = (!self.refused.is_empty()).then_some(self.refused_retry_at);
        let at = match (self.retry_at, refused) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let left = at.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Makes one last attempt to record what waits, backoff or not (the worker is stopping).
    pub async fn record_last(&mut self, worker: &Worker) {
        self.retry_at = None;
        self.refused_retry_at = Instant::now();
        self.record_and_claim(worker, 0).await;
    }

    /// Records the waiting results and claims up to `free` queued tasks for `worker`, in one
    /// transaction; returns the claimed tasks, or `None` if nothing could be written (backing
    /// off, or the write failed).
    pub async fn record_and_claim(
        &mut self,
        worker: &Worker,
        free: usize,
    ) -> Option<Vec<ClaimedTask>> {
        if self.retry_at.is_some_and(|at| at > Instant::now()) {
            return None;
        }
        if !self.refused.is_empty() && self.refused_retry_at <= Instant::now() {
            self.record_refused(worker).await;
        }
        let store = &worker.store;
        let batch: Vec<(&ClaimedTask, &TaskOutcome)> =
            self.waiting.iter().map(|(task, outcome)| (task, outcome)).collect();
        let recording = !batch.is_empty();
        let queues = &worker.options.queues;
        let written =
            tasks::finish_and_claim(store.write(), &worker.id, &batch, queues, free, now_micros())
                .await;
        // A claim of nothing writes nothing: only a recorded result proves the database
        // takes writes again.
        let written = if !recording {
            written.inspect_err(|e| store.connectivity().failed(e))
        } else {
            store.connectivity().observe(written)
        };
        match written {
            Ok((applied, claimed)) => {
                for ((task, _), applied) in self.waiting.drain(..).zip(applied) {
                    report(&task, applied);
                }
                (self.retry_at, self.delay) = (None, FIRST_DELAY);
                if recording {
                    store.wake_scheduler().await;
                }
                Some(claimed)
            }
            Err(e) if e.is_unavailable() || self.waiting.is_empty() => {
                if !e.is_unavailable() {
                    tracing::error!("claiming tasks failed, retrying: {e}");
                }
                self.retry_at = Some(Instant::now() + self.delay);
                self.delay = (self.delay * 2).min(MAX_DELAY);
                None
            }
            Err(e) => {
                tracing::error!(
                    "cannot record {} results, writing each alone: {e}",
                    self.waiting.len()
                );
                self.refused.append(&mut self.waiting);
                self.refused_retry_at = Instant::now();
                None
            }
        }
    }

    /// Writes each refused result in a transaction of its own; those that fail again wait
    /// [`REFUSED_RETRY`].
    async fn record_refused(&mut self, worker: &Worker) {
        let mut recorded = false;
        for (task, outcome) in std::mem::take(&mut self.refused) {
            match tasks::finish(worker.store.write(), &task, &worker.id, &outcome, now_micros())
                .await
            {
                Ok(applied) => {
                    report(&task, applied);
                    recorded = true;
                }
                Err(e) => {
                    tracing::error!(dag = %task.dag_id, task = %task.task_id, try_number = task.try_number,
                        "cannot record result, retrying: {e}");
                    self.refused.push((task, outcome));
                }
            }
        }
        self.refused_retry_at = Instant::now() + REFUSED_RETRY;
        if recorded {
            worker.store.wake_scheduler().await;
        }
    }
}

/// Says so when a result was discarded.
fn report(task: &ClaimedTask, applied: bool) {
    if !applied {
        tracing::warn!(
            dag = %task.dag_id, task = %task.task_id, try_number = task.try_number,
            "result discarded: this try was taken over (its worker presumed dead, or the task marked by hand)"
        );
    }
}
