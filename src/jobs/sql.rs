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
use serde::{Deserialize, Serialize};
use sqlparser::ast::{ObjectName, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserOptions};

use super::{Job, JobContext, JobError, Lineage, Quoting, Stage};
use crate::lake::{check_relative, scan, write_parquet, Publication, ScanOptions, Warehouse};

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

/// The outputs of a `sql` task: each dataset written, by path, and the totals.
#[derive(Debug, Default, Serialize)]
pub struct SqlOutputs {
    #[serde(flatten)]
    pub datasets: IndexMap<String, DatasetWritten>,
    pub rows: u64,
    pub bytes: u64,
}

/// One dataset a task wrote: rows, bytes and files, and how long it took.
#[derive(Debug, Serialize)]
pub struct DatasetWritten {
    #[serde(flatten)]
    pub written: crate::lake::Written,
    pub duration_ms: u64,
}

impl Job for Sql {
    const KIND: &'static str = "sql";
    type Config = SqlConfig;
    type Output = SqlOutputs;
    const QUOTED_FIELDS: &'static [(&'static str, Quoting)] = &[("outputs.*.query", Quoting::Sql)];

    fn validate(&self, config: &SqlConfig, stage: Stage) -> Vec<String> {
        let mut problems = check_inputs(&config.inputs, stage);
        if config.outputs.is_empty() {
            problems.push("`outputs` must name at least one dataset".to_string());
        }
        let tables: Vec<&str> = config.inputs.keys().map(String::as_str).collect();
        for (path, output) in &config.outputs {
            problems.extend(check_path("output", path, stage));
            problems.extend(
                check_query(&output.query, &tables, stage)
                    .into_iter()
                    .map(|p| format!("output `{path}`: {p}")),
            );
        }
        problems
    }

    async fn run(&self, config: SqlConfig, ctx: JobContext) -> Result<SqlOutputs, JobError> {
        let warehouse = ctx.warehouse.clone();
        let log = ctx.log.clone();
        let lineage = ctx.lineage.clone();
        super::blocking(move || {
            let mut sql = register_inputs(&warehouse, &config.inputs, &lineage)?;
            let mut outputs = SqlOutputs::default();
            // Every output is published at the end, or none if one fails.
            let mut publication = Publication::default();
            for (path, output) in &config.outputs {
                let started = Instant::now();
                let in_output = |e: JobError| e.context(path);
                let frame = sql.execute(&output.query).map_err(|e| in_output(e.into()))?;
                let dataset = warehouse.dataset(path)?;
                let (version, written) = write_parquet(frame, &dataset, &output.partition_by)
                    .map_err(|e| in_output(e.into()))?;
                publication.add(version, written);
                log.info(format!(
                    "{path}: {} rows, {} bytes in {} files",
                    written.rows, written.bytes, written.files
                ));
                outputs.rows += written.rows;
                outputs.bytes += written.bytes;
                let duration_ms = started.elapsed().as_millis() as u64;
                outputs.datasets.insert(path.clone(), DatasetWritten { written, duration_ms });
            }
            lineage.wrote_datasets(&publication.commit()?);
            Ok(outputs)
        })
        .await
    }
}

/// A SQL context with every input registered as a lazy scan of its dataset.
pub(super) fn register_inputs(
    warehouse: &Warehouse,
    inputs: &IndexMap<String, String>,
    lineage: &Lineage,
) -> Result<SQLContext, JobError> {
    let sql = SQLContext::new();
    for (name, path) in inputs {
        sql.register(name, scan_input(warehouse, path, lineage)?);
    }
    Ok(sql)
}

/// A lazy scan of the dataset at `path`, its version recorded as read.
pub(super) fn scan_input(
    warehouse: &Warehouse,
    path: &str,
    lineage: &Lineage,
) -> Result<LazyFrame, JobError> {
    let dataset = warehouse.dataset(path)?;
    let in_input = |e: crate::lake::LakeError| JobError::from(e).context(format!("reading {path}"));
    let frame = scan(&dataset, &ScanOptions::default()).map_err(in_input)?;
    lineage.read_dataset(&dataset).map_err(in_input)?;
    Ok(frame)
}

pub(super) fn check_path(what: &str, path: &str, stage: Stage) -> Option<String> {
    (!stage.defers(path) && check_relative(path).is_err()).then(|| {
        format!("{what} `{path}` must be a relative warehouse path such as `silver/orders`")
    })
}

pub(super) fn check_inputs(inputs: &IndexMap<String, String>, stage: Stage) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, path) in inputs {
        let identifier = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            problems.push(format!(
                "input name `{name}` must be a SQL identifier (letters, digits, `_`)"
            ));
        }
        problems.extend(check_path("input", path, stage));
    }
    problems
}

/// Checks that `query` is one parsable SELECT reading only from `tables` (or its own CTEs),
/// with no table function (`read_csv('/etc/passwd')`) anywhere, whatever its name shadows.
/// At [`Stage::Load`] a templated query waits for its rendered check.
pub(super) fn check_query(query: &str, tables: &[&str], stage: Stage) -> Vec<String> {
    if stage.defers(query) {
        return Vec::new();
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
    let mut reads = Reads { known, tables, problems: Vec::new() };
    let _ = statements.visit(&mut reads);
    reads.problems
}

/// Walks a query's FROM clauses: plain names must be inputs or CTEs; nothing else that reads.
struct Reads<'a> {
    known: Vec<String>,
    tables: &'a [&'a str],
    problems: Vec<String>,
}

impl Visitor for Reads<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let name = relation.to_string().to_lowercase();
        if !self.known.contains(&name) {
            self.problems.push(format!(
                "the query reads table `{relation}`, which is not among the inputs ({})",
                self.tables.join(", ")
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let refused = match factor {
            TableFactor::Table { name, args: Some(_), .. } => Some(name.to_string()),
            TableFactor::Table { .. }
            | TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. } => None,
            other => Some(other.to_string()),
        };
        if let Some(what) = refused {
            self.problems.push(format!(
                "the query calls table function `{what}`: a query may read only its inputs"
            ));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_query;
    use crate::jobs::Stage;

    fn check(query: &str, tables: &[&str]) -> Vec<String> {
        check_query(query, tables, Stage::Load)
    }

    #[test]
    fn queries_are_checked_for_syntax_and_inputs() {
        assert!(check("SELECT a FROM t JOIN u USING (id)", &["t", "u"]).is_empty());
        assert!(check("WITH x AS (SELECT * FROM t) SELECT * FROM x", &["t"]).is_empty());
        assert!(check("SELEC a FROM t", &["t"])[0].starts_with("SQL syntax error"));
        assert_eq!(
            check("SELECT * FROM missing", &["t"]),
            vec!["the query reads table `missing`, which is not among the inputs (t)"]
        );
        assert!(check("SELECT 1; SELECT 2", &[]).len() == 1);
        assert!(check("SELECT * FROM {{ params.t }}", &[]).is_empty());
    }

    #[test]
    fn rendered_queries_are_checked_even_when_they_look_templated() {
        let rendered = check_query("SELECT * FROM x -- {{", &["t"], Stage::Rendered);
        assert_eq!(rendered, vec!["the query reads table `x`, which is not among the inputs (t)"]);
    }

    #[test]
    fn table_functions_are_refused_whatever_a_cte_is_called() {
        let shadowed = "WITH read_csv AS (SELECT * FROM t) SELECT * FROM read_csv('/etc/passwd')";
        let problems = check(shadowed, &["t"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("table function `read_csv`"), "{problems:?}");
        let nested = "SELECT * FROM t WHERE a IN (SELECT a FROM read_parquet('/x.parquet'))";
        assert!(check(nested, &["t"]).iter().any(|p| p.contains("table function")));
    }
}
