//! `kind = "sql"`: Polars SQL over named inputs (datasets and Iceberg tables), each query
//! writing one output (a dataset, or a table).
//!
//! ```toml
//! [tasks.transform_to_silver]
//! kind = "sql"
//! inputs = { orders = "bronze/orders", logs = "bronze.web_logs" }
//! [tasks.transform_to_silver.outputs."silver/orders_enriched"]
//! query = "SELECT o.*, c.state FROM orders o JOIN customers c USING (customer_id)"
//! partition_by = ["order_year", "order_month"]
//! [tasks.transform_to_silver.outputs."batch.endpoint_minutes"]
//! query = "SELECT date_trunc('minute', timestamp) AS window_start, … FROM logs GROUP BY 1"
//! partition_by = ["day(window_start)"]
//! mode = "overwrite"
//! ```
//!
//! A name with a slash is a dataset path; `namespace.table` names an Iceberg table, read at
//! its current snapshot (recorded as the try's lineage); `if_missing = "skip"` skips the task
//! while an input table does not exist yet. Outputs are computed first, each on the Polars
//! engine [`crate::lake::engine`] picks for its query (those on the in-memory engine together,
//! as one query); then the table outputs commit (one snapshot each), then the dataset outputs
//! are published together.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use indexmap::IndexMap;
use polars::prelude::{IntoLazy, LazyFrame};
use serde::{Deserialize, Serialize};
use sqlparser::ast::{ObjectName, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserOptions};

use super::{Job, JobContext, JobError, Lineage, Quoting, Stage};
use crate::lake::engine::Engine;
use crate::lake::sql_functions::QueryContext;
use crate::lake::tables::{table_ident, PartitionField, SnapshotFiles, TableError, WriteMode};
use crate::lake::{
    check_relative, scan, scan_snapshot, write_parquet, write_parquet_folder, Publication,
    ScanOptions, Warehouse,
};

/// Fields of a `sql` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// Table name in the queries → dataset path or `namespace.table` in the warehouse.
    pub inputs: IndexMap<String, String>,
    /// Dataset path or `namespace.table` to write → how to compute it.
    pub outputs: IndexMap<String, SqlOutput>,
    /// What an input table that does not exist yet does: `fail` (default), or `skip` the task
    /// (the run succeeds; until its writer first ran, say).
    #[serde(default)]
    pub if_missing: IfMissing,
}

/// See [`SqlConfig::if_missing`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfMissing {
    #[default]
    Fail,
    Skip,
}

/// One output of a `sql` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlOutput {
    /// A single SELECT over the inputs (Polars SQL, plus `date_trunc`).
    pub query: String,
    /// A dataset: columns to partition the Parquet output by (hive layout: `col=value/`).
    /// A table: its partition fields when it is created (`day(ts)`, `bucket(16, id)`, …).
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// A table only: `overwrite` (default: the result replaces the table, as a dataset output
    /// is replaced), `append`, or `replace_partitions`.
    #[serde(default)]
    pub mode: Option<WriteMode>,
}

/// What an input or output name refers to: a slash makes a dataset path, `namespace.table`
/// an Iceberg table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'a> {
    Dataset(&'a str),
    Table(&'a str),
}

impl<'a> Target<'a> {
    fn of(name: &'a str) -> Target<'a> {
        if !name.contains('/') && name.contains('.') {
            Target::Table(name)
        } else {
            Target::Dataset(name)
        }
    }

    /// What is wrong with the name, if anything.
    fn problem(self, what: &str, stage: Stage) -> Option<String> {
        match self {
            Target::Dataset(path) => check_path(what, path, stage),
            Target::Table(name) if stage.defers(name) => None,
            Target::Table(name) => table_ident(name).err().map(|e| format!("{what}: {e}")),
        }
    }
}

pub struct Sql;

/// The outputs of a `sql` task: each dataset or table written, by name, and the totals.
#[derive(Debug, Default, Serialize)]
pub struct SqlOutputs {
    #[serde(flatten)]
    pub written: IndexMap<String, OutputWritten>,
    pub rows: u64,
    pub bytes: u64,
}

/// One output a task wrote: rows, bytes and files, how long it took, and for a table the
/// snapshot it committed.
#[derive(Debug, Serialize)]
pub struct OutputWritten {
    #[serde(flatten)]
    pub written: crate::lake::Written,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
}

impl Job for Sql {
    const KIND: &'static str = "sql";
    type Config = SqlConfig;
    type Output = SqlOutputs;
    const QUOTED_FIELDS: &'static [(&'static str, Quoting)] = &[("outputs.*.query", Quoting::Sql)];

    fn validate(&self, config: &SqlConfig, stage: Stage) -> Vec<String> {
        let mut problems = check_sources(&config.inputs, stage);
        if config.outputs.is_empty() {
            problems.push("`outputs` must name at least one dataset or table".to_string());
        }
        let tables: Vec<&str> = config.inputs.keys().map(String::as_str).collect();
        for (name, output) in &config.outputs {
            let in_output = |p: String| format!("output `{name}`: {p}");
            let target = Target::of(name);
            problems.extend(target.problem("output", stage));
            problems.extend(check_query(&output.query, &tables, stage).into_iter().map(in_output));
            match target {
                Target::Dataset(_) if output.mode.is_some() => problems.push(in_output(
                    "`mode` applies to table outputs only (a dataset output is replaced)".into(),
                )),
                Target::Dataset(_) => {}
                Target::Table(_) => problems.extend(
                    output
                        .partition_by
                        .iter()
                        .filter_map(|f| PartitionField::parse(f).err())
                        .map(in_output),
                ),
            }
        }
        problems
    }

    async fn run(&self, config: SqlConfig, ctx: JobContext) -> Result<SqlOutputs, JobError> {
        let inputs = resolve_inputs(&config.inputs, config.if_missing, &ctx).await?;
        let warehouse = ctx.warehouse.clone();
        let log = ctx.log.clone();
        let lineage = ctx.lineage.clone();
        let config = std::sync::Arc::new(config);
        let computing = config.clone();
        let (mut outputs, staged, publication) = super::blocking(move || {
            let config = computing;
            let mut sql = inputs.register(&warehouse, &lineage)?;
            let mut outputs = SqlOutputs::default();
            let mut staged = Vec::new();
            // Dataset outputs are published at the end, or none if one fails.
            let mut publication = Publication::default();
            let mut frames = Vec::new();
            for (name, output) in &config.outputs {
                let frame =
                    sql.execute(&output.query).map_err(|e| JobError::from(e).context(name))?;
                frames.push((frame, Engine::for_sql(&output.query)));
            }
            let computed = computed_in_memory(frames);
            for ((name, output), computed) in config.outputs.iter().zip(computed) {
                let started = Instant::now();
                let in_output = |e: JobError| e.context(name);
                let (frame, engine) = computed.map_err(|e| in_output(e.into()))?;
                let written = match Target::of(name) {
                    Target::Dataset(path) => {
                        let dataset = warehouse.dataset(path)?;
                        let (version, written) =
                            write_parquet(frame, &dataset, &output.partition_by, engine)
                                .map_err(|e| in_output(e.into()))?;
                        publication.add(version, written);
                        written
                    }
                    Target::Table(_) => {
                        let staging = Staging::new(&warehouse);
                        let written = write_parquet_folder(frame, &staging.0, engine)
                            .map_err(|e| in_output(e.into()))?;
                        staged.push((name.clone(), staging));
                        written
                    }
                };
                log.info(format!(
                    "{name}: {} rows, {} bytes in {} files",
                    written.rows, written.bytes, written.files
                ));
                outputs.rows += written.rows;
                outputs.bytes += written.bytes;
                let duration_ms = started.elapsed().as_millis() as u64;
                let done = OutputWritten { written, duration_ms, snapshot_id: None };
                outputs.written.insert(name.clone(), done);
            }
            Ok((outputs, staged, publication))
        })
        .await?;
        commit_tables(staged, &config, &ctx, &mut outputs).await?;
        let lineage = ctx.lineage.clone();
        super::blocking(move || {
            lineage.wrote_datasets(&publication.commit()?);
            Ok(())
        })
        .await?;
        Ok(outputs)
    }
}

/// The outputs' frames, each ready for its writer: those on the in-memory engine computed
/// now, all as one Polars query (which may share what their plans share, such as the scan of
/// a dataset they all read); the others left to stream into their files. A computed frame is
/// handed on as streaming, since streaming it is then only writing it.
fn computed_in_memory(
    frames: Vec<(LazyFrame, Engine)>,
) -> Vec<polars::prelude::PolarsResult<(LazyFrame, Engine)>> {
    let in_memory: Vec<_> =
        frames.iter().filter(|(_, e)| *e == Engine::InMemory).cloned().collect();
    let mut answers = crate::lake::engine::collect_all(in_memory).into_iter();
    frames
        .into_iter()
        .map(|(frame, engine)| match engine {
            Engine::Streaming => Ok((frame, engine)),
            Engine::InMemory => {
                let answer = answers.next().expect("collect_all answers every frame");
                answer.map(|computed| (computed.lazy(), Engine::Streaming))
            }
        })
        .collect()
}

/// Commits each staged table output as one snapshot, recording it in `outputs` and lineage.
async fn commit_tables(
    staged: Vec<(String, Staging)>,
    config: &SqlConfig,
    ctx: &JobContext,
    outputs: &mut SqlOutputs,
) -> Result<(), JobError> {
    if staged.is_empty() {
        return Ok(());
    }
    let tables = ctx.tables.get().await?;
    for (name, staging) in staged {
        let output = &config.outputs[&name];
        let partition_by =
            PartitionField::parse_all(&output.partition_by).map_err(JobError::Config)?;
        let mode = output.mode.unwrap_or(WriteMode::Overwrite);
        let done = tables
            .promote(&name, &staging.0, &partition_by, mode)
            .await
            .map_err(|e| JobError::from(e).context(&name))?;
        let files = done.files as u64;
        ctx.lineage.wrote_table(&name, done.snapshot_id, mode.as_str(), done.rows, files);
        ctx.log.info(format!("{name}: {} snapshot {}", mode.as_str(), done.snapshot_id));
        if let Some(written) = outputs.written.get_mut(&name) {
            written.snapshot_id = Some(done.snapshot_id);
        }
    }
    Ok(())
}

/// A folder of its own under the warehouse's hidden `.staging/`, removed when dropped: where a
/// table output's rows wait to be committed.
struct Staging(PathBuf);

impl Staging {
    fn new(warehouse: &Warehouse) -> Staging {
        let name = format!("sql-{}", crate::random::hex_digits(12));
        Staging(warehouse.root().join(".staging").join(name))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A task's inputs, the tables among them planned (their snapshot's files named).
struct ResolvedInputs {
    inputs: Vec<(String, Resolved)>,
}

enum Resolved {
    Dataset(String),
    Table(String, Box<SnapshotFiles>),
}

async fn resolve_inputs(
    inputs: &IndexMap<String, String>,
    if_missing: IfMissing,
    ctx: &JobContext,
) -> Result<ResolvedInputs, JobError> {
    let mut resolved = Vec::new();
    for (alias, name) in inputs {
        let input = match Target::of(name) {
            Target::Dataset(path) => Resolved::Dataset(path.to_string()),
            Target::Table(table) => {
                let tables = ctx.tables.get().await?;
                let files = match tables.snapshot_files(table).await {
                    Ok(files) => files,
                    Err(TableError::Missing(_)) if if_missing == IfMissing::Skip => {
                        return Err(JobError::Skipped(format!(
                            "input table {table} does not exist yet"
                        )))
                    }
                    Err(e) => return Err(JobError::from(e).context(format!("reading {table}"))),
                };
                Resolved::Table(table.to_string(), Box::new(files))
            }
        };
        resolved.push((alias.clone(), input));
    }
    Ok(ResolvedInputs { inputs: resolved })
}

impl ResolvedInputs {
    /// A SQL context with every input registered as a lazy scan, its version recorded as
    /// read. Blocking.
    fn register(&self, warehouse: &Warehouse, lineage: &Lineage) -> Result<QueryContext, JobError> {
        let sql = QueryContext::new();
        for (alias, input) in &self.inputs {
            let frame = match input {
                Resolved::Dataset(path) => scan_input(warehouse, path, lineage)?,
                Resolved::Table(name, files) => {
                    let in_input = |e: crate::lake::LakeError| {
                        JobError::from(e).context(format!("reading {name}"))
                    };
                    let frame = scan_snapshot(warehouse, files).map_err(in_input)?;
                    if let Some(snapshot_id) = files.snapshot_id {
                        lineage.read_table(name, snapshot_id);
                    }
                    frame
                }
            };
            sql.register(alias, frame);
        }
        Ok(sql)
    }
}

/// A SQL context with every input registered as a lazy scan of its dataset.
pub(super) fn register_inputs(
    warehouse: &Warehouse,
    inputs: &IndexMap<String, String>,
    lineage: &Lineage,
) -> Result<QueryContext, JobError> {
    let sql = QueryContext::new();
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

/// Checks inputs that must be dataset paths.
pub(super) fn check_inputs(inputs: &IndexMap<String, String>, stage: Stage) -> Vec<String> {
    check_named(inputs, |path| check_path("input", path, stage))
}

/// Checks inputs that may be dataset paths or tables.
fn check_sources(inputs: &IndexMap<String, String>, stage: Stage) -> Vec<String> {
    check_named(inputs, |name| Target::of(name).problem("input", stage))
}

/// Checks that each input's name is a SQL identifier, and its target with `check_target`.
fn check_named(
    inputs: &IndexMap<String, String>,
    check_target: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, target) in inputs {
        let identifier = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            problems.push(format!(
                "input name `{name}` must be a SQL identifier (letters, digits, `_`)"
            ));
        }
        problems.extend(check_target(target));
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
