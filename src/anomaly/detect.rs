//! The detectors and the evaluation of a check over a table's points (see the module comment).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// How a value is compared with its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    RatioToMean,
    Zscore,
    Ewma,
    Mad,
}

impl Detector {
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::RatioToMean => "ratio_to_mean",
            Detector::Zscore => "zscore",
            Detector::Ewma => "ewma",
            Detector::Mad => "mad",
        }
    }

    /// The score above which a value is anomalous when the check sets none.
    pub fn default_threshold(self) -> f64 {
        match self {
            Detector::RatioToMean => 3.0,
            Detector::Zscore | Detector::Ewma => 4.0,
            Detector::Mad => 5.0,
        }
    }

    /// The baseline's centre and the value's score against it, the deviation taken no lower
    /// than `min_deviation` nor 5 % of the centre; `None` for an empty baseline.
    pub fn score(self, baseline: &[f64], value: f64, min_deviation: f64) -> Option<(f64, f64)> {
        if baseline.is_empty() {
            return None;
        }
        let (centre, spread) = match self {
            Detector::RatioToMean => {
                let mean = mean(baseline);
                let score = if mean > 0.0 { value / mean } else { f64::INFINITY };
                return Some((mean, if value > 0.0 { score } else { 0.0 }));
            }
            Detector::Zscore => {
                let mean = mean(baseline);
                let variance = baseline.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                    / (baseline.len().max(2) - 1) as f64;
                (mean, variance.sqrt())
            }
            Detector::Ewma => {
                const ALPHA: f64 = 0.3;
                let (mut mean, mut variance) = (baseline[0], 0.0);
                for v in &baseline[1..] {
                    let delta = v - mean;
                    mean += ALPHA * delta;
                    variance = (1.0 - ALPHA) * (variance + ALPHA * delta * delta);
                }
                (mean, variance.sqrt())
            }
            Detector::Mad => {
                let median = median(baseline.to_vec());
                let deviations = baseline.iter().map(|v| (v - median).abs()).collect();
                (median, 1.4826 * self::median(deviations))
            }
        };
        let floor = (0.05 * centre.abs()).max(min_deviation).max(1e-9);
        Some((centre, (value - centre) / spread.max(floor)))
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// What a check scores: a column, or the ratio of two (`errors / requests`).
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Column(String),
    Ratio(String, String),
}

impl Metric {
    pub fn parse(text: &str) -> Result<Metric, String> {
        let name = |part: &str| {
            let part = part.trim();
            let valid =
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            valid
                .then(|| part.to_string())
                .ok_or_else(|| format!("metric `{text}`: expected a column or `column / column`"))
        };
        match text.split_once('/') {
            Some((top, bottom)) => Ok(Metric::Ratio(name(top)?, name(bottom)?)),
            None => Ok(Metric::Column(name(text)?)),
        }
    }

    /// The columns it reads.
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Metric::Column(c) => vec![c],
            Metric::Ratio(a, b) => vec![a, b],
        }
    }

    pub fn text(&self) -> String {
        match self {
            Metric::Column(c) => c.clone(),
            Metric::Ratio(a, b) => format!("{a} / {b}"),
        }
    }
}

/// Where a value's baseline comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// The same key's previous windows.
    #[default]
    History,
    /// The other keys of the same window.
    Keys,
}

/// One metric's anomaly check, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Check {
    pub detector: Detector,
    pub threshold: f64,
    pub baseline: Baseline,
    /// With `history`: how many previous windows of the key make the baseline.
    pub history: usize,
    /// Fewest baseline values a score needs.
    pub min_baseline: usize,
    /// Windows whose count is below this are not scored.
    pub min_count: f64,
    /// The smallest deviation a score divides by (a rate's sampling noise: an error rate of
    /// 2 in 40 is no burst against a baseline of 0).
    pub min_deviation: f64,
}

/// A metric's value in one window for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub window_start: i64,
    pub key: String,
    pub value: f64,
    /// The window's event count for the key (what `min_count` is compared with).
    pub count: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    /// At least twice the threshold.
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// An anomalous value.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub window_start: i64,
    pub key: String,
    pub value: f64,
    pub baseline: f64,
    pub score: f64,
    pub severity: Severity,
}

/// Scores the points of windows after `scored_until` (all with `None`), the earlier points
/// serving as baseline only. `flagged` names (window start, key) found anomalous before, kept
/// out of baselines, as are the findings of this evaluation. Findings come in window order.
pub fn evaluate(
    check: &Check,
    points: &[Point],
    scored_until: Option<i64>,
    flagged: &HashSet<(i64, String)>,
) -> Vec<Finding> {
    let mut by_window: BTreeMap<i64, Vec<&Point>> = BTreeMap::new();
    for point in points {
        by_window.entry(point.window_start).or_default().push(point);
    }
    let mut history: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut findings = Vec::new();
    for (start, window) in &by_window {
        let to_score = scored_until.is_none_or(|until| *start > until);
        let mut found: HashSet<&str> = HashSet::new();
        if to_score {
            for (i, point) in window.iter().enumerate() {
                if point.count < check.min_count || !point.value.is_finite() {
                    continue;
                }
                let baseline: Vec<f64> = match check.baseline {
                    Baseline::History => history.get(point.key.as_str()).map_or(Vec::new(), |h| {
                        h[h.len().saturating_sub(check.history)..].to_vec()
                    }),
                    Baseline::Keys => window
                        .iter()
                        .enumerate()
                        .filter(|(j, p)| *j != i && p.value.is_finite())
                        .map(|(_, p)| p.value)
                        .collect(),
                };
                if baseline.len() < check.min_baseline.max(1) {
                    continue;
                }
                let Some((centre, score)) =
                    check.detector.score(&baseline, point.value, check.min_deviation)
                else {
                    continue;
                };
                if score >= check.threshold {
                    found.insert(point.key.as_str());
                    let severity = if score >= 2.0 * check.threshold {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    };
                    findings.push(Finding {
                        window_start: *start,
                        key: point.key.clone(),
                        value: point.value,
                        baseline: centre,
                        score,
                        severity,
                    });
                }
            }
        }
        for point in window {
            let anomalous = found.contains(point.key.as_str())
                || flagged.contains(&(*start, point.key.clone()));
            if !anomalous && point.value.is_finite() {
                history.entry(point.key.as_str()).or_default().push(point.value);
            }
        }
    }
    findings
}
