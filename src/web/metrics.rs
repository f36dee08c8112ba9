//! `/metrics` in the Prometheus text format, computed from the database on each scrape so any
//! web process reports the whole deployment (scheduler and workers may run elsewhere). Only
//! live work and rolled-up counters are read, never the whole history (see
//! [`crate::store::finished`]), so a scrape costs the same with ten million task instances; the SQL
//! console's query counts, the `process_*` metrics and the build info are this web process's
//! own.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::domain::MetricSample;
use crate::store::DURATION_BUCKETS;
use crate::store::{finished, metrics, notifications, runs, stats};
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

    let finished = finished::counts(store.read(), state.duration_histograms).await?;
    header(&mut out, "lakeward_dag_runs", "gauge", "DAG runs not finished yet, by state.");
    for (state, n) in stats::unfinished_runs(store.read()).await? {
        let _ = writeln!(out, "lakeward_dag_runs{{state=\"{}\"}} {n}", label(&state));
    }
    header(&mut out, "lakeward_dag_runs_finished_total", "counter", "DAG runs finished, by state.");
    for (state, n) in &finished.runs {
        let _ = writeln!(out, "lakeward_dag_runs_finished_total{{state=\"{}\"}} {n}", label(state));
    }
    header(
        &mut out,
        "lakeward_task_instances",
        "gauge",
        "Task instances of the runs not finished yet, by state.",
    );
    for (state, n) in stats::unfinished_task_instances(store.read()).await? {
        let _ = writeln!(out, "lakeward_task_instances{{state=\"{}\"}} {n}", label(&state));
    }
    header(
        &mut out,
        "lakeward_task_instances_finished_total",
        "counter",
        "Task instances finished, by state.",
    );
    for (state, n) in finished.task_states() {
        let _ = writeln!(
            out,
            "lakeward_task_instances_finished_total{{state=\"{}\"}} {n}",
            label(state)
        );
    }
    header(&mut out, "lakeward_queue_depth", "gauge", "Task instances waiting for a worker.");
    for (queue, n) in stats::queue_depth(store.read()).await? {
        let _ = writeln!(out, "lakeward_queue_depth{{queue=\"{}\"}} {n}", label(&queue));
    }
    header(
        &mut out,
        "lakeward_dag_runs_missed_deadline",
        "gauge",
        "Kept DAG runs that were still unfinished at their DAG's deadline.",
    );
    let missed = runs::count_missed_deadlines(store.read()).await?;
    let _ = writeln!(out, "lakeward_dag_runs_missed_deadline {missed}");
    header(
        &mut out,
        "lakeward_notifications",
        "gauge",
        "Queued notifications by delivery state (pending, sending, sent, failed).",
    );
    for (state, n) in notifications::count_by_state(store.read()).await? {
        let _ = writeln!(out, "lakeward_notifications{{state=\"{}\"}} {n}", label(&state));
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
        "Duration of finished task instances (their last try), per DAG or per task \
         ([web] duration_histograms).",
    );
    for h in finished.duration_histograms() {
        let mut labels = format!("dag_id=\"{}\"", label(&h.dag_id));
        if let Some(task_id) = &h.task_id {
            let _ = write!(labels, ",task_id=\"{}\"", label(task_id));
        }
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
    job_metrics(&mut out, &metrics::all(store.read()).await?);
    process_metrics(&mut out);
    if let Some(console) = &state.console {
        // Counted by this web process (a query runs where it was asked).
        header(
            &mut out,
            "lakeward_sql_queries_total",
            "counter",
            "SQL console queries by outcome, in this web process.",
        );
        let o = console.outcomes();
        for (outcome, counter) in [
            ("succeeded", &o.succeeded),
            ("failed", &o.failed),
            ("timed_out", &o.timed_out),
            ("cancelled", &o.cancelled),
        ] {
            let n = counter.load(std::sync::atomic::Ordering::Relaxed);
            let _ = writeln!(out, "lakeward_sql_queries_total{{outcome=\"{outcome}\"}} {n}");
        }
        header(
            &mut out,
            "lakeward_sql_queries_running",
            "gauge",
            "SQL console queries whose engine is at work (a cancelled one until it stops).",
        );
        let running = o.running.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(out, "lakeward_sql_queries_running {running}");
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response())
}

/// This web process's own use of the machine, under the names every Prometheus target uses,
/// and the build it runs.
fn process_metrics(out: &mut String) {
    header(out, "lakeward_build_info", "gauge", "The lakeward build of this process.");
    let _ = writeln!(out, "lakeward_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    let Some(usage) = crate::process::usage() else { return };
    let samples: [(&str, &str, &str, f64); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            usage.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            usage.resident_memory_bytes as f64,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            usage.virtual_memory_bytes as f64,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            usage.start_time_seconds,
        ),
        ("process_threads", "gauge", "Operating system threads.", usage.threads as f64),
        ("process_open_fds", "gauge", "Open file descriptors.", usage.open_fds as f64),
    ];
    for (name, kind, help, value) in samples {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// The metrics jobs reported (stream records, dead letters, lag, commit time), each name with
/// its header once.
fn job_metrics(out: &mut String, samples: &[MetricSample]) {
    let mut previous: Option<&str> = None;
    for sample in samples {
        if previous != Some(sample.name.as_str()) {
            header(out, &sample.name, sample.kind.as_str(), &sample.help);
            previous = Some(&sample.name);
        }
        let labels: Vec<String> =
            sample.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
        let _ = writeln!(out, "{}{{{}}} {}", sample.name, labels.join(","), sample.value);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn job_metrics_get_one_header_per_name() {
        use crate::domain::{MetricKind, MetricSample};
        let sample = |partition: &str, value| MetricSample {
            name: "lakeward_stream_consumer_lag".into(),
            help: "Records left.".into(),
            kind: MetricKind::Gauge,
            labels: [("partition".to_string(), partition.to_string())].into(),
            value,
        };
        let mut out = String::new();
        super::job_metrics(&mut out, &[sample("0", 3.0), sample("1", 0.0)]);
        assert_eq!(
            out,
            "# HELP lakeward_stream_consumer_lag Records left.\n\
             # TYPE lakeward_stream_consumer_lag gauge\n\
             lakeward_stream_consumer_lag{partition=\"0\"} 3\n\
             lakeward_stream_consumer_lag{partition=\"1\"} 0\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
