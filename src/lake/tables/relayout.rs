//! Dataset files that span several partitions of a table, laid out again one file per
//! partition by Polars' streaming engine, so that `register` can add them as they are. This is
//! several times faster and leaner than decoding and splitting them batch by batch (`write`).
//!
//! It covers the transforms Polars can compute (all but `bucket`). The files it makes are
//! staging: it does not decide whether they fit the table, `register` checks each one.

use std::path::{Path, PathBuf};

use iceberg::spec::{PartitionSpec, PrimitiveType, Schema, Transform, Type};
use polars::prelude::{col, lit, DataType, Expr, TimeUnit};

use super::TableError;
use crate::lake::frames::{data_files, scan_parquet_files, sink_by_keys};

/// Microseconds in an hour (Iceberg's `hour` transform counts hours since the epoch).
const HOUR_MICROS: i64 = 3_600_000_000;

/// A Polars expression per partition field of `spec` that is constant within each of its
/// partitions and differs between them, or `None` when a transform has none here (`bucket`,
/// or a source type these do not cover).
pub(super) fn partition_keys(spec: &PartitionSpec, schema: &Schema) -> Option<Vec<Expr>> {
    let mut keys = Vec::new();
    for (index, field) in spec.fields().iter().enumerate() {
        let source = schema.field_by_id(field.source_id)?;
        let Type::Primitive(primitive) = source.field_type.as_ref() else { return None };
        let column = col(source.name.as_str());
        let timestamp = matches!(primitive, PrimitiveType::Timestamp | PrimitiveType::Timestamptz);
        let temporal = timestamp || *primitive == PrimitiveType::Date;
        let key = match field.transform {
            Transform::Void => continue,
            Transform::Identity => column,
            Transform::Year if temporal => column.dt().year(),
            Transform::Month if temporal => {
                column.clone().dt().year().cast(DataType::Int32) * lit(12)
                    + column.dt().month().cast(DataType::Int32)
            }
            Transform::Day if temporal => column.cast(DataType::Date),
            Transform::Hour if timestamp => {
                column.dt().timestamp(TimeUnit::Microseconds).floor_div(lit(HOUR_MICROS))
            }
            Transform::Truncate(width) => match primitive {
                PrimitiveType::Int | PrimitiveType::Long => column.floor_div(lit(width as i64)),
                PrimitiveType::String => column.str().slice(lit(0), lit(width as u64)),
                _ => return None,
            },
            _ => return None,
        };
        keys.push(key.alias(format!("p{index}")));
    }
    Some(keys)
}

/// Streams the rows of `files` into Parquet files under `dir`, one per value of `keys`
/// (which are not written into the files); returns those files.
pub(super) fn by_partition(
    files: &[PathBuf],
    keys: Vec<Expr>,
    dir: &Path,
) -> Result<Vec<PathBuf>, TableError> {
    sink_by_keys(scan_parquet_files(files)?, dir, keys, false)?;
    // No rows, no files (nor the folder).
    if !dir.exists() {
        return Ok(Vec::new());
    }
    Ok(data_files(dir)?)
}
