//! Running a Polars plan for the console: on Polars' own threads, polled from the async side,
//! and cancelled (not abandoned) when the caller stops waiting.

use std::time::{Duration, Instant};

use polars::prelude::{DataFrame, InProcessQuery, LazyFrame};

use super::QueryError;

/// Collects `frame` on Polars' threads; dropping the returned future cancels the query.
pub async fn collect(frame: LazyFrame) -> Result<DataFrame, QueryError> {
    let running = Running(Some(frame.collect_concurrently()?));
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(result) = running.0.as_ref().and_then(InProcessQuery::fetch) {
            return Ok(result?);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// A query running on Polars' threads, cancelled when dropped before its result was taken.
struct Running(Option<InProcessQuery>);

impl Drop for Running {
    fn drop(&mut self) {
        let Some(query) = self.0.take() else { return };
        if let Some(_finished) = query.fetch() {
            return;
        }
        query.cancel();
        // Polars' worker sends its (cancelled) result to the query and aborts the process if
        // nobody holds the receiving end: hold it until the result arrives (once the plan
        // reaches its next step), or until a worker that failed without sending is given up.
        std::thread::spawn(move || {
            let patience = Instant::now() + Duration::from_secs(600);
            while query.fetch().is_none() && Instant::now() < patience {
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
}
