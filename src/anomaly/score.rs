//! Scoring detections against the truth: the simulator labels the events of the anomalies it
//! injects, a window and key counts as truly anomalous for a kind when enough of its events
//! carry the kind's label, and what a detector flagged is compared with that (true and false
//! positives, misses, recall, precision). Used by the tests and the benchmark that print the
//! confusion table; nothing here runs in production.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A window (its start, µs) and a series key.
pub type WindowKey = (i64, String);

/// Labeled events counted per scope (`endpoint`, `ip`: what a key is), window and key.
#[derive(Debug, Default)]
pub struct Truth {
    window: i64,
    counts: HashMap<(String, WindowKey), (u32, BTreeMap<String, u32>)>,
}

impl Truth {
    /// Counts events into windows of `window` µs (aligned to the epoch).
    pub fn new(window: i64) -> Truth {
        Truth { window, counts: HashMap::new() }
    }

    /// One event at `time` (µs) whose key in `scope` is `key`, labeled with its anomaly kind.
    pub fn add(&mut self, scope: &str, key: &str, time: i64, label: Option<&str>) {
        let start = time.div_euclid(self.window) * self.window;
        let entry = self.counts.entry((scope.to_string(), (start, key.to_string()))).or_default();
        entry.0 += 1;
        if let Some(kind) = label {
            *entry.1.entry(kind.to_string()).or_default() += 1;
        }
    }

    /// The windows and keys of `scope` truly anomalous for `kind`: at least `min_count` events,
    /// at least `share` of them labeled `kind`.
    pub fn anomalous(
        &self,
        scope: &str,
        kind: &str,
        min_count: u32,
        share: f64,
    ) -> BTreeSet<WindowKey> {
        self.counts
            .iter()
            .filter(|((s, _), (events, labeled))| {
                let labeled = labeled.get(kind).copied().unwrap_or(0);
                s == scope
                    && *events >= min_count
                    && f64::from(labeled) >= share * f64::from(*events)
                    && labeled > 0
            })
            .map(|((_, window_key), _)| window_key.clone())
            .collect()
    }
}

/// What a detector flagged, against the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    pub truth: usize,
    pub flagged: usize,
    pub true_positives: usize,
}

impl Confusion {
    pub fn of(truth: &BTreeSet<WindowKey>, flagged: &BTreeSet<WindowKey>) -> Confusion {
        let true_positives = flagged.intersection(truth).count();
        Confusion { truth: truth.len(), flagged: flagged.len(), true_positives }
    }

    pub fn false_positives(&self) -> usize {
        self.flagged - self.true_positives
    }

    pub fn misses(&self) -> usize {
        self.truth - self.true_positives
    }

    /// 1 when there was nothing to find.
    pub fn recall(&self) -> f64 {
        self.true_positives as f64 / self.truth.max(1) as f64
    }

    /// 1 when nothing was flagged.
    pub fn precision(&self) -> f64 {
        self.true_positives as f64 / self.flagged.max(1) as f64
    }

    /// Adds another run's counts.
    pub fn add(&mut self, other: Confusion) {
        self.truth += other.truth;
        self.flagged += other.flagged;
        self.true_positives += other.true_positives;
    }

    /// The table's header, matching [`Confusion::row`].
    pub fn header() -> &'static str {
        "kind            truth  found    tp   fp   fn  recall  precision"
    }

    /// One line of the confusion table.
    pub fn row(&self, kind: &str) -> String {
        format!(
            "{kind:<15} {:>5}  {:>5}  {:>4} {:>4} {:>4}  {:>6.2}  {:>9.2}",
            self.truth,
            self.flagged,
            self.true_positives,
            self.false_positives(),
            self.misses(),
            self.recall(),
            self.precision()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_anomalous_by_the_share_of_labeled_events() {
        let mut truth = Truth::new(60);
        for t in 0..10 {
            truth.add("endpoint", "/a", t, (t < 6).then_some("spike"));
            truth.add("endpoint", "/b", t, (t < 4).then_some("spike"));
            truth.add("endpoint", "/a", 60 + t, None);
        }
        let found = truth.anomalous("endpoint", "spike", 5, 0.5);
        assert_eq!(found, BTreeSet::from([(0, "/a".to_string())]));
        assert!(truth.anomalous("endpoint", "spike", 11, 0.5).is_empty(), "min_count");
        assert!(truth.anomalous("ip", "spike", 1, 0.5).is_empty(), "scope");

        let flagged = BTreeSet::from([(0, "/a".to_string()), (60, "/a".to_string())]);
        let c = Confusion::of(&found, &flagged);
        assert_eq!((c.true_positives, c.false_positives(), c.misses()), (1, 1, 0));
        assert_eq!((c.recall(), c.precision()), (1.0, 0.5));
        assert!(c.row("spike").starts_with("spike"));
    }
}
