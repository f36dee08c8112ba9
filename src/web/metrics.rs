//! `/metrics` in the Prometheus text format, computed from the database on each scrape so any
//! web process reports the whole deployment (scheduler and workers may run elsewhere).

use std::fmt::Write;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::store::stats;
use crate::store::{StateTable, DURATION_BUCKETS};
use crate::time::now_micros;

/// Escapes a label value (backslash, quote, newline).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = &state.store;
    let mut out = String::new();

    header(&mut out, "lakeward_dag_runs", "gauge", "DAG runs by state.");
    for (state, n) in stats::count_by_state(store.read(), StateTable::Runs).await? {
        let _ = writeln!(out, "lakeward_dag_runs{{state=\"{}\"}} {n}", label(&state));
    }
    header(&mut out, "lakeward_task_instances", "gauge", "Task instances by state.");
    for (state, n) in stats::count_by_state(store.read(), StateTable::TaskInstances).await? {
        let _ = writeln!(out, "lakeward_task_instances{{state=\"{}\"}} {n}", label(&state));
    }
    header(&mut out, "lakeward_queue_depth", "gauge", "Task instances waiting for a worker.");
    for (queue, n) in stats::queue_depth(store.read()).await? {
        let _ = writeln!(out, "lakeward_queue_depth{{queue=\"{}\"}} {n}", label(&queue));
    }
    header(&mut out, "lakeward_import_errors", "gauge", "DAG files that failed to load.");
    let _ =
        writeln!(out, "lakeward_import_errors {}", stats::count_import_errors(store.read()).await?);

    header(
        &mut out,
        "lakeward_scheduler_loop_seconds",
        "gauge",
        "Slowest scheduling pass of each live scheduler since its previous heartbeat.",
    );
    let since = now_micros() - i64::try_from(state.scheduler_timeout.as_micros()).unwrap_or(0);
    for (id, micros) in stats::scheduler_loop_times(store.read(), since).await? {
        let seconds = micros as f64 / 1e6;
        let _ = writeln!(
            out,
            "lakeward_scheduler_loop_seconds{{scheduler=\"{}\"}} {seconds}",
            label(&id)
        );
    }

    header(
        &mut out,
        "lakeward_task_duration_seconds",
        "histogram",
        "Duration of finished task instances (their last try).",
    );
    for h in stats::task_duration_histograms(store.read()).await? {
        let labels = format!("dag_id=\"{}\",task_id=\"{}\"", label(&h.dag_id), label(&h.task_id));
        for (bound, count) in DURATION_BUCKETS.iter().zip(&h.buckets) {
            let _ = writeln!(
                out,
                "lakeward_task_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "lakeward_task_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
             lakeward_task_duration_seconds_sum{{{labels}}} {}\n\
             lakeward_task_duration_seconds_count{{{labels}}} {}",
            h.count,
            h.sum_micros as f64 / 1e6,
            h.count
        );
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
