//! Running a Polars plan for the console, on a blocking thread, on the engine
//! [`crate::lake::engine`] picks, cancelled (not abandoned) when the caller stops waiting.
//!
//! Polars' own token cancels the in-memory engine. The streaming engine has no cancellation of
//! its own, so once Polars has optimised the plan, [`Cancel::guard_scans`] puts a step above
//! every file scan that passes each morsel on unchanged and fails once the query is cancelled.
//! It goes in after optimisation so that Polars plans the query as if it were not there: a
//! `COUNT(*)` of a table is still answered from the files' footers, and filters and column
//! choices still reach the scans. The sample a grouping's narrowing reads first
//! ([`crate::lake::engine::narrow_group_keys`], at most 100,000 rows) runs before the query
//! and is not checked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use polars::polars_utils::arena::Node;
use polars::prelude::{polars_err, DataFrame, LazyFrame, PolarsResult};
use polars_plan::plans::{FunctionIR, IRPlan, IR};

use super::{Outcomes, QueryError};
use crate::lake::engine::{collect_streaming_adjusted, rewritten_for, Engine};

/// How often a query on the in-memory engine is checked for cancellation.
const CHECK: Duration = Duration::from_millis(5);

/// The cancellation of one query, shared by the scans it reads.
#[derive(Clone, Default)]
struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Makes every file scan of the optimised `plan` fail at its next morsel once the query is
    /// cancelled.
    fn guard_scans(&self, plan: &mut IRPlan) {
        let plans = &mut plan.lp_arena;
        for index in 0..plans.len() {
            let node = Node(index);
            if matches!(plans.get(node), IR::Scan { .. }) {
                // The scan moves to a new node and the check takes its place, under its parents.
                let scan = plans.take(node);
                let input = plans.add(scan);
                plans.replace(node, IR::MapFunction { input, function: self.check() });
            }
        }
    }

    /// The step that passes a morsel on, or fails once the query is cancelled.
    fn check(&self) -> FunctionIR {
        let cancelled = self.0.clone();
        let check = move |morsel: DataFrame| {
            if cancelled.load(Ordering::Relaxed) {
                Err(polars_err!(ComputeError: "the query was cancelled"))
            } else {
                Ok(morsel)
            }
        };
        FunctionIR::Opaque {
            function: Arc::new(check),
            schema: None,
            predicate_pd: false,
            projection_pd: false,
            streamable: true,
            fmt_str: "cancellation check".into(),
        }
    }

    fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Cancels the query when dropped: the caller stopped waiting (time limit, client gone).
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Collects `frame`, counted in `outcomes.running` until the engine returns; dropping the
/// returned future cancels the query.
pub async fn collect(
    frame: LazyFrame,
    engine: Engine,
    outcomes: &Arc<Outcomes>,
) -> Result<DataFrame, QueryError> {
    let cancel = Cancel::default();
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let running = Running::start(outcomes.clone());
    let result = crate::process::blocking(move || {
        let _running = running;
        run(frame, engine, &cancel)
    })
    .await;
    let result = result.map_err(|e| QueryError::Engine {
        message: format!("the query's thread failed: {e}"),
        class: crate::domain::ErrorClass::Transient,
    })?;
    Ok(result?)
}

/// A query counted as running until dropped.
struct Running(Arc<Outcomes>);

impl Running {
    fn start(outcomes: Arc<Outcomes>) -> Running {
        outcomes.running.fetch_add(1, Ordering::Relaxed);
        Running(outcomes)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `frame` to the end on this thread.
fn run(frame: LazyFrame, engine: Engine, cancel: &Cancel) -> PolarsResult<DataFrame> {
    if engine == Engine::Streaming {
        // A plan the streaming engine rejects runs on the in-memory engine.
        let rewritten = rewritten_for(frame.clone(), engine);
        let guarded = collect_streaming_adjusted(rewritten, |plan| cancel.guard_scans(plan));
        if let Some(result) = guarded {
            return result;
        }
    }
    let query = rewritten_for(frame, Engine::InMemory).collect_concurrently()?;
    loop {
        if let Some(result) = query.fetch() {
            return result;
        }
        if cancel.is_cancelled() {
            query.cancel();
            // Polars' worker aborts the process if nobody holds the receiving end when it
            // sends its (cancelled) result: wait for it.
            return query.fetch_blocking();
        }
        std::thread::sleep(CHECK);
    }
}

#[cfg(test)]
mod tests {
    use polars::prelude::{col, df, len, JoinType, ParquetWriter};

    use super::*;
    use crate::lake::frames::scan_parquet_files;

    /// The number of columns each checked scan of `plan` reads.
    fn checked_scan_widths(plan: &IRPlan) -> Vec<usize> {
        let plans = &plan.lp_arena;
        let checked = (0..plans.len()).filter_map(|index| match plans.get(Node(index)) {
            IR::MapFunction { input, function: FunctionIR::Opaque { fmt_str, .. } }
                if fmt_str == "cancellation check" =>
            {
                Some(*input)
            }
            _ => None,
        });
        let widths = checked.map(|input| match plans.get(input) {
            IR::Scan { output_schema, file_info, .. } => {
                output_schema.as_ref().map_or(file_info.schema.len(), |schema| schema.len())
            }
            other => panic!("a check above {other:?}, not above a scan"),
        });
        widths.collect()
    }

    /// A lazy scan of a Parquet file written with `data` in `dir`.
    fn scan(dir: &std::path::Path, name: &str, mut data: DataFrame) -> LazyFrame {
        let file = dir.join(name);
        ParquetWriter::new(std::fs::File::create(&file).unwrap()).finish(&mut data).unwrap();
        scan_parquet_files(&[file]).unwrap()
    }

    #[test]
    fn checked_scans_are_planned_as_unchecked_ones_and_fail_once_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let orders = df! { "id" => [1i64, 2, 3], "customer" => [7i64, 8, 7] }.unwrap();
        let orders = scan(dir.path(), "orders.parquet", orders);
        let customers = df! { "customer" => [7i64, 8], "name" => ["a", "b"] }.unwrap();
        let customers = scan(dir.path(), "customers.parquet", customers);
        let cancel = Cancel::default();
        let guard = |plan: &mut IRPlan| cancel.guard_scans(plan);

        // A count is answered from the footer: the checked scan reads no column.
        let count = orders.clone().select([len()]);
        let mut plan = count.clone().with_streaming(true).to_alp_optimized().unwrap();
        cancel.guard_scans(&mut plan);
        assert_eq!(checked_scan_widths(&plan), vec![0]);
        let counted = collect_streaming_adjusted(count.clone(), guard).unwrap().unwrap();
        assert_eq!(counted.column("len").unwrap().u32().unwrap().get(0), Some(3));
        // Both sides of a join are checked, each reading only the column it needs.
        let on = [col("customer")];
        let joined = orders.join(customers, on.clone(), on, JoinType::Inner.into());
        let ids = joined.select([col("id")]);
        let mut plan = ids.clone().with_streaming(true).to_alp_optimized().unwrap();
        cancel.guard_scans(&mut plan);
        let mut widths = checked_scan_widths(&plan);
        widths.sort();
        assert_eq!(widths, vec![1, 2]);
        assert_eq!(collect_streaming_adjusted(ids.clone(), guard).unwrap().unwrap().height(), 3);

        cancel.cancel();
        for frame in [count, ids] {
            let failed = collect_streaming_adjusted(frame, guard).unwrap().unwrap_err();
            assert!(failed.to_string().contains("the query was cancelled"), "{failed}");
        }
    }
}
