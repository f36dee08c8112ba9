//! What is kept per window and key (the accumulators) and what a computation carries from one
//! try to the next ([`SavedState`]: the watermark, the open windows and, for late updates,
//! the emitted ones still correctable). Serialized as JSON by whoever stores it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::sketch::QuantileSketch;
use super::spec::{Condition, Measure, Windows};

/// What a late event (one whose window the watermark has already closed) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    /// Counted, then dropped.
    #[default]
    Drop,
    /// Written to a late-events table.
    SideOutput,
    /// Merged into its window, whose row is emitted again, corrected (within the update
    /// horizon; later ones go to the late-events table).
    Update,
}

/// Everything that decides a computation's results: state saved under one definition is
/// never resumed under another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub event_time: String,
    pub windows: Windows,
    pub keys: Vec<String>,
    /// Output column → what it computes, in column order.
    pub aggregates: Vec<(String, Measure)>,
    /// Microseconds the watermark trails the largest event time seen.
    pub allowed_lateness: i64,
    pub late: LatePolicy,
    /// With [`LatePolicy::Update`]: how long past the watermark an emitted window can still
    /// be corrected, in microseconds.
    pub update_horizon: i64,
}

/// The distinct inputs the aggregates need; aggregates over the same input share it (`sum`
/// and `avg` of a column, its `p50` and `p99`).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Count,
    CountIf(Condition),
    Sum(String),
    Min(String),
    Max(String),
    Distinct(String),
    Sketch(String),
}

impl Input {
    pub fn of(measure: &Measure) -> Input {
        match measure {
            Measure::Count => Input::Count,
            Measure::CountIf(c) => Input::CountIf(c.clone()),
            Measure::Sum(c) | Measure::Avg(c) => Input::Sum(c.clone()),
            Measure::Min(c) => Input::Min(c.clone()),
            Measure::Max(c) => Input::Max(c.clone()),
            Measure::CountDistinct(c) => Input::Distinct(c.clone()),
            Measure::Quantile(c, _) => Input::Sketch(c.clone()),
        }
    }

    pub fn empty(&self) -> Acc {
        match self {
            Input::Count | Input::CountIf(_) => Acc::Count(0),
            Input::Sum(_) => Acc::Sum { sum: 0.0, n: 0 },
            Input::Min(_) => Acc::Min(None),
            Input::Max(_) => Acc::Max(None),
            Input::Distinct(_) => Acc::Distinct(HashSet::new()),
            Input::Sketch(_) => Acc::Sketch(QuantileSketch::default()),
        }
    }
}

/// One input's running value for a window and key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acc {
    Count(u64),
    Sum {
        sum: f64,
        n: u64,
    },
    Min(Option<f64>),
    Max(Option<f64>),
    /// 64-bit hashes of the distinct values (exact up to hash collisions: about one in 10^10
    /// for a million values).
    Distinct(HashSet<u64>),
    Sketch(QuantileSketch),
}

impl Acc {
    /// The value of `measure` over this input, `None` when no event had a value.
    pub fn finish(&self, measure: &Measure) -> Option<f64> {
        match (self, measure) {
            (Acc::Count(n), _) => Some(*n as f64),
            (Acc::Sum { n: 0, .. }, _) => None,
            (Acc::Sum { sum, n }, Measure::Avg(_)) => Some(sum / *n as f64),
            (Acc::Sum { sum, .. }, _) => Some(*sum),
            (Acc::Min(v) | Acc::Max(v), _) => *v,
            (Acc::Distinct(set), _) => Some(set.len() as f64),
            (Acc::Sketch(sketch), Measure::Quantile(_, q)) => sketch.quantile(*q),
            (Acc::Sketch(_), _) => None,
        }
    }
}

/// One window and key: its start, its key values and one accumulator per input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedGroup {
    pub start: i64,
    pub keys: Vec<Option<String>>,
    pub accs: Vec<Acc>,
}

/// What one try leaves for the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    pub definition: Definition,
    /// The largest event time seen so far.
    pub max_event_time: Option<i64>,
    /// Windows ending at or before it have been emitted.
    pub watermark: Option<i64>,
    pub open: Vec<SavedGroup>,
    /// Emitted windows that late events may still correct (update policy only).
    pub emitted: Vec<SavedGroup>,
    /// Totals since the computation began.
    pub late_events: u64,
    pub late_dropped: u64,
}
