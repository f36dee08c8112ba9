//! What a running job shares with the worker that runs it, besides its log: a stop request
//! it should honour, and the progress it reports, which is also its own heartbeat.
//!
//! A job that runs for long (a stream, a micro-batch loop, a big scan) checks
//! [`JobContext::is_cancelled`] between steps, or selects on [`JobContext::cancelled`], and
//! returns [`JobError::Cancelled`] once it has stopped cleanly. It reports progress (rows,
//! bytes, a short message) with [`JobContext::report_progress`]; the worker stores the latest
//! report with the try at each heartbeat, where the task page and the API show it. A job that
//! stops reporting while its worker still heartbeats is alive but stuck, and shows as such.
//!
//! [`JobContext::is_cancelled`]: super::JobContext::is_cancelled
//! [`JobContext::cancelled`]: super::JobContext::cancelled
//! [`JobContext::report_progress`]: super::JobContext::report_progress
//! [`JobError::Cancelled`]: super::JobError::Cancelled

use std::sync::{Arc, Mutex};

use crate::time::{now_micros, Micros};
use serde::{Deserialize, Serialize};

/// The worker's side of a stop request: a shutdown trigger of one try (dropping it asks too).
pub type Canceller = crate::process::ShutdownTrigger;

/// The job's side of a stop request.
pub type Cancellation = crate::process::Shutdown;

/// A new stop request, not yet made.
pub fn cancellation() -> (Canceller, Cancellation) {
    crate::process::shutdown_channel()
}

/// How far a job has got, as it last said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The latest progress report of a try, shared by the job (writing) and its worker (reading).
#[derive(Clone, Default)]
pub struct ProgressCell(Arc<Mutex<Latest>>);

#[derive(Default)]
struct Latest {
    progress: Progress,
    at: Micros,
    /// Whether there is a report the worker has not taken yet.
    unseen: bool,
}

impl ProgressCell {
    /// Records a report (and a sign of life) at this moment.
    pub fn report(&self, progress: Progress) {
        let mut latest = self.0.lock().unwrap();
        *latest = Latest { progress, at: now_micros(), unseen: true };
    }

    /// Records a sign of life without new figures.
    pub fn beat(&self) {
        let mut latest = self.0.lock().unwrap();
        latest.at = now_micros();
        latest.unseen = true;
    }

    /// The latest report and when it was made, if not taken since.
    pub fn take_unseen(&self) -> Option<(Progress, Micros)> {
        let mut latest = self.0.lock().unwrap();
        if !latest.unseen {
            return None;
        }
        latest.unseen = false;
        Some((latest.progress.clone(), latest.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_request_reaches_the_job() {
        let (canceller, cancellation) = cancellation();
        assert!(!cancellation.is_requested());
        let waiting = crate::process::spawn_owned({
            let mut cancellation = cancellation.clone();
            async move { cancellation.wait().await }
        });
        canceller.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting).await.unwrap().unwrap();
        assert!(cancellation.is_requested());
    }

    #[test]
    fn each_report_is_taken_once() {
        let cell = ProgressCell::default();
        assert_eq!(cell.take_unseen(), None);
        cell.report(Progress { rows: Some(10), ..Default::default() });
        let (progress, at) = cell.take_unseen().unwrap();
        assert_eq!((progress.rows, at > 0), (Some(10), true));
        assert_eq!(cell.take_unseen(), None);
        cell.beat();
        assert_eq!(cell.take_unseen().unwrap().0.rows, Some(10), "a beat keeps the figures");
    }
}
