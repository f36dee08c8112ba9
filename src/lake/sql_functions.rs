//! What lakeward's SQL adds to Polars SQL, for every query lakeward runs (the `sql`, `report`
//! and `quality` kinds, and the SQL console to come): `date_trunc(unit, timestamp)`, which
//! Polars SQL lacks and every time-bucketed metric needs. Units: `second`, `minute`, `hour`,
//! `day` (UTC days); the result is a UTC timestamp.
//!
//! The additions are rewritten into Polars SQL before it runs (Polars' own function registry
//! is not consulted inside CTEs, subqueries and set operations), so a query may use them
//! anywhere; so are the outputs Polars would name alike or order by wrongly
//! ([`super::sql_outputs`]). This module owns only that rewriting; which tables a query may
//! read is checked by the jobs.

use std::ops::ControlFlow;

use polars::prelude::{polars_err, LazyFrame, PolarsResult};
use polars::sql::SQLContext;
use sqlparser::ast::{
    visit_expressions_mut, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserOptions};

/// Tables registered by name, and queries over them in lakeward's SQL.
#[derive(Default)]
pub struct QueryContext {
    context: SQLContext,
}

impl QueryContext {
    pub fn new() -> QueryContext {
        QueryContext::default()
    }

    /// Makes `frame` readable as table `name`.
    pub fn register(&self, name: &str, frame: LazyFrame) {
        self.context.register(name, frame);
    }

    /// The lazy result of `query` (one statement).
    pub fn execute(&mut self, query: &str) -> PolarsResult<LazyFrame> {
        let polars_sql = rewrite(query).map_err(|e| polars_err!(SQLSyntax: "{e}"))?;
        self.context.execute(&polars_sql)
    }
}

fn parser_options() -> ParserOptions {
    ParserOptions { trailing_commas: true, ..Default::default() }
}

/// `query` with lakeward's additions spelled in Polars SQL and its outputs named and ordered
/// as [`super::sql_outputs`] says; unchanged when none of that applies (or it does not parse
/// and uses no addition: Polars then says what is wrong).
pub fn rewrite(query: &str) -> Result<String, String> {
    let uses_additions = query.to_ascii_lowercase().contains("date_trunc");
    let parsed = Parser::new(&GenericDialect)
        .with_options(parser_options())
        .try_with_sql(query)
        .and_then(|mut p| p.parse_statements());
    let mut statements = match parsed {
        Ok(statements) => statements,
        Err(_) if !uses_additions => return Ok(query.to_string()),
        Err(e) => return Err(format!("SQL syntax error: {e}")),
    };
    // Outputs first, so that a name made from an expression's text is the text as written
    // (`date_trunc(…)`, not what it is rewritten into).
    let renamed = super::sql_outputs::rewrite_outputs(&mut statements);
    let outcome = visit_expressions_mut(&mut statements, |expr| match date_trunc(expr) {
        Ok(Some(replacement)) => {
            *expr = replacement;
            ControlFlow::Continue(())
        }
        Ok(None) => ControlFlow::Continue(()),
        Err(e) => ControlFlow::Break(e),
    });
    if let ControlFlow::Break(e) = outcome {
        return Err(e);
    }
    if !renamed && !uses_additions {
        return Ok(query.to_string());
    }
    Ok(statements.iter().map(ToString::to_string).collect::<Vec<_>>().join(";\n"))
}

/// `date_trunc('minute', ts)` as Polars SQL: the timestamp formatted down to the unit (in UTC)
/// and parsed back with its zone.
fn date_trunc(expr: &Expr) -> Result<Option<Expr>, String> {
    let Expr::Function(function) = expr else { return Ok(None) };
    if !function.name.to_string().eq_ignore_ascii_case("date_trunc") {
        return Ok(None);
    }
    let usage = "date_trunc takes a unit and a timestamp: date_trunc('minute', ts)";
    let FunctionArguments::List(list) = &function.args else { return Err(usage.into()) };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(unit)), FunctionArg::Unnamed(FunctionArgExpr::Expr(timestamp))] =
        list.args.as_slice()
    else {
        return Err(usage.into());
    };
    let unit = match unit {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.to_ascii_lowercase(),
            _ => return Err(usage.into()),
        },
        _ => return Err(usage.into()),
    };
    let format = match unit.as_str() {
        "second" => "%Y-%m-%d %H:%M:%S",
        "minute" => "%Y-%m-%d %H:%M:00",
        "hour" => "%Y-%m-%d %H:00:00",
        "day" => "%Y-%m-%d 00:00:00",
        other => {
            return Err(format!("date_trunc: unknown unit '{other}' (second, minute, hour, day)"))
        }
    };
    let text = format!("STRPTIME(STRFTIME({timestamp}, '{format}+0000'), '%Y-%m-%d %H:%M:%S%z')");
    let replacement = Parser::new(&GenericDialect)
        .with_options(parser_options())
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("date_trunc: {e}"))?;
    Ok(Some(replacement))
}

#[cfg(test)]
mod tests {
    use polars::prelude::{col, df, DataType, IntoLazy, TimeUnit, TimeZone};

    use super::QueryContext;

    #[test]
    fn date_trunc_buckets_timestamps_anywhere_in_a_query() {
        let micros = [90_061_000_001_i64, 90_119_999_999, -1]; // 1970-01-02 01:01:01, …, 1969
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        let frame = df!("ts" => micros, "n" => [1_i64, 2, 3]).unwrap();
        let frame = frame.lazy().with_column(col("ts").cast(utc.clone())).collect().unwrap();
        let mut sql = QueryContext::new();
        sql.register("t", frame.lazy());
        // In a CTE and a set operation, where Polars' own functions registry is not consulted.
        let query = "WITH m AS (SELECT DATE_TRUNC('minute', ts) AS minute, n FROM t) \
                     SELECT minute, SUM(n) AS n FROM m GROUP BY minute \
                     UNION ALL SELECT date_trunc('day', ts) AS minute, n FROM t WHERE n = 3 \
                     ORDER BY minute, n";
        let out = sql.execute(query).unwrap().collect().unwrap();
        let minute = out.column("minute").unwrap();
        assert_eq!(minute.dtype(), &utc);
        let physical = minute.datetime().unwrap().physical();
        let physical: Vec<Option<i64>> = (0..physical.len()).map(|i| physical.get(i)).collect();
        let day_before = -86_400_000_000;
        assert_eq!(physical, vec![Some(day_before), Some(-60_000_000), Some(90_060_000_000)]);
        let sums = out.column("n").unwrap().i64().unwrap();
        let sums: Vec<Option<i64>> = (0..sums.len()).map(|i| sums.get(i)).collect();
        assert_eq!(sums, vec![Some(3), Some(3), Some(3)]);
        let bad = sql.execute("SELECT date_trunc('fortnight', ts) FROM t").map(|_| ());
        assert!(bad.unwrap_err().to_string().contains("unknown unit 'fortnight'"));
        assert!(sql.execute("SELECT date_trunc(ts) FROM t").is_err());
    }

    #[test]
    fn every_query_names_and_orders_its_outputs_as_other_engines_do() {
        let data = df! { "k" => ["a", "b", "b"], "v" => [1i64, 2, 5] }.unwrap();
        let mut sql = QueryContext::new();
        sql.register("t", data.lazy());
        let query = "SELECT k, SUM(v), MAX(v) FROM t GROUP BY k ORDER BY SUM(v) DESC";
        let answer = sql.execute(query).unwrap().collect().unwrap();
        let names: Vec<&str> = answer.get_column_names().iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["k", "SUM(v)", "MAX(v)"]);
        let keys = answer.column("k").unwrap().str().unwrap();
        let keys: Vec<_> = (0..keys.len()).map(|i| keys.get(i)).collect();
        assert_eq!(keys, [Some("b"), Some("a")], "b sums to 7, a to 1");
        let bucketed = "SELECT date_trunc('day', ts), ts FROM t";
        let rewritten = super::rewrite(bucketed).unwrap();
        assert!(rewritten.contains(r#"AS "date_trunc('day', ts)""#), "{rewritten}");
        let untouched = "SELECT k AS key FROM t ORDER BY key";
        assert_eq!(super::rewrite(untouched).unwrap(), untouched);
    }
}
