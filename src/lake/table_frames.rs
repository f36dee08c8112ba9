//! Iceberg table snapshots as lazy Polars frames: the files lakeward's Iceberg planning names
//! ([`SnapshotFiles`]), scanned by Polars with the table's current columns (files written
//! before a column was added read it as nulls). A remote warehouse's files are read from the
//! local cache, downloaded once (data files never change).

use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::{DataType as ArrowType, TimeUnit as ArrowUnit};
use polars::prelude::{
    DataFrame, DataType, HiveOptions, IntoLazy, LazyFrame, PlRefPath, ScanArgsParquet, Schema,
    TimeUnit, TimeZone,
};

use super::tables::SnapshotFiles;
use super::{LakeError, Result, Warehouse};

/// A lazy scan of the snapshot `files` describes; an empty frame of its columns when the
/// table has no data yet. Blocking (remote files are downloaded): call off the async workers.
pub fn scan_snapshot(warehouse: &Warehouse, files: &SnapshotFiles) -> Result<LazyFrame> {
    let schema = Arc::new(polars_schema(&files.schema)?);
    if files.locations.is_empty() {
        return Ok(DataFrame::empty_with_schema(&schema).lazy());
    }
    let paths: Vec<PathBuf> =
        files.locations.iter().map(|l| warehouse.local_file(l)).collect::<Result<_>>()?;
    let args = ScanArgsParquet {
        schema: Some(schema),
        allow_missing_columns: true,
        hive_options: HiveOptions::new_disabled(),
        ..ScanArgsParquet::default()
    };
    let paths = paths.iter().map(|p| PlRefPath::new(p.to_string_lossy().as_ref())).collect();
    Ok(LazyFrame::scan_parquet_files(paths, args)?)
}

/// The Polars columns of an Iceberg schema (primitive columns; others are refused).
fn polars_schema(schema: &iceberg::spec::Schema) -> Result<Schema> {
    let arrow = iceberg::arrow::schema_to_arrow_schema(schema)
        .map_err(|e| LakeError::NotSupported(e.to_string()))?;
    arrow
        .fields()
        .iter()
        .map(|field| {
            let dtype = polars_type(field.data_type()).ok_or_else(|| {
                LakeError::NotSupported(format!(
                    "column `{}` of type {} cannot be read with SQL yet",
                    field.name(),
                    field.data_type()
                ))
            })?;
            Ok((field.name().as_str().into(), dtype))
        })
        .collect()
}

fn polars_type(arrow: &ArrowType) -> Option<DataType> {
    let unit = |u: &ArrowUnit| match u {
        ArrowUnit::Millisecond | ArrowUnit::Second => TimeUnit::Milliseconds,
        ArrowUnit::Microsecond => TimeUnit::Microseconds,
        ArrowUnit::Nanosecond => TimeUnit::Nanoseconds,
    };
    Some(match arrow {
        ArrowType::Boolean => DataType::Boolean,
        ArrowType::Int32 => DataType::Int32,
        ArrowType::Int64 => DataType::Int64,
        ArrowType::Float32 => DataType::Float32,
        ArrowType::Float64 => DataType::Float64,
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => DataType::String,
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => DataType::Binary,
        ArrowType::Date32 => DataType::Date,
        // Polars names the zone of a UTC timestamp read from Parquet `UTC`.
        ArrowType::Timestamp(u, Some(_)) => DataType::Datetime(unit(u), Some(TimeZone::UTC)),
        ArrowType::Timestamp(u, None) => DataType::Datetime(unit(u), None),
        _ => return None,
    })
}
