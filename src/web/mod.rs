//! The web server: server-rendered pages (askama), the REST API under `/api/v1`, the Iceberg
//! REST catalog under `/iceberg`, `/metrics` and `/health`.
//!
//! Handlers read and write through the [`Store`] and the scheduler's public actions (trigger,
//! clear, mark); they make no scheduling decisions. Every route but `/health`, `/login` and
//! the static files sits behind [`auth::authenticate`].

mod api;
pub mod auth;
mod catalog;
mod charts;
mod dataflow;
mod error;
mod graph;
mod identity;
mod lookup;
mod metrics;
mod pages;
mod plot;
mod sql;
mod tables;
mod throttle;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use error::WebError;

use crate::config::Config;
use crate::lake::query::Console;
use crate::lake::tables::TablesHandle;
use crate::runtime::Shutdown;
use crate::store::processes;
use crate::store::{DurationsBy, Store};
use crate::time::{display, now_micros};
use crate::versions::DagVersions;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub versions: Arc<DagVersions>,
    /// A scheduler that has not heartbeated for this long is reported as down.
    pub scheduler_timeout: Duration,
    /// Login required (the default); see [`check_bind`] for when it may be off.
    pub auth: bool,
    pub session_lifetime: Duration,
    /// The CSRF token of forms when authentication is off (there is no session to hold one).
    open_csrf_token: Arc<str>,
    /// The table catalog served as an Iceberg REST catalog under `/iceberg`, if any.
    pub tables: Option<TablesHandle>,
    /// The SQL console behind the SQL page, the table pages and `/api/v1/sql`, if any.
    pub console: Option<Console>,
    /// Public host names (`[web] allowed_hosts`): answered while authentication is off besides
    /// loopback names, and accepted as the `Origin` of state-changing requests.
    allowed_hosts: Arc<[String]>,
    /// Cookies carry `Secure` (behind a TLS proxy).
    secure_cookies: bool,
    /// What `/metrics`' task duration histograms are kept per (`[web] duration_histograms`).
    pub duration_histograms: DurationsBy,
    login_throttle: Arc<throttle::LoginThrottle>,
}

impl AppState {
    pub fn new(store: Store, versions: Arc<DagVersions>, config: &Config) -> AppState {
        AppState {
            store,
            versions,
            scheduler_timeout: config.scheduler.heartbeat_timeout,
            auth: config.web.auth,
            session_lifetime: config.web.session_lifetime,
            open_csrf_token: crate::users::new_secret().into(),
            tables: None,
            console: None,
            allowed_hosts: config.web.allowed_hosts.iter().cloned().collect(),
            secure_cookies: config.web.secure_cookies,
            duration_histograms: config.web.duration_histograms,
            login_throttle: Arc::default(),
        }
    }

    /// Serves `tables` as an Iceberg REST catalog under `/iceberg`.
    pub fn with_tables(self, tables: TablesHandle) -> AppState {
        AppState { tables: Some(tables), ..self }
    }

    /// Serves the SQL page, the table pages and `/api/v1/sql` with `console`.
    pub fn with_console(self, console: Console) -> AppState {
        AppState { console: Some(console), ..self }
    }
}

/// Refuses to serve without authentication on anything but a loopback address.
pub fn check_bind(address: SocketAddr, auth: bool) -> Result<(), String> {
    if auth || address.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "refusing to listen on {address} with web.auth = false: without authentication \
             lakeward only listens on a loopback address (127.0.0.1 or ::1)"
        ))
    }
}

/// The routes, separate from serving so tests can call them directly.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/dags", get(api::list_dags))
        .route("/dags/{dag}", get(api::get_dag).patch(api::patch_dag))
        .route("/dags/{dag}/runs", get(api::list_runs).post(api::trigger))
        .route("/dags/{dag}/runs/{run}", get(api::get_run).patch(api::patch_run))
        .route("/dags/{dag}/runs/{run}/tasks/{task}", get(api::get_task).patch(api::patch_task))
        .route("/dags/{dag}/runs/{run}/tasks/{task}/clear", post(api::clear_task))
        .route("/dags/{dag}/runs/{run}/tasks/{task}/logs", get(api::task_logs))
        .route("/tokens", get(api::list_tokens))
        .route("/tokens/{id}", axum::routing::delete(api::revoke_token))
        .route("/sql", post(sql::api))
        .route("/openapi.json", get(api::openapi))
        .fallback(api::not_found);
    let protected = Router::new()
        .route("/", get(|| async { Redirect::to("/dags") }))
        .route("/dags", get(pages::dags))
        .route("/dags/{dag}", get(pages::dag))
        .route("/dags/{dag}/pause", post(pages::pause))
        .route("/dags/{dag}/trigger", get(pages::trigger_form).post(pages::trigger))
        .route("/dags/{dag}/runs/{run}", get(pages::run))
        .route("/sql", get(sql::page))
        .route("/sql/download.csv", get(sql::download))
        .route("/tables", get(tables::list))
        .route("/tables/{table}", get(tables::table))
        .route("/tables/{table}/metrics", get(charts::metrics_table))
        .route("/dags/{dag}/runs/{run}/mark", post(pages::mark))
        .route("/dags/{dag}/runs/{run}/tasks/{task}", get(pages::task))
        .route("/dags/{dag}/runs/{run}/tasks/{task}/clear", post(pages::clear))
        .route("/dags/{dag}/runs/{run}/tasks/{task}/mark", post(pages::mark_task))
        .route("/logout", post(auth::logout))
        .route("/metrics", get(metrics::metrics))
        .nest("/api/v1", api)
        .nest("/iceberg", catalog::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .merge(protected)
        .route("/health", get(health))
        .route("/api/v1/health", get(health))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/static/lakeward.css", get(stylesheet))
        .route("/static/live.js", get(live_script))
        .layer(middleware::from_fn(auth::security_headers))
        .with_state(state)
}

/// Serves `app` on `listener` until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "max-age=300")], body).into_response()
}

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", include_str!("../../web/static/lakeward.css"))
}

async fn live_script() -> Response {
    static_file("text/javascript; charset=utf-8", include_str!("../../web/static/live.js"))
}

async fn health(State(state): State<AppState>) -> Response {
    // A failed write (disk full, say) leaves reads working: the outage this process saw
    // counts until a statement of its own succeeds again.
    let outage = state.store.connectivity().outage();
    let database_ok = state.store.ping().await.is_ok() && outage.is_none();
    let heartbeat = if database_ok {
        processes::latest_heartbeat(state.store.read(), "scheduler").await.ok().flatten()
    } else {
        None
    };
    let limit = i64::try_from(state.scheduler_timeout.as_micros()).unwrap_or(i64::MAX);
    let scheduler_ok = heartbeat.is_some_and(|at| now_micros() - at <= limit);
    let status =
        if database_ok && scheduler_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "database": {
            "status": if database_ok { "healthy" } else { "unhealthy" },
            "error": outage.as_ref().map(|o| o.error.clone()),
            "failing_since": outage.map(|o| display(o.since)),
        },
        "scheduler": {
            "status": if scheduler_ok { "healthy" } else { "unhealthy" },
            "latest_heartbeat": heartbeat.map(display),
        },
    });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn open_access_only_on_loopback() {
        assert!(super::check_bind("127.0.0.1:8080".parse().unwrap(), false).is_ok());
        assert!(super::check_bind("[::1]:8080".parse().unwrap(), false).is_ok());
        assert!(super::check_bind("0.0.0.0:8080".parse().unwrap(), false).is_err());
        assert!(super::check_bind("0.0.0.0:8080".parse().unwrap(), true).is_ok());
    }
}
