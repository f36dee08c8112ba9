//! The REST API under `/api/v1`: JSON resources for DAGs, runs, task instances and logs.
//! Timestamps are RFC 3339 strings in UTC; lists take `limit` and `offset` and say how many
//! entries there are in all. Errors are `{"error": "..."}` with the matching status code.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::{ApiError, WebError};
use super::identity::Identity;
use super::{lookup, AppState};
use crate::dag::Dag;
use crate::scheduler::control;
use crate::scheduler::trigger::{create_run, RunRequest};
use crate::store::{dags, lineage, logs, runs, stats, tasks, users};
use crate::store::{DagRow, RunRow, TaskInstanceRow};
use crate::time::{from_micros, Micros};

type ApiResult = Result<Response, ApiError>;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

fn rfc3339(at: Micros) -> String {
    from_micros(at).to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn rfc3339_opt(at: Option<Micros>) -> Option<String> {
    at.map(rfc3339)
}

fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, WebError> {
    payload.map(|Json(v)| v).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => WebError::TooLarge(e.body_text()),
        _ => WebError::BadRequest(e.body_text()),
    })
}

fn query<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, WebError> {
    params.map(|Query(v)| v).map_err(|e| WebError::BadRequest(e.body_text()))
}

#[derive(Deserialize)]
pub struct Paging {
    limit: Option<i64>,
    offset: Option<i64>,
}

impl Paging {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }
    fn offset(&self) -> i64 {
        self.offset.unwrap_or(0).max(0)
    }
}

#[derive(Serialize)]
struct DagJson {
    dag_id: String,
    file: String,
    version: String,
    description: Option<String>,
    schedule: Option<String>,
    tags: Vec<String>,
    is_paused: bool,
    next_run_at: Option<String>,
}

impl From<&DagRow> for DagJson {
    fn from(d: &DagRow) -> Self {
        DagJson {
            dag_id: d.dag_id.clone(),
            file: super::views::shown_path(&d.file_path),
            version: d.version.clone(),
            description: d.description.clone(),
            schedule: d.schedule.clone(),
            tags: d.tags.clone(),
            is_paused: d.is_paused,
            next_run_at: if d.is_paused { None } else { rfc3339_opt(d.next_run_at) },
        }
    }
}

#[derive(Serialize)]
struct RunJson {
    dag_id: String,
    run_id: String,
    run_type: String,
    state: String,
    logical_date: String,
    data_interval_start: String,
    data_interval_end: String,
    conf: Map<String, Value>,
    created_at: String,
    started_at: Option<String>,
    ended_at: Option<String>,
}

impl From<&RunRow> for RunJson {
    fn from(r: &RunRow) -> Self {
        RunJson {
            dag_id: r.dag_id.clone(),
            run_id: r.run_id.clone(),
            run_type: r.run_type.to_string(),
            state: r.state.to_string(),
            logical_date: rfc3339(r.logical_date),
            data_interval_start: rfc3339(r.interval_start),
            data_interval_end: rfc3339(r.interval_end),
            conf: r.params.clone(),
            created_at: rfc3339(r.created_at),
            started_at: rfc3339_opt(r.started_at),
            ended_at: rfc3339_opt(r.ended_at),
        }
    }
}

#[derive(Serialize)]
struct TaskInstanceJson {
    task_id: String,
    state: String,
    try_number: i64,
    max_tries: i64,
    queue: String,
    worker: Option<String>,
    queued_at: Option<String>,
    started_at: Option<String>,
    ended_at: Option<String>,
    duration_seconds: Option<f64>,
    exit_code: Option<i64>,
    error: Option<String>,
    outputs: Map<String, Value>,
    /// What the try last reported of its progress (rows, bytes, message), and when.
    progress: Map<String, Value>,
    progress_at: Option<String>,
}

impl From<&TaskInstanceRow> for TaskInstanceJson {
    fn from(t: &TaskInstanceRow) -> Self {
        TaskInstanceJson {
            task_id: t.task_id.clone(),
            state: t.state.to_string(),
            try_number: t.try_number,
            max_tries: t.max_tries,
            queue: t.queue.clone(),
            worker: t.worker_id.clone(),
            queued_at: rfc3339_opt(t.queued_at),
            started_at: rfc3339_opt(t.started_at),
            ended_at: rfc3339_opt(t.ended_at),
            duration_seconds: t.started_at.zip(t.ended_at).map(|(s, e)| (e - s) as f64 / 1e6),
            exit_code: t.exit_code,
            error: t.error.clone(),
            outputs: t.outputs.clone(),
            progress: t.progress.clone(),
            progress_at: rfc3339_opt(t.progress_at),
        }
    }
}

fn dag_details(row: &DagRow, dag: &Dag) -> Value {
    let tasks: Vec<Value> = dag
        .topo_order
        .iter()
        .map(|id| {
            let t = &dag.tasks[id];
            json!({
                "task_id": t.id, "kind": t.kind, "depends_on": t.depends_on,
                "trigger_rule": t.trigger_rule, "retries": t.retries, "queue": t.queue,
            })
        })
        .collect();
    let params: Map<String, Value> = dag
        .params
        .iter()
        .map(|(name, spec)| {
            let value = json!({
                "type": spec.ty.name(), "default": spec.default, "description": spec.description,
            });
            (name.clone(), value)
        })
        .collect();
    let mut value = serde_json::to_value(DagJson::from(row)).unwrap_or_default();
    if let Value::Object(map) = &mut value {
        map.insert("timezone".into(), json!(dag.timezone.name()));
        map.insert("max_active_runs".into(), json!(dag.max_active_runs));
        map.insert("params".into(), Value::Object(params));
        map.insert("tasks".into(), Value::Array(tasks));
    }
    value
}

#[derive(Deserialize)]
pub struct DagFilter {
    limit: Option<i64>,
    offset: Option<i64>,
    tag: Option<String>,
    name: Option<String>,
}

pub async fn list_dags(
    State(state): State<AppState>,
    params: Result<Query<DagFilter>, QueryRejection>,
) -> ApiResult {
    let filter = query(params)?;
    let paging = Paging { limit: filter.limit, offset: filter.offset };
    let wanted = dags::DagFilter { name: filter.name.unwrap_or_default(), tag: filter.tag };
    let (rows, total) =
        dags::page(state.store.read(), &wanted, paging.limit(), paging.offset()).await?;
    let dags: Vec<DagJson> = rows.iter().map(DagJson::from).collect();
    Ok(Json(json!({ "dags": dags, "total_entries": total })).into_response())
}

pub async fn get_dag(State(state): State<AppState>, Path(dag_id): Path<String>) -> ApiResult {
    let (row, dag) = lookup::dag(&state, &dag_id).await?;
    Ok(Json(dag_details(&row, &dag)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagPatch {
    is_paused: bool,
}

pub async fn patch_dag(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    payload: Result<Json<DagPatch>, JsonRejection>,
) -> ApiResult {
    let patch = body(payload)?;
    if !dags::set_paused(state.store.write(), &dag_id, patch.is_paused).await? {
        return Err(WebError::NotFound(format!("no DAG `{dag_id}`")).into());
    }
    let (row, dag) = lookup::dag(&state, &dag_id).await?;
    Ok(Json(dag_details(&row, &dag)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    #[serde(default)]
    conf: Map<String, Value>,
    logical_date: Option<String>,
}

pub async fn trigger(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    payload: Result<Json<TriggerBody>, JsonRejection>,
) -> ApiResult {
    let request = body(payload)?;
    let (_, dag) = lookup::dag(&state, &dag_id).await?;
    let logical_date = match request.logical_date.as_deref() {
        None => Utc::now(),
        Some(text) => crate::schedule::parse_date(text, dag.timezone).ok_or_else(|| {
            WebError::BadRequest(format!("logical_date `{text}` is not YYYY-MM-DD or RFC 3339"))
        })?,
    };
    let run =
        create_run(&state.store, &dag, RunRequest::manual(logical_date, request.conf)).await?;
    Ok((StatusCode::CREATED, Json(RunJson::from(&run))).into_response())
}

pub async fn list_runs(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    params: Result<Query<Paging>, QueryRejection>,
) -> ApiResult {
    let paging = query(params)?;
    lookup::dag(&state, &dag_id).await?;
    let runs = runs::list(state.store.read(), &dag_id, paging.limit(), paging.offset()).await?;
    let total = stats::count_runs(state.store.read(), &dag_id).await?;
    let runs: Vec<RunJson> = runs.iter().map(RunJson::from).collect();
    Ok(Json(json!({ "dag_runs": runs, "total_entries": total })).into_response())
}

async fn run_details(state: &AppState, run: &RunRow) -> Result<Value, WebError> {
    let instances = tasks::of_runs(state.store.read(), &[run.pk]).await?;
    let mut value = serde_json::to_value(RunJson::from(run)).unwrap_or_default();
    if let Value::Object(map) = &mut value {
        let tasks: Vec<TaskInstanceJson> = instances.iter().map(TaskInstanceJson::from).collect();
        map.insert("task_instances".into(), serde_json::to_value(tasks).unwrap_or_default());
    }
    Ok(value)
}

pub async fn get_run(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult {
    let run = lookup::run(&state, &dag_id, &run_id).await?;
    Ok(Json(run_details(&state, &run).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPatch {
    state: String,
}

pub async fn patch_run(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    payload: Result<Json<RunPatch>, JsonRejection>,
) -> ApiResult {
    let patch = body(payload)?;
    let target = lookup::Mark::parse(&patch.state)?.run_state();
    let run = lookup::run(&state, &dag_id, &run_id).await?;
    control::mark(&state.store, &run, target).await?;
    let run = lookup::run(&state, &dag_id, &run_id).await?;
    Ok(Json(run_details(&state, &run).await?).into_response())
}

pub async fn get_task(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult {
    let (_, _, ti) = lookup::task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let lineage = lineage::of_try(state.store.read(), ti.id, ti.try_number).await?;
    Ok(Json(TaskDetails { task: TaskInstanceJson::from(&ti), lineage }).into_response())
}

/// A task instance with the lineage of its latest try.
#[derive(Serialize)]
struct TaskDetails {
    #[serde(flatten)]
    task: TaskInstanceJson,
    lineage: Vec<crate::domain::LineageRecord>,
}

pub async fn patch_task(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    payload: Result<Json<RunPatch>, JsonRejection>,
) -> ApiResult {
    let patch = body(payload)?;
    let target = lookup::Mark::parse(&patch.state)?.task_state();
    let (_, _, ti) = lookup::task_instance(&state, &dag_id, &run_id, &task_id).await?;
    control::mark_task(&state.store, &ti, target).await?;
    let (_, _, ti) = lookup::task_instance(&state, &dag_id, &run_id, &task_id).await?;
    Ok(Json(TaskInstanceJson::from(&ti)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClearBody {
    #[serde(default)]
    downstream: bool,
}

pub async fn clear_task(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    payload: Result<Json<ClearBody>, JsonRejection>,
) -> ApiResult {
    // The body is optional: no JSON body at all means "just this task".
    let downstream = match payload {
        Err(JsonRejection::MissingJsonContentType(_)) => false,
        other => body(other)?.downstream,
    };
    let (run, dag, _) = lookup::task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let cleared = control::clear(&state.store, &dag, &run, &task_id, downstream).await?;
    Ok(Json(json!({ "cleared": cleared })).into_response())
}

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(rename = "try")]
    try_number: Option<i64>,
    /// Only lines after this line id (from a previous answer's `next_after`).
    after: Option<i64>,
    limit: Option<i64>,
}

pub async fn task_logs(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    params: Result<Query<LogQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(params)?;
    let (_, _, ti) = lookup::task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT * 10).clamp(1, 10 * MAX_LIMIT);
    let lines = logs::read(state.store.read(), ti.id, q.try_number, after, limit).await?;
    let next_after = lines.last().map_or(after, |l| l.id);
    let lines: Vec<Value> = lines
        .iter()
        .map(|l| json!({ "id": l.id, "try": l.try_number, "at": rfc3339(l.at), "stream": l.stream, "line": l.line }))
        .collect();
    Ok(Json(json!({
        "task_id": task_id, "state": ti.state, "try_number": ti.try_number,
        "lines": lines, "next_after": next_after,
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct TokenQuery {
    /// Admins only: another user's tokens (default: everyone's for admins, else the caller's).
    user: Option<String>,
}

/// API tokens: a viewer sees its own, an admin everyone's (or `?user=`'s).
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    params: Result<Query<TokenQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(params)?;
    let owner = match (identity.is_admin(), q.user) {
        (true, user) => user,
        (false, Some(user)) if user != identity.username => {
            return Err(WebError::admin_only().into())
        }
        (false, _) => Some(identity.username.clone()),
    };
    let tokens = users::list_api_tokens(state.store.read(), owner.as_deref()).await?;
    let tokens: Vec<Value> = tokens
        .iter()
        .map(|t| json!({ "id": t.id, "user": t.username, "name": t.name,
                         "created_at": rfc3339(t.created_at), "expires_at": rfc3339_opt(t.expires_at) }))
        .collect();
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

/// Revokes a token: one's own, or any for an admin.
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let owner = (!identity.is_admin()).then_some(identity.username.as_str());
    if users::revoke_api_token(state.store.write(), &id, owner).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(WebError::NotFound(format!("no API token `{id}` of yours")).into())
    }
}

pub async fn openapi() -> Response {
    const SPEC: &str = include_str!("openapi.json");
    ([(axum::http::header::CONTENT_TYPE, "application/json")], SPEC).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError(WebError::NotFound("no such API endpoint".into()))
}
