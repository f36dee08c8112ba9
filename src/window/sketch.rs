//! A mergeable quantile sketch with a relative error bound (the DDSketch idea): values are
//! counted in logarithmic buckets `(γ^(i-1), γ^i]` with `γ = (1 + α) / (1 - α)`, and a quantile
//! is answered with the bucket's midpoint `2γ^i / (γ + 1)`, which is within `α` (relative) of
//! every value in the bucket. So the answer for rank `r` is within ±α of the exact value of
//! rank `r`, whatever the distribution; two sketches merge by adding their counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The relative accuracy α of every sketch: ±1 %.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Values at or below this count as zero (response times, sizes: nothing is that small).
const MIN_POSITIVE: f64 = 1e-9;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuantileSketch {
    /// Values ≤ 0 (and below [`MIN_POSITIVE`]).
    zeros: u64,
    /// Negative values, by the bucket of their magnitude.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    negatives: BTreeMap<i32, u64>,
    positives: BTreeMap<i32, u64>,
    count: u64,
}

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

fn bucket_of(magnitude: f64) -> i32 {
    (magnitude.ln() / gamma().ln()).ceil() as i32
}

fn value_of(bucket: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(bucket) / (g + 1.0)
}

impl QuantileSketch {
    pub fn add(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        self.count += 1;
        if value.abs() < MIN_POSITIVE {
            self.zeros += 1;
        } else if value > 0.0 {
            *self.positives.entry(bucket_of(value)).or_default() += 1;
        } else {
            *self.negatives.entry(bucket_of(-value)).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &QuantileSketch) {
        self.zeros += other.zeros;
        self.count += other.count;
        for (bucket, n) in &other.positives {
            *self.positives.entry(*bucket).or_default() += n;
        }
        for (bucket, n) in &other.negatives {
            *self.negatives.entry(*bucket).or_default() += n;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value of rank `ceil(q × n) − 1` (0-based, ascending: SQL's `PERCENTILE_DISC`, Polars'
    /// `QUANTILE_DISC`, so a batch recomputation names the same value) within ±α; `None` when
    /// empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = disc_rank(q, self.count);
        let mut seen = 0;
        // Ascending: the most negative first (largest magnitude), then zeros, then positives.
        for (bucket, n) in self.negatives.iter().rev() {
            seen += n;
            if seen > rank {
                return Some(-value_of(*bucket));
            }
        }
        seen += self.zeros;
        if seen > rank {
            return Some(0.0);
        }
        for (bucket, n) in &self.positives {
            seen += n;
            if seen > rank {
                return Some(value_of(*bucket));
            }
        }
        self.positives.keys().next_back().map(|b| value_of(*b))
    }
}

/// The 0-based rank `PERCENTILE_DISC(q)` answers among `n` values: `ceil(q × n) − 1`.
pub fn disc_rank(q: f64, n: u64) -> u64 {
    ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).saturating_sub(1).min(n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Rng;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[super::disc_rank(q, sorted.len() as u64) as usize]
    }

    /// On skewed, wide and signed data, every answer is within α of the exact value of its
    /// rank, and merging two halves answers like one sketch of the whole.
    #[test]
    fn answers_stay_within_the_relative_error_bound() {
        let mut rng = Rng::new(7);
        let datasets: Vec<Vec<f64>> = vec![
            (0..20_000).map(|_| (rng.unit() * 8.0).exp()).collect(),
            (0..5_000).map(|_| rng.unit() * 1e6 - 5e5).collect(),
            (1..=1000).map(f64::from).collect(),
            vec![0.0, 0.0, 3.5],
        ];
        for values in datasets {
            let mut whole = QuantileSketch::default();
            let (mut left, mut right) = (QuantileSketch::default(), QuantileSketch::default());
            for (i, v) in values.iter().enumerate() {
                whole.add(*v);
                if i % 2 == 0 {
                    left.add(*v)
                } else {
                    right.add(*v)
                }
            }
            left.merge(&right);
            assert_eq!(left, whole);
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
                let (got, want) = (whole.quantile(q).unwrap(), exact(&sorted, q));
                let bound = RELATIVE_ACCURACY * want.abs() + 1e-9;
                assert!((got - want).abs() <= bound, "q {q}: {got} vs exact {want}");
            }
        }
        assert_eq!(QuantileSketch::default().quantile(0.5), None);
    }
}
