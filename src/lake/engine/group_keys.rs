//! Grouping by keys that follow from another key. SQL makes users group by every column they
//! select without aggregating it, so queries often read `GROUP BY product_id, category` where
//! each product has one category: that groups exactly as `GROUP BY product_id` does, with the
//! category carried along. Polars hashes several keys by encoding each row's keys into one
//! value first; one number key takes its fast path instead.
//!
//! [`narrow_group_keys`] checks that dependency on the data, as no schema declares it: it
//! groups by the number and date keys alone and keeps, per group, the smallest and the largest
//! value of each text key and how many are not null. When every group holds one value of each
//! (or only nulls), that grouping is the answer and takes the original one's place in the plan;
//! otherwise the plan runs as written. A sample of the first rows is checked first, so that a
//! query whose keys are independent loses little.
//!
//! This module only rewrites plans, for the streaming engine; it knows nothing of where frames
//! come from or go, and never changes an answer: any doubt (another plan shape, an error in a
//! check) leaves the plan as it was.

use std::sync::Arc;

use polars::prelude::{
    col, len, lit, DataFrame, DataType, DslPlan, Expr, IdxSize, IntoLazy, LazyFrame, PlSmallStr,
    Schema,
};

use super::collect_streaming;

/// Rows of the grouping's input checked before the whole input is.
const SAMPLE_ROWS: IdxSize = 100_000;

/// The start of the names of the columns the check adds.
const CHECK_PREFIX: &str = "__lakeward_key_";

/// `frame`, its grouping computed already when the text keys it groups by follow from its
/// number and date keys; otherwise `frame` unchanged. The check runs on the streaming engine.
pub fn narrow_group_keys(frame: LazyFrame) -> LazyFrame {
    let mut plan = frame.logical_plan.clone();
    let Some(node) = grouping(&mut plan) else { return frame };
    let Some(grouped) = group_by_leading_keys(node) else { return frame };
    *node = grouped.lazy().logical_plan;
    LazyFrame::from(plan).with_optimizations(frame.get_current_optimizations())
}

/// The `GROUP BY` node under `plan`, reached through steps that each read one input and come
/// after the grouping (projections, an outer query's filters, `ORDER BY`, `LIMIT`). `HAVING`
/// is part of the grouping node itself.
fn grouping(plan: &mut DslPlan) -> Option<&mut DslPlan> {
    if let DslPlan::IR { dsl, .. } = plan {
        // A plan Polars already converted (to learn its schema) and cached: the plan without
        // its cache, so that the change below is not ignored for the cached conversion.
        *plan = (**dsl).clone();
    }
    if matches!(plan, DslPlan::GroupBy { .. }) {
        return Some(plan);
    }
    match plan {
        DslPlan::Select { input, .. }
        | DslPlan::Filter { input, .. }
        | DslPlan::HStack { input, .. }
        | DslPlan::Sort { input, .. }
        | DslPlan::Slice { input, .. } => grouping(Arc::make_mut(input)),
        _ => None,
    }
}

/// The grouping `node` computes, grouped by its number and date keys alone, when its text keys
/// follow from those.
fn group_by_leading_keys(node: &DslPlan) -> Option<DataFrame> {
    let DslPlan::GroupBy { input, keys, predicates, aggs, maintain_order, options, apply } = node
    else {
        return None;
    };
    let plain = apply.is_none() && predicates.is_empty() && options.slice.is_none();
    if !plain || options.is_rolling() || options.is_dynamic() {
        return None;
    }
    let input = LazyFrame::from((**input).clone());
    let schema = input.clone().collect_schema().ok()?;
    let keys = Keys::split(keys, &schema)?;
    let probe = Probe { keys: &keys, aggs, maintain_order: *maintain_order };
    probe.run(input.clone().slice(0, SAMPLE_ROWS))?;
    probe.run(input)
}

/// A grouping's keys: those hashed on their own (numbers, dates) and the text ones that may
/// follow from them, in the order the query gave.
struct Keys {
    all: Vec<PlSmallStr>,
    leading: Vec<PlSmallStr>,
    following: Vec<PlSmallStr>,
}

impl Keys {
    /// `None` unless every key is a column, at least one is a number or date and at least one
    /// is text.
    fn split(keys: &[Expr], schema: &Schema) -> Option<Keys> {
        let mut split = Keys { all: Vec::new(), leading: Vec::new(), following: Vec::new() };
        for key in keys {
            let Expr::Column(name) = key else { return None };
            let dtype = schema.get(name)?;
            if dtype.is_primitive_numeric() || dtype.is_temporal() {
                split.leading.push(name.clone());
            } else if matches!(dtype, DataType::String | DataType::Binary) {
                split.following.push(name.clone());
            } else {
                return None;
            }
            split.all.push(name.clone());
        }
        let useful = !split.leading.is_empty() && !split.following.is_empty();
        useful.then_some(split)
    }
}

/// Grouping an input by the leading keys, with the aggregations of the original grouping.
struct Probe<'a> {
    keys: &'a Keys,
    aggs: &'a [Expr],
    maintain_order: bool,
}

impl Probe<'_> {
    /// The original grouping's answer computed from `input` by the leading keys alone, or
    /// `None` when some group holds several values of a following key (or the engine failed).
    fn run(&self, input: LazyFrame) -> Option<DataFrame> {
        let leading: Vec<Expr> = self.keys.leading.iter().cloned().map(col).collect();
        let grouped = match self.maintain_order {
            true => input.group_by_stable(leading),
            false => input.group_by(leading),
        };
        let mut aggs = self.aggs.to_vec();
        for (index, key) in self.keys.following.iter().enumerate() {
            let [least, most, values] = check_columns(index);
            aggs.push(col(key.clone()).min().alias(least));
            aggs.push(col(key.clone()).max().alias(most));
            aggs.push(col(key.clone()).count().alias(values));
        }
        aggs.push(len().alias(rows_column()));
        let answer = collect_streaming(grouped.agg(aggs))?.ok()?;
        self.one_value_per_group(&answer).then(|| self.as_original(answer))?
    }

    /// Whether every group of `answer` holds one value of each following key, or only nulls.
    fn one_value_per_group(&self, answer: &DataFrame) -> bool {
        let rows = col(rows_column());
        let holds = (0..self.keys.following.len()).map(|index| {
            let [least, most, values] = check_columns(index);
            let one_value = col(least).eq_missing(col(most));
            let uniform = col(values.clone()).eq(lit(0)).or(col(values).eq(rows.clone()));
            one_value.and(uniform).all(false)
        });
        let Some(all) = holds.reduce(Expr::and) else { return false };
        let checked = answer.clone().lazy().select([all.alias("holds")]).collect();
        let first = checked.ok().and_then(|c| c.column("holds").ok()?.bool().ok()?.get(0));
        first == Some(true)
    }

    /// `answer`'s columns as the original grouping names and orders them: every key, in the
    /// query's order, then every aggregation.
    fn as_original(&self, answer: DataFrame) -> Option<DataFrame> {
        let leading = self.keys.leading.len();
        let aggregations = answer.get_column_names()[leading..leading + self.aggs.len()].to_vec();
        let mut columns: Vec<Expr> = self.keys.all.iter().map(|key| self.key_column(key)).collect();
        columns.extend(aggregations.into_iter().map(|name| col(name.clone())));
        answer.lazy().select(columns).collect().ok()
    }

    fn key_column(&self, key: &PlSmallStr) -> Expr {
        match self.keys.following.iter().position(|k| k == key) {
            Some(index) => col(check_columns(index)[0].clone()).alias(key.clone()),
            None => col(key.clone()),
        }
    }
}

/// The names of the smallest value, the largest value and the count of values of the
/// following key at `index`.
fn check_columns(index: usize) -> [PlSmallStr; 3] {
    ["least", "most", "values"].map(|what| format!("{CHECK_PREFIX}{what}_{index}").into())
}

fn rows_column() -> PlSmallStr {
    format!("{CHECK_PREFIX}rows").into()
}

#[cfg(test)]
mod tests {
    use polars::prelude::{df, Engine as PolarsEngine, SortMultipleOptions};

    use super::*;

    fn run(data: DataFrame, sql: &str) -> (DataFrame, DataFrame, bool) {
        let (frame, narrowed, rewritten) =
            super::super::written_and_rewritten(data, sql, narrow_group_keys);
        let streaming = PolarsEngine::Streaming;
        let expected = frame.collect_with_engine(streaming).unwrap().unwrap_single();
        let got = narrowed.collect_with_engine(streaming).unwrap().unwrap_single();
        (expected, got, rewritten)
    }

    fn sorted(frame: &DataFrame) -> DataFrame {
        let by = frame.get_column_names_owned();
        frame.sort(by, SortMultipleOptions::default()).unwrap()
    }

    #[test]
    fn text_keys_that_follow_from_a_number_key_are_carried_along() {
        let data = df! {
            "product_id" => [1i64, 2, 1, 3, 2, 3, 4],
            "category" => [Some("Books"), Some("Home"), Some("Books"), None, Some("Home"), None, Some("Toys")],
            "name" => ["a", "b", "a", "c", "b", "c", "d"],
            "quantity" => [1i64, 2, 3, 4, 5, 6, 9],
        }
        .unwrap();
        let sql = "SELECT name, SUM(quantity) AS units, category, product_id, COUNT(*) AS n \
                   FROM t GROUP BY product_id, category, name ORDER BY units DESC";
        let (expected, got, rewritten) = run(data, sql);
        assert!(rewritten, "the grouping was computed by product_id alone");
        assert_eq!(got, expected, "same columns, order and values");
        assert_eq!(got.get_column_names(), ["name", "units", "category", "product_id", "n"]);
    }

    #[test]
    fn a_key_with_two_values_for_one_leading_key_runs_as_written() {
        let data = df! {
            "day" => [1i32, 1, 2, 2],
            "status" => ["paid", "open", "paid", "paid"],
            "amount" => [1.0, 2.0, 3.0, 4.0],
        }
        .unwrap();
        let sql = "SELECT day, status, SUM(amount) AS total FROM t GROUP BY day, status";
        let (expected, got, rewritten) = run(data, sql);
        assert!(!rewritten);
        assert_eq!(sorted(&got), sorted(&expected));
        assert_eq!(expected.height(), 3);
    }

    #[test]
    fn a_key_null_in_some_rows_of_a_group_only_runs_as_written() {
        let data = df! {
            "id" => [1i64, 1, 2],
            "label" => [Some("x"), None, Some("y")],
            "v" => [1i64, 2, 3],
        }
        .unwrap();
        let (expected, got, rewritten) =
            run(data, "SELECT id, label, SUM(v) AS v FROM t GROUP BY id, label");
        assert!(!rewritten, "(1, 'x') and (1, NULL) are two groups");
        assert_eq!(sorted(&got), sorted(&expected));
    }

    #[test]
    fn groupings_it_cannot_narrow_are_left_alone() {
        let data = df! { "a" => ["x", "y"], "b" => ["p", "q"], "n" => [1i64, 2] }.unwrap();
        for sql in [
            "SELECT a, b, SUM(n) AS n FROM t GROUP BY a, b",
            "SELECT n, SUM(n) AS s FROM t GROUP BY n",
            "SELECT UPPER(a) AS a, n, COUNT(*) AS c FROM t GROUP BY UPPER(a), n",
        ] {
            let (expected, got, rewritten) = run(data.clone(), sql);
            assert!(!rewritten, "{sql}");
            assert_eq!(sorted(&got), sorted(&expected), "{sql}");
        }
    }

    #[test]
    fn order_and_limit_apply_to_the_narrowed_grouping_and_having_keeps_the_original() {
        let data = df! {
            "id" => [1i64, 2, 3, 1, 2, 3],
            "tag" => ["a", "b", "c", "a", "b", "c"],
            "v" => [1i64, 10, 100, 1, 10, 100],
        }
        .unwrap();
        let limited = "SELECT id, tag, SUM(v) AS total FROM t GROUP BY id, tag \
                       ORDER BY total DESC LIMIT 2";
        let (expected, got, rewritten) = run(data.clone(), limited);
        assert!(rewritten);
        assert_eq!(got, expected);
        assert_eq!(got.column("total").unwrap().i64().unwrap().get(1), Some(20));
        // HAVING filters groups inside the grouping, before the check could see them.
        let having = "SELECT id, tag, SUM(v) AS total FROM t GROUP BY id, tag HAVING SUM(v) > 5";
        let (expected, got, rewritten) = run(data, having);
        assert!(!rewritten);
        assert_eq!(sorted(&got), sorted(&expected));
    }
}
