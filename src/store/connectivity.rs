//! What this process has seen of the database's availability: whether its latest writes
//! failed, since when, and why. Loops report here: failures of any statement, and successes of
//! writes that certainly wrote (heartbeats, results), since on a full disk reads and empty
//! updates still succeed. Transitions are logged once each, and `/health` shows an outage.
//!
//! It observes and reports only; deciding what an outage means (say, for task liveness) is
//! the caller's business.

use std::sync::Mutex;

use super::StoreError;
use crate::time::{now_micros, Micros};

/// A period during which this process's statements failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// When the first failure was seen.
    pub since: Micros,
    /// The latest error.
    pub error: String,
}

#[derive(Debug, Default)]
pub struct Connectivity {
    current: Mutex<Option<Outage>>,
}

impl Connectivity {
    /// Records a failed statement; the first of an outage is logged as an error. Errors that
    /// are not about availability (see [`StoreError::is_unavailable`]) are not outages.
    pub fn failed(&self, error: &StoreError) {
        if !error.is_unavailable() {
            return;
        }
        let mut current = self.current.lock().unwrap();
        let error = error.to_string();
        match current.as_mut() {
            Some(outage) => outage.error = error,
            None => {
                tracing::error!("database unavailable: {error}; retrying");
                *current = Some(Outage { since: now_micros(), error });
            }
        }
    }

    /// Records a write that went through; ends an outage, logging how long it lasted.
    pub fn succeeded(&self) {
        let ended = self.current.lock().unwrap().take();
        if let Some(outage) = ended {
            let seconds = (now_micros() - outage.since) as f64 / 1e6;
            tracing::warn!("database available again after {seconds:.1} s");
        }
    }

    /// Records the outcome of a write and passes it on.
    pub fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.succeeded(),
            Err(error) => self.failed(error),
        }
        result
    }

    /// The outage going on, if no write went through since a failure.
    pub fn outage(&self) -> Option<Outage> {
        self.current.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_lasts_from_the_first_failure_to_the_next_success() {
        let connectivity = Connectivity::default();
        assert_eq!(connectivity.outage(), None);
        let unreachable = |what: &str| {
            StoreError::Database(sqlx::Error::Io(std::io::Error::other(what.to_string())))
        };
        connectivity.failed(&StoreError::Corrupt("a bad row is no outage".into()));
        assert_eq!(connectivity.outage(), None);
        connectivity.failed(&unreachable("first"));
        let since = connectivity.outage().unwrap().since;
        connectivity.failed(&unreachable("second"));
        let outage = connectivity.outage().unwrap();
        assert_eq!(outage.since, since, "the outage started at the first failure");
        assert!(outage.error.contains("second"), "{outage:?}");
        assert!(connectivity.observe(Ok::<_, StoreError>(())).is_ok());
        assert_eq!(connectivity.outage(), None);
    }
}
