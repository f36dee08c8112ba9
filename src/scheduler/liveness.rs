//! Whether a worker is alive, judged from its heartbeats on the time the database could
//! receive them.
//!
//! While the database is unreachable no worker can heartbeat, so wall time during an outage
//! says nothing about them. This scheduler remembers the gaps in its own contact with the
//! database (passes that failed, or that came much later than its poll interval) and leaves
//! them out when it measures a heartbeat's silence; a worker gets the whole timeout again
//! after the database comes back. It knows only what this scheduler saw: it never writes.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Micros;

/// Gaps remembered at most (older ones matter only to heartbeats older than any timeout).
const MAX_GAPS: usize = 256;

#[derive(Debug)]
pub struct Liveness {
    timeout: Micros,
    /// Successful passes further apart than this count as a gap in contact.
    slow: Micros,
    /// When the latest successful pass ended.
    last_contact: Option<Micros>,
    /// Set while passes fail: when contact was last known good.
    unreachable_since: Option<Micros>,
    /// Periods without contact, oldest first, as `[start, end)`.
    gaps: VecDeque<(Micros, Micros)>,
}

fn micros(duration: Duration) -> Micros {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl Liveness {
    pub fn new(timeout: Duration, poll_interval: Duration) -> Liveness {
        Liveness {
            timeout: micros(timeout),
            slow: micros(poll_interval * 2 + Duration::from_secs(1)),
            last_contact: None,
            unreachable_since: None,
            gaps: VecDeque::new(),
        }
    }

    /// A pass that reached the database ended at `at`.
    pub fn pass_succeeded(&mut self, at: Micros) {
        let gap = match (self.unreachable_since.take(), self.last_contact) {
            (Some(since), _) => Some(since),
            (None, Some(last)) if at - last > self.slow => Some(last),
            _ => None,
        };
        if let Some(start) = gap {
            self.gaps.push_back((start, at));
            if self.gaps.len() > MAX_GAPS {
                self.gaps.pop_front();
            }
        }
        self.last_contact = Some(at);
    }

    /// A pass that started at `started` could not reach the database.
    pub fn pass_failed(&mut self, started: Micros) {
        if self.unreachable_since.is_none() {
            self.unreachable_since = Some(self.last_contact.unwrap_or(started));
        }
    }

    /// Heartbeats older than this may be silent for the timeout: the ones worth checking.
    pub fn candidates_before(&self, now: Micros) -> Micros {
        now.saturating_sub(self.timeout)
    }

    /// How long a worker whose latest heartbeat is `heartbeat` has been silent at `now`,
    /// leaving out the time contact was lost (an outage still going on counts up to `now`).
    pub fn silence(&self, heartbeat: Micros, now: Micros) -> Micros {
        let ongoing = self.unreachable_since.map(|since| (since, now));
        let lost: Micros = self
            .gaps
            .iter()
            .copied()
            .chain(ongoing)
            .map(|(start, end)| (end.min(now) - start.max(heartbeat)).max(0))
            .sum();
        (now - heartbeat - lost).max(0)
    }

    /// Whether the worker behind `heartbeat` has been silent for the timeout.
    pub fn is_silent(&self, heartbeat: Micros, now: Micros) -> bool {
        self.silence(heartbeat, now) >= self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Micros = 1_000_000;

    fn liveness() -> Liveness {
        Liveness::new(Duration::from_secs(10), Duration::from_secs(1))
    }

    #[test]
    fn silence_is_wall_time_while_the_database_answers() {
        let mut l = liveness();
        for at in 0..30 {
            l.pass_succeeded(at * S);
        }
        assert_eq!(l.silence(5 * S, 14 * S), 9 * S);
        assert!(!l.is_silent(5 * S, 14 * S));
        assert!(l.is_silent(5 * S, 15 * S));
    }

    /// The database is down from 10 s to 40 s, longer than the timeout: a heartbeat from 9 s
    /// is not silent when contact returns, and only turns silent 10 s of contact later.
    #[test]
    fn an_outage_does_not_count_as_silence() {
        let mut l = liveness();
        for at in 0..=10 {
            l.pass_succeeded(at * S);
        }
        for at in 11..40 {
            l.pass_failed(at * S);
            assert!(!l.is_silent(9 * S, at * S), "during the outage, at {at} s");
        }
        l.pass_succeeded(40 * S);
        assert_eq!(l.silence(9 * S, 40 * S), S);
        assert!(!l.is_silent(9 * S, 48 * S));
        assert!(l.is_silent(9 * S, 49 * S));
        // A heartbeat received after the outage is judged on wall time again.
        assert_eq!(l.silence(41 * S, 45 * S), 4 * S);
    }

    /// A pass that hung on the database (no error, but long after the previous one) is a gap.
    #[test]
    fn a_pass_long_after_the_previous_one_is_a_gap() {
        let mut l = liveness();
        l.pass_succeeded(0);
        l.pass_succeeded(S);
        l.pass_succeeded(25 * S);
        assert_eq!(l.silence(S, 26 * S), S);
    }
}
