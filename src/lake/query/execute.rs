//! Running a Polars plan for the console, on a blocking thread, on the engine
//! [`crate::lake::engine`] picks, cancelled (not abandoned) when the caller stops waiting.
//!
//! Polars' own token cancels the in-memory engine. The streaming engine has no cancellation of
//! its own, so every source frame of a query is wrapped by [`Cancel::guard`]: an identity step
//! on each morsel that fails once the query is cancelled, which Polars may push filters and
//! column choices through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use polars::prelude::{polars_err, DataFrame, LazyFrame, OptFlags, PolarsResult};

use super::{Outcomes, QueryError};
use crate::lake::engine::{collect_streaming, narrow_group_keys, Engine};

/// How often a query on the in-memory engine is checked for cancellation.
const CHECK: Duration = Duration::from_millis(5);

/// The cancellation of one query, shared by the frames it reads.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// `frame`, failing at its next morsel once the query is cancelled.
    pub fn guard(&self, frame: LazyFrame) -> LazyFrame {
        let cancelled = self.0.clone();
        let check = move |morsel: DataFrame| {
            if cancelled.load(Ordering::Relaxed) {
                Err(polars_err!(ComputeError: "the query was cancelled"))
            } else {
                Ok(morsel)
            }
        };
        let passes =
            OptFlags::PREDICATE_PUSHDOWN | OptFlags::PROJECTION_PUSHDOWN | OptFlags::STREAMING;
        frame.map(check, passes, None, Some("cancellation check"))
    }

    fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Cancels the query when dropped: the caller stopped waiting (time limit, client gone).
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Collects `frame`, whose sources are guarded by `cancel`, counted in `outcomes.running`
/// until the engine returns; dropping the returned future cancels the query.
pub async fn collect(
    frame: LazyFrame,
    engine: Engine,
    cancel: Cancel,
    outcomes: &Arc<Outcomes>,
) -> Result<DataFrame, QueryError> {
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let running = Running::start(outcomes.clone());
    let result = crate::process::blocking(move || {
        let _running = running;
        run(frame, engine, &cancel)
    })
    .await;
    let result = result.map_err(|e| QueryError::Engine {
        message: format!("the query's thread failed: {e}"),
        class: crate::domain::ErrorClass::Transient,
    })?;
    Ok(result?)
}

/// A query counted as running until dropped.
struct Running(Arc<Outcomes>);

impl Running {
    fn start(outcomes: Arc<Outcomes>) -> Running {
        outcomes.running.fetch_add(1, Ordering::Relaxed);
        Running(outcomes)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `frame` to the end on this thread.
fn run(frame: LazyFrame, engine: Engine, cancel: &Cancel) -> PolarsResult<DataFrame> {
    if engine == Engine::Streaming {
        // A plan the streaming engine rejects runs on the in-memory engine.
        if let Some(result) = collect_streaming(narrow_group_keys(frame.clone())) {
            return result;
        }
    }
    let query = frame.collect_concurrently()?;
    loop {
        if let Some(result) = query.fetch() {
            return result;
        }
        if cancel.is_cancelled() {
            query.cancel();
            // Polars' worker aborts the process if nobody holds the receiving end when it
            // sends its (cancelled) result: wait for it.
            return query.fetch_blocking();
        }
        std::thread::sleep(CHECK);
    }
}
