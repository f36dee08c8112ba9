//! Anomaly detection over metric series: pure computation, no I/O (the `anomaly` task kind
//! reads the metrics tables and writes what this module finds).
//!
//! A [`Check`] scores one metric of one metrics table per window and key against a baseline:
//! the same key's previous windows (`history`, excluding the window under test and windows
//! already found anomalous) or the other keys of the same window (`keys`, for "one client
//! among thousands"). Four detectors turn a value and its baseline into a score:
//!
//! * `ratio_to_mean`: value ÷ mean (seed 004's rule: anomalous above k × the mean);
//! * `zscore`: (value − mean) ÷ standard deviation;
//! * `ewma`: (value − exponentially weighted mean) ÷ exponentially weighted deviation, so
//!   recent windows weigh more (α = 0.3);
//! * `mad`: (value − median) ÷ (1.4826 × median absolute deviation), robust to outliers.
//!
//! The deviation is never taken below 5 % of the baseline's centre nor below the check's
//! `min_deviation`, so a flat baseline does not turn noise into alarms. Only values above the
//! baseline alarm (spikes, bursts, slowness). A window whose count is below `min_count` is not scored (quiet keys do not alarm), nor a key
//! with fewer than `min_baseline` baseline values. [`score`] compares findings with the
//! simulator's labels (tests and benchmarks).

mod detect;
pub mod score;
#[cfg(test)]
mod tests;

pub use detect::{evaluate, Baseline, Check, Detector, Finding, Metric, Point, Severity};

/// How a series' key is written: its key columns' values joined by spaces (`/cart`,
/// `eu-west /cart`), in anomalies tables and wherever they are looked up.
pub fn series_key<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    values.into_iter().collect::<Vec<_>>().join(" ")
}
