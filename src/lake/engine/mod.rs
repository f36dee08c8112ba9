//! Which of Polars' two engines runs a query, for every query lakeward runs (the `sql` kind's
//! outputs, the `report` kind's metrics, and the SQL console), and running plans on it, one
//! at a time or several as one query ([`collect_all`]).
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
//! by that key alone ([`group_keys`]): Polars hashes one number key on a fast path, several
//! keys by encoding each row's keys into one value first. On the in-memory engine, the distinct
//! values of a whole integer column are counted with a bit per value when they lie close
//! together ([`distinct_counts`]) instead of by sorting the column. On the streaming engine,
//! an inner join to a small table whose integer keys are unique and dense finds each row's
//! match by position instead of by hash ([`positional_join`]).
//!
//! It also holds the one Polars setting lakeward changes ([`tune_polars`]). This module only
//! chooses, tunes, rewrites plans and runs them; it knows nothing of where frames come from or
//! go.

mod distinct_counts;
mod group_keys;
mod positional_join;

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;

use polars::prelude::{DataFrame, LazyFrame, PolarsResult};
use polars_plan::plans::IRPlan;
use sqlparser::ast::{visit_expressions, DuplicateTreatment, Expr, FunctionArguments};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

pub use distinct_counts::count_integers_densely;
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

/// `frame` with the rewrites that speed it up on `engine`.
pub fn rewritten_for(frame: LazyFrame, engine: Engine) -> LazyFrame {
    match engine {
        Engine::Streaming => narrow_group_keys(frame),
        Engine::InMemory => count_integers_densely(frame),
    }
}

/// Collects `frame` on `engine`; a plan the streaming engine rejects runs on the in-memory one.
pub fn collect(frame: LazyFrame, engine: Engine) -> PolarsResult<DataFrame> {
    if engine == Engine::Streaming {
        if let Some(result) = collect_streaming(rewritten_for(frame.clone(), engine)) {
            return result;
        }
    }
    rewritten_for(frame, Engine::InMemory).collect()
}

/// Collects every frame on its engine, the answers in the same order. The frames of each engine
/// run as one Polars query, which runs them beside each other and may share the parts of their
/// plans they have in common (a report's metrics over one dataset); when that query fails,
/// each frame is collected on its own, so that an error is the frame's own.
pub fn collect_all(frames: Vec<(LazyFrame, Engine)>) -> Vec<PolarsResult<DataFrame>> {
    let mut answers: Vec<Option<PolarsResult<DataFrame>>> = frames.iter().map(|_| None).collect();
    for engine in [Engine::Streaming, Engine::InMemory] {
        let (indexes, plans): (Vec<usize>, Vec<LazyFrame>) = frames
            .iter()
            .enumerate()
            .filter(|(_, (_, e))| *e == engine)
            .map(|(index, (frame, _))| (index, frame.clone()))
            .unzip();
        let Some(together) = together(plans, engine) else { continue };
        for (index, answer) in indexes.into_iter().zip(together) {
            answers[index] = Some(Ok(answer));
        }
    }
    let answers = answers.into_iter().zip(frames);
    answers
        .map(|(answer, (frame, engine))| answer.unwrap_or_else(|| collect(frame, engine)))
        .collect()
}

/// `plans` run as one query on `engine`; `None` when there are fewer than two, or it failed.
fn together(plans: Vec<LazyFrame>, engine: Engine) -> Option<Vec<DataFrame>> {
    let flags = plans.first()?.get_current_optimizations();
    if plans.len() < 2 {
        return None;
    }
    let prepared = plans.into_iter().map(|plan| rewritten_for(plan, engine).logical_plan);
    let polars_engine = match engine {
        Engine::Streaming => polars::prelude::Engine::Streaming,
        Engine::InMemory => polars::prelude::Engine::InMemory,
    };
    let plans = prepared.collect();
    let run = AssertUnwindSafe(|| LazyFrame::collect_all_with_engine(plans, polars_engine, flags));
    std::panic::catch_unwind(run).ok()?.ok()
}

/// Collects `frame` on the streaming engine; `None` when the engine rejects the plan (Polars
/// rejects some by panicking while it lowers them, before any data is read, such as a cross
/// join filtered by an inequality).
pub fn collect_streaming(frame: LazyFrame) -> Option<PolarsResult<DataFrame>> {
    collect_streaming_adjusted(frame, |_| {})
}

/// [`collect_streaming`], with `adjust` applied to the plan Polars has optimised (and whose
/// joins [`positional_join`] has rewritten; the small sides it computes ahead are not
/// adjusted) before it runs:
/// for steps that must not change how Polars optimises the query, as a step in the lazy frame
/// would (Polars does not push a `COUNT(*)` through a function step, for one, and reads a
/// column instead of the files' footers).
pub fn collect_streaming_adjusted(
    frame: LazyFrame,
    adjust: impl FnOnce(&mut IRPlan),
) -> Option<PolarsResult<DataFrame>> {
    let run = AssertUnwindSafe(|| {
        let mut plan = frame.with_streaming(true).to_alp_optimized()?;
        positional_join::join_by_position(&mut plan);
        adjust(&mut plan);
        plan.ensure_root_node_is_sink();
        let (top, plans, expressions) = (plan.lp_top, &mut plan.lp_arena, &mut plan.expr_arena);
        polars_stream::run_query(top, plans, expressions).map(|result| result.unwrap_single())
    });
    std::panic::catch_unwind(run).ok()
}

/// `sql` over `data` (as the table `t`), as written and as `rewrite` makes it, and whether the
/// rewrite changed the plan: for the tests of the rewrites.
#[cfg(test)]
fn written_and_rewritten(
    data: DataFrame,
    sql: &str,
    rewrite: fn(LazyFrame) -> LazyFrame,
) -> (LazyFrame, LazyFrame, bool) {
    use polars::prelude::IntoLazy;
    let mut context = polars::sql::SQLContext::new();
    context.register("t", data.lazy());
    let frame = context.execute(sql).unwrap();
    let rewritten = rewrite(frame.clone());
    let changed = format!("{:?}", rewritten.logical_plan) != format!("{:?}", frame.logical_plan);
    (frame, rewritten, changed)
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
    fn frames_collected_together_answer_in_order_and_keep_their_own_errors() {
        use polars::prelude::{col, df, IntoLazy};
        let data = df! { "k" => [1i64, 2, 2], "v" => [1.0, 2.0, 4.0] }.unwrap().lazy();
        let total = data.clone().select([col("v").sum()]);
        let distinct = data.clone().select([col("k").n_unique()]);
        let rows = data.clone().select([col("k").count()]);
        let scalar = |answer: &PolarsResult<DataFrame>| {
            let frame = answer.as_ref().unwrap();
            let value = frame.columns()[0].cast(&polars::prelude::DataType::Float64).unwrap();
            value.f64().unwrap().get(0).unwrap()
        };
        let answers = collect_all(vec![
            (total.clone(), Engine::Streaming),
            (distinct, Engine::InMemory),
            (rows, Engine::Streaming),
        ]);
        let values: Vec<f64> = answers.iter().map(scalar).collect();
        assert_eq!(values, [7.0, 2.0, 3.0]);

        let wrong = data.select([col("missing").sum()]);
        let answers = collect_all(vec![(total, Engine::Streaming), (wrong, Engine::Streaming)]);
        assert_eq!(scalar(&answers[0]), 7.0, "the good frame still answers");
        let error = answers[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("missing"), "{error}");
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
