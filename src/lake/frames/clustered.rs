//! Writing a frame as one Parquet file *clustered* by some of its columns: the rows of each
//! value of those columns lie together, values in ascending order, and each row group holds
//! the rows of one value (several row groups when a value has more than [`ROW_GROUP_ROWS`]).
//!
//! Readers then skip every row group a filter on those columns excludes, and an Iceberg table
//! partitioned by them (or by the day, month or year of such a date) takes the row groups as
//! they are: `lake::tables` copies each partition's row groups into a table file without
//! decoding them. Rows are gathered a few row groups at a time (four per core, encoded side by
//! side), so the write holds the frame and those row groups' copies, not a sorted copy of the
//! frame.
//!
//! With more than [`MAX_VALUES`] values, a row group per value would be too small to read
//! well: the rows are still written in order of their values, in row groups of
//! [`ROW_GROUP_ROWS`] that may hold several.
//!
//! This module only writes the file; which dataset version it lands in is the caller's.

use std::io::BufWriter;
use std::path::Path;

use polars::io::parquet::write::get_encodings;
use polars::prelude::{
    Column, CompatLevel, DataFrame, GroupsType, IdxCa, IdxSize, NewChunkedArray, PlSmallStr,
    PolarsError, PolarsResult, SchemaExt, SortMultipleOptions,
};
use polars_buffer::Buffer;
use polars_parquet::parquet::error::ParquetError;
use polars_parquet::write::{
    array_to_columns, fallible_streaming_iterator, CompressedPage, Compressor, DynIter,
    DynStreamingIterator, Encoding, FileWriter, SchemaDescriptor, StatisticsOptions, Version,
    WriteOptions,
};

use super::compression;
use crate::lake::{io, Result};

/// The most rows a row group holds (Polars' own default).
pub const ROW_GROUP_ROWS: usize = 512 * 512;

/// The most values that get a row group each.
pub const MAX_VALUES: usize = 10_000;

/// Row groups encoded at once per core before they are written.
const ROW_GROUPS_PER_CORE: usize = 4;

/// The name of the column that numbers a grouping's groups while they are put in order.
const GROUP_INDEX: &str = "__lakeward_group";

/// Writes `data` into the Parquet file `path`, clustered by the columns `cluster_by`. Row
/// groups are gathered, encoded and compressed on every core, and written in order.
pub fn write_clustered_file(data: &DataFrame, cluster_by: &[String], path: &Path) -> Result<()> {
    let row_groups = row_groups(data, cluster_by)?;
    let file = std::fs::File::create(path).map_err(io(path))?;
    let encoder = Encoder::new(data)?;
    // The Arrow schema of the streaming sink's files (text as `large_string`, which every
    // Arrow reader knows), where Polars' in-memory writer would declare `string_view`.
    let arrow_schema = data.schema().to_arrow(CompatLevel::oldest());
    let mut writer = FileWriter::new_with_parquet_schema(
        BufWriter::with_capacity(1 << 20, file),
        arrow_schema,
        encoder.parquet_schema.clone(),
        encoder.options,
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for window in row_groups.chunks(cores * ROW_GROUPS_PER_CORE) {
        let per_core = window.len().div_ceil(cores);
        let encoded: Vec<Result<(u64, Vec<Vec<CompressedPage>>)>> = std::thread::scope(|scope| {
            let encoding: Vec<_> = window
                .chunks(per_core)
                .map(|part| {
                    let encoder = &encoder;
                    scope.spawn(move || {
                        part.iter().map(|rows| encoder.row_group(data, rows)).collect::<Vec<_>>()
                    })
                })
                .collect();
            encoding
                .into_iter()
                .flat_map(|thread| {
                    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        for row_group in encoded {
            let (rows, pages) = row_group?;
            let columns = pages.iter().map(|column| {
                let column = fallible_streaming_iterator::convert(column.iter().map(Ok));
                PolarsResult::Ok(DynStreamingIterator::new(column))
            });
            writer.write(rows, DynIter::new(columns))?;
        }
    }
    // Without key-value metadata of its own, the footer carries the writer's Arrow schema.
    writer.end(None)?;
    writer.into_inner().into_inner().map_err(|e| e.into_error()).map_err(io(path))?;
    Ok(())
}

/// The rows of each row group of `data` clustered by `cluster_by`, in order.
fn row_groups(data: &DataFrame, cluster_by: &[String]) -> Result<Vec<Vec<IdxSize>>> {
    let grouped = data.group_by(cluster_by)?;
    let groups = grouped.get_groups();
    let order = groups_in_key_order(grouped.keys(), cluster_by)?;
    let one_per_value = order.len() <= MAX_VALUES;
    let mut row_groups = Vec::new();
    let mut rows: Vec<IdxSize> = Vec::new();
    for group in order {
        match &**groups {
            GroupsType::Idx(positions) => rows.extend_from_slice(&positions.all()[group]),
            GroupsType::Slice { groups, .. } => {
                let [first, len] = groups[group];
                rows.extend(first..first + len);
            }
        }
        if one_per_value || rows.len() >= ROW_GROUP_ROWS {
            row_groups.extend(rows.chunks(ROW_GROUP_ROWS).map(<[IdxSize]>::to_vec));
            rows.clear();
        }
    }
    if !rows.is_empty() {
        row_groups.push(rows);
    }
    Ok(row_groups)
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

/// Turns rows of a frame into a row group's compressed pages, as Polars' streaming sink
/// encodes its own (the same encodings, statistics and compression).
struct Encoder {
    parquet_schema: SchemaDescriptor,
    encodings: Buffer<Vec<Encoding>>,
    options: WriteOptions,
}

impl Encoder {
    fn new(data: &DataFrame) -> Result<Encoder> {
        let arrow_schema = data.schema().to_arrow(CompatLevel::newest());
        let parquet_schema = polars_parquet::write::to_parquet_schema(&arrow_schema)?;
        let options = WriteOptions {
            statistics: StatisticsOptions::default(),
            version: Version::V1,
            compression: compression().into(),
            data_page_size: None,
        };
        Ok(Encoder { parquet_schema, encodings: get_encodings(&arrow_schema), options })
    }

    /// The row group of `data`'s rows `rows`: its row count and each column's pages.
    fn row_group(
        &self,
        data: &DataFrame,
        rows: &[IdxSize],
    ) -> Result<(u64, Vec<Vec<CompressedPage>>)> {
        let part = data.take(&IdxCa::from_slice(PlSmallStr::EMPTY, rows))?;
        let mut pages = Vec::with_capacity(part.width());
        for (index, column) in part.columns().iter().enumerate() {
            let array =
                column.as_materialized_series().rechunk().to_arrow(0, CompatLevel::newest());
            let parquet_type = self.parquet_schema.fields()[index].clone();
            for column_pages in
                array_to_columns(array, parquet_type, self.options, &self.encodings[index])?
            {
                let column_pages = column_pages
                    .map(|page| page.map_err(|e| ParquetError::FeatureNotSupported(e.to_string())));
                let compressed =
                    Compressor::new_from_vec(column_pages, self.options.compression, Vec::new());
                let compressed: std::result::Result<Vec<_>, _> = compressed.collect();
                pages.push(compressed.map_err(PolarsError::from)?);
            }
        }
        Ok((rows.len() as u64, pages))
    }
}

#[cfg(test)]
mod tests {
    use polars::prelude::{df, LazyFrame, ScanArgsParquet};

    use super::*;

    fn read_back(path: &Path) -> DataFrame {
        let path = polars::prelude::PlRefPath::new(path.to_str().unwrap());
        LazyFrame::scan_parquet(path, ScanArgsParquet::default()).unwrap().collect().unwrap()
    }

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
        let back = read_back(&path);
        let n: Vec<i32> = back.column("n").unwrap().i32().unwrap().into_no_null_iter().collect();
        assert_eq!(n, [1, 4, 3, 0, 2, 5], "a value's rows keep their order");
    }

    #[test]
    fn nulls_come_first_and_text_is_declared_as_the_streaming_sink_declares_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clustered.parquet");
        let data = df!(
            "day" => [Some(2), None, Some(1), None],
            "note" => ["b", "null", "a", "null again"],
        )
        .unwrap();
        write_clustered_file(&data, &["day".to_string()], &path).unwrap();
        assert_eq!(
            row_groups(&path),
            [(2, None, None), (1, Some(1), Some(1)), (1, Some(2), Some(2))]
        );
        let file = std::fs::File::open(&path).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let note = reader.schema().field_with_name("note").unwrap().data_type().clone();
        assert_eq!(note, arrow_schema::DataType::LargeUtf8);
    }

    #[test]
    fn no_rows_make_a_file_without_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clustered.parquet");
        let data = df!("day" => Vec::<i32>::new(), "note" => Vec::<String>::new()).unwrap();
        write_clustered_file(&data, &["day".to_string()], &path).unwrap();
        assert_eq!(row_groups(&path), []);
        let back = read_back(&path);
        assert_eq!((back.height(), back.width()), (0, 2));
    }

    #[test]
    fn past_the_most_values_row_groups_hold_several_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clustered.parquet");
        let values = (MAX_VALUES as i32 + 1) * 2;
        let data = df!("day" => (0..values).rev().map(|v| v / 2).collect::<Vec<_>>()).unwrap();
        write_clustered_file(&data, &["day".to_string()], &path).unwrap();
        let last = MAX_VALUES as i32;
        assert_eq!(row_groups(&path), [(values as i64, Some(0), Some(last))]);
        let back = read_back(&path);
        let day = back.column("day").unwrap().i32().unwrap();
        assert!(day.into_no_null_iter().is_sorted(), "ascending");
    }
}
