//! lakeward: one binary for lakehouse pipelines.
//!
//! The crate is laid out by concern; each module's doc comment says what it owns:
//!
//! - [`dag`]: the DAG file format, its compiler (validation with file:line:col diagnostics),
//!   the task graph and templates.
//! - [`schedule`]: cron expressions, time zones and data intervals.
//! - [`store`]: every SQL statement; run state on SQLite or Postgres, plus wake-up notifications.
//! - [`scheduler`]: creates runs and decides which task instances may run.
//! - [`worker`]: claims task instances, runs them, heartbeats and records results.
//! - [`lake`]: the warehouse: versioned Parquet/CSV datasets read and written with Polars, and
//!   Apache Iceberg tables (catalog, commits, scans, compaction, expiry).
//! - [`simulate`]: simulated event streams (web logs, connection logs, sensors) with anomalies.
//! - [`stream`]: Kafka: producing, reading partitions into record batches, offsets kept in Iceberg.
//! - [`window`]: event-time windows: aggregates per window and key, watermarks, late events.
//! - [`anomaly`]: anomaly detectors (ratio to mean, z-score, EWMA, MAD) over metric series.
//! - [`jobs`]: the task kinds (`shell`, `noop`, …) and the [`jobs::Job`] trait for custom ones.
//! - [`web`]: the web UI, the REST API under `/api/v1`, `/metrics` and `/health`.
//! - [`users`]: users, password hashes, sessions' and API tokens' secrets.
//! - [`cli`]: the `lakeward` command line.
//! - [`config`]: `lakeward.toml` and `LAKEWARD_*` settings.
//! - [`versions`]: compiled DAG versions, rebuilt from the database on demand.
//! - [`runtime`]: wires scheduler, workers and web together into one process.

pub mod anomaly;
pub mod cli;
pub mod config;
pub mod dag;
pub mod domain;
pub mod jobs;
pub mod lake;
pub mod notifications;
pub mod process;
pub mod random;
pub mod runtime;
pub mod schedule;
pub mod scheduler;
pub mod simulate;
pub mod store;
pub mod stream;
pub mod time;
pub mod users;
pub mod versions;
pub mod web;
pub mod window;
pub mod worker;
