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
use crate::lake::frames::{data_files, scan_parquet_files, sink_by_keys, PartitionFiles};

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

/// Streams the rows of `files` into Parquet files side by side in `dir`, one per value of
/// `keys` (which are not written into the files); returns those files.
pub(super) fn by_partition(
    files: &[PathBuf],
    keys: Vec<Expr>,
    dir: &Path,
) -> Result<Vec<PathBuf>, TableError> {
    sink_by_keys(scan_parquet_files(files)?, dir, keys, PartitionFiles::Staging)?;
    // No rows, no files (nor the folder).
    if !dir.exists() {
        return Ok(Vec::new());
    }
    Ok(data_files(dir)?)
}

#[cfg(test)]
mod tests {
    use polars::prelude::*;

    use super::*;

    #[test]
    fn staging_files_lie_side_by_side_one_per_partition_without_the_keys() {
        let root = tempfile::tempdir().unwrap();
        let source = root.path().join("source.parquet");
        let mut data = df! {
            "day" => [3i32, 1, 3, 2, 1],
            "amount" => [30.0, 10.0, 31.0, 20.0, 11.0],
        }
        .unwrap();
        ParquetWriter::new(std::fs::File::create(&source).unwrap()).finish(&mut data).unwrap();

        let dir = root.path().join("staging");
        let keys = vec![col("day").alias("p0")];
        let mut files = by_partition(&[source], keys, &dir).unwrap();
        files.sort();

        assert_eq!(files.len(), 3);
        let mut days = Vec::new();
        for file in &files {
            assert_eq!(file.parent(), Some(dir.as_path()), "no folder per partition: {file:?}");
            let rows = scan_parquet_files(std::slice::from_ref(file)).unwrap().collect().unwrap();
            assert_eq!(rows.get_column_names(), ["day", "amount"], "the key is not written");
            let day = rows.column("day").unwrap().i32().unwrap();
            assert_eq!(day.min(), day.max(), "one partition per file");
            days.push((day.min().unwrap(), rows.height()));
        }
        days.sort();
        assert_eq!(days, [(1, 2), (2, 1), (3, 2)]);
    }
}
