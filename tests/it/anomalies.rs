//! The `anomaly` kind scored against the truth: an hour of simulated web logs (the simulator
//! labels the events of the anomalies it injects) goes into bronze, and the reference speed
//! pipeline (dags/weblogs_speed.toml: per-minute windows per endpoint and per client, then
//! its anomaly checks) must find each kind of anomaly with recall ≥ 0.9 and precision ≥ 0.8.
//!
//! `LAKEWARD_ANOMALY_SEEDS` (`2` by default; `1-20`, or `1,5,9`) scores several generated
//! hours and prints the confusion table of each and of all together: the benchmark of the
//! defaults (`LAKEWARD_ANOMALY_SEEDS=1-20 cargo test --test it -- anomalies:: --nocapture`).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use axum::body::Body;
use axum::http::header::HOST;
use axum::http::{Request, StatusCode};
use common::Harness;
use lakeward::anomaly::score::{Confusion, Truth, WindowKey};
use lakeward::config::Config;
use lakeward::dag::compile;
use lakeward::jobs::Registry;
use lakeward::lake::tables::TablesHandle;
use lakeward::lake::tables::{ScanRequest, Tables};
use lakeward::simulate::{Profile, Simulation, Simulator};
use lakeward::web::{app, AppState};

const MINUTE: i64 = 60_000_000;
/// A window counts as anomalous for a kind when at least this share of its key's events carry
/// the kind's label (late events of a large spike straggle into the minute before it).
const TRUTH_SHARE: f64 = 0.5;
/// Minutes at the start that no check can score (no baseline yet).
const WARM_UP: i64 = 6;
/// Each kind, what its keys are, and the fewest events its check scores (the checks'
/// `min_count`).
const KINDS: [(&str, &str, u32); 4] = [
    ("traffic_spike", "endpoint", 20),
    ("error_burst", "endpoint", 20),
    ("slow_endpoint", "endpoint", 20),
    ("abusive_ip", "ip", 60),
];

/// The reference speed pipeline's tasks (windows, then anomaly detection), reading `source`
/// and writing its tables under `namespace`.
fn reference_pipeline(source: &str, namespace: &str) -> String {
    let file = include_str!("../../dags/weblogs_speed.toml");
    let at = file.find("[tasks.").expect("the reference DAG has tasks");
    file[at..].replace("bronze.web_logs", source).replace("speed.", &format!("{namespace}."))
}

/// The seeds to score: `LAKEWARD_ANOMALY_SEEDS` (`1-20`, `1,5,9`), else 2.
fn seeds() -> Vec<u64> {
    let text = std::env::var("LAKEWARD_ANOMALY_SEEDS").unwrap_or_else(|_| "2".into());
    text.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().unwrap()..=b.trim().parse().unwrap()).collect(),
            None => vec![part.trim().parse().unwrap()],
        })
        .collect()
}

/// What one generated hour gave: per kind, the confusion and the windows it got wrong.
struct Scored {
    run_id: String,
    kinds: BTreeMap<&'static str, (Confusion, Vec<String>)>,
}

/// Generates an hour of web logs with `seed` into a bronze table of its own, runs the
/// reference pipeline over it, and scores the anomalies it found.
async fn score_seed(h: &Harness, tables: &Tables, seed: u64) -> Scored {
    let start: chrono::DateTime<chrono::Utc> = "2026-11-26T12:00:00Z".parse().unwrap();
    let simulation = Simulation {
        profile: Profile::WebLogs,
        seed,
        rate: 30.0,
        start,
        anomaly_rate: 0.5,
        late_share: 0.01,
        max_delay: Duration::from_secs(20),
    };
    let end = start.timestamp_micros() + 60 * MINUTE;
    let mut truth = Truth::new(MINUTE);
    let mut json = Vec::new();
    for event in Simulator::new(simulation) {
        if event.sent_at.timestamp_micros() >= end {
            break;
        }
        let value: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
        let t = event.event_time.timestamp_micros();
        for scope in ["endpoint", "ip"] {
            truth.add(scope, value[scope].as_str().unwrap(), t, event.anomaly);
        }
        json.push(value);
    }
    let (source, namespace) = (format!("bronze.logs_{seed}"), format!("speed_{seed}"));
    common::weblogs::append_web_logs_to(tables, &source, &json).await;

    let text = reference_pipeline(&source, &namespace);
    let pipeline = std::sync::Arc::new(
        compile("speed.toml", &text, &format!("speed_{seed}"), &Registry::builtin()).unwrap(),
    );
    let run_pk = h.run_to_success(&pipeline, Duration::from_secs(300)).await[0].run_pk;

    // Which windows were emitted (the last ones are still open) and so scored.
    let windows = format!("{namespace}.endpoint_minutes");
    let scan = tables.scan(&windows, &ScanRequest::default()).await.unwrap();
    let mut emitted: BTreeSet<i64> = BTreeSet::new();
    for b in &scan.batches {
        let starts =
            b.column_by_name("window_start").unwrap().as_primitive::<TimestampMicrosecondType>();
        emitted.extend(starts.values().iter().copied());
    }
    let first = start.timestamp_micros() + WARM_UP * MINUTE;
    let scored = |minute: i64| minute >= first && emitted.contains(&minute);

    let mut found: BTreeMap<String, BTreeSet<WindowKey>> = BTreeMap::new();
    let anomalies = format!("{namespace}.anomalies");
    for b in tables.scan(&anomalies, &ScanRequest::default()).await.unwrap().batches {
        let starts =
            b.column_by_name("window_start").unwrap().as_primitive::<TimestampMicrosecondType>();
        let checks = b.column_by_name("anomaly").unwrap().as_string::<i32>();
        let keys = b.column_by_name("key").unwrap().as_string::<i32>();
        for r in 0..b.num_rows() {
            if scored(starts.value(r)) {
                let found = found.entry(checks.value(r).to_string()).or_default();
                found.insert((starts.value(r), keys.value(r).to_string()));
            }
        }
    }
    let mut kinds = BTreeMap::new();
    for (kind, scope, min_count) in KINDS {
        let truth: BTreeSet<WindowKey> = truth
            .anomalous(scope, kind, min_count, TRUTH_SHARE)
            .into_iter()
            .filter(|(m, _)| scored(*m))
            .collect();
        let flagged = found.remove(kind).unwrap_or_default();
        let wrong = flagged
            .symmetric_difference(&truth)
            .map(|(m, k)| {
                let what = if truth.contains(&(*m, k.clone())) { "missed" } else { "false alarm" };
                format!("  {what}: minute {} {k}", (m - start.timestamp_micros()) / MINUTE)
            })
            .collect();
        kinds.insert(kind, (Confusion::of(&truth, &flagged), wrong));
    }
    let run = lakeward::store::runs::by_pk(h.store.read(), run_pk).await.unwrap().unwrap();
    Scored { run_id: run.run_id, kinds }
}

#[tokio::test]
async fn each_kind_of_injected_anomaly_is_found_with_recall_and_precision() {
    let lake = common::lake_harness().await;
    let (h, tables, warehouse) = (&lake.h, &lake.tables, &lake.warehouse);

    let seeds = seeds();
    let mut all: BTreeMap<&str, Confusion> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut last_run = String::new();
    for &seed in &seeds {
        let scored = score_seed(h, tables, seed).await;
        let mut report = format!("seed {seed}\n{}\n", Confusion::header());
        for (kind, (confusion, wrong)) in &scored.kinds {
            report.push_str(&confusion.row(kind));
            report.push('\n');
            for line in wrong {
                report.push_str(line);
                report.push('\n');
            }
            all.entry(kind).or_default().add(*confusion);
        }
        println!("{report}");
        last_run = scored.run_id;
    }
    let mut summary = format!("{} seed(s) {seeds:?}\n{}\n", seeds.len(), Confusion::header());
    for (kind, confusion) in &all {
        summary.push_str(&confusion.row(kind));
        summary.push('\n');
        if confusion.truth < 3 {
            failures.push(format!("{kind}: only {} anomalous windows generated", confusion.truth));
        }
        if confusion.recall() < 0.9 || confusion.precision() < 0.8 {
            failures.push(format!(
                "{kind}: recall {:.2}, precision {:.2}",
                confusion.recall(),
                confusion.precision()
            ));
        }
    }
    println!("{summary}");
    assert!(failures.is_empty(), "{failures:?}\n{summary}");

    // The metrics table's page: charts with the anomalies marked, the list, the writing run.
    let mut config = Config::default();
    config.web.auth = false;
    let tables_handle = TablesHandle::new(h.store.clone(), warehouse.clone(), Default::default());
    let state =
        AppState::new(h.store.clone(), h.versions.clone(), &config).with_tables(tables_handle);
    let last_seed = seeds[seeds.len() - 1];
    let request = Request::get(format!("/tables/speed_{last_seed}.endpoint_minutes/metrics"))
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
        page.body.contains(&format!(
            "href=\"/dags/speed_{last_seed}/runs/{}",
            last_run.replace(':', "%3A")
        )),
        "{}",
        page.body
    );
    lake.h.stop().await;
}
