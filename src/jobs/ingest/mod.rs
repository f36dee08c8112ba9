//! `kind = "ingest"`: raw files (CSV, JSON lines, Parquet) into bronze Parquet datasets.
//!
//! Each table is read, typed by its declared schema (or inferred), stamped with `ingested_at`
//! and a `data_quality_flag` (`valid`, or `missing_values` when a declared column is empty),
//! and written as a new version of its bronze dataset. Rows whose values do not fit the declared
//! types never fail the task: they go to the table's quarantine dataset with their file, line
//! and reason. Records that are not rows at all (a stray quote, a wrong number of fields,
//! invalid UTF-8, a JSON line that does not parse) go to `<quarantine>_lines` likewise. Both are
//! counted in the task's outputs. A file that cannot be read fails the task, naming the file.

mod incremental;
mod records;

use std::time::Instant;

use indexmap::IndexMap;
use polars::prelude::{
    col, concat_str, lit, when, DataType, Expr, IntoLazy, LazyFrame, StrptimeOptions, TimeUnit,
    NULL,
};
use serde::{Deserialize, Serialize};

use std::time::SystemTime;

use incremental::FileMark;
use records::CsvColumns;

use super::sql::check_path;
use super::{Job, JobContext, JobError, Stage};
pub use crate::domain::ColumnType;
use crate::lake::engine::{self, Engine};
use crate::lake::tables::{table_ident, PartitionField, TableError, WriteMode};
use crate::lake::{
    data_files, scan, write_parquet, write_parquet_clustered, Format, PendingVersion, Publication,
    ScanOptions, Warehouse, Written,
};

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
    /// Read only the files of `input` that appeared since the last run, and append their
    /// rows to `table`, exactly once (needs `table`). `output` then holds each run's new rows.
    #[serde(default)]
    pub incremental: bool,
    /// The Iceberg table (`namespace.table`) an incremental ingest appends to; it records the
    /// newest file read in the same commit.
    pub table: Option<String>,
    /// Incremental: the partition fields of `table` when it is created. Otherwise: columns
    /// to lay `output` out by, a folder per value (`order_date=2024-06-15/`), as a `sql`
    /// output's `partition_by`; an `iceberg` task partitioned by them (or by the day, month or
    /// year of such a date) then adds the files as they are instead of rewriting them.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Columns to cluster `output` by: one file, its rows in ascending order of these columns'
    /// values, a row group per value. Filters on them skip the other row groups, and an
    /// `iceberg` task partitioned by them (or by the day, month or year of such a date) adds
    /// each partition's row groups as they are instead of rewriting them. For columns whose
    /// values each hold many rows (small row groups read slowly); the typed rows are held in
    /// memory beside the parsed ones while they are written. Not with `partition_by` on a
    /// dataset.
    #[serde(default)]
    pub cluster_by: Vec<String>,
    /// Incremental: files modified more recently are left for the next run (they may still
    /// be being written). Default `1s`; `0s` for files that appear whole (renamed into place).
    #[serde(default = "default_min_file_age")]
    pub min_file_age: String,
}

fn default_min_file_age() -> String {
    "1s".into()
}

/// How a `boolean` column may spell its values (case does not matter).
const TRUE_WORDS: &[&str] = &["true", "t", "yes", "y", "on", "1"];
const FALSE_WORDS: &[&str] = &["false", "f", "no", "n", "off", "0"];

/// Converts a text column to `column_type`; values that do not convert become null.
fn parse_text(column_type: ColumnType, raw: Expr) -> Expr {
    let lenient = StrptimeOptions { strict: false, ..Default::default() };
    match column_type {
        ColumnType::String => raw,
        ColumnType::Integer => raw.str().strip_chars(lit(NULL)).cast(DataType::Int64),
        ColumnType::Float => raw.str().strip_chars(lit(NULL)).cast(DataType::Float64),
        ColumnType::Boolean => {
            let word = raw.str().strip_chars(lit(NULL)).str().to_lowercase();
            let any_of = |words: &[&str]| {
                words.iter().map(|w| word.clone().eq(lit(*w))).reduce(Expr::or).unwrap()
            };
            when(any_of(TRUE_WORDS))
                .then(lit(true))
                .when(any_of(FALSE_WORDS))
                .then(lit(false))
                .otherwise(lit(NULL).cast(DataType::Boolean))
        }
        ColumnType::Date => {
            raw.str().to_date(StrptimeOptions { format: Some("%Y-%m-%d".into()), ..lenient })
        }
        ColumnType::Datetime => {
            // In UTC: a value with an offset (RFC 3339) is converted, one without is taken
            // as UTC.
            let utc = Some(polars::prelude::TimeZone::UTC);
            raw.str().to_datetime(Some(TimeUnit::Microseconds), utc, lenient, lit("raise"))
        }
    }
}

pub struct Ingest;

impl Job for Ingest {
    const KIND: &'static str = "ingest";
    type Config = IngestConfig;
    type Output = Ingested;

    fn validate(&self, config: &IngestConfig, stage: Stage) -> Vec<String> {
        let mut problems = Vec::new();
        if config.tables.is_empty() {
            problems.push("`tables` must list at least one table".to_string());
        }
        for (name, table) in &config.tables {
            match (&table.table, table.incremental) {
                (Some(target), true) if !stage.defers(target) => {
                    if let Err(e) = table_ident(target) {
                        problems.push(format!("table `{name}`: {e}"));
                    }
                }
                (None, true) => problems.push(format!(
                    "table `{name}`: `incremental` needs `table`, the Iceberg table that records \
                     which files were read"
                )),
                (Some(_), false) => problems.push(format!(
                    "table `{name}`: `table` is for incremental ingests (set `incremental = true`, \
                     or promote `output` with an `iceberg` task)"
                )),
                _ => {}
            }
            if !stage.defers(&table.min_file_age) {
                if let Err(e) = crate::time::parse_duration(&table.min_file_age) {
                    problems.push(format!("table `{name}`: `min_file_age`: {e}"));
                }
            }
            for field in &table.partition_by {
                match PartitionField::parse(field) {
                    Err(e) => problems.push(format!("table `{name}`: {e}")),
                    Ok(f) if !table.incremental && !f.is_column() => problems.push(format!(
                        "table `{name}`: `partition_by` lays out the output dataset and takes \
                         column names (`{}`), not `{field}`: a transform belongs to the \
                         Iceberg table (the `iceberg` task's `partition_by`)",
                        f.column
                    )),
                    Ok(_) => {}
                }
            }
            if !table.cluster_by.is_empty() && !table.partition_by.is_empty() && !table.incremental
            {
                problems.push(format!(
                    "table `{name}`: `cluster_by` and `partition_by` both lay the output out \
                     (one clustered file, or a folder per value): choose one"
                ));
            }
            for column in &table.cluster_by {
                let undeclared = !table.schema.is_empty() && !table.schema.contains_key(column);
                if undeclared {
                    problems.push(format!(
                        "table `{name}`: `cluster_by` names `{column}`, which `schema` does not \
                         declare"
                    ));
                }
            }
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

    async fn run(&self, config: IngestConfig, ctx: JobContext) -> Result<Ingested, JobError> {
        let warehouse = ctx.warehouse.clone();
        let log = ctx.log.clone();
        let ingested_at = crate::time::now_micros();
        let lineage = ctx.lineage.clone();
        // Where each incremental table's folder was read to, as its Iceberg table says.
        let mut marks = IndexMap::new();
        let mut stored = IndexMap::new();
        for (name, table) in config.tables.iter().filter(|(_, t)| t.incremental) {
            let target = table.table.as_deref().unwrap_or_default();
            let summary = match ctx.tables.get().await?.custom_summary(target).await {
                Err(TableError::Missing(_)) => Default::default(),
                other => other?,
            };
            marks.insert(name.clone(), FileMark::from_summary(&summary, &table.input)?);
            stored.insert(name.clone(), summary.get(&FileMark::property(&table.input)).cloned());
        }
        let config = std::sync::Arc::new(config);
        let reading = config.clone();
        let (mut outputs, advanced) = super::blocking(move || {
            let config = reading;
            let mut outputs = Ingested::default();
            let mut advanced = IndexMap::new();
            // Every dataset of every table is published at the end, or none if one fails.
            let mut publication = Publication::default();
            for (name, table) in &config.tables {
                let started = Instant::now();
                let files = match marks.get(name) {
                    Some(mark) => Files::After(mark.as_ref()),
                    None => Files::All,
                };
                let result =
                    ingest_table(&warehouse, table, ingested_at, files, &mut publication, &lineage);
                let (result, mark) = result.map_err(|e| e.context(format!("table `{name}`")))?;
                if let Some(mark) = mark {
                    advanced.insert(name.clone(), mark);
                }
                match result.files {
                    Some(0) => log.info(format!("{name}: no new files in {}", table.input)),
                    _ => log.info(format!(
                        "{name}: {} rows into {}, {} quarantined ({} malformed)",
                        result.rows, table.output, result.quarantined, result.malformed
                    )),
                }
                outputs.rows += result.rows;
                outputs.quarantined += result.quarantined;
                outputs.bytes += result.bytes;
                let result =
                    TableIngested { duration_ms: started.elapsed().as_millis() as u64, ..result };
                outputs.tables.insert(name.clone(), result);
            }
            lineage.wrote_datasets(&publication.commit()?);
            Ok((outputs, advanced))
        })
        .await?;
        for (name, mark) in advanced {
            let table = &config.tables[&name];
            let before = stored.get(&name).cloned().flatten();
            let promoted = append_new_rows(&ctx, table, before, mark).await;
            let snapshot = promoted.map_err(|e| e.context(format!("table `{name}`")))?;
            if let Some(done) = outputs.tables.get_mut(&name) {
                done.snapshot_id = Some(snapshot);
            }
        }
        Ok(outputs)
    }
}

/// Which files of an input a run reads.
enum Files<'a> {
    All,
    /// Those after the mark (an incremental ingest).
    After(Option<&'a FileMark>),
}

/// Appends the run's new rows (the `output` version just published) to the incremental
/// table with the new file mark, provided the mark is still `before`; returns the snapshot.
async fn append_new_rows(
    ctx: &JobContext,
    table: &IngestTable,
    before: Option<String>,
    mark: FileMark,
) -> Result<i64, JobError> {
    let target = table.table.as_deref().unwrap_or_default();
    let partition_by = PartitionField::parse_all(&table.partition_by).map_err(JobError::Config)?;
    let data = ctx.warehouse.dataset(&table.output)?.current()?;
    let property = FileMark::property(&table.input);
    let summary = std::collections::BTreeMap::from([(property.clone(), mark.to_property())]);
    let expected = std::collections::BTreeMap::from([(property, before)]);
    let tables = ctx.tables.get().await?;
    let done = tables
        .promote_expecting(target, &data, &partition_by, WriteMode::Append, &summary, &expected)
        .await?;
    ctx.lineage.wrote_table(target, done.snapshot_id, "append", done.rows, done.files as u64);
    ctx.log.info(format!(
        "{} rows of the new files into {target} (snapshot {}), read up to {}",
        done.rows, done.snapshot_id, mark.path
    ));
    Ok(done.snapshot_id)
}

/// The outputs of an `ingest` task: each table, by name, and the totals.
#[derive(Debug, Default, Serialize)]
pub struct Ingested {
    #[serde(flatten)]
    pub tables: IndexMap<String, TableIngested>,
    pub rows: u64,
    pub quarantined: u64,
    pub bytes: u64,
}

/// One table an `ingest` task read.
#[derive(Debug, Serialize)]
pub struct TableIngested {
    /// Files read (incremental ingests: the new ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// The snapshot an incremental ingest appended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
    pub rows: u64,
    /// Rows set aside: values that did not fit the schema, and malformed records.
    pub quarantined: u64,
    /// Records that could not be read as rows at all (see `records`).
    pub malformed: u64,
    pub bytes: u64,
    pub duration_ms: u64,
}

/// Reads `files` of one table into its datasets (added to `publication`); for an incremental
/// table, also the mark of the newest file read (`None` when there was no new file).
fn ingest_table(
    warehouse: &Warehouse,
    table: &IngestTable,
    ingested_at: i64,
    files: Files,
    publication: &mut Publication,
    lineage: &super::Lineage,
) -> Result<(TableIngested, Option<FileMark>), JobError> {
    let input = warehouse.dataset(&table.input)?;
    let output = warehouse.dataset(&table.output)?;
    let quarantine_path =
        table.quarantine.clone().unwrap_or_else(|| format!("{}_quarantine", table.output));
    let quarantine = warehouse.dataset(&quarantine_path)?;
    let format = match table.format {
        Some(format) => format,
        None => detect_format(&input)?,
    };
    let declared = !table.schema.is_empty();
    lineage.read_dataset(&input)?;
    let mut new_mark: Option<(FileMark, u64)> = None;
    // CSV and JSON lines are read record by record, so a malformed record is set aside with
    // its file and line; with a schema every value is read as text and typed below, so a
    // value that does not fit quarantines its row instead of failing the read.
    let (raw, records) = match format {
        Format::Parquet if matches!(files, Files::After(_)) => {
            return Err(JobError::Config(
                "incremental ingests read CSV or JSON lines files, not Parquet".into(),
            ))
        }
        Format::Parquet => {
            (scan(&input, &ScanOptions { format: Some(format), schema: None })?, None)
        }
        Format::Csv | Format::Jsonl => {
            let mut sources = sources(&input, &table.input, format)?;
            if let Files::After(mark) = files {
                let min_age = crate::time::parse_duration(&table.min_file_age)
                    .map_err(|e| JobError::Config(format!("`min_file_age`: {e}")))?;
                let (new, newest) =
                    incremental::new_files(sources, mark, SystemTime::now(), min_age)?;
                let Some(newest) = newest else {
                    let nothing = TableIngested {
                        files: Some(0),
                        snapshot_id: None,
                        rows: 0,
                        quarantined: 0,
                        malformed: 0,
                        bytes: 0,
                        duration_ms: 0,
                    };
                    return Ok((nothing, None));
                };
                sources = new;
                new_mark = Some((newest, sources.len() as u64));
            }
            let mut records = match format {
                Format::Csv if declared => {
                    records::read_csv(&sources, CsvColumns::Typed(read_typed(&table.schema)))?
                }
                Format::Csv => records::read_csv(&sources, CsvColumns::Inferred)?,
                _ => records::read_json_lines(&sources)?,
            };
            let frame = std::mem::take(&mut records.frame);
            (with_declared_columns(frame, &table.schema)?.lazy(), Some(records))
        }
    };
    let stamp = lit(ingested_at)
        .cast(DataType::Datetime(TimeUnit::Microseconds, None))
        .alias("ingested_at");
    // The columns the reader typed already need no conversion (and cannot fail one).
    let typed = records.as_ref().map(|r| r.typed.as_slice()).unwrap_or_default();
    let mut to_convert = table.schema.clone();
    to_convert.retain(|column, _| !typed.contains(column));
    let (valid, rejected) = match declared {
        false => (raw, None),
        true if to_convert.is_empty() => {
            let none = raw.clone().limit(0).with_column(lit("").alias("_error"));
            (raw, Some(none))
        }
        true => split_by_schema(raw, &to_convert)?,
    };
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
    let origin = [records::FILE_COLUMN, records::LINE_COLUMN];
    let valid = drop_if_present(valid, &origin)?;
    let mut publish = |(version, written): (PendingVersion, Written)| {
        publication.add(version, written);
        written
    };
    let valid = valid.with_columns([stamp.clone(), flag]);
    let layout: &[String] = if table.incremental { &[] } else { &table.partition_by };
    let written = if table.cluster_by.is_empty() {
        publish(write_parquet(valid, &output, layout, Engine::Streaming)?)
    } else {
        publish(write_parquet_clustered(valid, &output, &table.cluster_by)?)
    };
    let mut quarantined = 0;
    if let Some(rejected) = rejected {
        let rejected = rejected.with_column(stamp);
        quarantined += publish(write_parquet(rejected, &quarantine, &[], Engine::Streaming)?).rows;
    }
    let malformed = records.as_ref().map_or(0, |r| r.malformed.len() as u64);
    if let Some(records) = records.filter(|r| !r.malformed.is_empty()) {
        let lines = warehouse.dataset(&format!("{quarantine_path}_lines"))?;
        publish(write_parquet(records.malformed_frame()?.lazy(), &lines, &[], Engine::Streaming)?);
    }
    let ingested = TableIngested {
        files: new_mark.as_ref().map(|(_, files)| *files),
        snapshot_id: None,
        rows: written.rows,
        quarantined: quarantined + malformed,
        malformed,
        bytes: written.bytes,
        duration_ms: 0,
    };
    Ok((ingested, new_mark.map(|(mark, _)| mark)))
}

/// The declared columns the CSV reader can type itself exactly as [`parse_text`] would: whole
/// numbers, decimals and text. (Its dates and booleans accept other spellings than
/// `parse_text`, so those are typed after the read.)
fn read_typed(schema: &IndexMap<String, ColumnType>) -> Vec<(String, DataType)> {
    schema
        .iter()
        .filter_map(|(column, column_type)| {
            let polars_type = match column_type {
                ColumnType::Integer => DataType::Int64,
                ColumnType::Float => DataType::Float64,
                ColumnType::String => DataType::String,
                ColumnType::Date | ColumnType::Boolean | ColumnType::Datetime => return None,
            };
            Some((column.clone(), polars_type))
        })
        .collect()
}

/// The files of `input` to read as `format`, each with the name it is reported under.
fn sources(
    input: &crate::lake::Dataset,
    name: &str,
    format: Format,
) -> Result<Vec<records::Source>, JobError> {
    let root = input.current()?;
    if root.is_file() {
        return Ok(vec![records::Source { path: root, name: name.to_string() }]);
    }
    let files = data_files(&root)?;
    let sources: Vec<records::Source> = files
        .into_iter()
        .filter(|path| Format::of(path) == Some(format))
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap_or(&path).display().to_string();
            records::Source { name: format!("{name}/{relative}"), path }
        })
        .collect();
    if sources.is_empty() {
        return Err(JobError::Failed(format!("no {format:?} files in `{name}`")));
    }
    Ok(sources)
}

/// `frame`, or an empty frame of the declared columns (as text) if the input had none (an
/// empty file). A declared column the input lacks is an error naming it.
fn with_declared_columns(
    frame: polars::prelude::DataFrame,
    schema: &IndexMap<String, ColumnType>,
) -> Result<polars::prelude::DataFrame, JobError> {
    if frame.width() == 0 {
        let fields = schema
            .keys()
            .map(|c| c.as_str())
            .chain([records::FILE_COLUMN])
            .map(|c| polars::prelude::Field::new(c.into(), DataType::String))
            .chain([polars::prelude::Field::new(records::LINE_COLUMN.into(), DataType::Int64)]);
        return Ok(polars::prelude::DataFrame::empty_with_schema(&fields.collect()));
    }
    let present: Vec<String> = frame.get_column_names().iter().map(|c| c.to_string()).collect();
    if let Some(absent) = schema.keys().find(|c| !present.contains(c)) {
        return Err(JobError::Failed(format!(
            "the schema declares `{absent}`, which the input does not have (its columns: {})",
            present.join(", ")
        )));
    }
    Ok(frame)
}

fn drop_if_present(frame: LazyFrame, names: &[&str]) -> Result<LazyFrame, JobError> {
    let mut frame = frame;
    let schema = frame.collect_schema()?;
    let present: Vec<String> =
        names.iter().filter(|n| schema.contains(n)).map(|n| n.to_string()).collect();
    Ok(if present.is_empty() { frame } else { drop_columns(frame, present) })
}

fn detect_format(input: &crate::lake::Dataset) -> Result<Format, JobError> {
    let path = input.current()?;
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

/// The scratch column of [`split_by_schema`] saying whether a row's values all fit.
const FITS: &str = "__fits";

/// Splits rows into those whose declared columns all convert, typed, and the others, as read,
/// with an `_error` column naming the columns that did not convert. Each column is converted
/// once, into a scratch column, and both the check and the typed output use that result,
/// which is computed here (in memory, beside the text it was converted from).
fn split_by_schema(
    raw: LazyFrame,
    schema: &IndexMap<String, ColumnType>,
) -> Result<(LazyFrame, Option<LazyFrame>), JobError> {
    let text = |c: &str| col(c).cast(DataType::String);
    let scratch = |c: &str| format!("__typed_{c}");
    let converted: Vec<Expr> =
        schema.iter().map(|(c, t)| parse_text(*t, text(c)).alias(scratch(c).as_str())).collect();
    let bad = |c: &str| text(c).is_not_null().and(col(scratch(c).as_str()).is_null());
    let failures: Vec<Expr> = schema
        .iter()
        .map(|(c, t)| {
            when(bad(c)).then(lit(format!("{c}: not a valid {}", t.name()))).otherwise(lit(NULL))
        })
        .collect();
    let fits = schema.keys().map(|c| bad(c).not()).reduce(Expr::and).unwrap_or(lit(true));
    // Converted once, on the streaming engine (whose scratch values are a morsel's, not the
    // whole column's), into columns beside the rows: both the valid rows and the rejected ones
    // are taken from this result. The reasons are spelled for the rejected rows alone.
    let scratch_names: Vec<String> = schema.keys().map(|c| scratch(c)).collect();
    let mut added: Vec<Expr> = scratch_names.iter().map(|c| col(c.as_str())).collect();
    added.push(fits.alias(FITS));
    let rows = raw.collect()?;
    let conversion = rows.clone().lazy().with_columns(converted).select(added);
    let added = engine::collect(conversion, Engine::Streaming)?;
    let checked = rows.hstack(added.columns())?.lazy();
    let typed: Vec<Expr> =
        schema.keys().map(|c| col(scratch(c).as_str()).alias(c.as_str())).collect();
    let mut dropped = scratch_names;
    dropped.push(FITS.to_string());
    let valid =
        drop_columns(checked.clone().filter(col(FITS)).with_columns(typed), dropped.clone());
    let reasons = concat_str(failures, "; ", true).alias("_error");
    let rejected = drop_columns(checked.filter(col(FITS).not()).with_column(reasons), dropped);
    Ok((valid, Some(rejected)))
}

fn drop_columns(frame: LazyFrame, names: Vec<String>) -> LazyFrame {
    let names: Vec<polars::prelude::PlSmallStr> = names.into_iter().map(Into::into).collect();
    frame.drop(polars::prelude::Selector::ByName {
        names: std::sync::Arc::from(names),
        strict: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(table: &str) -> Vec<String> {
        let config: IngestConfig = toml::from_str(&format!("[tables.orders]\n{table}")).unwrap();
        Ingest.validate(&config, Stage::Load)
    }

    #[test]
    fn cluster_by_names_declared_columns_and_excludes_a_hive_layout() {
        let base = "input = \"raw/orders\"\noutput = \"bronze/orders\"\n";
        let declared = "schema = { order_date = \"date\" }\n";
        assert!(problems(&format!("{base}{declared}cluster_by = [\"order_date\"]")).is_empty());
        assert!(problems(&format!("{base}cluster_by = [\"anything\"]")).is_empty(), "inferred");
        let undeclared = problems(&format!("{base}{declared}cluster_by = [\"order_day\"]"));
        assert_eq!(
            undeclared,
            ["table `orders`: `cluster_by` names `order_day`, which `schema` does not declare"]
        );
        let both = problems(&format!(
            "{base}{declared}cluster_by = [\"order_date\"]\npartition_by = [\"order_date\"]"
        ));
        assert_eq!(both.len(), 1);
        assert!(both[0].contains("`cluster_by` and `partition_by` both lay the output out"));
    }
}
