//! The SQL console on the web: the SQL page (a query box, the answer as pages of a table, a
//! line or bar chart of two of its columns, CSV download, the user's recent queries) and
//! `POST /api/v1/sql` (JSON rows under a row cap, with a truncation flag). Every signed-in
//! user may query, viewers included: queries only read (see `lake::query`). Queries from here
//! are kept in the user's history; a request whose client goes away cancels its query.

use askama::Template;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::error::{PageError, WebError};
use super::identity::Identity;
use super::plot::{self, Plot};
use super::views::{encode_component, time_text, Chrome};
use super::AppState;
use crate::domain::ErrorClass;
use crate::lake::query::render::{self, OutputFormat};
use crate::lake::query::{Answer, Console, QueryError, SourcePlan};
use crate::store::queries::{self, QueryRow};
use crate::time::now_micros;

/// Rows the API returns unless the request asks for another number.
const API_DEFAULT_ROWS: usize = 1_000;
/// Rows per page of the SQL page, and most rows it fetches for its chart.
const PAGE_ROWS: usize = 100;
const CHART_ROWS: usize = 1_000;
/// Recent queries listed on the page.
const RECENT: i64 = 15;

fn console(state: &AppState) -> Result<&Console, WebError> {
    state
        .console
        .as_ref()
        .ok_or_else(|| WebError::NotFound("this server has no SQL console".into()))
}

/// Runs `sql` for `identity` and keeps it in their history.
async fn run(
    state: &AppState,
    identity: &Identity,
    sql: &str,
    cap: usize,
) -> Result<Result<Answer, QueryError>, WebError> {
    let result = console(state)?.run(sql, cap).await;
    let (outcome, rows, elapsed, error) = match &result {
        Ok(answer) => ("ok", answer.frame.height(), answer.elapsed, None),
        Err(QueryError::Timeout(limit)) => ("timeout", 0, *limit, Some(result_error(&result))),
        Err(_) => ("error", 0, std::time::Duration::ZERO, Some(result_error(&result))),
    };
    let row = QueryRow {
        username: identity.username.clone(),
        query: sql.trim().to_string(),
        ran_at: now_micros(),
        outcome: outcome.into(),
        row_count: i64::try_from(rows).unwrap_or(i64::MAX),
        elapsed_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
        error,
    };
    // History is a convenience: a failed write must not lose the answer.
    if let Err(e) = queries::record(state.store.write(), &row).await {
        tracing::warn!("keeping the query in {}'s history failed: {e}", identity.username);
    }
    Ok(result)
}

fn result_error(result: &Result<Answer, QueryError>) -> String {
    result.as_ref().err().map(ToString::to_string).unwrap_or_default()
}

/// A query's failure as the API answers it: the query's own faults are 400 with the message
/// (and the position of a syntax error); a timeout is 408; lakeward's are 500, logged.
fn api_error(e: &QueryError) -> Response {
    let (status, message) = match (e, e.class()) {
        (QueryError::Timeout(_), _) => (StatusCode::REQUEST_TIMEOUT, e.to_string()),
        (_, ErrorClass::Definition) => (StatusCode::BAD_REQUEST, e.to_string()),
        _ => {
            tracing::error!("SQL query failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("the query failed: {e}"))
        }
    };
    let mut body = json!({ "error": message });
    if let QueryError::Syntax { line, column, .. } = e {
        body["line"] = json!(line);
        body["column"] = json!(column);
    }
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
pub struct SqlRequest {
    query: String,
    /// Most rows to return (default 1,000; at most `[sql] max_rows`).
    limit: Option<usize>,
}

/// `POST /api/v1/sql`: `{"query": "SELECT …", "limit": 1000}` → columns, rows (arrays in
/// column order), `truncated`, and what each name read.
pub async fn api(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    payload: Result<Json<SqlRequest>, JsonRejection>,
) -> Response {
    let request = match payload {
        Ok(Json(request)) => request,
        Err(e) => return (e.status(), Json(json!({ "error": e.body_text() }))).into_response(),
    };
    let cap = request.limit.unwrap_or(API_DEFAULT_ROWS);
    let mut answer = match run(&state, &identity, &request.query, cap).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return api_error(&e),
        Err(e) => return super::error::ApiError(e).into_response(),
    };
    let columns: Vec<serde_json::Value> = render::columns(&answer.frame)
        .into_iter()
        .map(|(name, dtype)| json!({ "name": name, "type": dtype }))
        .collect();
    let rows = match render::json_rows(&mut answer.frame) {
        Ok(rows) => rows,
        Err(e) => return api_error(&QueryError::Lake(e)),
    };
    Json(json!({
        "columns": columns,
        "row_count": rows.len(),
        "rows": rows,
        "truncated": answer.truncated,
        "elapsed_ms": answer.elapsed.as_secs_f64() * 1000.0,
        "sources": answer.sources,
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    /// The query to run; the page alone without it.
    #[serde(default)]
    q: String,
    /// 1-based page of the answer.
    page: Option<usize>,
    /// `line` or `bar`; the chart's columns.
    chart: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

pub struct ErrorView {
    pub message: String,
    /// The query line the error points at, and the caret under it.
    pub line: Option<(String, String)>,
}

pub struct RecentView {
    pub query: String,
    pub href: String,
    pub when: String,
    pub outcome: String,
    pub rows: i64,
}

#[derive(Template)]
#[template(path = "sql.html")]
pub struct SqlPage {
    pub chrome: Chrome,
    pub query: String,
    pub error: Option<ErrorView>,
    pub ran: bool,
    pub columns: Vec<String>,
    /// This page's rows; `None` cells are nulls.
    pub rows: Vec<Vec<Option<String>>>,
    pub summary: String,
    pub prev_href: Option<String>,
    pub next_href: Option<String>,
    pub csv_href: String,
    pub plan: Vec<String>,
    /// Chart kinds, the chosen one marked.
    pub chart_kinds: Vec<(&'static str, bool)>,
    /// Columns, marked when chosen for x and for y.
    pub axis_options: Vec<(String, bool, bool)>,
    pub x: String,
    pub y: String,
    pub plot: Option<Plot>,
    pub recent: Vec<RecentView>,
}

/// The first row of 1-based page `page` (any number a URL may carry).
fn page_offset(page: usize) -> usize {
    page.saturating_sub(1).saturating_mul(PAGE_ROWS)
}

fn page_href(query: &PageQuery, page: usize) -> String {
    let mut href = format!("/sql?q={}&page={page}", encode_component(&query.q));
    for (key, value) in [("chart", &query.chart), ("x", &query.x), ("y", &query.y)] {
        if let Some(value) = value {
            href.push_str(&format!("&{key}={}", encode_component(value)));
        }
    }
    href
}

/// `GET /sql?q=…`: the SQL page, running `q` when given.
pub async fn page(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Query(query): Query<PageQuery>,
) -> Result<Html<String>, PageError> {
    let page_number = query.page.unwrap_or(1).max(1);
    let mut view = SqlPage {
        chrome: Chrome::from(&identity),
        query: query.q.clone(),
        error: None,
        ran: false,
        columns: Vec::new(),
        rows: Vec::new(),
        summary: String::new(),
        prev_href: None,
        next_href: None,
        csv_href: format!("/sql/download.csv?q={}", encode_component(&query.q)),
        plan: Vec::new(),
        chart_kinds: Vec::new(),
        axis_options: Vec::new(),
        x: String::new(),
        y: String::new(),
        plot: None,
        recent: Vec::new(),
    };
    if !query.q.trim().is_empty() {
        let cap = CHART_ROWS.max(page_offset(page_number).saturating_add(PAGE_ROWS));
        match run(&state, &identity, &query.q, cap).await? {
            Ok(answer) => show_answer(&mut view, &query, &answer, page_number),
            Err(e) => view.error = Some(error_view(&query.q, &e)),
        }
    }
    view.recent = queries::recent(state.store.read(), &identity.username, RECENT)
        .await?
        .into_iter()
        .map(|row| RecentView {
            href: format!("/sql?q={}", encode_component(&row.query)),
            query: row.query,
            when: time_text(Some(row.ran_at)),
            outcome: row.outcome,
            rows: row.row_count,
        })
        .collect();
    Ok(Html(view.render()?))
}

fn show_answer(view: &mut SqlPage, query: &PageQuery, answer: &Answer, page_number: usize) {
    let names: Vec<String> = render::columns(&answer.frame).into_iter().map(|(n, _)| n).collect();
    let cells = render::cells(&answer.frame);
    let offset = page_offset(page_number);
    let total = cells.len();
    view.ran = true;
    view.rows = cells.iter().skip(offset).take(PAGE_ROWS).cloned().collect();
    view.summary = match (view.rows.len(), answer.truncated) {
        (0, _) => format!("no rows on this page ({total} in all)"),
        (shown, more) => format!(
            "rows {}–{} of {total}{} · {} ms",
            offset + 1,
            offset + shown,
            if more { "+" } else { "" },
            answer.elapsed.as_millis()
        ),
    };
    view.prev_href = (page_number > 1).then(|| page_href(query, page_number - 1));
    let more = offset.saturating_add(PAGE_ROWS) < total || answer.truncated;
    view.next_href = more.then(|| page_href(query, page_number.saturating_add(1)));
    view.plan = answer.sources.iter().map(describe).collect();
    // The chart: the columns asked for, else the first column against the first numeric one.
    let numeric: Vec<bool> =
        answer.frame.columns().iter().map(|c| c.dtype().is_primitive_numeric()).collect();
    let position =
        |name: &Option<String>| name.as_ref().and_then(|n| names.iter().position(|c| c == n));
    let x = position(&query.x).unwrap_or(0);
    let y = position(&query.y).or_else(|| (0..names.len()).find(|&i| i != x && numeric[i]));
    let kind = query.chart.as_deref().and_then(plot::Kind::parse).unwrap_or(plot::Kind::Line);
    view.chart_kinds =
        [plot::Kind::Line, plot::Kind::Bar].into_iter().map(|k| (k.as_str(), k == kind)).collect();
    if let Some(y) = y {
        let column = |i: usize| cells.iter().map(|row| row[i].clone()).collect::<Vec<_>>();
        view.plot = plot::draw(kind, &column(x), &column(y));
        view.x = names[x].clone();
        view.y = names[y].clone();
    }
    view.axis_options =
        names.iter().enumerate().map(|(i, n)| (n.clone(), i == x, Some(i) == y)).collect();
    view.columns = names;
}

fn error_view(sql: &str, e: &QueryError) -> ErrorView {
    ErrorView { message: e.to_string(), line: e.pointer(sql) }
}

/// `bronze.orders (table, snapshot 42): 1 of 365 files, 12 KB of 4 MB, pruned by …`.
fn describe(plan: &SourcePlan) -> String {
    let snapshot = plan.snapshot_id.map(|s| format!(", snapshot {s}")).unwrap_or_default();
    let mut text = format!(
        "{} ({}{snapshot}): {} of {} files, {} of {} KB",
        plan.name,
        plan.kind,
        plan.planned_files,
        plan.total_files,
        plan.planned_bytes / 1024,
        plan.total_bytes / 1024
    );
    if !plan.pruned_by.is_empty() {
        text.push_str(&format!(", pruned by {}", plan.pruned_by.join(" and ")));
    }
    text
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    q: String,
}

/// `GET /sql/download.csv?q=…`: the whole answer (up to `[sql] max_rows`) as CSV.
pub async fn download(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Query(query): Query<DownloadQuery>,
) -> Result<Response, PageError> {
    let cap = console(&state)?.limits().max_rows;
    let mut answer = match run(&state, &identity, &query.q, cap).await? {
        Ok(answer) => answer,
        Err(e) => return Err(PageError(WebError::BadRequest(e.to_string()))),
    };
    let mut csv = Vec::new();
    render::write(&mut answer.frame, OutputFormat::Csv, &mut csv)
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8"),
            (CONTENT_DISPOSITION, "attachment; filename=\"query.csv\""),
        ],
        csv,
    )
        .into_response())
}
