//! Writing a frame as one Parquet file *clustered* by some of its columns: the rows of each
//! value of those columns lie together, values in ascending order, and each row group holds
//! the rows of one value (several row groups when a value has more than [`ROW_GROUP_ROWS`]).
//!
//! Readers then skip every row group a filter on those columns excludes, and an Iceberg table
//! partitioned by them (or by the day, month or year of such a date) takes the row groups as
//! they are: `lake::tables` copies each partition's row groups into a table file without
//! decoding them. Rows are gathered one row group at a time, so the write holds the frame and
//! one row group's copy, not a sorted copy of the frame.
//!
//! With more than [`MAX_VALUES`] values, a row group per value would be too small to read
//! well: the rows are still written in order of their values, in row groups of
//! [`ROW_GROUP_ROWS`] that may hold several.
//!
//! This module only writes the file; which dataset version it lands in is the caller's.

use std::path::Path;

use polars::prelude::{
    Column, CompatLevel, DataFrame, GroupsType, IdxCa, IdxSize, KeyValueMetadata, NewChunkedArray,
    ParquetWriter, PlSmallStr, SchemaExt, SortMultipleOptions,
};

use super::compression;
use crate::lake::{io, Result};

/// The most rows a row group holds (Polars' own default).
pub const ROW_GROUP_ROWS: usize = 512 * 512;

/// The most values that get a row group each.
pub const MAX_VALUES: usize = 10_000;

/// The name of the column that numbers a grouping's groups while they are put in order.
const GROUP_INDEX: &str = "__lakeward_group";

/// Writes `data` into the Parquet file `path`, clustered by the columns `cluster_by`.
pub fn write_clustered_file(data: &DataFrame, cluster_by: &[String], path: &Path) -> Result<()> {
    let grouped = data.group_by(cluster_by)?;
    let groups = grouped.get_groups();
    let order = groups_in_key_order(grouped.keys(), cluster_by)?;
    let one_per_value = order.len() <= MAX_VALUES;

    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut writer = ParquetWriter::new(file)
        .with_compression(compression())
        .with_key_value_metadata(Some(arrow_schema_as_sinks_write_it(data)))
        .batched(data.schema())?;
    let mut rows: Vec<IdxSize> = Vec::with_capacity(ROW_GROUP_ROWS);
    for group in order {
        match &**groups {
            GroupsType::Idx(positions) => rows.extend_from_slice(&positions.all()[group]),
            GroupsType::Slice { groups, .. } => {
                let [first, len] = groups[group];
                rows.extend(first..first + len);
            }
        }
        if one_per_value || rows.len() >= ROW_GROUP_ROWS {
            for row_group in rows.chunks(ROW_GROUP_ROWS) {
                writer
                    .write_batch(&data.take(&IdxCa::from_slice(PlSmallStr::EMPTY, row_group))?)?;
            }
            rows.clear();
        }
    }
    if !rows.is_empty() {
        writer.write_batch(&data.take(&IdxCa::from_slice(PlSmallStr::EMPTY, &rows))?)?;
    }
    writer.finish()?;
    Ok(())
}

/// The indexes of a grouping's groups, in ascending order of their `keys` (nulls first).
fn groups_in_key_order(keys: Vec<Column>, cluster_by: &[String]) -> Result<Vec<usize>> {
    let keys = DataFrame::new_infer_height(keys)?
        .with_row_index(PlSmallStr::from_static(GROUP_INDEX), None)?;
    let options = SortMultipleOptions::default().with_nulls_last(false);
    let sorted = keys.sort(cluster_by, options)?;
    let indexes = sorted.column(GROUP_INDEX)?.idx()?;
    Ok(indexes.into_no_null_iter().map(|index| index as usize).collect())
}

/// The Arrow schema Polars' streaming sink puts in the files it writes (text as `large_string`,
/// which every Arrow reader knows), where its in-memory writer would declare `string_view`.
fn arrow_schema_as_sinks_write_it(data: &DataFrame) -> KeyValueMetadata {
    let schema = data.schema().to_arrow(CompatLevel::oldest());
    let entry = polars_parquet::write::schema_to_metadata_key(&schema);
    KeyValueMetadata::from_static(vec![(entry.key, entry.value.unwrap_or_default())])
}

#[cfg(test)]
mod tests {
    use polars::prelude::{df, LazyFrame, ScanArgsParquet};

    use super::*;

    fn row_groups(path: &Path) -> Vec<(i64, Option<i32>, Option<i32>)> {
        let file = std::fs::File::open(path).unwrap();
        let metadata =
            parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&file).unwrap();
        metadata
            .row_groups()
            .iter()
            .map(|group| {
                let day = group.column(0).statistics().unwrap();
                let parquet::file::statistics::Statistics::Int32(day) = day else { panic!() };
                (group.num_rows(), day.min_opt().copied(), day.max_opt().copied())
            })
            .collect()
    }

    #[test]
    fn each_value_gets_its_own_row_groups_in_ascending_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clustered.parquet");
        let days = [3, 1, 3, 2, 1, 3];
        let data = df!("day" => days, "n" => [0, 1, 2, 3, 4, 5]).unwrap();
        write_clustered_file(&data, &["day".to_string()], &path).unwrap();

        let groups = row_groups(&path);
        assert_eq!(groups, [(2, Some(1), Some(1)), (1, Some(2), Some(2)), (3, Some(3), Some(3))]);
        let back = LazyFrame::scan_parquet(
            polars::prelude::PlRefPath::new(path.to_str().unwrap()),
            ScanArgsParquet::default(),
        )
        .unwrap()
        .collect()
        .unwrap();
        let n: Vec<i32> = back.column("n").unwrap().i32().unwrap().into_no_null_iter().collect();
        assert_eq!(n, [1, 4, 3, 0, 2, 5], "a value's rows keep their order");
    }
}
