//! The `anomaly` kind scored against the truth: an hour of simulated web logs (the simulator
//! labels the events of the anomalies it injects) goes into bronze, the `window` kind makes
//! per-minute metrics per endpoint and per client, and the reference pipeline's checks must
//! find each kind of anomaly with recall ≥ 0.9 and precision ≥ 0.8.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use axum::body::Body;
use axum::http::header::HOST;
use axum::http::{Request, StatusCode};
use common::{dag, manual, Harness, HarnessOptions};
use lakeward::config::Config;
use lakeward::domain::RunState;
use lakeward::lake::tables::TablesHandle;
use lakeward::lake::tables::{ScanRequest, Tables};
use lakeward::lake::Warehouse;
use lakeward::simulate::{Profile, Simulation, Simulator};
use lakeward::web::{app, AppState};

const MINUTE: i64 = 60_000_000;
/// A window counts as anomalous for a kind when at least this share of its key's events carry
/// the kind's label (late events of a large spike straggle into the minute before it).
const TRUTH_SHARE: f64 = 0.5;
/// Minutes at the start that no check can score (no baseline yet).
const WARM_UP: i64 = 6;

/// The checks of the reference pipeline, as dags/weblogs_speed.toml defines them (the
/// defaults the README explains).
fn reference_checks() -> String {
    let source = include_str!("../../dags/weblogs_speed.toml");
    let at = source.find("[tasks.detect.checks.").expect("the reference DAG has checks");
    source[at..].to_string()
}

/// One simulated event, as far as the truth needs.
struct Labeled {
    t: i64,
    endpoint: String,
    ip: String,
    anomaly: Option<&'static str>,
}

/// A window's events for one key, and how many carry each label.
#[derive(Default)]
struct Counts {
    events: u32,
    labeled: HashMap<&'static str, u32>,
}

/// (kind) → the (window start, key) pairs that are truly anomalous, among windows whose key
/// had at least `min_count` events.
fn truth(events: &[Labeled]) -> BTreeMap<&'static str, HashSet<(i64, String)>> {
    let mut by_endpoint: HashMap<(i64, String), Counts> = HashMap::new();
    let mut by_ip: HashMap<(i64, String), Counts> = HashMap::new();
    for e in events {
        let minute = e.t.div_euclid(MINUTE) * MINUTE;
        for (key, counts) in [(&e.endpoint, &mut by_endpoint), (&e.ip, &mut by_ip)] {
            let entry = counts.entry((minute, key.clone())).or_default();
            entry.events += 1;
            if let Some(kind) = e.anomaly {
                *entry.labeled.entry(kind).or_default() += 1;
            }
        }
    }
    let mut out: BTreeMap<&'static str, HashSet<(i64, String)>> = BTreeMap::new();
    for kind in ["traffic_spike", "error_burst", "slow_endpoint", "abusive_ip"] {
        out.insert(kind, HashSet::new());
    }
    // Kinds about endpoints are judged per endpoint, abusive clients per address, each among
    // the windows its check can score (min_count).
    let judged = [(by_endpoint, false, 20), (by_ip, true, 60)];
    for (counts, per_ip, min_count) in judged {
        for ((minute, key), window) in counts {
            for (kind, labeled) in window.labeled {
                let applies = (kind == "abusive_ip") == per_ip;
                let share = f64::from(labeled) / f64::from(window.events);
                if applies && window.events >= min_count && share >= TRUTH_SHARE {
                    out.get_mut(kind).unwrap().insert((minute, key.clone()));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn each_kind_of_injected_anomaly_is_found_with_recall_and_precision() {
    let db = common::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
    let options =
        HarnessOptions { warehouse: Some(warehouse.clone()), ..HarnessOptions::default() };
    let h = Harness::start_with(&db, options).await;
    let tables = Tables::open(&h.store, &warehouse, &Default::default()).await.unwrap();

    let start: chrono::DateTime<chrono::Utc> = "2026-11-26T12:00:00Z".parse().unwrap();
    let simulation = Simulation {
        profile: Profile::WebLogs,
        seed: 2,
        rate: 30.0,
        start,
        anomaly_rate: 0.5,
        late_share: 0.01,
        max_delay: Duration::from_secs(20),
    };
    let end = start.timestamp_micros() + 60 * MINUTE;
    let (mut labeled, mut json) = (Vec::new(), Vec::new());
    for event in Simulator::new(simulation) {
        if event.sent_at.timestamp_micros() >= end {
            break;
        }
        let value: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
        labeled.push(Labeled {
            t: event.event_time.timestamp_micros(),
            endpoint: value["endpoint"].as_str().unwrap().to_string(),
            ip: value["ip"].as_str().unwrap().to_string(),
            anomaly: event.anomaly,
        });
        json.push(value);
    }
    common::weblogs::append_web_logs(&tables, &json).await;

    let pipeline = dag(&format!(
        r#"
        [tasks.endpoints]
        kind = "window"
        source = "bronze.web_logs"
        table = "speed.endpoint_minutes"
        event_time = "timestamp"
        size = "1m"
        keys = ["endpoint"]
        allowed_lateness = "30s"
        [tasks.endpoints.aggregates]
        requests = "count"
        errors = "count_if(status_code >= 500)"
        p95_ms = "p95(response_time_ms)"

        [tasks.clients]
        kind = "window"
        source = "bronze.web_logs"
        table = "speed.ip_minutes"
        event_time = "timestamp"
        size = "1m"
        keys = ["ip"]
        allowed_lateness = "30s"
        [tasks.clients.aggregates]
        requests = "count"

        [tasks.detect]
        kind = "anomaly"
        depends_on = ["endpoints", "clients"]
        table = "speed.anomalies"
        {checks}
        "#,
        checks = reference_checks()
    ));
    let run = h.trigger(&pipeline, manual(serde_json::json!({}))).await;
    let finished = h.wait(&run, Duration::from_secs(300)).await;
    for ti in h.tasks(&run).await {
        assert_eq!(ti.state.as_str(), "success", "{}: {}", ti.task_id, h.log_text(&ti).await);
    }
    assert_eq!(finished.state, RunState::Success);

    // Which windows were emitted (the last ones are still open) and scored.
    let scan = tables.scan("speed.endpoint_minutes", &ScanRequest::default()).await.unwrap();
    let mut emitted: HashSet<i64> = HashSet::new();
    for b in &scan.batches {
        let starts =
            b.column_by_name("window_start").unwrap().as_primitive::<TimestampMicrosecondType>();
        emitted.extend(starts.values().iter().copied());
    }
    let first = start.timestamp_micros() + WARM_UP * MINUTE;
    let scored = |minute: i64| minute >= first && emitted.contains(&minute);

    let mut found: BTreeMap<String, HashSet<(i64, String)>> = BTreeMap::new();
    for b in tables.scan("speed.anomalies", &ScanRequest::default()).await.unwrap().batches {
        let starts =
            b.column_by_name("window_start").unwrap().as_primitive::<TimestampMicrosecondType>();
        let checks = b.column_by_name("anomaly").unwrap().as_string::<i32>();
        let keys = b.column_by_name("key").unwrap().as_string::<i32>();
        for r in 0..b.num_rows() {
            if scored(starts.value(r)) {
                found
                    .entry(checks.value(r).to_string())
                    .or_default()
                    .insert((starts.value(r), keys.value(r).to_string()));
            }
        }
    }
    let mut report = String::from("kind            truth  found  tp  fp  fn  recall  precision\n");
    let mut failures = Vec::new();
    for (kind, truth) in truth(&labeled) {
        let truth: HashSet<_> = truth.into_iter().filter(|(m, _)| scored(*m)).collect();
        let predicted = found.remove(kind).unwrap_or_default();
        let tp = predicted.intersection(&truth).count();
        let (fp, fn_) = (predicted.len() - tp, truth.len() - tp);
        let recall = tp as f64 / truth.len().max(1) as f64;
        let precision = tp as f64 / predicted.len().max(1) as f64;
        report.push_str(&format!(
            "{kind:<15} {:>5}  {:>5}  {tp:>2}  {fp:>2}  {fn_:>2}  {recall:>6.2}  {precision:>9.2}\n",
            truth.len(),
            predicted.len()
        ));
        for (m, k) in predicted.symmetric_difference(&truth) {
            let what = if truth.contains(&(*m, k.clone())) { "missed" } else { "false alarm" };
            report.push_str(&format!(
                "  {what}: minute {} {k}\n",
                (m - start.timestamp_micros()) / MINUTE
            ));
        }
        if truth.len() < 3 {
            failures.push(format!("{kind}: only {} anomalous windows generated", truth.len()));
        }
        if recall < 0.9 || precision < 0.8 {
            failures.push(format!("{kind}: recall {recall:.2}, precision {precision:.2}"));
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{failures:?}\n{report}");

    // The metrics table's page: charts with the anomalies marked, the list, the writing run.
    let mut config = Config::default();
    config.web.auth = false;
    let tables_handle = TablesHandle::new(h.store.clone(), warehouse.clone(), Default::default());
    let state =
        AppState::new(h.store.clone(), h.versions.clone(), &config).with_tables(tables_handle);
    let request = Request::get("/tables/speed.endpoint_minutes/metrics")
        .header(HOST, "127.0.0.1")
        .body(Body::empty())
        .unwrap();
    let page = common::web::send(&app(state), request).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body.matches("<svg").count(), 3, "requests, error rate, p95");
    let marked = page.body.matches("<circle class=\"anomaly\"").count();
    let on_endpoints = ["traffic_spike", "error_burst", "slow_endpoint"];
    let listed = on_endpoints
        .iter()
        .map(|k| page.body.matches(&format!("<td>{k}</td>")).count())
        .sum::<usize>();
    assert!(listed >= 3 && marked == listed, "{marked} marks, {listed} listed");
    assert!(
        page.body
            .contains(&format!("href=\"/dags/test_dag/runs/{}", run.run_id.replace(':', "%3A"))),
        "{}",
        page.body
    );
    h.stop().await;
}
