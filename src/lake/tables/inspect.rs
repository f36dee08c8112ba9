//! Reading tables back: their description, snapshot history, and scans at any snapshot with a
//! filter (partition pruning plans only the data files whose partitions can match).

use arrow_array::RecordBatch;
use futures::TryStreamExt;
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::expr::{Predicate, Reference};
use iceberg::scan::{FileScanTask, FileScanTaskStream};
use iceberg::spec::{
    Datum, Literal, ManifestContentType, PrimitiveLiteral, PrimitiveType, Schema, Transform, Type,
};
use iceberg::table::Table;
use serde::Serialize;

use super::{TableError, Tables};

#[derive(Debug, Serialize)]
pub struct TableInfo {
    pub name: String,
    pub location: String,
    pub format_version: String,
    /// `name: type` per column, with `?` for nullable ones.
    pub columns: Vec<String>,
    pub partition_spec: Vec<String>,
    pub properties: Vec<(String, String)>,
    pub current_snapshot: Option<i64>,
    pub data_files: u64,
    pub rows: u64,
}

#[derive(Debug, Serialize)]
pub struct SnapshotInfo {
    pub snapshot_id: i64,
    pub parent_id: Option<i64>,
    pub timestamp_ms: i64,
    pub operation: String,
    pub added_files: u64,
    pub removed_files: u64,
    pub added_rows: u64,
    pub removed_rows: u64,
    pub total_rows: u64,
}

/// The rows, files and bytes of one partition of a table's current snapshot.
#[derive(Debug, Serialize)]
pub struct PartitionInfo {
    /// `order_date_day=2024-01-05, …`; empty for an unpartitioned table.
    pub partition: String,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
}

/// One schema of a table's history.
#[derive(Debug, Serialize)]
pub struct SchemaInfo {
    pub schema_id: i32,
    pub current: bool,
    /// `name: type`, with `?` for nullable ones.
    pub columns: Vec<String>,
}

/// Which rows a scan reads.
#[derive(Debug, Default, Clone)]
pub struct ScanRequest {
    pub snapshot_id: Option<i64>,
    /// The snapshot current at this time (milliseconds since the epoch).
    pub as_of_ms: Option<i64>,
    /// `column op value [and …]` with `=`, `!=`, `<`, `<=`, `>`, `>=`.
    pub filter: Option<String>,
}

/// A scan's rows and how many data files it planned, out of the snapshot's total.
pub struct ScanResult {
    pub batches: Vec<RecordBatch>,
    pub planned_files: usize,
    pub total_files: u64,
    pub snapshot_id: Option<i64>,
}

pub(super) fn summary_number(snapshot: &iceberg::spec::Snapshot, key: &str) -> u64 {
    snapshot.summary().additional_properties.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl Tables {
    pub async fn describe(&self, name: &str) -> Result<TableInfo, TableError> {
        let table = self.load(name).await?;
        let metadata = table.metadata();
        let schema = metadata.current_schema();
        let columns = column_list(schema);
        let partition_spec = metadata
            .default_partition_spec()
            .fields()
            .iter()
            .map(|f| {
                let source = schema.field_by_id(f.source_id).map_or("?".into(), |s| s.name.clone());
                format!("{} = {}({source})", f.name, f.transform)
            })
            .collect();
        let mut properties: Vec<(String, String)> =
            metadata.properties().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        properties.sort();
        let current = metadata.current_snapshot();
        Ok(TableInfo {
            name: name.to_string(),
            location: metadata.location().to_string(),
            format_version: format!("{:?}", metadata.format_version()),
            columns,
            partition_spec,
            properties,
            current_snapshot: current.map(|s| s.snapshot_id()),
            data_files: current.map_or(0, |s| summary_number(s, "total-data-files")),
            rows: current.map_or(0, |s| summary_number(s, "total-records")),
        })
    }

    /// Every schema the table has had, oldest first.
    pub async fn schemas(&self, name: &str) -> Result<Vec<SchemaInfo>, TableError> {
        let table = self.load(name).await?;
        let metadata = table.metadata();
        let current = metadata.current_schema_id();
        let mut schemas: Vec<SchemaInfo> = metadata
            .schemas_iter()
            .map(|schema| SchemaInfo {
                schema_id: schema.schema_id(),
                current: schema.schema_id() == current,
                columns: column_list(schema),
            })
            .collect();
        schemas.sort_by_key(|s| s.schema_id);
        Ok(schemas)
    }

    /// The partitions of the current snapshot with their rows, files and bytes, in order.
    pub async fn partitions(&self, name: &str) -> Result<Vec<PartitionInfo>, TableError> {
        let table = self.load(name).await?;
        let metadata = table.metadata();
        let Some(snapshot) = metadata.current_snapshot() else { return Ok(Vec::new()) };
        let list = table.manifest_list_reader(snapshot).load().await?;
        let mut partitions: std::collections::BTreeMap<String, PartitionInfo> = Default::default();
        for manifest in list.entries() {
            if manifest.content != ManifestContentType::Data {
                continue;
            }
            let loaded = manifest.load_manifest(table.file_io()).await?;
            let spec = loaded.metadata().partition_spec();
            let schema = loaded.metadata().schema();
            for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
                let file = entry.data_file();
                let key = spec
                    .fields()
                    .iter()
                    .zip(file.partition().iter())
                    .map(|(field, value)| {
                        let source =
                            schema.field_by_id(field.source_id).map(|f| f.field_type.as_ref());
                        format!(
                            "{}={}",
                            field.name,
                            partition_value(field.transform, source, value)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let info = partitions.entry(key.clone()).or_insert(PartitionInfo {
                    partition: key,
                    rows: 0,
                    files: 0,
                    bytes: 0,
                });
                info.rows += file.record_count();
                info.files += 1;
                info.bytes += file.file_size_in_bytes();
            }
        }
        Ok(partitions.into_values().collect())
    }

    /// Snapshots, oldest first.
    pub async fn history(&self, name: &str) -> Result<Vec<SnapshotInfo>, TableError> {
        let table = self.load(name).await?;
        let mut snapshots: Vec<SnapshotInfo> = table
            .metadata()
            .snapshots()
            .map(|s| SnapshotInfo {
                snapshot_id: s.snapshot_id(),
                parent_id: s.parent_snapshot_id(),
                timestamp_ms: s.timestamp_ms(),
                operation: s.summary().operation.as_str().to_string(),
                added_files: summary_number(s, "added-data-files"),
                removed_files: summary_number(s, "deleted-data-files"),
                added_rows: summary_number(s, "added-records"),
                removed_rows: summary_number(s, "deleted-records"),
                total_rows: summary_number(s, "total-records"),
            })
            .collect();
        snapshots.sort_by_key(|s| (s.timestamp_ms, s.snapshot_id));
        Ok(snapshots)
    }

    pub async fn scan(&self, name: &str, request: &ScanRequest) -> Result<ScanResult, TableError> {
        let table = self.load(name).await?;
        let snapshot_id = pick_snapshot(&table, name, request.snapshot_id, request.as_of_ms)?;
        let Some(snapshot_id) = snapshot_id else {
            return Ok(ScanResult {
                batches: Vec::new(),
                planned_files: 0,
                total_files: 0,
                snapshot_id: None,
            });
        };
        let snapshot = table.metadata().snapshot_by_id(snapshot_id).cloned();
        let total_files = snapshot.as_ref().map_or(0, |s| summary_number(s, "total-data-files"));
        let schema = match &snapshot {
            Some(s) => s.schema(table.metadata())?,
            None => table.metadata().current_schema().clone(),
        };
        let mut builder = table.scan().snapshot_id(snapshot_id);
        if let Some(filter) = &request.filter {
            builder = builder.with_filter(parse_filter(filter, &schema)?);
        }
        let scan = builder.build()?;
        // Plan once, count the planned files, and read exactly those (`to_arrow` would plan
        // again, reading the manifests a second time).
        let planned: Vec<FileScanTask> = scan.plan_files().await?.try_collect().await?;
        let planned_files = planned.len();
        let tasks: FileScanTaskStream =
            Box::pin(futures::stream::iter(planned.into_iter().map(Ok)));
        let reader =
            ArrowReaderBuilder::new(table.file_io().clone(), iceberg::Runtime::try_current()?);
        let mut batches: Vec<RecordBatch> =
            reader.build().read(tasks)?.stream().try_collect().await?;
        // Time travel shows the schema of its snapshot; the current data shows the table's
        // current schema (renamed and added columns included).
        let current = table.metadata().current_schema();
        let reading_current = request.snapshot_id.is_none() && request.as_of_ms.is_none();
        if reading_current && current.schema_id() != schema.schema_id() {
            batches =
                batches.iter().map(|b| project(b, &schema, current)).collect::<Result<_, _>>()?;
        }
        Ok(ScanResult { batches, planned_files, total_files, snapshot_id: Some(snapshot_id) })
    }
}

/// `name: type` per column, with `?` for nullable ones.
fn column_list(schema: &Schema) -> Vec<String> {
    schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| format!("{}: {}{}", f.name, f.field_type, if f.required { "" } else { "?" }))
        .collect()
}

/// A partition value for people: days, months, years and hours as dates, the rest as is.
fn partition_value(transform: Transform, source: Option<&Type>, value: Option<&Literal>) -> String {
    let Some(Literal::Primitive(value)) = value else { return "null".into() };
    let number = match value {
        PrimitiveLiteral::Int(n) => Some(i64::from(*n)),
        PrimitiveLiteral::Long(n) => Some(*n),
        _ => None,
    };
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let date_source = matches!(source, Some(Type::Primitive(PrimitiveType::Date)));
    match (transform, number) {
        (Transform::Day, Some(days)) => (epoch + chrono::Days::new(days.max(0) as u64)).to_string(),
        (Transform::Identity, Some(days)) if date_source => {
            (epoch + chrono::Days::new(days.max(0) as u64)).to_string()
        }
        (Transform::Month, Some(months)) => {
            format!("{:04}-{:02}", 1970 + months.div_euclid(12), months.rem_euclid(12) + 1)
        }
        (Transform::Year, Some(years)) => (1970 + years).to_string(),
        (Transform::Hour, Some(hours)) => {
            crate::time::from_micros(hours * 3_600_000_000).format("%Y-%m-%d-%H").to_string()
        }
        (_, Some(n)) => n.to_string(),
        _ => match value {
            PrimitiveLiteral::String(s) => s.clone(),
            PrimitiveLiteral::Boolean(b) => b.to_string(),
            PrimitiveLiteral::Double(d) => d.to_string(),
            PrimitiveLiteral::Float(f) => f.to_string(),
            other => format!("{other:?}"),
        },
    }
}

/// Re-labels a batch read with schema `from` as schema `to`: columns matched by field id, so a
/// renamed column keeps its data; a column `from` lacks is all nulls.
fn project(batch: &RecordBatch, from: &Schema, to: &Schema) -> Result<RecordBatch, TableError> {
    let target = std::sync::Arc::new(iceberg::arrow::schema_to_arrow_schema(to)?);
    let columns = to
        .as_struct()
        .fields()
        .iter()
        .zip(target.fields())
        .map(|(field, arrow_field)| {
            let source = from.field_by_id(field.id).and_then(|f| batch.column_by_name(&f.name));
            match source {
                Some(column) if column.data_type() == arrow_field.data_type() => Ok(column.clone()),
                Some(column) => Ok(arrow_cast::cast(column, arrow_field.data_type())?),
                None => Ok(arrow_array::new_null_array(arrow_field.data_type(), batch.num_rows())),
            }
        })
        .collect::<Result<Vec<_>, TableError>>()?;
    Ok(RecordBatch::try_new(target, columns)?)
}

/// The snapshot a read at `snapshot_id` or as of `as_of_ms` (milliseconds since the epoch)
/// sees; the current one when neither is given (`None`: the table has no data yet).
pub(super) fn pick_snapshot(
    table: &Table,
    name: &str,
    snapshot_id: Option<i64>,
    as_of_ms: Option<i64>,
) -> Result<Option<i64>, TableError> {
    let metadata = table.metadata();
    match (snapshot_id, as_of_ms) {
        (Some(id), _) => match metadata.snapshot_by_id(id) {
            Some(_) => Ok(Some(id)),
            None => Err(TableError::Invalid(format!(
                "table {name} has no snapshot {id} (`lakeward tables history {name}` lists them)"
            ))),
        },
        (None, Some(at)) => metadata
            .history()
            .iter()
            .filter(|entry| entry.timestamp_ms <= at)
            .max_by_key(|entry| entry.timestamp_ms)
            .map(|entry| Some(entry.snapshot_id))
            .ok_or_else(|| {
                TableError::Invalid(format!("table {name} had no snapshot at that time"))
            }),
        (None, None) => Ok(metadata.current_snapshot_id()),
    }
}

/// Parses `column op value [and column op value …]` against `schema`.
pub fn parse_filter(text: &str, schema: &Schema) -> Result<Predicate, TableError> {
    let bad = |why: String| TableError::Invalid(format!("invalid filter `{text}`: {why}"));
    let mut predicate: Option<Predicate> = None;
    for clause in split_and(text) {
        let (column, op, value) = split_clause(clause).ok_or_else(|| {
            bad(format!("`{clause}` is not `column op value` (op: = != < <= > >=)"))
        })?;
        let next = comparison(schema, column, op, value).map_err(bad)?;
        predicate = Some(match predicate {
            Some(p) => p.and(next),
            None => next,
        });
    }
    predicate.ok_or_else(|| bad("empty".into()))
}

/// `column op value` as an Iceberg predicate, `value` read as the column's type (a date alone
/// is midnight for a timestamp column); `op` is one of `=`, `!=`, `<`, `<=`, `>`, `>=`.
pub fn comparison(
    schema: &Schema,
    column: &str,
    op: &str,
    value: &str,
) -> Result<Predicate, String> {
    let field = schema.field_by_name(column).ok_or_else(|| format!("no column `{column}`"))?;
    let Type::Primitive(ty) = field.field_type.as_ref() else {
        return Err(format!("column `{column}` is not a primitive column"));
    };
    let datum = datum(ty, value).map_err(|e| format!("`{value}` for `{column}`: {e}"))?;
    let term = Reference::new(column);
    Ok(match op {
        "=" => term.equal_to(datum),
        "!=" => term.not_equal_to(datum),
        "<" => term.less_than(datum),
        "<=" => term.less_than_or_equal_to(datum),
        ">" => term.greater_than(datum),
        ">=" => term.greater_than_or_equal_to(datum),
        other => return Err(format!("unknown comparison `{other}`")),
    })
}

fn split_and(text: &str) -> Vec<&str> {
    let lower = text.to_ascii_lowercase();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut search = 0;
    while let Some(at) = lower[search..].find(" and ") {
        let at = search + at;
        parts.push(text[start..at].trim());
        start = at + 5;
        search = start;
    }
    parts.push(text[start..].trim());
    parts
}

fn split_clause(clause: &str) -> Option<(&str, &'static str, &str)> {
    for op in ["<=", ">=", "!=", "=", "<", ">"] {
        if let Some(at) = clause.find(op) {
            let (column, value) = (clause[..at].trim(), clause[at + op.len()..].trim());
            if !column.is_empty() && !value.is_empty() {
                return Some((column, op, value));
            }
        }
    }
    None
}

fn datum(ty: &PrimitiveType, value: &str) -> Result<Datum, String> {
    let text = value.trim_matches('\'').trim_matches('"');
    let number = |e: std::num::ParseIntError| e.to_string();
    match ty {
        PrimitiveType::Int => text.parse::<i32>().map(Datum::int).map_err(number),
        PrimitiveType::Long => text.parse::<i64>().map(Datum::long).map_err(number),
        PrimitiveType::Float => text.parse::<f32>().map(Datum::float).map_err(|e| e.to_string()),
        PrimitiveType::Double => text.parse::<f64>().map(Datum::double).map_err(|e| e.to_string()),
        PrimitiveType::Boolean => Datum::bool_from_str(text).map_err(|e| e.to_string()),
        PrimitiveType::String => Ok(Datum::string(text)),
        PrimitiveType::Date => Datum::date_from_str(text).map_err(|e| e.to_string()),
        PrimitiveType::Timestamp => {
            Datum::timestamp_from_str(midnight(text)).map_err(|e| e.to_string())
        }
        PrimitiveType::Timestamptz => {
            // Without a zone, UTC.
            let text = midnight(text);
            Datum::timestamptz_from_str(&text)
                .or_else(|_| Datum::timestamptz_from_str(format!("{text}Z")))
                .map_err(|e| e.to_string())
        }
        other => Err(format!("filters on {other} columns are not supported")),
    }
}

/// A date alone (`2024-01-05`) as the timestamp of its midnight; anything else unchanged.
fn midnight(text: &str) -> String {
    let date_only = text.len() == 10 && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok();
    if date_only {
        format!("{text}T00:00:00")
    } else {
        text.replace(' ', "T")
    }
}

/// Column `name` of `batch` as numbers (whatever numeric type it has); `None` when the batch
/// has no such column or it is not numeric.
pub fn number_column(batch: &RecordBatch, name: &str) -> Option<arrow_array::Float64Array> {
    use arrow_array::cast::AsArray;
    let cast = arrow_cast::cast(batch.column_by_name(name)?, &arrow_schema::DataType::Float64);
    Some(cast.ok()?.as_primitive::<arrow_array::types::Float64Type>().clone())
}

/// Column `name` of `batch` as text; `None` when the batch has no such column or it cannot be
/// written as text.
pub fn text_column(batch: &RecordBatch, name: &str) -> Option<arrow_array::StringArray> {
    use arrow_array::cast::AsArray;
    let cast = arrow_cast::cast(batch.column_by_name(name)?, &arrow_schema::DataType::Utf8);
    Some(cast.ok()?.as_string::<i32>().clone())
}
