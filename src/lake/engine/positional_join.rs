//! Joins that find rows by position instead of by hash. A lakehouse joins facts to dimensions
//! whose ids are usually dense (customers 1..N): Polars hashes every fact's key and looks it up
//! in a table of all the dimension's keys, two cache misses per fact once the table outgrows the
//! cache. When the dimension's ids are unique and lie in a range not much wider than its row
//! count, an array from id to row finds the same row with one subtraction.
//!
//! [`join_by_position`] works on the plan Polars has optimised (filters already pushed into the
//! scans, unused columns pruned). An inner equi-join on one integer column whose right side is
//! a filtered, projected scan of at most [`MAX_DIMENSION_ROWS`] rows has that side computed
//! first; if its keys qualify, the join becomes a step that runs per morsel of the left side
//! and gives exactly the join node's columns, names and types. Anything else (another join
//! kind, a key with duplicates or a sparse range, a schema that does not line up column by
//! column) leaves the join as Polars planned it, reading the right side's rows already
//! computed for the check instead of computing them again.
//!
//! This module only rewrites plans; it knows nothing of where frames come from or go, and never
//! changes an answer (the order of the rows, which an inner join does not define, is the left
//! side's).

use std::sync::Arc;

use polars::prelude::{
    polars_err, ChunkAgg, Column, DataFrame, DataType, IdxCa, IdxSize, Int64Chunked, JoinType,
    JoinValidation, PlSmallStr, PolarsResult, Schema, SchemaRef,
};
use polars_plan::plans::{AExpr, FunctionIR, IRPlan, IR};
use polars_plan::prelude::{Arena, Node, SinkTypeIR};

/// The most rows a join's right side may have to be computed ahead and looked up by position.
pub const MAX_DIMENSION_ROWS: usize = 4_000_000;

/// How much wider than its row count the range of a dimension's keys may be.
const MAX_SPREAD: usize = 4;

/// Rewrites every qualifying join of the optimised `plan` into a lookup by position; returns
/// how many it rewrote.
pub fn join_by_position(plan: &mut IRPlan) -> usize {
    // From the top down, the nodes the plan uses (its arena also keeps nodes the optimiser
    // replaced).
    let (mut rewritten, mut pending) = (0, vec![plan.lp_top]);
    while let Some(node) = pending.pop() {
        match positional(node, &plan.lp_arena, &plan.expr_arena) {
            Some(Outcome::Rewritten(lookup)) => {
                plan.lp_arena.replace(node, *lookup);
                rewritten += 1;
            }
            Some(Outcome::Computed { right, rows }) => {
                // The hash join reads the rows computed for the check instead of computing
                // them again.
                let schema = rows.schema().clone();
                let rows = IR::DataFrameScan { df: Arc::new(rows), schema, output_schema: None };
                plan.lp_arena.replace(right, rows);
            }
            None => {}
        }
        plan.lp_arena.get(node).copy_inputs(&mut pending);
    }
    rewritten
}

/// What became of a join.
enum Outcome {
    /// The step that replaces it.
    Rewritten(Box<IR>),
    /// Its right side (the tree under node `right`, which nothing else reads) was computed,
    /// but its keys do not qualify.
    Computed { right: Node, rows: DataFrame },
}

/// The step that replaces the join at `node` if it qualifies, or its right side's rows if
/// they were computed to find out; `None` when nothing was computed.
fn positional(node: Node, plans: &Arena<IR>, exprs: &Arena<AExpr>) -> Option<Outcome> {
    let IR::Join { input_left, input_right, schema, left_on, right_on, options } = plans.get(node)
    else {
        return None;
    };
    let args = &options.args;
    let plain = args.how == JoinType::Inner
        && options.options.is_none()
        && args.slice.is_none()
        && !args.nulls_equal
        && args.validation == JoinValidation::ManyToMany;
    let ([left_key], [right_key]) = (left_on.as_slice(), right_on.as_slice()) else {
        return None;
    };
    let (AExpr::Column(left_key), AExpr::Column(right_key)) =
        (exprs.get(left_key.node()), exprs.get(right_key.node()))
    else {
        return None;
    };
    if !plain || !is_small_scan(*input_right, plans) {
        return None;
    }
    let left_schema = plans.get(*input_left).schema(plans).into_owned();
    let key_type = left_schema.get(left_key)?;
    if !key_type.is_integer() {
        return None;
    }
    let dimension = compute(*input_right, plans, exprs)?;
    let qualifies = dimension.column(right_key).is_ok_and(|c| c.dtype() == key_type);
    let lookup = qualifies.then(|| Lookup::new(&dimension, right_key)).flatten();
    let carried =
        |lookup| Some((lookup, carried_columns(&dimension, right_key, &left_schema, schema)?));
    match lookup.and_then(carried) {
        Some((lookup, carried)) => Some(Outcome::Rewritten(Box::new(lookup.into_step(
            *input_left,
            left_key.clone(),
            carried,
            schema.clone(),
        )))),
        None => Some(Outcome::Computed { right: *input_right, rows: dimension }),
    }
}

/// Whether the plan under `node` is a scan with at most [`MAX_DIMENSION_ROWS`] rows, under
/// filters and projections only (nothing that could make it larger or share it with the
/// other side).
fn is_small_scan(node: Node, plans: &Arena<IR>) -> bool {
    match plans.get(node) {
        IR::Scan { file_info, .. } => {
            let (known, estimated) = file_info.row_estimation;
            known.unwrap_or(estimated) <= MAX_DIMENSION_ROWS
        }
        IR::DataFrameScan { df, .. } => df.height() <= MAX_DIMENSION_ROWS,
        IR::Filter { input, .. }
        | IR::Select { input, .. }
        | IR::SimpleProjection { input, .. }
        | IR::HStack { input, .. } => is_small_scan(*input, plans),
        _ => false,
    }
}

/// The rows of the plan under `node`, computed on a copy of the arenas (running a plan may
/// change the nodes it runs).
fn compute(node: Node, plans: &Arena<IR>, exprs: &Arena<AExpr>) -> Option<DataFrame> {
    let (mut plans, mut exprs) = (plans.clone(), exprs.clone());
    let sink = plans.add(IR::Sink { input: node, payload: SinkTypeIR::Memory });
    let result = polars_stream::run_query(sink, &mut plans, &mut exprs).ok()?;
    Some(result.unwrap_single())
}

/// The right side's columns the join gives, renamed as the join names them: `joined` is the
/// left side's columns followed by the right side's, its key left out when the join coalesced
/// it. `None` when the columns do not line up so.
fn carried_columns(
    dimension: &DataFrame,
    key: &PlSmallStr,
    left: &Schema,
    joined: &Schema,
) -> Option<DataFrame> {
    let all = dimension.columns();
    let right: Vec<&Column> = if joined.len() == left.len() + all.len() {
        all.iter().collect()
    } else if joined.len() + 1 == left.len() + all.len() {
        all.iter().filter(|c| c.name() != key).collect()
    } else {
        return None;
    };
    let mut joined = joined.iter();
    for ((name, dtype), (joined_name, joined_type)) in left.iter().zip(joined.by_ref()) {
        if name != joined_name || dtype != joined_type {
            return None;
        }
    }
    let mut carried = Vec::with_capacity(right.len());
    for (column, (name, dtype)) in right.into_iter().zip(joined) {
        // The join keeps a right column's name, with a suffix when the left side has it too.
        if column.dtype() != dtype || !name.starts_with(column.name().as_str()) {
            return None;
        }
        carried.push(column.clone().with_name(name.clone()));
    }
    let mut carried = DataFrame::new(dimension.height(), carried).ok()?;
    carried.rechunk_mut_par();
    Some(carried)
}

/// A dimension's row for each key, by position: `rows[key - first]`, [`IdxSize::MAX`] for a
/// key it does not have.
struct Lookup {
    first: i64,
    rows: Vec<IdxSize>,
}

impl Lookup {
    /// `None` unless the keys are unique and their range is at most [`MAX_SPREAD`] times the
    /// row count (nulls never match an inner join's key, and are left out).
    fn new(dimension: &DataFrame, key: &PlSmallStr) -> Option<Lookup> {
        let keys = integer_keys(dimension.column(key).ok()?)?;
        let (Some(first), Some(last)) = (keys.min(), keys.max()) else {
            return Some(Lookup { first: 0, rows: Vec::new() });
        };
        let width = usize::try_from(last.checked_sub(first)?).ok()?.checked_add(1)?;
        if width > MAX_SPREAD * keys.len() + 1024 {
            return None;
        }
        let mut rows = vec![IdxSize::MAX; width];
        for (row, key) in keys.iter().enumerate() {
            let Some(key) = key else { continue };
            let slot = &mut rows[(key - first) as usize];
            if *slot != IdxSize::MAX {
                return None;
            }
            *slot = row as IdxSize;
        }
        Some(Lookup { first, rows })
    }

    /// The dimension's row of `key`, if it has one.
    fn row(&self, key: i64) -> Option<IdxSize> {
        let slot = usize::try_from(key.checked_sub(self.first)?).ok()?;
        self.rows.get(slot).copied().filter(|row| *row != IdxSize::MAX)
    }

    /// The step that gives each morsel of `input` the columns `carried` of its key's row,
    /// dropping rows without one, as the join node of schema `schema` would.
    fn into_step(self, input: Node, key: PlSmallStr, carried: DataFrame, schema: SchemaRef) -> IR {
        let lookup = move |morsel: DataFrame| -> PolarsResult<DataFrame> {
            let keys = integer_keys(morsel.column(&key)?)
                .ok_or_else(|| polars_err!(ComputeError: "join key {key} is not an integer"))?;
            let rows = morsel.height();
            let (mut kept, mut found) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
            for (row, key) in keys.iter().enumerate() {
                if let Some(at) = key.and_then(|k| self.row(k)) {
                    kept.push(row as IdxSize);
                    found.push(at);
                }
            }
            let left = if kept.len() == morsel.height() {
                morsel
            } else {
                morsel.take(&IdxCa::from_vec(PlSmallStr::EMPTY, kept))?
            };
            let right = carried.take(&IdxCa::from_vec(PlSmallStr::EMPTY, found))?;
            let height = left.height();
            let mut columns = left.into_columns();
            columns.extend(right.into_columns());
            DataFrame::new(height, columns)
        };
        let joined = move |_: &Schema| -> PolarsResult<SchemaRef> { Ok(schema.clone()) };
        IR::MapFunction {
            input,
            function: FunctionIR::Opaque {
                function: Arc::new(lookup),
                schema: Some(Arc::new(joined)),
                predicate_pd: false,
                projection_pd: false,
                streamable: true,
                fmt_str: "join by position".into(),
            },
        }
    }
}

/// An integer column's values as 64-bit integers; `None` for other columns and for `UInt64`,
/// whose values may not fit.
fn integer_keys(column: &Column) -> Option<Int64Chunked> {
    use DataType::*;
    match column.dtype() {
        Int64 => column.i64().ok().cloned(),
        Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32 => {
            column.cast(&Int64).ok()?.i64().ok().cloned()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use polars::prelude::{col, df, DataFrame, DataType, IntoLazy, LazyFrame, SortMultipleOptions};

    use super::join_by_position;
    use crate::lake::engine::collect_streaming;

    const FACTS: &str = "SELECT f.id, f.amount, d.name, d.price FROM facts f \
                         JOIN dims d ON f.dim_id = d.dim_id WHERE f.amount > 0";

    /// `sql` over `facts` and `dims`: how many joins the rewrite takes, and the answers of the
    /// streaming engine (which rewrites) and of the in-memory one (which does not), sorted.
    fn run(facts: DataFrame, dims: DataFrame, sql: &str) -> (usize, DataFrame, DataFrame) {
        let mut context = polars::sql::SQLContext::new();
        context.register("facts", facts.lazy());
        context.register("dims", dims.lazy());
        let frame = context.execute(sql).unwrap();
        let mut plan = frame.clone().with_streaming(true).to_alp_optimized().unwrap();
        let rewritten = join_by_position(&mut plan);
        let sorted = |answer: DataFrame| {
            let names: Vec<_> = answer.get_column_names_owned();
            answer.sort(names, SortMultipleOptions::default()).unwrap()
        };
        let streamed = collect_streaming(frame.clone()).unwrap().unwrap();
        (rewritten, sorted(streamed), sorted(LazyFrame::collect(frame).unwrap()))
    }

    fn facts() -> DataFrame {
        df! {
            "id" => [1i64, 2, 3, 4, 5, 6, 7],
            "dim_id" => [Some(3i64), Some(1), None, Some(9), Some(3), Some(-4), Some(2)],
            "amount" => [1.0, 2.0, 3.0, 4.0, -5.0, 6.0, 7.0],
        }
        .unwrap()
    }

    #[test]
    fn dense_unique_keys_are_looked_up_by_position_with_the_hash_joins_answer() {
        let dims = df! {
            "dim_id" => [1i64, 2, 3, 5],
            "name" => ["one", "two", "three", "five"],
            "price" => [1.5, 2.5, 3.5, 5.5],
        }
        .unwrap();
        let (rewritten, streamed, in_memory) = run(facts(), dims, FACTS);
        assert_eq!(rewritten, 1);
        assert_eq!(streamed, in_memory);
        // A null key, a key the dimension lacks (9, -4) and a filtered row are not joined.
        assert_eq!(streamed.height(), 3);
    }

    #[test]
    fn columns_of_both_sides_keep_the_joins_names_and_order() {
        let dims = df! {
            "dim_id" => [1i64, 2, 3],
            "amount" => [10.0, 20.0, 30.0],
            "name" => ["one", "two", "three"],
        }
        .unwrap();
        let sql = "SELECT f.*, d.amount AS dim_amount, d.name, d.dim_id AS key FROM facts f \
                   JOIN dims d ON f.dim_id = d.dim_id";
        let (rewritten, streamed, in_memory) = run(facts(), dims, sql);
        assert_eq!(rewritten, 1);
        assert_eq!(streamed, in_memory);
        assert_eq!(streamed.height(), 4);
    }

    #[test]
    fn keys_that_repeat_or_spread_out_are_joined_by_hash() {
        let repeated = df! {
            "dim_id" => [1i64, 2, 3, 3],
            "name" => ["one", "two", "three", "drei"],
            "price" => [1.5, 2.5, 3.5, 3.6],
        }
        .unwrap();
        let (rewritten, streamed, in_memory) = run(facts(), repeated, FACTS);
        assert_eq!(rewritten, 0);
        assert_eq!(streamed, in_memory);
        assert_eq!(streamed.height(), 4);

        let sparse = df! {
            "dim_id" => [1i64, 3, 1_000_000_000],
            "name" => ["one", "three", "far"],
            "price" => [1.5, 3.5, 9.9],
        }
        .unwrap();
        let (rewritten, streamed, in_memory) = run(facts(), sparse, FACTS);
        assert_eq!(rewritten, 0);
        assert_eq!(streamed, in_memory);
    }

    #[test]
    fn a_right_side_computed_for_the_check_is_not_computed_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dims.parquet");
        let mut sparse =
            df! { "dim_id" => [1i64, 3, 1_000_000_000], "name" => ["a", "c", "z"] }.unwrap();
        let out = std::fs::File::create(&file).unwrap();
        polars::prelude::ParquetWriter::new(out).finish(&mut sparse).unwrap();
        let mut context = polars::sql::SQLContext::new();
        context.register("facts", facts().lazy());
        context.register("dims", crate::lake::frames::scan_parquet_files(&[file]).unwrap());
        let sql = "SELECT f.id, d.name FROM facts f JOIN dims d ON f.dim_id = d.dim_id";
        let frame = context.execute(sql).unwrap();
        let mut plan = frame.clone().with_streaming(true).to_alp_optimized().unwrap();
        let scans = |plan: &polars_plan::plans::IRPlan| {
            let mut pending = vec![plan.lp_top];
            let mut scans = 0;
            while let Some(node) = pending.pop() {
                let ir = plan.lp_arena.get(node);
                scans += usize::from(matches!(ir, polars_plan::plans::IR::Scan { .. }));
                ir.copy_inputs(&mut pending);
            }
            scans
        };
        assert_eq!(scans(&plan), 1, "the file of dims");
        assert_eq!(join_by_position(&mut plan), 0, "sparse keys");
        assert_eq!(scans(&plan), 0, "the join reads the rows computed for the check");
        let streamed = collect_streaming(frame.clone()).unwrap().unwrap();
        let in_memory = LazyFrame::collect(frame).unwrap();
        let sorted = |d: DataFrame| d.sort(["id"], SortMultipleOptions::default()).unwrap();
        assert_eq!(sorted(streamed), sorted(in_memory));
    }

    #[test]
    fn other_joins_and_key_types_are_left_as_planned() {
        let dims = df! {
            "dim_id" => [1i32, 2, 3],
            "name" => ["one", "two", "three"],
            "price" => [1.5, 2.5, 3.5],
        }
        .unwrap();
        let (rewritten, streamed, in_memory) = run(facts(), dims.clone(), FACTS);
        assert_eq!(rewritten, 0, "an Int64 key against an Int32 one");
        assert_eq!(streamed, in_memory);

        let dims = dims.lazy().with_column(col("dim_id").cast(DataType::Int64)).collect().unwrap();
        let left = "SELECT f.id, d.name FROM facts f LEFT JOIN dims d ON f.dim_id = d.dim_id";
        let (rewritten, streamed, in_memory) = run(facts(), dims, left);
        assert_eq!(rewritten, 0, "a left join");
        assert_eq!(streamed, in_memory);
    }
}
