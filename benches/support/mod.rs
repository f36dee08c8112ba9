//! What the benchmarks share: percentiles, a closed-loop HTTP load generator, an admin's
//! request headers, knobs read from the environment, and a throw-away Postgres schema per run.
//! Measures nothing by itself.

use std::time::{Duration, Instant};

use lakeward::domain::Role;
use lakeward::store::{users, SessionRow, Store};
use lakeward::time::now_micros;
use lakeward::users::{create_api_token, create_user, digest, new_secret};
use sqlx::Connection;

/// One request header, as [`load`] takes them.
pub type Header = [(&'static str, String); 1];

/// Request headers of an admin named `bench`, created here: a session cookie for the pages
/// and a bearer token for the API.
pub async fn admin_headers(store: &Store) -> (Header, Header) {
    create_user(store, "bench", "bench-password", Role::Admin).await.unwrap();
    let token = create_api_token(store, "bench", "bench", None).await.unwrap();
    let secret = new_secret();
    let session = SessionRow {
        username: "bench".into(),
        role: Role::Admin,
        csrf_token: new_secret(),
        expires_at: now_micros() + 3_600_000_000,
    };
    users::create_session(store.write(), &digest(&secret), &session, now_micros()).await.unwrap();
    (
        [("cookie", format!("lakeward_session={secret}"))],
        [("authorization", format!("Bearer {token}"))],
    )
}

/// The value at fraction `p` (0–1) of an ascending slice; NaN when it is empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// A whole-number knob from the environment, or its default.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Latency figures of one endpoint under load, in milliseconds.
pub struct Latencies {
    pub p50: f64,
    pub p99: f64,
    pub errors: usize,
}

/// Requests `path` from `clients` concurrent clients, each sending its next request when the
/// previous answer arrived, for `seconds`; prints and returns the figures.
pub async fn load(
    base: &str,
    path: &str,
    headers: &[(&str, String)],
    clients: usize,
    seconds: u64,
) -> Latencies {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let url = format!("{base}{path}");
        let headers: Vec<(String, String)> =
            headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        workers.push(lakeward::process::spawn_owned(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let mut request = client.get(&url);
                for (k, v) in &headers {
                    request = request.header(k.as_str(), v.as_str());
                }
                let started = Instant::now();
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (latencies, failed) = worker.await.unwrap();
        all.extend(latencies);
        errors += failed;
    }
    all.sort_by(f64::total_cmp);
    let figures = Latencies { p50: percentile(&all, 0.5), p99: percentile(&all, 0.99), errors };
    println!(
        "  {path:<58} p50 {:>7.2} ms  p99 {:>7.2} ms  {:>6.0} req/s  {} errors",
        figures.p50,
        figures.p99,
        all.len() as f64 / seconds as f64,
        figures.errors
    );
    figures
}

/// A fresh schema in the Postgres database at `base`, for one benchmark run.
pub struct PgSchema {
    admin: sqlx::PgConnection,
    name: String,
    /// `base` with the schema as its search path.
    pub url: String,
}

impl PgSchema {
    pub async fn create(base: &str, prefix: &str) -> PgSchema {
        let name = format!("{prefix}_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(base).await.unwrap();
        let reset = format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}");
        sqlx::raw_sql(&reset).execute(&mut admin).await.unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options[search_path]={name}");
        PgSchema { admin, name, url }
    }

    pub async fn drop(mut self) {
        let drop = format!("DROP SCHEMA {} CASCADE", self.name);
        sqlx::raw_sql(&drop).execute(&mut self.admin).await.unwrap();
    }
}
