//! The `window` task kind over a real Iceberg source: incremental reads across tries (with
//! the source compacted in between), windows equal to a recomputation, emitted once, and late
//! events kept by each policy.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use common::{dag, Harness};
use lakeward::dag::Dag;
use lakeward::lake::tables::{ScanRequest, Tables, WriteMode};
use lakeward::simulate::Rng;

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600 * SECOND;

#[derive(Clone, Debug)]
struct Event {
    id: usize,
    t: i64,
    endpoint: &'static str,
    status: i64,
    ms: f64,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new("endpoint", DataType::Utf8, true),
        Field::new("status_code", DataType::Int64, true),
        Field::new("response_time_ms", DataType::Float64, true),
    ]))
}

fn batch(events: &[Event]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(events.iter().map(|e| format!("e{}", e.id)))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.t))
                    .with_timezone("+00:00"),
            ),
            Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.endpoint))),
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.status))),
            Arc::new(Float64Array::from_iter_values(events.iter().map(|e| e.ms))),
        ],
    )
    .unwrap()
}

/// `n` events a second apart from `from`, up to `jitter` early (out of order).
fn events(rng: &mut Rng, first_id: usize, from: i64, n: usize, jitter: i64) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            id: first_id + i,
            t: from + i as i64 * SECOND - rng.below(jitter as u64 + 1) as i64,
            endpoint: ["/", "/cart", "/search"][rng.below(3) as usize],
            status: if rng.chance(0.1) { 503 } else { 200 },
            ms: rng.log_normal(80.0, 0.5),
        })
        .collect()
}

async fn append(tables: &Tables, events: &[Event]) {
    let mut writer = tables.writer("bronze.web_logs", &schema(), &[]).await.unwrap();
    writer.write(&batch(events)).await.unwrap();
    writer.commit(WriteMode::Append, &BTreeMap::new(), &BTreeMap::new()).await.unwrap();
}

fn window_dag(late: &str) -> Arc<Dag> {
    dag(&format!(
        r#"
        [tasks.speed]
        kind = "window"
        source = "bronze.web_logs"
        table = "speed.endpoint_minutes"
        event_time = "timestamp"
        size = "1m"
        keys = ["endpoint"]
        allowed_lateness = "30s"
        late = "{late}"
        [tasks.speed.aggregates]
        requests = "count"
        errors = "count_if(status_code >= 500)"
        p95_ms = "p95(response_time_ms)"
        "#
    ))
}

/// (window start, endpoint) → (requests, errors).
fn recompute(events: &[Event]) -> BTreeMap<(i64, String), (i64, i64)> {
    let mut windows = BTreeMap::new();
    for e in events {
        let entry = windows.entry((e.t.div_euclid(MINUTE) * MINUTE, e.endpoint.to_string()));
        let (requests, errors) = entry.or_insert((0, 0));
        *requests += 1;
        *errors += (e.status >= 500) as i64;
    }
    windows
}

async fn windows_table(tables: &Tables) -> BTreeMap<(i64, String), (i64, i64)> {
    let scan = tables.scan("speed.endpoint_minutes", &ScanRequest::default()).await.unwrap();
    let mut rows = BTreeMap::new();
    for b in &scan.batches {
        let start =
            b.column_by_name("window_start").unwrap().as_primitive::<TimestampMicrosecondType>();
        let endpoint = b.column_by_name("endpoint").unwrap().as_string::<i32>();
        let requests = b.column_by_name("requests").unwrap().as_primitive::<Int64Type>();
        let errors = b.column_by_name("errors").unwrap().as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            let key = (start.value(r), endpoint.value(r).to_string());
            let value = (requests.value(r), errors.value(r));
            assert!(rows.insert(key.clone(), value).is_none(), "window {key:?} emitted twice");
        }
    }
    rows
}

/// Runs `dag` once; its one task's outputs.
async fn run_once(h: &Harness, dag: &Arc<Dag>) -> serde_json::Map<String, serde_json::Value> {
    h.run_to_success(dag, Duration::from_secs(60)).await.remove(0).outputs
}

/// Four tries over a source that grows (and is compacted) in between: every window the
/// watermark passed is in the table exactly once, equal to a recomputation of the events; a
/// try with nothing new commits nothing; late events land in the late table, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_are_incremental_exactly_once_and_late_events_are_kept() {
    let s = common::lake_harness().await;
    let window = window_dag("side_output");
    let mut rng = Rng::new(11);
    let first = events(&mut rng, 0, T0, 400, 20 * SECOND);
    let second = events(&mut rng, 400, T0 + 400 * SECOND, 400, 20 * SECOND);
    // Behind the watermark (T0 + 800 s − 30 s) by minutes: late for windows already emitted.
    let late: Vec<Event> = (0..7)
        .map(|i| Event {
            id: 10_000 + i,
            t: T0 + (60 + i as i64) * SECOND,
            endpoint: "/",
            status: 500,
            ms: 1.0,
        })
        .collect();
    let third = events(&mut rng, 800, T0 + 800 * SECOND, 300, 20 * SECOND);

    let out = run_once(&s.h, &window).await;
    assert_eq!(out["events"], 0, "no source table yet: nothing to do");
    append(&s.tables, &first[..200]).await;
    append(&s.tables, &first[200..]).await;
    let out = run_once(&s.h, &window).await;
    assert_eq!((out["events"].as_u64(), out["files_read"].as_u64()), (Some(400), Some(2)));
    let watermark_after_first = first.iter().map(|e| e.t).max().unwrap() - 30 * SECOND;

    let again = run_once(&s.h, &window).await;
    assert_eq!((again["events"].as_u64(), again["snapshot_id"].as_i64()), (Some(0), None));

    append(&s.tables, &second).await;
    s.tables.compact("bronze.web_logs").await.unwrap();
    let out = run_once(&s.h, &window).await;
    assert_eq!(out["events"], 400, "compaction's rewrite is not read again");

    let mut third_with_late = late.clone();
    third_with_late.extend(third.iter().cloned());
    append(&s.tables, &third_with_late).await;
    let out = run_once(&s.h, &window).await;
    assert_eq!(out["events"], 307);
    assert_eq!(out["late_events"], 7);
    assert_eq!(out["late_written"], 7);

    let all: Vec<Event> = first.iter().chain(&second).chain(&third).cloned().collect();
    let watermark = all.iter().map(|e| e.t).max().unwrap() - 30 * SECOND;
    let want: BTreeMap<_, _> =
        recompute(&all).into_iter().filter(|((start, _), _)| start + MINUTE <= watermark).collect();
    let got = windows_table(&s.tables).await;
    assert_eq!(got, want, "windows differ from a recomputation");
    assert!(watermark_after_first > T0 + 2 * MINUTE, "the late events really were late");

    let late_rows =
        s.tables.scan("speed.endpoint_minutes_late", &ScanRequest::default()).await.unwrap();
    let ids: HashSet<String> = late_rows
        .batches
        .iter()
        .flat_map(|b| {
            let ids = b.column_by_name("event_id").unwrap().as_string::<i32>().clone();
            (0..ids.len()).map(move |r| ids.value(r).to_string())
        })
        .collect();
    assert_eq!(ids, late.iter().map(|e| format!("e{}", e.id)).collect::<HashSet<_>>());
    assert_eq!(common::rows(&late_rows.batches), 7, "each late event once");

    // Orphan removal keeps the state file the current snapshot names: the next try resumes.
    let future = chrono::Utc::now().timestamp_millis() + 3_600_000;
    s.tables.remove_orphan_files("speed.endpoint_minutes", future).await.unwrap();
    append(&s.tables, &events(&mut rng, 2_000, T0 + 1_100 * SECOND, 60, 0)).await;
    let out = run_once(&s.h, &window).await;
    assert_eq!((out["events"].as_u64(), out["late_events"].as_u64()), (Some(60), Some(0)));
    s.h.stop().await;
}

/// With `late = "update"`, a late event corrects its window: the table still holds one row
/// for that window and key, now counting the late event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_update_their_window_in_place() {
    let s = common::lake_harness().await;
    let window = window_dag("update");
    let mut rng = Rng::new(5);
    let on_time = events(&mut rng, 0, T0, 300, 0);
    append(&s.tables, &on_time).await;
    run_once(&s.h, &window).await;
    let before = windows_table(&s.tables).await;
    let key = (T0, "/".to_string());
    let (requests, errors) = before[&key];

    let late = Event { id: 9_999, t: T0 + 5 * SECOND, endpoint: "/", status: 500, ms: 2.0 };
    let more = events(&mut rng, 300, T0 + 300 * SECOND, 60, 0);
    let mut batch_events = vec![late];
    batch_events.extend(more.iter().cloned());
    append(&s.tables, &batch_events).await;
    let out = run_once(&s.h, &window).await;
    assert_eq!(out["windows_corrected"], 1);
    let after = windows_table(&s.tables).await;
    assert_eq!(after[&key], (requests + 1, errors + 1), "the window counts its late event");
    for (k, v) in &before {
        if *k != key {
            assert_eq!(after[k], *v, "{k:?} unchanged");
        }
    }
    s.h.stop().await;
}
