//! `kind = "sql"`: Polars SQL over named input datasets, each query writing one output dataset.
//!
//! ```toml
//! [tasks.transform_to_silver]
//! kind = "sql"
//! inputs = { orders = "bronze/orders", customers = "bronze/customers" }
//! [tasks.transform_to_silver.outputs."silver/orders_enriched"]
//! query = "SELECT o.*, c.state FROM orders o JOIN customers c USING (customer_id)"
//! partition_by = ["order_year", "order_month"]
//! ```

use std::ops::ControlFlow;
use std::time::Instant;

use indexmap::IndexMap;
use polars::prelude::LazyFrame;
use polars::sql::SQLContext;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlparser::ast::{visit_relations, Statement};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserOptions};

use super::{Job, JobContext, JobError, Outputs};
use crate::lake::{check_relative, scan, sink_parquet, ScanOptions, Warehouse};

/// Fields of a `sql` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// Table name in the queries → dataset path in the warehouse.
    pub inputs: IndexMap<String, String>,
    /// Dataset path to write → how to compute it.
    pub outputs: IndexMap<String, SqlOutput>,
}

/// One output dataset of a `sql` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlOutput {
    /// A single SELECT over the inputs (Polars SQL).
    pub query: String,
    /// Columns to partition the Parquet output by (hive layout: `col=value/`).
    #[serde(default)]
    pub partition_by: Vec<String>,
}

pub struct Sql;

impl Job for Sql {
    const KIND: &'static str = "sql";
    type Config = SqlConfig;

    fn validate(&self, config: &SqlConfig) -> Vec<String> {
        let mut problems = check_inputs(&config.inputs);
        if config.outputs.is_empty() {
            problems.push("`outputs` must name at least one dataset".to_string());
        }
        let tables: Vec<&str> = config.inputs.keys().map(String::as_str).collect();
        for (path, output) in &config.outputs {
            problems.extend(check_path("output", path));
            problems.extend(
                check_query(&output.query, &tables)
                    .into_iter()
                    .map(|p| format!("output `{path}`: {p}")),
            );
        }
        problems
    }

    async fn run(&self, config: SqlConfig, ctx: JobContext) -> Result<Outputs, JobError> {
        let warehouse = ctx.warehouse.clone();
        let log = ctx.log.clone();
        super::blocking(move || {
            let mut sql = register_inputs(&warehouse, &config.inputs)?;
            let mut outputs = serde_json::Map::new();
            let (mut rows, mut bytes) = (0, 0);
            for (path, output) in &config.outputs {
                let started = Instant::now();
                let frame = sql
                    .execute(&output.query)
                    .map_err(|e| JobError::Failed(format!("{path}: {e}")))?;
                let dataset =
                    warehouse.dataset(path).map_err(|e| JobError::Config(e.to_string()))?;
                let written = sink_parquet(frame, &dataset, &output.partition_by)
                    .map_err(|e| JobError::Failed(format!("{path}: {e}")))?;
                log.info(format!(
                    "{path}: {} rows, {} bytes in {} files",
                    written.rows, written.bytes, written.files
                ));
                rows += written.rows;
                bytes += written.bytes;
                outputs.insert(
                    path.clone(),
                    json!({ "rows": written.rows, "bytes": written.bytes, "files": written.files,
                            "duration_ms": started.elapsed().as_millis() as u64 }),
                );
            }
            outputs.insert("rows".into(), Value::from(rows));
            outputs.insert("bytes".into(), Value::from(bytes));
            Ok(outputs)
        })
        .await
    }
}

/// A SQL context with every input registered as a lazy scan of its dataset.
pub(super) fn register_inputs(
    warehouse: &Warehouse,
    inputs: &IndexMap<String, String>,
) -> Result<SQLContext, JobError> {
    let sql = SQLContext::new();
    for (name, path) in inputs {
        sql.register(name, scan_input(warehouse, path)?);
    }
    Ok(sql)
}

pub(super) fn scan_input(warehouse: &Warehouse, path: &str) -> Result<LazyFrame, JobError> {
    let dataset = warehouse.dataset(path).map_err(|e| JobError::Config(e.to_string()))?;
    scan(&dataset, &ScanOptions::default())
        .map_err(|e| JobError::Failed(format!("reading {path}: {e}")))
}

pub(super) fn check_path(what: &str, path: &str) -> Option<String> {
    let templated = path.contains("{{") || path.contains("{%");
    (!templated && check_relative(path).is_err()).then(|| {
        format!("{what} `{path}` must be a relative warehouse path such as `silver/orders`")
    })
}

pub(super) fn check_inputs(inputs: &IndexMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, path) in inputs {
        let identifier = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            problems.push(format!(
                "input name `{name}` must be a SQL identifier (letters, digits, `_`)"
            ));
        }
        problems.extend(check_path("input", path));
    }
    problems
}

/// Checks that `query` is one parsable statement reading only from `tables` (or its own CTEs).
pub(super) fn check_query(query: &str, tables: &[&str]) -> Vec<String> {
    if query.contains("{{") || query.contains("{%") {
        return Vec::new(); // checked once rendered
    }
    let parser = Parser::new(&GenericDialect)
        .with_options(ParserOptions { trailing_commas: true, ..Default::default() });
    let statements = match parser.try_with_sql(query).and_then(|mut p| p.parse_statements()) {
        Ok(statements) => statements,
        Err(e) => return vec![format!("SQL syntax error: {e}")],
    };
    if statements.len() != 1 {
        return vec![format!("expected exactly one SQL statement, found {}", statements.len())];
    }
    let mut known: Vec<String> = tables.iter().map(|t| t.to_lowercase()).collect();
    if let Statement::Query(q) = &statements[0] {
        if let Some(with) = &q.with {
            known.extend(with.cte_tables.iter().map(|cte| cte.alias.name.value.to_lowercase()));
        }
    } else {
        return vec!["the query must be a SELECT".to_string()];
    }
    let mut problems = Vec::new();
    let _ = visit_relations(&statements, |relation| {
        let name = relation.to_string().to_lowercase();
        if !known.contains(&name) {
            problems.push(format!(
                "the query reads table `{relation}`, which is not among the inputs ({})",
                tables.join(", ")
            ));
        }
        ControlFlow::<()>::Continue(())
    });
    problems
}

#[cfg(test)]
mod tests {
    use super::check_query;

    #[test]
    fn queries_are_checked_for_syntax_and_inputs() {
        assert!(check_query("SELECT a FROM t JOIN u USING (id)", &["t", "u"]).is_empty());
        assert!(check_query("WITH x AS (SELECT * FROM t) SELECT * FROM x", &["t"]).is_empty());
        assert!(check_query("SELEC a FROM t", &["t"])[0].starts_with("SQL syntax error"));
        assert_eq!(
            check_query("SELECT * FROM missing", &["t"]),
            vec!["the query reads table `missing`, which is not among the inputs (t)"]
        );
        assert!(check_query("SELECT 1; SELECT 2", &[]).len() == 1);
        assert!(check_query("SELECT * FROM {{ params.t }}", &[]).is_empty());
    }
}
