//! `kind = "ingest"`: raw files (CSV, JSON lines, Parquet) into bronze Parquet datasets.
//!
//! Each table is read, typed by its declared schema (or inferred), stamped with `ingested_at`
//! and a `data_quality_flag` (`valid`, or `missing_values` when a declared column is empty),
//! and written as a new version of its bronze dataset. Rows whose values do not fit the declared
//! types, and JSON lines that do not parse, never fail the task: they go to the table's
//! quarantine dataset with the reason, and are counted in the task's outputs.

use std::io::BufRead;
use std::time::Instant;

use indexmap::IndexMap;
use polars::prelude::{
    col, concat_str, lit, when, DataType, Expr, IntoLazy, JsonFormat, JsonReader, LazyFrame,
    SerReader, StrptimeOptions, TimeUnit, NULL,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::sql::check_path;
use super::{Job, JobContext, JobError, Outputs, Stage};
use crate::lake::{scan, sink_parquet, Format, ScanOptions, Warehouse};

/// Fields of an `ingest` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Table name → what to read and where to write it.
    pub tables: IndexMap<String, IngestTable>,
}

/// One table to ingest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestTable {
    /// Dataset or file in the warehouse to read, e.g. `raw/orders`.
    pub input: String,
    /// Bronze dataset to write, e.g. `bronze/orders`.
    pub output: String,
    /// `csv`, `jsonl` or `parquet`; default from the file extension.
    pub format: Option<Format>,
    /// Column → type: `string`, `integer`, `float`, `boolean`, `date` (YYYY-MM-DD) or
    /// `datetime`. Columns not listed are kept as read; without a schema, types are inferred.
    #[serde(default)]
    pub schema: IndexMap<String, ColumnType>,
    /// Dataset for rows that do not fit the schema; default `<output>_quarantine`.
    pub quarantine: Option<String>,
}

/// Column types a schema can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    String,
    Integer,
    Float,
    Boolean,
    Date,
    Datetime,
}

impl ColumnType {
    fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Integer => "integer",
            ColumnType::Float => "float",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Datetime => "datetime",
        }
    }

    /// Converts a text column to this type; values that do not convert become null.
    fn parse(self, raw: Expr) -> Expr {
        let lenient = StrptimeOptions { strict: false, ..Default::default() };
        match self {
            ColumnType::String => raw,
            ColumnType::Integer => raw.str().strip_chars(lit(NULL)).cast(DataType::Int64),
            ColumnType::Float => raw.str().strip_chars(lit(NULL)).cast(DataType::Float64),
            ColumnType::Boolean => raw.str().to_lowercase().cast(DataType::Boolean),
            ColumnType::Date => {
                raw.str().to_date(StrptimeOptions { format: Some("%Y-%m-%d".into()), ..lenient })
            }
            ColumnType::Datetime => {
                raw.str().to_datetime(Some(TimeUnit::Microseconds), None, lenient, lit("raise"))
            }
        }
    }
}

pub struct Ingest;

impl Job for Ingest {
    const KIND: &'static str = "ingest";
    type Config = IngestConfig;

    fn validate(&self, config: &IngestConfig, stage: Stage) -> Vec<String> {
        let mut problems = Vec::new();
        if config.tables.is_empty() {
            problems.push("`tables` must list at least one table".to_string());
        }
        for (name, table) in &config.tables {
            for (what, path) in [
                ("input", Some(&table.input)),
                ("output", Some(&table.output)),
                ("quarantine", table.quarantine.as_ref()),
            ] {
                if let Some(problem) = path.and_then(|p| check_path(what, p, stage)) {
                    problems.push(format!("table `{name}`: {problem}"));
                }
            }
        }
        problems
    }

    async fn run(&self, config: IngestConfig, ctx: JobContext) -> Result<Outputs, JobError> {
        let warehouse = ctx.warehouse.clone();
        let log = ctx.log.clone();
        let ingested_at = crate::time::now_micros();
        super::blocking(move || {
            let mut outputs = serde_json::Map::new();
            let (mut rows, mut quarantined, mut bytes) = (0, 0, 0);
            for (name, table) in &config.tables {
                let started = Instant::now();
                let result = ingest_table(&warehouse, table, ingested_at).map_err(|e| match e {
                    JobError::Failed(m) => JobError::Failed(format!("table `{name}`: {m}")),
                    other => other,
                })?;
                log.info(format!(
                    "{name}: {} rows into {}, {} quarantined",
                    result.rows, table.output, result.quarantined
                ));
                rows += result.rows;
                quarantined += result.quarantined;
                bytes += result.bytes;
                outputs.insert(
                    name.clone(),
                    json!({ "rows": result.rows, "quarantined": result.quarantined, "bytes": result.bytes,
                            "duration_ms": started.elapsed().as_millis() as u64 }),
                );
            }
            outputs.insert("rows".into(), Value::from(rows));
            outputs.insert("quarantined".into(), Value::from(quarantined));
            outputs.insert("bytes".into(), Value::from(bytes));
            Ok(outputs)
        })
        .await
    }
}

struct Ingested {
    rows: u64,
    quarantined: u64,
    bytes: u64,
}

fn ingest_table(
    warehouse: &Warehouse,
    table: &IngestTable,
    ingested_at: i64,
) -> Result<Ingested, JobError> {
    let input = warehouse.dataset(&table.input).map_err(|e| JobError::Config(e.to_string()))?;
    let output = warehouse.dataset(&table.output).map_err(|e| JobError::Config(e.to_string()))?;
    let quarantine_path =
        table.quarantine.clone().unwrap_or_else(|| format!("{}_quarantine", table.output));
    let quarantine =
        warehouse.dataset(&quarantine_path).map_err(|e| JobError::Config(e.to_string()))?;
    let format = match table.format {
        Some(format) => format,
        None => detect_format(&input)?,
    };
    let declared = !table.schema.is_empty();
    // With a schema, read text and convert it ourselves, so a bad value quarantines its row
    // instead of failing the read.
    let (raw, bad_lines) = match format {
        Format::Jsonl => read_json_lines(&input.current().map_err(JobError::failed)?)?,
        Format::Csv if declared => (scan_all_text(&input)?, Vec::new()),
        _ => (
            scan(&input, &ScanOptions { format: Some(format), schema: None })
                .map_err(JobError::failed)?,
            Vec::new(),
        ),
    };
    let stamp = lit(ingested_at)
        .cast(DataType::Datetime(TimeUnit::Microseconds, None))
        .alias("ingested_at");
    let (valid, rejected) =
        if declared { split_by_schema(raw, &table.schema) } else { (raw, None) };
    let missing = table
        .schema
        .keys()
        .map(|c| col(c.as_str()).is_null())
        .reduce(|a, b| a.or(b))
        .unwrap_or(lit(false));
    let flag = when(missing)
        .then(lit("missing_values"))
        .otherwise(lit("valid"))
        .alias("data_quality_flag");
    let written = sink_parquet(valid.with_columns([stamp.clone(), flag]), &output, &[])
        .map_err(JobError::failed)?;

    let mut quarantined = bad_lines.len() as u64;
    if let Some(rejected) = rejected {
        let count = sink_parquet(rejected.with_column(stamp), &quarantine, &[])
            .map_err(JobError::failed)?;
        quarantined += count.rows;
    }
    if !bad_lines.is_empty() {
        let lines = polars::df!("_raw" => &bad_lines, "_error" => vec!["malformed JSON line"; bad_lines.len()])
            .map_err(JobError::failed)?;
        sink_parquet(
            lines.lazy(),
            &warehouse.dataset(&format!("{quarantine_path}_lines")).map_err(JobError::failed)?,
            &[],
        )
        .map_err(JobError::failed)?;
    }
    Ok(Ingested { rows: written.rows, quarantined, bytes: written.bytes })
}

fn detect_format(input: &crate::lake::Dataset) -> Result<Format, JobError> {
    let path = input.current().map_err(JobError::failed)?;
    let name = if path.is_file() {
        path
    } else {
        std::fs::read_dir(&path)
            .map_err(JobError::failed)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some())
            .ok_or_else(|| JobError::Failed(format!("no data files in {}", path.display())))?
    };
    match name.extension().and_then(|e| e.to_str()) {
        Some("csv") => Ok(Format::Csv),
        Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
        Some("parquet") => Ok(Format::Parquet),
        other => Err(JobError::Config(format!(
            "cannot tell the format of `{}` ({other:?}); set `format`",
            name.display()
        ))),
    }
}

/// A CSV dataset with every column read as text.
fn scan_all_text(input: &crate::lake::Dataset) -> Result<LazyFrame, JobError> {
    let probe = scan(input, &ScanOptions { format: Some(Format::Csv), schema: None })
        .map_err(JobError::failed)?;
    let names = probe.clone().collect_schema().map_err(JobError::failed)?;
    let text: polars::prelude::Schema = names
        .iter_names()
        .map(|n| polars::prelude::Field::new(n.clone(), DataType::String))
        .collect();
    scan(input, &ScanOptions { format: Some(Format::Csv), schema: Some(std::sync::Arc::new(text)) })
        .map_err(JobError::failed)
}

/// Splits rows into those whose declared columns all convert, typed, and the others, as read,
/// with an `_error` column naming the columns that did not convert. Each column is converted
/// once, into a scratch column, and both the check and the typed output use that result.
fn split_by_schema(
    raw: LazyFrame,
    schema: &IndexMap<String, ColumnType>,
) -> (LazyFrame, Option<LazyFrame>) {
    let text = |c: &str| col(c).cast(DataType::String);
    let scratch = |c: &str| format!("__typed_{c}");
    let converted: Vec<Expr> =
        schema.iter().map(|(c, t)| t.parse(text(c)).alias(scratch(c).as_str())).collect();
    let failures: Vec<Expr> = schema
        .iter()
        .map(|(c, t)| {
            let bad = text(c).is_not_null().and(col(scratch(c).as_str()).is_null());
            when(bad).then(lit(format!("{c}: not a valid {}", t.name()))).otherwise(lit(NULL))
        })
        .collect();
    let checked =
        raw.with_columns(converted).with_column(concat_str(failures, "; ", true).alias("_error"));
    let ok = col("_error").eq(lit(""));
    let scratch_names: Vec<String> = schema.keys().map(|c| scratch(c)).collect();
    let typed: Vec<Expr> =
        schema.keys().map(|c| col(scratch(c).as_str()).alias(c.as_str())).collect();
    let mut dropped_from_valid = scratch_names.clone();
    dropped_from_valid.push("_error".to_string());
    let valid =
        drop_columns(checked.clone().filter(ok.clone()).with_columns(typed), dropped_from_valid);
    let rejected = drop_columns(checked.filter(ok.not()), scratch_names);
    (valid, Some(rejected))
}

fn drop_columns(frame: LazyFrame, names: Vec<String>) -> LazyFrame {
    let names: Vec<polars::prelude::PlSmallStr> = names.into_iter().map(Into::into).collect();
    frame.drop(polars::prelude::Selector::ByName {
        names: std::sync::Arc::from(names),
        strict: true,
    })
}

/// Reads JSON lines, setting aside lines that are not JSON objects.
fn read_json_lines(path: &std::path::Path) -> Result<(LazyFrame, Vec<String>), JobError> {
    let files: Vec<std::path::PathBuf> = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(JobError::failed)?
            .flatten()
            .map(|e| e.path())
            .collect();
        files.retain(|p| {
            matches!(p.extension().and_then(|e| e.to_str()), Some("jsonl" | "ndjson" | "json"))
        });
        files.sort();
        files
    };
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for file in files {
        let reader = std::io::BufReader::new(std::fs::File::open(&file).map_err(JobError::failed)?);
        for line in reader.lines() {
            let line = line.map_err(JobError::failed)?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(_)) => {
                    good.extend_from_slice(line.as_bytes());
                    good.push(b'\n');
                }
                _ => bad.push(line),
            }
        }
    }
    let frame = if good.is_empty() {
        polars::prelude::DataFrame::empty()
    } else {
        JsonReader::new(std::io::Cursor::new(good))
            .with_json_format(JsonFormat::JsonLines)
            .finish()
            .map_err(JobError::failed)?
    };
    Ok((frame.lazy(), bad))
}
