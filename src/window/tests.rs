//! The window computation against straightforward recomputation.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use super::*;
use crate::simulate::Rng;

const MINUTE: i64 = 60_000_000;

#[derive(Clone)]
struct Event {
    t: i64,
    endpoint: &'static str,
    status: i64,
    ms: f64,
    ip: String,
}

fn batch(events: &[Event]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())), false),
        Field::new("endpoint", DataType::Utf8, false),
        Field::new("status", DataType::Int64, false),
        Field::new("ms", DataType::Float64, false),
        Field::new("ip", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(events.iter().map(|e| e.t).collect::<Vec<_>>())
                    .with_timezone("+00:00"),
            ),
            Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.endpoint))),
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.status))),
            Arc::new(Float64Array::from_iter_values(events.iter().map(|e| e.ms))),
            Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.ip.as_str()))),
        ],
    )
    .unwrap()
}

fn definition(size: i64, slide: i64, lateness: i64, late: LatePolicy) -> Definition {
    let aggregates = [
        ("requests", "count"),
        ("errors", "count_if(status >= 500)"),
        ("avg_ms", "avg(ms)"),
        ("max_ms", "max(ms)"),
        ("p50_ms", "p50(ms)"),
        ("clients", "count_distinct(ip)"),
    ];
    Definition {
        event_time: "ts".into(),
        windows: Windows::new(size, slide).unwrap(),
        keys: vec!["endpoint".into()],
        aggregates: aggregates
            .iter()
            .map(|(name, text)| (name.to_string(), Measure::parse(text).unwrap()))
            .collect(),
        allowed_lateness: lateness,
        late,
        update_horizon: 60 * MINUTE,
    }
}

fn events(seed: u64, n: usize, jitter: i64) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    let endpoints = ["/", "/cart", "/search"];
    (0..n)
        .map(|i| Event {
            t: i as i64 * 1_000_000 - rng.below(jitter as u64 + 1) as i64,
            endpoint: endpoints[rng.below(3) as usize],
            status: if rng.chance(0.1) { 503 } else { 200 },
            ms: rng.log_normal(80.0, 0.6),
            ip: format!("10.0.0.{}", rng.below(20)),
        })
        .collect()
}

/// (window start, endpoint) → (requests, errors, avg, max, exact median, distinct ips).
type Expected = BTreeMap<(i64, String), (i64, i64, f64, f64, f64, i64)>;

fn recompute(events: &[Event], size: i64, slide: i64) -> Expected {
    let mut groups: BTreeMap<(i64, String), Vec<&Event>> = BTreeMap::new();
    for e in events {
        let last = e.t.div_euclid(slide) * slide;
        let mut start = last;
        while start + size > e.t {
            groups.entry((start, e.endpoint.to_string())).or_default().push(e);
            start -= slide;
        }
    }
    groups
        .into_iter()
        .map(|(key, es)| {
            let mut ms: Vec<f64> = es.iter().map(|e| e.ms).collect();
            ms.sort_by(f64::total_cmp);
            let ips: std::collections::HashSet<&str> = es.iter().map(|e| e.ip.as_str()).collect();
            let value = (
                es.len() as i64,
                es.iter().filter(|e| e.status >= 500).count() as i64,
                ms.iter().sum::<f64>() / ms.len() as f64,
                *ms.last().unwrap(),
                ms[super::sketch::disc_rank(0.5, ms.len() as u64) as usize],
                ips.len() as i64,
            );
            (key, value)
        })
        .collect()
}

fn read_rows(rows: &RecordBatch) -> Expected {
    let starts = rows.column(0).as_primitive::<TimestampMicrosecondType>();
    let keys = rows.column(2).as_string::<i32>();
    let int = |i: usize| rows.column(i).as_primitive::<Int64Type>().clone();
    let float = |i: usize| rows.column(i).as_primitive::<Float64Type>().clone();
    let (requests, errors, avg, max, p50, clients) =
        (int(3), int(4), float(5), float(6), float(7), int(8));
    (0..rows.num_rows())
        .map(|r| {
            let value = (
                requests.value(r),
                errors.value(r),
                avg.value(r),
                max.value(r),
                p50.value(r),
                clients.value(r),
            );
            ((starts.value(r), keys.value(r).to_string()), value)
        })
        .collect()
}

fn assert_matches(got: &Expected, want: &Expected) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (key, g) in got {
        let w = &want[key];
        assert_eq!((g.0, g.1, g.5), (w.0, w.1, w.5), "{key:?}");
        assert!((g.2 - w.2).abs() < 1e-9 && g.3 == w.3, "{key:?}: {g:?} vs {w:?}");
        assert!(
            (g.4 - w.4).abs() <= sketch::RELATIVE_ACCURACY * w.4,
            "{key:?}: p50 {g:?} vs {w:?}"
        );
    }
}

/// Out-of-order events within the allowed lateness, fed in four tries with the state saved
/// as JSON and restored between them, give exactly the windows of a recomputation, hopping
/// windows included; a window is emitted only once the watermark passes its end.
#[test]
fn tries_with_saved_state_match_a_recomputation() {
    for (size, slide) in [(MINUTE, MINUTE), (5 * MINUTE, MINUTE)] {
        let all = events(3, 1800, 30_000_000);
        let def = definition(size, slide, 60_000_000, LatePolicy::Drop);
        let mut emitted = Expected::new();
        let mut state: Option<String> = None;
        for chunk in all.chunks(450) {
            let mut windower = match &state {
                Some(json) => {
                    Windower::restore(def.clone(), serde_json::from_str(json).unwrap()).unwrap()
                }
                None => Windower::new(def.clone()),
            };
            let added = windower.add(&batch(chunk)).unwrap();
            assert_eq!((added.events, added.late), (chunk.len() as u64, 0));
            let closed = windower.close().unwrap();
            let watermark = closed.watermark.unwrap();
            for (key, value) in read_rows(&closed.rows) {
                assert!(key.0 + size <= watermark, "emitted before the watermark passed");
                assert!(emitted.insert(key, value).is_none(), "emitted twice");
            }
            state = Some(serde_json::to_string(&windower.save()).unwrap());
        }
        let last = all.iter().map(|e| e.t).max().unwrap() - 60_000_000;
        let want: Expected =
            recompute(&all, size, slide).into_iter().filter(|(k, _)| k.0 + size <= last).collect();
        assert_matches(&emitted, &want);
    }
}

/// An event behind the watermark of its (emitted) window is never silently lost: counted and
/// dropped, returned for the late-events table, or merged into a corrected row.
#[test]
fn late_events_follow_their_policy() {
    let on_time = events(5, 600, 0);
    let late =
        Event { t: 30 * 1_000_000, endpoint: "/", status: 500, ms: 5.0, ip: "9.9.9.9".into() };
    for policy in [LatePolicy::Drop, LatePolicy::SideOutput, LatePolicy::Update] {
        let mut windower = Windower::new(definition(MINUTE, MINUTE, 0, policy));
        windower.add(&batch(&on_time)).unwrap();
        let first = read_rows(&windower.close().unwrap().rows);
        let added = windower.add(&batch(std::slice::from_ref(&late))).unwrap();
        assert_eq!(added.late, 1, "{policy:?}");
        let closed = windower.close().unwrap();
        match policy {
            LatePolicy::Drop => {
                assert!(added.late_rows.is_none());
                assert_eq!(windower.late_totals(), (1, 1));
                assert_eq!(closed.rows.num_rows(), 0);
            }
            LatePolicy::SideOutput => {
                assert_eq!(added.late_rows.unwrap().num_rows(), 1);
                assert_eq!(windower.late_totals(), (1, 0));
            }
            LatePolicy::Update => {
                assert!(added.late_rows.is_none());
                assert_eq!((closed.emitted, closed.corrected), (0, 1));
                let corrected = read_rows(&closed.rows);
                let key = (0, "/".to_string());
                let (before, after) = (first[&key], corrected[&key]);
                assert_eq!((after.0, after.1, after.5), (before.0 + 1, before.1 + 1, before.5 + 1));
                assert_eq!(after.3, before.3.max(5.0));
            }
        }
    }
}

#[test]
fn state_saved_under_another_definition_is_refused() {
    let saved = Windower::new(definition(MINUTE, MINUTE, 0, LatePolicy::Drop)).save();
    let other = definition(2 * MINUTE, MINUTE, 0, LatePolicy::Drop);
    assert!(matches!(Windower::restore(other, saved), Err(WindowError::DefinitionChanged)));
}

#[test]
fn a_missing_or_mistyped_column_is_named() {
    let mut def = definition(MINUTE, MINUTE, 0, LatePolicy::Drop);
    def.keys = vec!["region".into()];
    let error = Windower::new(def).add(&batch(&events(1, 3, 0))).unwrap_err();
    assert_eq!(error.to_string(), "the input has no column `region`");
    let mut def = definition(MINUTE, MINUTE, 0, LatePolicy::Drop);
    def.aggregates = vec![("x".into(), Measure::parse("sum(endpoint)").unwrap())];
    let error = Windower::new(def).add(&batch(&events(1, 3, 0))).unwrap_err();
    assert_eq!(error.to_string(), "column `endpoint` is Utf8, expected a number");
}
