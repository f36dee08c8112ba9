//! The SQL console: one read-only query over the lake, as `lakeward sql`, the web SQL page and
//! `POST /api/v1/sql` run it. Iceberg tables are named `namespace.table`, datasets by their
//! quoted path; tables can be read at an older snapshot; comparisons in `WHERE` prune the
//! data files lakeward's Iceberg planning names; Polars SQL (with lakeward's additions) runs
//! the query over lazily scanned Parquet.
//!
//! Every query runs under [`Limits`]: a time limit (the query is cancelled, not abandoned), and
//! a row cap beyond which the answer is truncated and says so. A query reads only what its
//! names resolve to inside the warehouse: other statements, table functions and paths out of
//! the warehouse are refused before anything runs. Dropping the future of [`Console::run`]
//! cancels the query (a client that went away).
//!
//! This module owns running a query and rendering its answer; it knows nothing of who asked
//! (authentication, history and pages are the callers').

mod execute;
pub mod render;
mod sources;
mod statement;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use polars::prelude::{DataFrame, IdxSize, PolarsError};
use thiserror::Error;

use super::sql_functions::QueryContext;
use super::tables::{TableError, TablesHandle};
use super::{LakeError, Warehouse};
use crate::domain::ErrorClass;
pub use sources::SourcePlan;
pub use statement::{Target, Version};

/// How long a query may run and how many rows it may return.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_rows: usize,
}

#[derive(Debug, Error)]
pub enum QueryError {
    /// The text is not SQL; `line` and `column` count from 1 (0 when the parser named none).
    #[error("{message}")]
    Syntax { message: String, line: u64, column: u64 },
    /// Valid SQL that the console does not run (a write, a table function, several statements).
    #[error("{0}")]
    Refused(String),
    /// A name that is no table, dataset or CTE.
    #[error("{0}")]
    UnknownName(String),
    /// The query itself is wrong for the data (unknown column, mismatched types).
    #[error("{0}")]
    Invalid(String),
    /// Polars failed to run it for another reason (I/O, memory, a bug).
    #[error("{message}")]
    Engine { message: String, class: ErrorClass },
    #[error("the query ran longer than {}s ([sql] timeout) and was stopped", .0.as_secs_f64())]
    Timeout(Duration),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Table(#[from] TableError),
}

impl QueryError {
    /// For a syntax error with a position: the line of `sql` it is on, and a caret under the
    /// column (`"   ^"`).
    pub fn pointer(&self, sql: &str) -> Option<(String, String)> {
        let QueryError::Syntax { line, column, .. } = self else { return None };
        let text = sql.lines().nth(usize::try_from(*line).ok()?.checked_sub(1)?)?;
        let indent = usize::try_from(*column).unwrap_or(1).saturating_sub(1);
        Some((text.to_string(), format!("{}^", " ".repeat(indent))))
    }

    /// Whether the query, or lakeward's state, is at fault: only a transient failure is worth
    /// running again unchanged.
    pub fn class(&self) -> ErrorClass {
        match self {
            QueryError::Syntax { .. }
            | QueryError::Refused(_)
            | QueryError::UnknownName(_)
            | QueryError::Invalid(_) => ErrorClass::Definition,
            QueryError::Timeout(_) => ErrorClass::Transient,
            QueryError::Engine { class, .. } => *class,
            QueryError::Lake(e) => e.class(),
            QueryError::Table(e) => e.class(),
        }
    }
}

impl From<PolarsError> for QueryError {
    fn from(e: PolarsError) -> Self {
        // The message without Polars' dump of the plan (and of the files it scans).
        let text = e.to_string();
        let message = text.split("Resolved plan until failure").next().unwrap_or_default();
        let message = message.trim_end().to_string();
        match super::polars_class(&e) {
            ErrorClass::Definition => QueryError::Invalid(message),
            class => QueryError::Engine { message, class },
        }
    }
}

/// A query's rows, at most the row cap of them.
pub struct Answer {
    pub frame: DataFrame,
    /// More rows than the cap matched; `frame` holds the first ones.
    pub truncated: bool,
    pub sources: Vec<SourcePlan>,
    pub elapsed: Duration,
}

/// How the queries of one [`Console`] (and its clones) ended, counted since it was made.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub timed_out: AtomicU64,
    /// Dropped before they ended: the client went away.
    pub cancelled: AtomicU64,
    /// Queries whose engine is still at work (a cancelled one until it has stopped).
    pub running: AtomicU64,
}

/// Counts a query as cancelled unless it ends first.
struct Counting<'a> {
    outcomes: &'a Outcomes,
    ended: bool,
}

impl Counting<'_> {
    fn end(mut self, result: &Result<Answer, QueryError>) {
        self.ended = true;
        let counter = match result {
            Ok(_) => &self.outcomes.succeeded,
            Err(QueryError::Timeout(_)) => &self.outcomes.timed_out,
            Err(_) => &self.outcomes.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Counting<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.outcomes.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs console queries over one warehouse and its tables.
#[derive(Clone)]
pub struct Console {
    warehouse: Warehouse,
    tables: TablesHandle,
    limits: Limits,
    outcomes: Arc<Outcomes>,
}

impl Console {
    pub fn new(warehouse: Warehouse, tables: TablesHandle, limits: Limits) -> Console {
        Console { warehouse, tables, limits, outcomes: Arc::default() }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The catalog the console reads tables from.
    pub fn tables(&self) -> &TablesHandle {
        &self.tables
    }

    pub fn outcomes(&self) -> &Outcomes {
        &self.outcomes
    }

    /// The files each name of `sql` would read, without running it (`--explain`).
    pub async fn explain(&self, sql: &str) -> Result<Vec<SourcePlan>, QueryError> {
        let bound = statement::bind(sql)?;
        let planning = sources::plan(&self.warehouse, &self.tables, &bound.sources);
        let planned = tokio::time::timeout(self.limits.timeout, planning)
            .await
            .map_err(|_| QueryError::Timeout(self.limits.timeout))??;
        Ok(planned.into_iter().map(|(_, plan)| plan).collect())
    }

    /// Runs `sql`, keeping at most `row_cap` rows (and never more than the limits allow).
    pub async fn run(&self, sql: &str, row_cap: usize) -> Result<Answer, QueryError> {
        let counting = Counting { outcomes: &self.outcomes, ended: false };
        let result = self.run_uncounted(sql, row_cap).await;
        counting.end(&result);
        result
    }

    async fn run_uncounted(&self, sql: &str, row_cap: usize) -> Result<Answer, QueryError> {
        let started = Instant::now();
        let cap = row_cap.min(self.limits.max_rows);
        let work = async {
            let bound = statement::bind(sql)?;
            let planned = sources::plan(&self.warehouse, &self.tables, &bound.sources).await?;
            let (inputs, sources): (Vec<_>, Vec<_>) = planned.into_iter().unzip();
            let frames = sources::open(&self.warehouse, inputs).await?;
            let mut context = QueryContext::new();
            for (source, frame) in bound.sources.iter().zip(frames) {
                context.register(&source.bound_as, frame);
            }
            let frame = context.execute(&bound.sql)?;
            let limit = IdxSize::try_from(cap).unwrap_or(IdxSize::MAX).saturating_add(1);
            let engine = super::engine::Engine::for_query(bound.aggregates_distinct);
            let frame = execute::collect(frame.limit(limit), engine, &self.outcomes).await?;
            let truncated = frame.height() > cap;
            let frame = if truncated { frame.head(Some(cap)) } else { frame };
            Ok::<Answer, QueryError>(Answer { frame, truncated, sources, elapsed: Duration::ZERO })
        };
        let mut answer = tokio::time::timeout(self.limits.timeout, work)
            .await
            .map_err(|_| QueryError::Timeout(self.limits.timeout))??;
        answer.elapsed = started.elapsed();
        Ok(answer)
    }
}
