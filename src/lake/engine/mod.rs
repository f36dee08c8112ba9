//! Which of Polars' two engines runs a query, for every query lakeward runs (the `sql` kind's
//! outputs and metrics, and the SQL console), and running a plan on it.
//!
//! - The streaming engine reads, filters and aggregates the scanned files a morsel at a time
//!   instead of loading every column a query needs first: a `GROUP BY` over 10M rows takes a
//!   third of the time and a fifth of the memory.
//! - The in-memory engine is faster for aggregates over distinct values (`COUNT(DISTINCT x)`),
//!   which the streaming engine computes by grouping on every (key, value) pair first, at
//!   twice the time (`benches/sql_engines.rs` measures both); and it runs the plans the
//!   streaming engine rejects.
//!
//! On the streaming engine, a grouping by text keys that follow from a number key is computed
//! by that key alone ([`group_keys`]), which Polars hashes several times faster.
//!
//! It also holds the one Polars setting lakeward changes ([`tune_polars`]). This module only
//! chooses, tunes, rewrites plans and runs them; it knows nothing of where frames come from or
//! go.

mod group_keys;

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;

use polars::prelude::{DataFrame, LazyFrame, PolarsResult};
use sqlparser::ast::{visit_expressions, DuplicateTreatment, Expr, FunctionArguments};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

pub use group_keys::narrow_group_keys;

/// How many rows Polars' streaming join reads from each side before it chooses the side to
/// build its hash table from. Polars reads up to 10 million, all held in memory: the silver
/// join of the e-commerce DAG (10M orders with 1M customers) held every order before it chose
/// the customers, and peaked at 1.82 GB; with a million it peaks at 0.73-0.75 GB, as fast
/// (`POLARS_JOIN_SAMPLE_LIMIT`, which a user may still set, overrides it).
pub const JOIN_SAMPLE_ROWS: u64 = 1_000_000;

const JOIN_SAMPLE_VARIABLE: &str = "POLARS_JOIN_SAMPLE_LIMIT";

/// Applies [`JOIN_SAMPLE_ROWS`] unless `POLARS_JOIN_SAMPLE_LIMIT` is set. Polars reads its
/// settings from the environment once, when it first needs one, so this sets the variable:
/// call it first thing in `main`, before any thread starts and before any Polars work.
pub fn tune_polars() {
    if std::env::var_os(JOIN_SAMPLE_VARIABLE).is_none() {
        std::env::set_var(JOIN_SAMPLE_VARIABLE, JOIN_SAMPLE_ROWS.to_string());
    }
}

/// The Polars engine a query runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Streaming,
    InMemory,
}

impl Engine {
    /// The faster engine for a query that does or does not aggregate distinct values.
    pub fn for_query(aggregates_distinct: bool) -> Engine {
        if aggregates_distinct {
            Engine::InMemory
        } else {
            Engine::Streaming
        }
    }

    /// The faster engine for the SQL text `sql`; streaming when it does not parse (Polars will
    /// say why when it runs).
    pub fn for_sql(sql: &str) -> Engine {
        let Ok(statements) = Parser::parse_sql(&GenericDialect, sql) else {
            return Engine::Streaming;
        };
        let found = visit_expressions(&statements, |expr| {
            if is_distinct_aggregate(expr) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        Engine::for_query(found.is_break())
    }
}

/// Whether `expr` is a function over distinct values (`COUNT(DISTINCT x)`, `SUM(DISTINCT x)`).
pub fn is_distinct_aggregate(expr: &Expr) -> bool {
    let Expr::Function(function) = expr else { return false };
    let FunctionArguments::List(list) = &function.args else { return false };
    matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct))
}

/// Collects `frame` on `engine`; a plan the streaming engine rejects runs on the in-memory one.
pub fn collect(frame: LazyFrame, engine: Engine) -> PolarsResult<DataFrame> {
    if engine == Engine::Streaming {
        if let Some(result) = collect_streaming(narrow_group_keys(frame.clone())) {
            return result;
        }
    }
    frame.collect()
}

/// Collects `frame` on the streaming engine; `None` when the engine rejects the plan (Polars
/// rejects some by panicking while it lowers them, before any data is read, such as a cross
/// join filtered by an inequality).
pub fn collect_streaming(frame: LazyFrame) -> Option<PolarsResult<DataFrame>> {
    let streaming = polars::prelude::Engine::Streaming;
    let run = AssertUnwindSafe(|| frame.collect_with_engine(streaming));
    std::panic::catch_unwind(run).ok().map(|result| result.map(|r| r.unwrap_single()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_samples_a_million_rows_unless_the_variable_says_otherwise() {
        let before = std::env::var_os(JOIN_SAMPLE_VARIABLE);
        std::env::remove_var(JOIN_SAMPLE_VARIABLE);
        tune_polars();
        let set = std::env::var(JOIN_SAMPLE_VARIABLE);
        std::env::set_var(JOIN_SAMPLE_VARIABLE, "5000");
        tune_polars();
        let kept = std::env::var(JOIN_SAMPLE_VARIABLE);
        match before {
            Some(value) => std::env::set_var(JOIN_SAMPLE_VARIABLE, value),
            None => std::env::remove_var(JOIN_SAMPLE_VARIABLE),
        }
        assert_eq!(set.as_deref(), Ok("1000000"));
        assert_eq!(kept.as_deref(), Ok("5000"));
    }

    #[test]
    fn distinct_aggregates_anywhere_in_the_text_pick_the_in_memory_engine() {
        let in_memory = |sql: &str| Engine::for_sql(sql) == Engine::InMemory;
        assert!(in_memory("SELECT d, COUNT(DISTINCT c) FROM t GROUP BY d"));
        assert!(in_memory("WITH x AS (SELECT SUM(DISTINCT q) AS s FROM t) SELECT s + 1 FROM x"));
        assert!(!in_memory("SELECT p, c, SUM(q) FROM t GROUP BY p, c"));
        assert!(!in_memory("SELECT DISTINCT c FROM t"), "not an aggregate");
        assert!(!in_memory("SELEC nonsense"), "Polars reports the syntax error");
    }
}
