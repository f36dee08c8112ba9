//! The lambda pipeline's batch layer and serving view (seeds 000/001), run from the reference
//! DAG files: an hour and a half of simulated web logs, with out-of-order and late events,
//! lands in bronze in three commits; after each, the speed layer (`window`), the batch layer
//! (`sql` over bronze) and the serving view (`sql` over both) run. Once the batch has caught
//! up, the serving view must equal a recomputation from the events themselves, row for row:
//! batch rows exactly, speed rows with quantiles within the sketch's ±1 %.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use common::weblogs::{append_web_logs, event_micros};
use lakeward::dag::{compile, Dag};
use lakeward::jobs::Registry;
use lakeward::lake::tables::{ScanRequest, Tables};
use lakeward::simulate::{Profile, Simulation, Simulator};

const MINUTE: i64 = 60_000_000;

/// The tasks of a reference DAG file from `first_task` on, as a DAG of their own.
fn reference(source: &str, first_task: &str, until: Option<&str>, id: &str) -> Arc<Dag> {
    let from = source.find(first_task).expect("the reference DAG has the task");
    let to = until.map_or(source.len(), |u| source.find(u).expect("the next task"));
    let tasks = &source[from..to];
    Arc::new(compile(&format!("{id}.toml"), tasks, id, &Registry::builtin()).unwrap())
}

/// One row of per-endpoint minute metrics.
#[derive(Debug, Clone, PartialEq)]
struct Metrics {
    requests: i64,
    errors: i64,
    clients: i64,
    bytes: f64,
    avg_ms: f64,
    quantiles: [f64; 3],
}

/// The metrics recomputed from the events: exact, `PERCENTILE_DISC` quantiles.
fn recompute(events: &[serde_json::Value]) -> BTreeMap<(i64, String), Metrics> {
    let mut groups: BTreeMap<(i64, String), Vec<&serde_json::Value>> = BTreeMap::new();
    for e in events {
        let minute = event_micros(e).div_euclid(MINUTE) * MINUTE;
        groups.entry((minute, e["endpoint"].as_str().unwrap().to_string())).or_default().push(e);
    }
    let rank = |q: f64, n: usize| ((q * n as f64).ceil() as usize).saturating_sub(1);
    groups
        .into_iter()
        .map(|(key, es)| {
            let mut ms: Vec<f64> =
                es.iter().map(|e| e["response_time_ms"].as_f64().unwrap()).collect();
            ms.sort_by(f64::total_cmp);
            let ips: HashSet<&str> = es.iter().map(|e| e["ip"].as_str().unwrap()).collect();
            let metrics = Metrics {
                requests: es.len() as i64,
                errors: es.iter().filter(|e| e["status_code"].as_i64().unwrap() >= 500).count()
                    as i64,
                clients: ips.len() as i64,
                bytes: es.iter().map(|e| e["bytes"].as_i64().unwrap() as f64).sum(),
                avg_ms: ms.iter().sum::<f64>() / ms.len() as f64,
                quantiles: [0.5, 0.95, 0.99].map(|q| ms[rank(q, ms.len())]),
            };
            (key, metrics)
        })
        .collect()
}

/// The serving table's rows: (window start, endpoint) → (metrics, layer).
async fn serving_rows(tables: &Tables) -> BTreeMap<(i64, String), (Metrics, String)> {
    let scan = tables.scan("serving.endpoint_minutes", &ScanRequest::default()).await.unwrap();
    let mut rows = BTreeMap::new();
    for b in &scan.batches {
        let column = |name: &str| b.column_by_name(name).unwrap_or_else(|| panic!("{name}"));
        let starts = column("window_start").as_primitive::<TimestampMicrosecondType>();
        let ends = column("window_end").as_primitive::<TimestampMicrosecondType>();
        let endpoints = column("endpoint").as_string::<i32>();
        let layers = column("layer").as_string::<i32>();
        let int = |name: &str| column(name).as_primitive::<Int64Type>().clone();
        let float = |name: &str| column(name).as_primitive::<Float64Type>().clone();
        let (requests, errors, clients) = (int("requests"), int("errors"), int("clients"));
        let (bytes, avg) = (float("bytes"), float("avg_ms"));
        let quantiles = [float("p50_ms"), float("p95_ms"), float("p99_ms")];
        for r in 0..b.num_rows() {
            assert_eq!(ends.value(r) - starts.value(r), MINUTE);
            let metrics = Metrics {
                requests: requests.value(r),
                errors: errors.value(r),
                clients: clients.value(r),
                bytes: bytes.value(r),
                avg_ms: avg.value(r),
                quantiles: [0, 1, 2].map(|i| quantiles[i].value(r)),
            };
            let key = (starts.value(r), endpoints.value(r).to_string());
            let previous = rows.insert(key.clone(), (metrics, layers.value(r).to_string()));
            assert!(previous.is_none(), "window {key:?} served twice");
        }
    }
    rows
}

/// How `served` differs from `truth`: exact for counts and for the batch layer's quantiles,
/// within the sketch's ±1 % for the speed layer's.
fn difference(served: &Metrics, truth: &Metrics, layer: &str) -> Option<String> {
    let close = |a: f64, b: f64, relative: f64| (a - b).abs() <= relative * b.abs().max(1e-9);
    let quantile_bound = if layer == "batch" { 0.0 } else { 0.01 };
    let same = served.requests == truth.requests
        && served.errors == truth.errors
        && served.clients == truth.clients
        && close(served.bytes, truth.bytes, 1e-12)
        && close(served.avg_ms, truth.avg_ms, 1e-9)
        && (0..3).all(|i| close(served.quantiles[i], truth.quantiles[i], quantile_bound));
    (!same).then(|| format!("{layer} {served:?} vs recomputed {truth:?}"))
}

#[tokio::test]
async fn the_serving_view_equals_a_recomputation_from_bronze_once_the_batch_caught_up() {
    let lake = common::lake_harness().await;
    let (h, tables) = (&lake.h, &lake.tables);

    let speed_file = include_str!("../../dags/weblogs_speed.toml");
    let speed =
        reference(speed_file, "[tasks.endpoint_minutes]", Some("[tasks.ip_minutes]"), "speed");
    let batch = reference(include_str!("../../dags/weblogs_batch.toml"), "[tasks.", None, "batch");
    let serving =
        reference(include_str!("../../dags/weblogs_serving.toml"), "[tasks.", None, "serving");

    // 95 minutes of arrivals; 5 % of events arrive up to 150 s late, past the speed layer's
    // two-minute lateness, so some windows are corrected after they were first written.
    let start: chrono::DateTime<chrono::Utc> = "2026-11-26T12:00:00Z".parse().unwrap();
    let simulation = Simulation {
        profile: Profile::WebLogs,
        seed: 7,
        rate: 15.0,
        start,
        anomaly_rate: 0.2,
        late_share: 0.05,
        max_delay: Duration::from_secs(150),
    };
    let arrival = |minutes: i64| start.timestamp_micros() + minutes * MINUTE;
    let mut rounds: Vec<Vec<serde_json::Value>> = vec![Vec::new(); 3];
    for event in Simulator::new(simulation) {
        let sent = event.sent_at.timestamp_micros();
        let round = match sent {
            t if t < arrival(40) => 0,
            t if t < arrival(75) => 1,
            t if t < arrival(95) => 2,
            _ => break,
        };
        rounds[round].push(serde_json::from_str(&event.payload).unwrap());
    }

    let mut landed: Vec<serde_json::Value> = Vec::new();
    for (round, events) in rounds.into_iter().enumerate() {
        append_web_logs(tables, &events).await;
        landed.extend(events);
        for dag in [&speed, &batch, &serving] {
            h.run_to_success(dag, Duration::from_secs(120)).await;
        }
        let served = serving_rows(tables).await;
        if round == 0 {
            // 40 minutes: the batch covers only the hour before 12:00 (late events of the
            // first minutes land there), the speed layer everything since.
            for ((minute, endpoint), (_, layer)) in &served {
                let expected = if *minute < arrival(0) { "batch" } else { "speed" };
                assert_eq!(layer, expected, "round 1: {minute} {endpoint}");
            }
        }
        assert!(!served.is_empty(), "round {round}: the serving view is empty");
    }

    // The batch layer has caught up (it covers 12:00–13:00); the speed layer serves the rest
    // up to its watermark. Every window the view serves equals the recomputation, and every
    // recomputed window up to the last one served is in the view.
    let served = serving_rows(tables).await;
    let from_batch = served.values().filter(|(_, layer)| layer == "batch").count();
    println!("served {} windows: {from_batch} from the batch layer", served.len());
    let truth = recompute(&landed);
    let last = served.keys().map(|(minute, _)| *minute).max().unwrap();
    assert!(last >= arrival(90), "the speed layer's windows reach minute 90: {last}");
    let mut problems = Vec::new();
    for (key, metrics) in truth.iter().filter(|((minute, _), _)| *minute <= last) {
        let minute = (key.0 - start.timestamp_micros()) / MINUTE;
        match served.get(key) {
            None => problems.push(format!("minute {minute} {}: not served", key.1)),
            Some((row, layer)) => {
                let expected_layer = if key.0 < arrival(60) { "batch" } else { "speed" };
                if layer != expected_layer {
                    problems.push(format!("minute {minute} {}: from {layer}", key.1));
                }
                if let Some(d) = difference(row, metrics, layer) {
                    problems.push(format!("minute {minute} {}: {d}", key.1));
                }
            }
        }
    }
    for key in served.keys().filter(|k| !truth.contains_key(k)) {
        problems.push(format!("{key:?}: served but no event has it"));
    }
    assert!(problems.is_empty(), "{} differences:\n{}", problems.len(), problems.join("\n"));
    lake.h.stop().await;
}
