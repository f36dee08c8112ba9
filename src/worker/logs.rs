//! Moves a running try's log lines from the job to the database, in batches, keeping at most
//! [`MAX_TRY_LOG_BYTES`] per try: past that, one marker line says how much was dropped. Lines
//! wait out a short database outage (up to [`OUTAGE_PATIENCE`]) rather than being lost.

use std::time::Duration;

use tokio::sync::mpsc;

use super::outage::until_answered;
use crate::jobs::{LogLine, Stream};
use crate::store::logs;
use crate::store::{Store, StoreError};

/// Longest a line waits before being written, so live logs stay live.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
const MAX_BATCH: usize = 500;
/// How long a batch of lines waits for an unreachable database before it is dropped.
const OUTAGE_PATIENCE: Duration = Duration::from_secs(60);
/// Most log text stored for one try; a runaway command cannot fill the database.
pub const MAX_TRY_LOG_BYTES: usize = 32 * 1024 * 1024;

/// Writes lines from `rx` to the log of try `try_number` of task instance `ti_id` until every
/// sender is dropped, then returns after the last write.
pub(super) async fn flush_logs(
    store: Store,
    ti_id: i64,
    try_number: i64,
    mut rx: mpsc::UnboundedReceiver<LogLine>,
) {
    let mut batch = Vec::new();
    let mut budget = Budget { left: MAX_TRY_LOG_BYTES, dropped_lines: 0, dropped_bytes: 0 };
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
        budget.apply(&mut batch);
        if batch.is_empty() {
            continue;
        }
        append_patiently(&store, ti_id, try_number, &batch).await;
        batch.clear();
    }
    if budget.dropped_lines > 0 {
        let note = LogLine {
            at: crate::time::now_micros(),
            stream: Stream::System,
            text: format!(
                "[log truncated: {} more lines ({} bytes) dropped after {} MiB]",
                budget.dropped_lines,
                budget.dropped_bytes,
                MAX_TRY_LOG_BYTES >> 20
            ),
        };
        append_patiently(&store, ti_id, try_number, &[note]).await;
    }
}

/// Writes `lines`, trying again for up to [`OUTAGE_PATIENCE`] while the database cannot be
/// reached (newer lines wait in the channel meanwhile); drops them with a warning if that is
/// not enough, or if the database refuses them.
async fn append_patiently(store: &Store, ti_id: i64, try_number: i64, lines: &[LogLine]) {
    let append = || logs::append(store.write(), ti_id, try_number, lines);
    let patience = tokio::time::sleep(OUTAGE_PATIENCE);
    if let Err(e) = until_answered(append, StoreError::is_unavailable, patience).await {
        tracing::warn!(ti_id, "dropping {} log lines: {e}", lines.len());
    }
}

/// What is left of a try's log allowance, and what went over it.
struct Budget {
    left: usize,
    dropped_lines: usize,
    dropped_bytes: usize,
}

impl Budget {
    /// Keeps the lines of `batch` that fit, counting the others.
    fn apply(&mut self, batch: &mut Vec<LogLine>) {
        batch.retain(|line| {
            let size = line.text.len();
            if size <= self.left && self.dropped_lines == 0 {
                self.left -= size;
                true
            } else {
                self.dropped_lines += 1;
                self.dropped_bytes += size;
                false
            }
        });
    }
}
