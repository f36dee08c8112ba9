//! Moves a running try's log lines from the job to the database, in batches.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::jobs::LogLine;
use crate::store::Store;

/// Longest a line waits before being written, so live logs stay live.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
const MAX_BATCH: usize = 500;

/// Writes lines from `rx` to the log of try `try_number` of task instance `ti_id` until every
/// sender is dropped, then returns after the last write.
pub(super) async fn flush_logs(
    store: Store,
    ti_id: i64,
    try_number: i64,
    mut rx: mpsc::UnboundedReceiver<LogLine>,
) {
    let mut batch = Vec::new();
    let mut open = true;
    while open {
        match rx.recv().await {
            Some(line) => batch.push(line),
            None => break,
        }
        let deadline = tokio::time::sleep(FLUSH_EVERY);
        tokio::pin!(deadline);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => batch.push(line),
                    None => { open = false; break; }
                },
                _ = &mut deadline => break,
            }
        }
        if let Err(e) = store.append_logs(ti_id, try_number, &batch).await {
            tracing::warn!(ti_id, "dropping {} log lines: {e}", batch.len());
        }
        batch.clear();
    }
}
