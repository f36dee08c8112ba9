//! The HTML pages: DAG list, trigger form, DAG detail (grid, graph, history, source), run and
//! task instance. Handlers gather rows with a fixed number of queries per page, whatever the
//! number of runs, and hand view models to the templates in `views`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{PageError, WebError};
use super::graph;
use super::identity::Identity;
use super::views::*;
use super::{dataflow, lookup, AppState};
use crate::dag::{Dag, ParamType};
use crate::domain::{RunState, TaskState};
use crate::schedule::Schedule;
use crate::scheduler::control;
use crate::scheduler::trigger::{create_run, RunRequest, TriggerError};
use crate::store::dags::DagFilter;
use crate::store::{assets, dags, logs, notifications, runs, stats, tasks};
use crate::store::{RunRow, TaskInstanceRow, TryRow};
use crate::time::display;

const DAGS_PER_PAGE: i64 = 25;
const RECENT_RUNS: i64 = 10;
const RUNS_PER_PAGE: i64 = 25;
const LOG_LINES: i64 = 10_000;

type Page = Result<Html<String>, PageError>;

fn html(page: impl Template) -> Page {
    Ok(Html(page.render()?))
}

/// Highest page number honoured; offsets computed from it cannot overflow.
const MAX_PAGE: i64 = 1_000_000;

fn page_number(page: Option<i64>) -> i64 {
    page.unwrap_or(1).clamp(1, MAX_PAGE)
}

fn is_live(state: RunState) -> bool {
    !state.is_finished()
}

/// The snapshots (versions) that triggered a run on data, by table (dataset).
async fn run_triggers(state: &AppState, run: &RunRow) -> Result<Vec<RunTriggerView>, WebError> {
    let mut by_asset: Vec<RunTriggerView> = Vec::new();
    for trigger in assets::triggers_of_run(state.store.read(), run.pk).await? {
        match by_asset.last_mut() {
            Some(last) if last.name == trigger.name => {
                last.versions.push_str(", ");
                last.versions.push_str(&trigger.version);
            }
            _ => by_asset.push(RunTriggerView { name: trigger.name, versions: trigger.version }),
        }
    }
    Ok(by_asset)
}

#[derive(Deserialize)]
pub struct DagsQuery {
    name: Option<String>,
    tag: Option<String>,
    page: Option<i64>,
}

pub async fn dags(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Query(query): Query<DagsQuery>,
) -> Page {
    let name = query.name.unwrap_or_default();
    let tag = query.tag.unwrap_or_default();
    let tags = dags::active_tags(state.store.read()).await?;
    let filter = DagFilter { name: name.clone(), tag: Some(tag.clone()).filter(|t| !t.is_empty()) };
    let page = page_number(query.page);
    let (shown, matching) =
        dags::page(state.store.read(), &filter, DAGS_PER_PAGE, (page - 1) * DAGS_PER_PAGE).await?;
    let ids: Vec<String> = shown.iter().map(|d| d.dag_id.clone()).collect();
    let mut recent = stats::recent_runs(state.store.read(), &ids, RECENT_RUNS).await?;
    let mut live = false;
    let dags = shown
        .into_iter()
        .map(|d| {
            let runs = recent.remove(&d.dag_id).unwrap_or_default();
            live |= runs.iter().any(|r| is_live(r.state));
            DagItem {
                href: dag_href(&d.dag_id),
                id: d.dag_id.clone(),
                description: d.description.clone().unwrap_or_default(),
                schedule: d.schedule.clone().unwrap_or_else(|| "manual".into()),
                next_run: if d.is_paused { "-".into() } else { time_text(d.next_run_at) },
                paused: d.is_paused,
                tags: d.tags.clone(),
                recent: runs.iter().rev().map(RunSquare::of).collect(),
            }
        })
        .collect();
    let base = format!("/dags?name={}&tag={}&", encode_component(&name), encode_component(&tag));
    html(DagsPage {
        chrome: Chrome::from(&identity),
        import_errors: dags::import_errors(state.store.read())
            .await?
            .into_iter()
            .map(shown_import_error)
            .collect(),
        dags,
        name,
        tag,
        tags,
        pager: Pager::new(&base, page, DAGS_PER_PAGE, matching),
        live,
    })
}

#[derive(Deserialize)]
pub struct PauseForm {
    paused: String,
}

pub async fn pause(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Form(form): Form<PauseForm>,
) -> Result<Response, PageError> {
    let paused = form.paused == "true";
    if !dags::set_paused(state.store.write(), &dag_id, paused).await? {
        return Err(WebError::NotFound(format!("no DAG `{dag_id}`")).into());
    }
    Ok(Redirect::to("/dags").into_response())
}

#[derive(Deserialize)]
pub struct DagQuery {
    tab: Option<String>,
    page: Option<i64>,
}

pub async fn dag(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(dag_id): Path<String>,
    Query(query): Query<DagQuery>,
) -> Page {
    let (row, dag) = lookup::dag(&state, &dag_id).await?;
    let href = dag_href(&dag_id);
    let tab = match query.tab.as_deref() {
        Some("graph") => "graph",
        Some("history") => "history",
        Some("source") => "source",
        _ => "grid",
    };
    let mut page = DagPage {
        chrome: Chrome::from(&identity),
        dag_id: dag_id.clone(),
        href: href.clone(),
        description: row.description.clone().unwrap_or_default(),
        schedule: row.schedule.clone().unwrap_or_else(|| "manual".into()),
        next_run: if row.is_paused { "-".into() } else { time_text(row.next_run_at) },
        paused: row.is_paused,
        tab,
        grid: None,
        graph: None,
        history: None,
        stream: None,
        source: None,
        pager: None,
        live: false,
        dataflow: dataflow::of_dag(&state, &dag).await?,
    };
    if matches!(dag.schedule, Some(Schedule::Continuous { .. })) {
        page.stream = stream_chart(&state, &dag_id).await?;
    }
    let number = page_number(query.page);
    let paged_runs = |runs_total: i64| {
        Some(Pager::new(&format!("{href}?tab={tab}&"), number, RUNS_PER_PAGE, runs_total))
    };
    match tab {
        "grid" | "history" => {
            let runs = runs::list(
                state.store.read(),
                &dag_id,
                RUNS_PER_PAGE,
                (number - 1) * RUNS_PER_PAGE,
            )
            .await?;
            page.live = runs.iter().any(|r| is_live(r.state));
            page.pager = paged_runs(stats::count_runs(state.store.read(), &dag_id).await?);
            if tab == "grid" {
                page.grid = Some(grid(&state, &dag, &runs).await?);
            } else {
                page.history = Some(HistoryView {
                    rows: runs.iter().map(history_row).collect(),
                    chart: DurationChart::of(&runs),
                });
            }
        }
        "graph" => {
            let latest = runs::list(state.store.read(), &dag_id, 1, 0).await?.into_iter().next();
            let mut states = HashMap::new();
            if let Some(run) = &latest {
                page.live = is_live(run.state);
                for ti in tasks::of_runs(state.store.read(), &[run.pk]).await? {
                    let href = task_href(&dag_id, &run.run_id, &ti.task_id);
                    states.insert(ti.task_id, (ti.state.to_string(), href));
                }
            }
            page.graph = Some(GraphView {
                svg: graph::layout(&dag, |task| states.get(task).cloned()),
                run_id: latest.map(|r| r.run_id),
            });
        }
        _ => {
            let (file, source) = dags::source(state.store.read(), &dag_id, &row.version)
                .await?
                .unwrap_or_else(|| (dag.file.clone(), dag.source.to_string()));
            page.source = Some(SourceView { file: shown_path(&file), source });
        }
    }
    html(page)
}

/// Runs a stream chart covers.
const STREAM_CHART_RUNS: i64 = 120;

/// Records per second and lag of the recent finished runs of a stream DAG (what its tasks'
/// `records` and `lag` outputs say); `None` if its tasks report neither.
async fn stream_chart(state: &AppState, dag_id: &str) -> Result<Option<StreamChart>, WebError> {
    let recent = runs::list(state.store.read(), dag_id, STREAM_CHART_RUNS, 0).await?;
    let finished: Vec<&RunRow> = recent.iter().filter(|r| r.state.is_finished()).collect();
    let pks: Vec<i64> = finished.iter().map(|r| r.pk).collect();
    let mut per_run: HashMap<i64, (f64, f64, bool)> = HashMap::new();
    for ti in tasks::of_runs(state.store.read(), &pks).await? {
        let number = |key: &str| ti.outputs.get(key).and_then(Value::as_f64);
        let entry = per_run.entry(ti.run_pk).or_default();
        if let Some(records) = number("records") {
            entry.0 += records;
            entry.2 = true;
        }
        entry.1 += number("lag").unwrap_or(0.0);
    }
    let points: Vec<StreamPoint> = finished
        .iter()
        .rev()
        .filter_map(|run| {
            let (records, lag, reported) = per_run.get(&run.pk).copied()?;
            let seconds = (run.ended_at? - run.started_at?) as f64 / 1e6;
            reported.then_some(StreamPoint { records, seconds, lag })
        })
        .collect();
    Ok(StreamChart::of(&points))
}

/// Columns are `runs` oldest first; rows the DAG's tasks, upstreams first.
async fn grid(state: &AppState, dag: &Dag, runs: &[RunRow]) -> Result<GridView, WebError> {
    let pks: Vec<i64> = runs.iter().map(|r| r.pk).collect();
    let mut states: HashMap<(i64, String), Vec<TaskState>> = HashMap::new();
    for t in tasks::states_of_runs(state.store.read(), &pks).await? {
        states.entry((t.run_pk, t.task_id)).or_default().push(t.state);
    }
    let columns = runs
        .iter()
        .rev()
        .map(|run| GridColumn {
            label: display(run.logical_date).chars().take(10).collect(),
            title: format!("{} ({})", run.run_id, run.state),
            state: run.state.to_string(),
            href: run_href(&run.dag_id, &run.run_id),
        })
        .collect();
    let rows = dag
        .topo_order
        .iter()
        .map(|task_id| GridRow {
            task_id: task_id.clone(),
            cells: runs
                .iter()
                .rev()
                .map(|run| {
                    let instances = states.get(&(run.pk, task_id.clone()));
                    let count = instances.map_or(0, Vec::len);
                    let state = TaskState::summary(instances.into_iter().flatten().copied())
                        .map_or("none".to_string(), |s| s.to_string());
                    let mapped = dag.tasks.get(task_id).is_some_and(|t| t.for_each.is_some());
                    let (count, href) = if mapped && count > 1 {
                        (
                            count.to_string(),
                            format!("{}#mapped-{task_id}", run_href(&run.dag_id, &run.run_id)),
                        )
                    } else {
                        (String::new(), task_href(&run.dag_id, &run.run_id, task_id))
                    };
                    let times =
                        if count.is_empty() { String::new() } else { format!(" ×{count}") };
                    GridCell {
                        title: format!("{task_id}{times} in {}: {state}", run.run_id),
                        state,
                        href,
                        count,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(GridView { columns, rows })
}

fn history_row(run: &RunRow) -> HistoryRow {
    HistoryRow {
        run_id: run.run_id.clone(),
        href: run_href(&run.dag_id, &run.run_id),
        state: run.state.to_string(),
        run_type: run.run_type.to_string(),
        logical_date: display(run.logical_date),
        started: time_text(run.started_at),
        duration: duration_text(run.started_at, run.ended_at),
    }
}

fn param_fields(dag: &Dag, given: &HashMap<String, String>) -> Vec<ParamField> {
    dag.params
        .iter()
        .map(|(name, spec)| {
            let default = match &spec.default {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            ParamField {
                name: name.clone(),
                type_name: spec.ty.name().to_string(),
                widget: match spec.ty {
                    ParamType::Boolean => "select",
                    ParamType::Integer | ParamType::Number => "number",
                    ParamType::Array | ParamType::Object => "json",
                    ParamType::String => "text",
                },
                value: given.get(name).cloned().unwrap_or(default),
                description: spec.description.clone().unwrap_or_default(),
                error: None,
            }
        })
        .collect()
}

pub async fn trigger_form(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(dag_id): Path<String>,
) -> Page {
    if !identity.is_admin() {
        return Err(WebError::admin_only().into());
    }
    let (_, dag) = lookup::dag(&state, &dag_id).await?;
    html(TriggerPage {
        chrome: Chrome::from(&identity),
        dag_href: dag_href(&dag_id),
        dag_id,
        fields: param_fields(&dag, &HashMap::new()),
        logical_date: String::new(),
        date_error: None,
        error: None,
    })
}

pub async fn trigger(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(dag_id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let (_, dag) = lookup::dag(&state, &dag_id).await?;
    let given: HashMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("param.").map(|name| (name.to_string(), v.clone())))
        .collect();
    let logical_date = form
        .iter()
        .find(|(k, _)| k == "logical_date")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mut fields = param_fields(&dag, &given);
    let mut params = Map::new();
    for field in &mut fields {
        let spec = &dag.params[&field.name];
        let blank = field.value.trim().is_empty() && spec.ty != ParamType::String;
        if blank && spec.default.is_some() {
            continue;
        }
        match spec.ty.parse_text(&field.value) {
            Ok(value) => {
                params.insert(field.name.clone(), value);
            }
            Err(message) => field.error = Some(message),
        }
    }
    let mut date_error = None;
    let date = if logical_date.is_empty() {
        Some(Utc::now())
    } else {
        let parsed = crate::schedule::parse_date(&logical_date, dag.timezone);
        if parsed.is_none() {
            date_error = Some(format!("`{logical_date}` is not a date (YYYY-MM-DD or RFC 3339)"));
        }
        parsed
    };
    let mut error = None;
    if let (Some(date), true) = (date, fields.iter().all(|f| f.error.is_none())) {
        match create_run(&state.store, &dag, RunRequest::manual(date, params)).await {
            Ok(run) => return Ok(Redirect::to(&run_href(&dag_id, &run.run_id)).into_response()),
            Err(e @ TriggerError::Duplicate { .. }) => date_error = Some(e.to_string()),
            Err(e @ (TriggerError::InvalidParams(_) | TriggerError::Consumed)) => {
                error = Some(e.to_string())
            }
            Err(TriggerError::Store(e)) => return Err(e.into()),
        }
    }
    let page = TriggerPage {
        chrome: Chrome::from(&identity),
        dag_href: dag_href(&dag_id),
        dag_id,
        fields,
        logical_date,
        date_error,
        error,
    };
    Ok((axum::http::StatusCode::BAD_REQUEST, html(page)?).into_response())
}

pub async fn run(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Page {
    let run = lookup::run(&state, &dag_id, &run_id).await?;
    let dag = state.versions.get(&dag_id, &run.version).await?;
    let mut instances = tasks::of_runs(state.store.read(), &[run.pk]).await?;
    let order: HashMap<&str, usize> =
        dag.topo_order.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    instances.sort_by_key(|ti| {
        (order.get(ti.task_id.as_str()).copied().unwrap_or(usize::MAX), ti.map_index)
    });
    html(RunPage {
        chrome: Chrome::from(&identity),
        dag_href: dag_href(&dag_id),
        href: run_href(&dag_id, &run_id),
        dag_id,
        run_id: run.run_id.clone(),
        state: run.state.to_string(),
        run_type: run.run_type.to_string(),
        logical_date: display(run.logical_date),
        interval: format!("{} – {}", display(run.interval_start), display(run.interval_end)),
        started: time_text(run.started_at),
        ended: time_text(run.ended_at),
        duration: duration_text(run.started_at, run.ended_at),
        params: Value::Object(run.params.clone()).to_string(),
        deadline_missed: run.deadline_missed_at.map(display),
        triggers: run_triggers(&state, &run).await?,
        tasks: task_rows(&run, &instances),
        notifications: notifications::of_run(state.store.read(), &run.dag_id, &run.run_id)
            .await?
            .iter()
            .map(NotificationView::of)
            .collect(),
        live: is_live(run.state),
    })
}

/// The run page's rows: one per task, upstreams first; a mapped task's instances folded
/// under one row.
fn task_rows(run: &RunRow, instances: &[TaskInstanceRow]) -> Vec<TaskRow> {
    let mut rows: Vec<TaskRow> = Vec::new();
    let mut i = 0;
    while i < instances.len() {
        let ti = &instances[i];
        if ti.map_index < 0 {
            rows.push(TaskRow::of(run, ti));
            i += 1;
            continue;
        }
        let same: Vec<&TaskInstanceRow> =
            instances[i..].iter().take_while(|other| other.task_id == ti.task_id).collect();
        i += same.len();
        rows.push(TaskRow::mapped(run, &ti.task_id, &same));
    }
    rows
}

#[derive(Deserialize)]
pub struct MarkForm {
    state: String,
}

pub async fn mark(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    Form(form): Form<MarkForm>,
) -> Result<Response, PageError> {
    let target = lookup::Mark::parse(&form.state)?.run_state();
    let run = lookup::run(&state, &dag_id, &run_id).await?;
    control::mark(&state.store, &run, target).await?;
    Ok(Redirect::to(&run_href(&dag_id, &run_id)).into_response())
}

pub async fn mark_task(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Form(form): Form<MarkForm>,
) -> Result<Response, PageError> {
    let target = lookup::Mark::parse(&form.state)?.task_state();
    let (_, _, ti) = lookup::task_instance(&state, &dag_id, &run_id, &task_id).await?;
    control::mark_task(&state.store, &ti, target).await?;
    Ok(Redirect::to(&task_href(&dag_id, &run_id, &task_id)).into_response())
}

#[derive(Deserialize)]
pub struct ClearForm {
    downstream: Option<String>,
}

pub async fn clear(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Form(form): Form<ClearForm>,
) -> Result<Response, PageError> {
    let (run, dag, _) = lookup::task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let downstream = form.downstream.as_deref() == Some("true");
    control::clear(&state.store, &dag, &run, &task_id, downstream).await?;
    Ok(Redirect::to(&run_href(&dag_id, &run_id)).into_response())
}

#[derive(Deserialize)]
pub struct TaskQuery {
    #[serde(rename = "try")]
    try_number: Option<i64>,
}

pub async fn task(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(query): Query<TaskQuery>,
) -> Page {
    let (run, dag, ti) = lookup::task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let latest = ti.try_number.max(1);
    let selected = query.try_number.unwrap_or(latest).clamp(1, latest);
    let lines = logs::read(state.store.read(), ti.id, Some(selected), 0, LOG_LINES + 1).await?;
    let log_truncated = lines.len() as i64 > LOG_LINES;
    let href = task_href(&dag_id, &run_id, &task_id);
    let timings: HashMap<i64, TryRow> = tasks::tries(state.store.read(), ti.id)
        .await?
        .into_iter()
        .map(|t| (t.try_number, t))
        .collect();
    let tries = (1..=latest)
        .map(|n| {
            let timing = timings.get(&n);
            let ended = timing.and_then(|t| t.ended_at);
            TryView {
                number: n,
                href: format!("{href}?try={n}"),
                selected: n == selected,
                state: timing.map_or("-".into(), |t| t.state.clone()),
                worker: timing.and_then(|t| t.worker_id.clone()).unwrap_or_else(|| "-".into()),
                started: time_text(timing.map(|t| t.started_at)),
                ended: time_text(ended),
                duration: duration_text(timing.map(|t| t.started_at), ended),
            }
        })
        .collect();
    let outputs = ti
        .outputs
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "checks" | "partitions"))
        .map(|(key, value)| {
            let text = serde_json::to_string_pretty(value).unwrap_or_default();
            (key.clone(), text)
        })
        .collect();
    html(TaskPage {
        chrome: Chrome::from(&identity),
        dag_href: dag_href(&dag_id),
        run_href: run_href(&dag_id, &run_id),
        kind: dag.tasks.get(&task_id).map(|t| t.kind.clone()).unwrap_or_default(),
        tries,
        href,
        dag_id,
        run_id: run.run_id.clone(),
        task_id,
        state: ti.state.to_string(),
        selected_try: selected,
        max_tries: ti.max_tries,
        queued: time_text(ti.queued_at),
        started: time_text(ti.started_at),
        ended: time_text(ti.ended_at),
        duration: duration_text(ti.started_at, ti.ended_at),
        worker: ti.worker_id.clone().unwrap_or_else(|| "-".into()),
        exit_code: ti.exit_code.map_or("-".into(), |c| c.to_string()),
        error: ti.error.clone().unwrap_or_default(),
        progress: progress_text(&ti),
        checks: CheckView::list(&ti.outputs),
        partitions: PartitionView::list(&ti.outputs),
        outputs,
        log: lines
            .iter()
            .take(LOG_LINES as usize)
            .map(|l| LogLineView {
                at: display(l.at)[11..].to_string(),
                stream: l.stream.clone(),
                text: l.line.clone(),
            })
            .collect(),
        log_truncated,
        live: !ti.state.is_finished(),
    })
}

/// "1200 rows · 48000 bytes · following (at 2026-11-26 10:00:01)": a try's last progress
/// report, or nothing if it made none.
fn progress_text(ti: &crate::store::TaskInstanceRow) -> String {
    let Some(at) = ti.progress_at else { return String::new() };
    let number = |key: &str| ti.progress.get(key).and_then(|v| v.as_u64());
    let mut parts: Vec<String> = Vec::new();
    parts.extend(number("rows").map(|n| format!("{n} rows")));
    parts.extend(number("bytes").map(|n| format!("{n} bytes")));
    parts.extend(ti.progress.get("message").and_then(|v| v.as_str()).map(str::to_string));
    format!("{} (at {})", parts.join(" · "), time_text(Some(at)))
}
