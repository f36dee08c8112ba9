use std::collections::HashSet;

use super::*;

fn check(detector: Detector, baseline: Baseline) -> Check {
    Check {
        detector,
        threshold: detector.default_threshold(),
        baseline,
        history: 30,
        min_baseline: 5,
        min_count: 10.0,
        min_deviation: 0.0,
    }
}

/// Twenty quiet minutes of `key` around `level`, a spike of `spike` at minute 20, then quiet.
fn series(key: &str, level: f64, spike: f64) -> Vec<Point> {
    (0..30)
        .map(|minute| {
            let wobble = [0.0, 0.08, -0.05, 0.03, -0.07][minute % 5] * level;
            let value = if minute == 20 { spike } else { level + wobble };
            Point { window_start: minute as i64 * 60_000_000, key: key.into(), value, count: value }
        })
        .collect()
}

#[test]
fn every_detector_finds_a_spike_and_nothing_else() {
    for detector in [Detector::RatioToMean, Detector::Zscore, Detector::Ewma, Detector::Mad] {
        let found = evaluate(
            &check(detector, Baseline::History),
            &series("/cart", 100.0, 600.0),
            None,
            &HashSet::new(),
        );
        assert_eq!(found.len(), 1, "{detector:?}: {found:?}");
        assert_eq!(found[0].window_start, 20 * 60_000_000);
        assert!((90.0..110.0).contains(&found[0].baseline), "{detector:?}: {:?}", found[0]);
        assert!(found[0].score >= detector.default_threshold());
    }
}

#[test]
fn quiet_keys_short_baselines_and_earlier_windows_are_not_scored() {
    let quiet = series("/quiet", 3.0, 40.0);
    let spikes = check(Detector::RatioToMean, Baseline::History);
    // The spike's 40 events pass min_count, but the baseline around 3 does not: only the
    // count of the window under test matters.
    assert_eq!(evaluate(&spikes, &quiet, None, &HashSet::new()).len(), 1);
    let strict = Check { min_count: 50.0, ..spikes.clone() };
    assert!(evaluate(&strict, &quiet, None, &HashSet::new()).is_empty());
    let early = series("/early", 100.0, 100.0);
    let mut points = early.clone();
    points[2].value = 900.0;
    assert!(evaluate(&spikes, &points, None, &HashSet::new()).is_empty(), "2 baseline values");
    let scored =
        evaluate(&spikes, &series("/cart", 100.0, 600.0), Some(20 * 60_000_000), &HashSet::new());
    assert!(scored.is_empty(), "minute 20 was scored by an earlier try");
}

#[test]
fn anomalous_windows_stay_out_of_later_baselines() {
    // A spike three minutes long: each of its minutes is compared with the quiet ones.
    let mut points = series("/cart", 100.0, 600.0);
    points[21].value = 600.0;
    points[22].value = 600.0;
    let found =
        evaluate(&check(Detector::Zscore, Baseline::History), &points, None, &HashSet::new());
    assert_eq!(found.len(), 3, "{found:?}");
    // Flagged by an earlier try: still kept out.
    let flagged = HashSet::from([(20 * 60_000_000, "/cart".to_string())]);
    let later = evaluate(
        &check(Detector::Zscore, Baseline::History),
        &points,
        Some(20 * 60_000_000),
        &flagged,
    );
    assert_eq!(later.len(), 2, "{later:?}");
}

#[test]
fn one_key_among_many_is_compared_with_the_others() {
    let mut points: Vec<Point> = (0..200)
        .map(|i| Point {
            window_start: 0,
            key: format!("10.0.0.{i}"),
            value: 2.0 + (i % 3) as f64,
            count: 40.0,
        })
        .collect();
    points.push(Point { window_start: 0, key: "10.9.9.9".into(), value: 400.0, count: 400.0 });
    let keys = Check { threshold: 20.0, ..check(Detector::RatioToMean, Baseline::Keys) };
    let found = evaluate(&keys, &points, None, &HashSet::new());
    assert_eq!(found.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["10.9.9.9"]);
    assert_eq!(found[0].severity, Severity::Critical);
}

#[test]
fn metrics_are_columns_or_ratios() {
    assert_eq!(Metric::parse("requests").unwrap(), Metric::Column("requests".into()));
    assert_eq!(
        Metric::parse("errors / requests").unwrap(),
        Metric::Ratio("errors".into(), "requests".into())
    );
    assert!(Metric::parse("errors - requests").is_err());
}
