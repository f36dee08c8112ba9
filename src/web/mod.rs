//! The HTTP server: a status page and `/health`. (The full UI and REST API build on this.)
//!
//! Handlers only read and write through the [`Store`]; they make no scheduling decisions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::runtime::Shutdown;
use crate::store::Store;
use crate::time::{display, now_micros};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// A scheduler that has not heartbeated for this long is reported as down.
    pub scheduler_timeout: std::time::Duration,
}

/// The routes, separate from serving so tests can call them directly.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/static/lakeward.css", get(stylesheet))
        .with_state(state)
}

/// Serves `app` on `listener` until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn stylesheet() -> impl IntoResponse {
    const CSS: &str = include_str!("../../web/static/lakeward.css");
    ([(axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

async fn health(State(state): State<AppState>) -> Response {
    let database_ok = state.store.ping().await.is_ok();
    let heartbeat = if database_ok {
        state.store.latest_heartbeat("scheduler").await.ok().flatten()
    } else {
        None
    };
    let limit = i64::try_from(state.scheduler_timeout.as_micros()).unwrap_or(i64::MAX);
    let scheduler_ok = heartbeat.is_some_and(|at| now_micros() - at <= limit);
    let status =
        if database_ok && scheduler_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "database": { "status": if database_ok { "healthy" } else { "unhealthy" } },
        "scheduler": {
            "status": if scheduler_ok { "healthy" } else { "unhealthy" },
            "latest_heartbeat": heartbeat.map(display),
        },
    });
    (status, Json(body)).into_response()
}

async fn index(State(state): State<AppState>) -> Response {
    match render_index(&state.store).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("status page: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Html("<h1>lakeward</h1><p>The database is unavailable.</p>"),
            )
                .into_response()
        }
    }
}

async fn render_index(store: &Store) -> Result<String, crate::store::StoreError> {
    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><title>lakeward</title>\
         <link rel=stylesheet href=/static/lakeward.css><h1>lakeward</h1>",
    );
    for error in store.import_errors().await? {
        html.push_str(&format!("<p class=error>{}</p>", escape(&error.message)));
    }
    html.push_str(
        "<table><tr><th>DAG</th><th>schedule</th><th>paused</th><th>latest runs</th></tr>",
    );
    for dag in store.list_dags().await?.into_iter().filter(|d| d.is_active) {
        let runs = store.list_runs(&dag.dag_id, 5, 0).await?;
        let runs: Vec<String> = runs
            .iter()
            .map(|r| {
                format!("<span class=state-{}>{} {}</span>", r.state, escape(&r.run_id), r.state)
            })
            .collect();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&dag.dag_id),
            escape(dag.schedule.as_deref().unwrap_or("manual")),
            if dag.is_paused { "yes" } else { "no" },
            runs.join("<br>")
        ));
    }
    html.push_str("</table>");
    Ok(html)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape("<script>\"x\"&'y'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;"
        );
    }
}
