//! Adding a dataset's Parquet files to a table without decoding them. A file *fits* when its
//! columns are the table's (the same names, each stored as Iceberg stores that type) and its
//! row groups each fall in one partition of the table's spec, which their column statistics
//! prove (a monotonic transform of a column's minimum and maximum gives the same value).
//!
//! A fitting file whose rows all lie in one partition is copied byte for byte into the table's
//! data folder with a new footer: the same row groups, the table's field ids, Iceberg's logical
//! types and no Arrow schema. A file whose row groups lie in several partitions (a dataset
//! clustered by the partition's column, a row group per value) becomes one table file per
//! partition: its row groups there, copied byte for byte one after the other, under a footer
//! whose offsets say where they now are. Each table file's entry (rows, sizes, value and null
//! counts, bounds, partition) is read from its footer.
//!
//! Files that do not fit are left to `relayout` and `write`, which decode and rewrite them.
//! This module must not change the dataset's files (a caller's scratch files, such as
//! `relayout`'s, may be moved into the table instead of copied), and never reads a data page.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, Datum, Literal, NestedField, PartitionKey,
    PartitionSpec, PrimitiveType, Schema, Struct, TableMetadata, Transform, Type,
};
use iceberg::table::Table;
use iceberg::transform::create_transform_function;
use iceberg::writer::file_writer::location_generator::{
    DefaultLocationGenerator, LocationGenerator,
};
use indexmap::IndexMap;
use parquet::basic::{ConvertedType, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::file::metadata::{
    FileMetaData, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader, ParquetMetaDataWriter,
    RowGroupMetaData,
};
use parquet::file::statistics::Statistics;
use parquet::schema::types::{SchemaDescriptor, Type as ParquetType};

use super::file_copy::{self, FileCopy};
use super::write::Written;
use super::TableError;

/// Text bounds longer than this are left out of the table's metadata (Iceberg's writers
/// truncate theirs to 16 characters; long values only bloat the manifests).
const MAX_TEXT_BOUND: usize = 64;

/// The bytes every Parquet file starts with.
const MAGIC: Range<u64> = 0..4;

/// A table data file made of a dataset file's bytes.
pub(super) struct Fit {
    source: PathBuf,
    /// The byte ranges of the source it holds, in order: everything before the source's footer,
    /// or the leading magic and the row groups of one partition.
    pieces: Vec<Range<u64>>,
    /// The new footer: metadata, its length and the closing magic.
    footer: Vec<u8>,
    /// The file's partition; `None` for an unpartitioned table.
    partition: Option<PartitionKey>,
    metrics: Metrics,
}

/// What the table's metadata records about a data file, from its footer.
#[derive(Default)]
struct Metrics {
    rows: u64,
    column_sizes: HashMap<i32, u64>,
    value_counts: HashMap<i32, u64>,
    null_counts: HashMap<i32, u64>,
    lower: HashMap<i32, Datum>,
    upper: HashMap<i32, Datum>,
    split_offsets: Vec<i64>,
}

/// What becomes of one dataset file.
enum Plan {
    /// Table files made of its bytes: one, or one per partition its row groups lie in.
    Fit(Vec<Fit>),
    /// No rows: nothing to add.
    Empty,
    Rewrite,
}

/// Sorts `files` into those that fit `metadata`'s table as they are and those to rewrite;
/// files without rows are in neither. A file whose footer cannot be read is left to the
/// rewrite, which reports the problem.
pub(super) fn plan(metadata: &TableMetadata, files: &[PathBuf]) -> (Vec<Fit>, Vec<PathBuf>) {
    let (mut fits, mut rest) = (Vec::new(), Vec::new());
    for file in files {
        match fit(metadata, file) {
            Ok(Plan::Fit(made)) => fits.extend(made),
            Ok(Plan::Empty) => {}
            Ok(Plan::Rewrite) | Err(_) => rest.push(file.clone()),
        }
    }
    (fits, rest)
}

/// Copies each fitting file's bytes into `table`'s data folder (named `prefix-…`) with its new
/// footer; with `take_sources`, the files are scratch files that may be moved there instead
/// (when the whole of one makes a table file).
/// The files are not part of the table until committed.
pub(super) async fn copy(
    table: &Table,
    fits: Vec<Fit>,
    prefix: &str,
    take_sources: bool,
) -> Result<Written, TableError> {
    let metadata = table.metadata();
    let locations = DefaultLocationGenerator::new(metadata)?;
    let spec_id = metadata.default_partition_spec_id();
    let mut written = Written { files: Vec::with_capacity(fits.len()), rows: 0 };
    let mut copies = Vec::with_capacity(fits.len());
    for (index, fit) in fits.into_iter().enumerate() {
        let name = format!("{prefix}-r{index:05}.parquet");
        let location = locations.generate_location(fit.partition.as_ref(), &name);
        let copy = FileCopy {
            source: fit.source,
            pieces: fit.pieces,
            tail: fit.footer,
            location,
            take_source: take_sources,
        };
        let Metrics {
            rows,
            column_sizes,
            value_counts,
            null_counts,
            mut lower,
            mut upper,
            split_offsets,
        } = fit.metrics;
        trim_text_bounds(&mut lower);
        trim_text_bounds(&mut upper);
        let partition = fit.partition.map(|key| key.data().clone()).unwrap_or_else(Struct::empty);
        let file = DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path(copy.location.clone())
            .file_format(DataFileFormat::Parquet)
            .partition(partition)
            .partition_spec_id(spec_id)
            .record_count(rows)
            .file_size_in_bytes(copy.size())
            .column_sizes(column_sizes)
            .value_counts(value_counts)
            .null_value_counts(null_counts)
            .lower_bounds(lower)
            .upper_bounds(upper)
            .split_offsets(Some(split_offsets))
            .build()
            .map_err(|e| TableError::Invalid(format!("describing {name}: {e}")))?;
        written.rows += rows;
        written.files.push(file);
        copies.push(copy);
    }
    file_copy::write_all(table, copies).await?;
    Ok(written)
}

/// What to do with the file at `path`.
fn fit(metadata: &TableMetadata, path: &Path) -> Result<Plan, TableError> {
    let unreadable = |e: std::io::Error| TableError::Invalid(format!("{}: {e}", path.display()));
    let file = File::open(path).map_err(unreadable)?;
    // Page indexes and bloom filters stay where they are, in the copied bytes, and so do the
    // offsets to them that the column chunks carry; reading them here would write them again.
    let mut reader = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Skip);
    reader.try_parse(&file)?;
    // The footer: the metadata, its length and the closing magic.
    let footer_size = reader.metadata_size().ok_or_else(|| {
        TableError::Invalid(format!("{}: the Parquet footer's size is unknown", path.display()))
    })? as u64;
    let parquet = reader.finish()?;
    let data_end = file.metadata().map_err(unreadable)?.len() - footer_size;

    if parquet.file_metadata().num_rows() == 0 {
        return Ok(Plan::Empty);
    }
    let schema = metadata.current_schema();
    let Some(columns) = table_columns(parquet.file_metadata(), schema.as_struct().fields()) else {
        return Ok(Plan::Rewrite);
    };
    let spec = metadata.default_partition_spec();
    let everything = metrics(parquet.row_groups(), &columns);
    let partition =
        if spec.is_unpartitioned() { None } else { partition_key(spec, schema, &everything)? };
    if spec.is_unpartitioned() || partition.is_some() {
        let footer = footer(parquet.file_metadata(), parquet.row_groups().to_vec(), &columns)?;
        let pieces = std::iter::once(0..data_end).collect();
        let source = path.to_path_buf();
        let fit = Fit { source, pieces, footer, partition, metrics: everything };
        return Ok(Plan::Fit(vec![fit]));
    }
    // Rows in several partitions: a table file per partition, if each row group lies in one.
    let Some(partitions) = row_groups_by_partition(&parquet, spec, schema, &columns)? else {
        return Ok(Plan::Rewrite);
    };
    let mut fits = Vec::with_capacity(partitions.len());
    for (partition, groups) in partitions {
        let (pieces, row_groups) = gathered(&parquet, &groups)?;
        let footer = footer(parquet.file_metadata(), row_groups.clone(), &columns)?;
        let metrics = metrics(&row_groups, &columns);
        let partition = Some(partition);
        fits.push(Fit { source: path.to_path_buf(), pieces, footer, partition, metrics });
    }
    Ok(Plan::Fit(fits))
}

/// A partition and the file's row groups that lie in it: their indexes and where their bytes
/// lie.
type RowGroupsOfPartition = (PartitionKey, Vec<(usize, Range<u64>)>);

/// The partition `metrics` prove all their rows lie in, or `None`.
fn partition_key(
    spec: &Arc<PartitionSpec>,
    schema: &Arc<Schema>,
    metrics: &Metrics,
) -> Result<Option<PartitionKey>, TableError> {
    let Some(values) = partition_values(spec.fields(), schema.as_ref(), metrics)? else {
        return Ok(None);
    };
    let data = Struct::from_iter(values);
    Ok(Some(PartitionKey::new(spec.as_ref().clone(), schema.clone(), data)))
}

/// The indexes of the file's row groups by the partition each lies in, partitions in the order
/// their first row group comes; `None` when a row group may span partitions, or its column
/// chunks overlap.
fn row_groups_by_partition(
    parquet: &ParquetMetaData,
    spec: &Arc<PartitionSpec>,
    schema: &Arc<Schema>,
    columns: &[&NestedField],
) -> Result<Option<Vec<RowGroupsOfPartition>>, TableError> {
    let mut partitions: IndexMap<Struct, RowGroupsOfPartition> = IndexMap::new();
    for (index, group) in parquet.row_groups().iter().enumerate() {
        let metrics = metrics(std::slice::from_ref(group), columns);
        let Some(key) = partition_key(spec, schema, &metrics)? else { return Ok(None) };
        let Some(bytes) = row_group_bytes(group) else { return Ok(None) };
        let entry = partitions.entry(key.data().clone()).or_insert_with(|| (key, Vec::new()));
        entry.1.push((index, bytes));
    }
    Ok(Some(partitions.into_values().collect()))
}

/// The pieces of the file that make a file of the row groups `groups`, by index and bytes (the
/// leading magic, then
/// each row group's bytes, runs of adjacent ones as one piece), and those row groups as they
/// are in that file: their offsets moved to where their bytes now lie, without the offsets of
/// page indexes and bloom filters, which are not copied.
fn gathered(
    parquet: &ParquetMetaData,
    groups: &[(usize, Range<u64>)],
) -> Result<(Vec<Range<u64>>, Vec<RowGroupMetaData>), TableError> {
    let mut pieces: Vec<Range<u64>> = vec![MAGIC];
    let mut row_groups = Vec::with_capacity(groups.len());
    let mut written = MAGIC.end;
    for (ordinal, (index, bytes)) in groups.iter().enumerate() {
        let group = &parquet.row_groups()[*index];
        row_groups.push(moved(group, bytes.start, written, ordinal)?);
        written += bytes.end - bytes.start;
        match pieces.last_mut() {
            Some(last) if last.end == bytes.start => last.end = bytes.end,
            _ => pieces.push(bytes.clone()),
        }
    }
    Ok((pieces, row_groups))
}

/// Where a row group's column chunks lie in its file: from the first one's start to the last
/// one's end, what lies between them included (Polars writes each chunk's metadata after it),
/// when no two of them overlap (and no offset is negative, as in a damaged footer).
fn row_group_bytes(group: &RowGroupMetaData) -> Option<Range<u64>> {
    let mut chunks = Vec::with_capacity(group.columns().len());
    for chunk in group.columns() {
        let start = chunk.dictionary_page_offset().unwrap_or(chunk.data_page_offset());
        let start = u64::try_from(start).ok()?;
        chunks.push((start, u64::try_from(chunk.compressed_size()).ok()?));
    }
    chunks.sort_unstable();
    let start = chunks.first()?.0;
    let mut end = start;
    for (chunk_start, length) in chunks {
        if chunk_start < end {
            return None;
        }
        end = chunk_start + length;
    }
    (start >= MAGIC.end).then_some(start..end)
}

/// `group`, whose bytes began at `from`, as it is once they begin at `to`, the `ordinal`-th
/// row group of its new file.
fn moved(
    group: &RowGroupMetaData,
    from: u64,
    to: u64,
    ordinal: usize,
) -> Result<RowGroupMetaData, TableError> {
    let shift = |offset: i64| offset - from as i64 + to as i64;
    let columns = group
        .columns()
        .iter()
        .map(|chunk| {
            chunk
                .clone()
                .into_builder()
                .set_data_page_offset(shift(chunk.data_page_offset()))
                .set_dictionary_page_offset(chunk.dictionary_page_offset().map(shift))
                .set_index_page_offset(chunk.index_page_offset().map(shift))
                .set_offset_index_offset(None)
                .set_offset_index_length(None)
                .set_column_index_offset(None)
                .set_column_index_length(None)
                .set_bloom_filter_offset(None)
                .set_bloom_filter_length(None)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = group.clone().into_builder().set_column_metadata(columns);
    if let Some(offset) = group.file_offset() {
        builder = builder.set_file_offset(shift(offset));
    }
    if group.ordinal().is_some() {
        let ordinal = i16::try_from(ordinal)
            .map_err(|_| TableError::Invalid(format!("more than {} row groups", i16::MAX)))?;
        builder = builder.set_ordinal(ordinal);
    }
    Ok(builder.build()?)
}

/// The table column each of the file's columns holds, in the file's order, or `None` when the
/// file's columns are not exactly the table's, stored as Iceberg stores them.
fn table_columns<'a>(
    file: &FileMetaData,
    fields: &'a [Arc<NestedField>],
) -> Option<Vec<&'a NestedField>> {
    let root = file.schema_descr().root_schema();
    let columns = root.get_fields();
    if columns.len() != fields.len() {
        return None;
    }
    columns
        .iter()
        .map(|column| {
            let field = fields.iter().find(|f| f.name == column.name())?;
            stored_as_iceberg(column, &field.field_type).then_some(field.as_ref())
        })
        .collect()
}

/// Whether `column` holds values of `field_type` as Iceberg's own writers store them (the
/// logical annotation may differ where the stored values do not: a Parquet `INT32` marked
/// 8-bit is a valid Iceberg `int`).
fn stored_as_iceberg(column: &ParquetType, field_type: &Type) -> bool {
    if !column.is_primitive() || column.get_basic_info().repetition() == Repetition::REPEATED {
        return false;
    }
    let Type::Primitive(primitive) = field_type else { return false };
    let logical = column.get_basic_info().logical_type_ref();
    let converted = column.get_basic_info().converted_type();
    let signed_int = |widths: &[i8]| match logical {
        None => converted == ConvertedType::NONE,
        Some(LogicalType::Integer { bit_width, is_signed: true }) => widths.contains(bit_width),
        _ => false,
    };
    let timestamp = |utc: bool| {
        matches!(logical, Some(LogicalType::Timestamp { is_adjusted_to_u_t_c, unit: TimeUnit::MICROS })
            if *is_adjusted_to_u_t_c == utc)
    };
    match (primitive, column.get_physical_type()) {
        (PrimitiveType::Boolean, Physical::BOOLEAN) => logical.is_none(),
        (PrimitiveType::Int, Physical::INT32) => signed_int(&[8, 16, 32]),
        (PrimitiveType::Long, Physical::INT64) => signed_int(&[64]),
        (PrimitiveType::Float, Physical::FLOAT) | (PrimitiveType::Double, Physical::DOUBLE) => {
            logical.is_none()
        }
        (PrimitiveType::Date, Physical::INT32) => matches!(logical, Some(LogicalType::Date)),
        (PrimitiveType::Timestamp, Physical::INT64) => timestamp(false),
        (PrimitiveType::Timestamptz, Physical::INT64) => timestamp(true),
        (PrimitiveType::String, Physical::BYTE_ARRAY) => {
            matches!(logical, Some(LogicalType::String))
                || (logical.is_none() && converted == ConvertedType::UTF8)
        }
        (PrimitiveType::Binary, Physical::BYTE_ARRAY) => {
            logical.is_none() && converted == ConvertedType::NONE
        }
        _ => false,
    }
}

/// The logical annotation Iceberg gives `primitive` in Parquet.
fn iceberg_logical_type(primitive: &PrimitiveType) -> Option<LogicalType> {
    match primitive {
        PrimitiveType::Date => Some(LogicalType::Date),
        PrimitiveType::Timestamp | PrimitiveType::Timestamptz => Some(LogicalType::Timestamp {
            is_adjusted_to_u_t_c: matches!(primitive, PrimitiveType::Timestamptz),
            unit: TimeUnit::MICROS,
        }),
        PrimitiveType::String => Some(LogicalType::String),
        _ => None,
    }
}

/// A footer for the table of a file holding `row_groups` of the dataset `file`: a schema
/// carrying the table's field ids and Iceberg's annotations, without other key-value metadata
/// (an Arrow schema there would make readers expect the dataset's own types).
fn footer(
    file: &FileMetaData,
    row_groups: Vec<RowGroupMetaData>,
    columns: &[&NestedField],
) -> Result<Vec<u8>, TableError> {
    let root = file.schema_descr().root_schema();
    let fields = root
        .get_fields()
        .iter()
        .zip(columns)
        .map(|(column, field)| {
            let Type::Primitive(primitive) = field.field_type.as_ref() else {
                unreachable!("only primitive columns fit")
            };
            let logical = iceberg_logical_type(primitive);
            let column =
                ParquetType::primitive_type_builder(column.name(), column.get_physical_type())
                    .with_repetition(column.get_basic_info().repetition())
                    .with_converted_type(ConvertedType::from(logical.clone()))
                    .with_logical_type(logical)
                    .with_id(Some(field.id))
                    .build()?;
            Ok(Arc::new(column))
        })
        .collect::<Result<Vec<_>, TableError>>()?;
    let schema = ParquetType::group_type_builder(root.name()).with_fields(fields).build()?;
    let rows = row_groups.iter().map(RowGroupMetaData::num_rows).sum();
    let rewritten = FileMetaData::new(
        file.version(),
        rows,
        file.created_by().map(str::to_string),
        None,
        Arc::new(SchemaDescriptor::new(Arc::new(schema))),
        file.column_orders().cloned(),
    );
    let rewritten = ParquetMetaData::new(rewritten, row_groups);
    let mut footer = Vec::new();
    ParquetMetaDataWriter::new(&mut footer, &rewritten).finish()?;
    Ok(footer)
}

/// The metrics by table field id of a file of `row_groups`, from their column chunks.
fn metrics(row_groups: &[RowGroupMetaData], columns: &[&NestedField]) -> Metrics {
    let rows = row_groups.iter().map(|group| group.num_rows() as u64).sum();
    let mut metrics = Metrics { rows, ..Metrics::default() };
    let mut bounds_known = vec![true; columns.len()];
    let mut nulls_known = vec![true; columns.len()];
    for group in row_groups {
        metrics.split_offsets.extend(group.file_offset());
        for (index, (chunk, field)) in group.columns().iter().zip(columns).enumerate() {
            let id = field.id;
            *metrics.column_sizes.entry(id).or_default() += chunk.compressed_size() as u64;
            *metrics.value_counts.entry(id).or_default() += chunk.num_values() as u64;
            let statistics = chunk.statistics();
            match statistics.and_then(Statistics::null_count_opt) {
                Some(nulls) => *metrics.null_counts.entry(id).or_default() += nulls,
                None => nulls_known[index] = false,
            }
            let all_null = statistics
                .and_then(Statistics::null_count_opt)
                .is_some_and(|nulls| nulls as i64 == chunk.num_values());
            if all_null {
                continue;
            }
            match statistics.and_then(|s| chunk_bounds(s, &field.field_type)) {
                Some((low, high)) => {
                    widen(&mut metrics.lower, id, low, std::cmp::Ordering::Less);
                    widen(&mut metrics.upper, id, high, std::cmp::Ordering::Greater);
                }
                None => bounds_known[index] = false,
            }
        }
    }
    for (index, field) in columns.iter().enumerate() {
        if !bounds_known[index] {
            metrics.lower.remove(&field.id);
            metrics.upper.remove(&field.id);
        }
        if !nulls_known[index] {
            metrics.null_counts.remove(&field.id);
        }
    }
    metrics
}

/// Keeps `value` as `id`'s bound if it is further in the `direction` than the one kept.
fn widen(bounds: &mut HashMap<i32, Datum>, id: i32, value: Datum, direction: std::cmp::Ordering) {
    match bounds.get(&id) {
        Some(kept) if kept.partial_cmp(&value) != Some(direction.reverse()) => {}
        _ => {
            bounds.insert(id, value);
        }
    }
}

/// A column chunk's minimum and maximum as values of the table's type. Parquet's bounds hold
/// whether or not they are exact (a truncated text bound still bounds), so both kinds serve.
fn chunk_bounds(statistics: &Statistics, field_type: &Type) -> Option<(Datum, Datum)> {
    let Type::Primitive(primitive) = field_type else { return None };
    let pair = |low: Option<Datum>, high: Option<Datum>| low.zip(high);
    match (statistics, primitive) {
        (Statistics::Boolean(s), _) => {
            pair(s.min_opt().map(|v| Datum::bool(*v)), s.max_opt().map(|v| Datum::bool(*v)))
        }
        (Statistics::Int32(s), PrimitiveType::Date) => {
            pair(s.min_opt().map(|v| Datum::date(*v)), s.max_opt().map(|v| Datum::date(*v)))
        }
        (Statistics::Int32(s), _) => {
            pair(s.min_opt().map(|v| Datum::int(*v)), s.max_opt().map(|v| Datum::int(*v)))
        }
        (Statistics::Int64(s), PrimitiveType::Timestamp) => pair(
            s.min_opt().map(|v| Datum::timestamp_micros(*v)),
            s.max_opt().map(|v| Datum::timestamp_micros(*v)),
        ),
        (Statistics::Int64(s), PrimitiveType::Timestamptz) => pair(
            s.min_opt().map(|v| Datum::timestamptz_micros(*v)),
            s.max_opt().map(|v| Datum::timestamptz_micros(*v)),
        ),
        (Statistics::Int64(s), _) => {
            pair(s.min_opt().map(|v| Datum::long(*v)), s.max_opt().map(|v| Datum::long(*v)))
        }
        (Statistics::Float(s), _) => {
            let (low, high) = (*s.min_opt()?, *s.max_opt()?);
            (!low.is_nan() && !high.is_nan()).then(|| (Datum::float(low), Datum::float(high)))
        }
        (Statistics::Double(s), _) => {
            let (low, high) = (*s.min_opt()?, *s.max_opt()?);
            (!low.is_nan() && !high.is_nan()).then(|| (Datum::double(low), Datum::double(high)))
        }
        // Bounds in the deprecated fields were compared as signed bytes by old writers.
        (Statistics::ByteArray(_), _) if statistics.is_min_max_deprecated() => None,
        (Statistics::ByteArray(s), PrimitiveType::String) => {
            let text = |v: &parquet::data_type::ByteArray| {
                std::str::from_utf8(v.data()).ok().map(Datum::string)
            };
            pair(s.min_opt().and_then(text), s.max_opt().and_then(text))
        }
        (Statistics::ByteArray(s), PrimitiveType::Binary) => pair(
            s.min_opt().map(|v| Datum::binary(v.data().to_vec())),
            s.max_opt().map(|v| Datum::binary(v.data().to_vec())),
        ),
        _ => None,
    }
}

/// The file's value of each partition field, or `None` when its rows may span partitions.
/// A monotonic transform that maps the column's minimum and maximum to one value maps every
/// row there; a column with no value at all is in the null partition.
fn partition_values(
    fields: &[iceberg::spec::PartitionField],
    schema: &Schema,
    metrics: &Metrics,
) -> Result<Option<Vec<Option<Literal>>>, TableError> {
    let mut values = Vec::with_capacity(fields.len());
    for field in fields {
        let monotonic = matches!(
            field.transform,
            Transform::Identity
                | Transform::Year
                | Transform::Month
                | Transform::Day
                | Transform::Hour
                | Transform::Truncate(_)
        );
        if field.transform == Transform::Void {
            values.push(None);
            continue;
        }
        let id = field.source_id;
        let nulls = metrics.null_counts.get(&id).copied();
        if nulls == Some(metrics.rows) {
            values.push(None);
            continue;
        }
        let (Some(low), Some(high)) = (metrics.lower.get(&id), metrics.upper.get(&id)) else {
            return Ok(None);
        };
        if !monotonic || nulls != Some(0) || schema.field_by_id(id).is_none() {
            return Ok(None);
        }
        let transform = create_transform_function(&field.transform)?;
        let (low, high) = (transform.transform_literal(low)?, transform.transform_literal(high)?);
        match (low, high) {
            (Some(low), Some(high)) if low == high => {
                values.push(Some(Literal::Primitive(low.literal().clone())))
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(values))
}

/// Bounds of long text are dropped from what the table records (they still served to find
/// the partition).
fn trim_text_bounds(bounds: &mut HashMap<i32, Datum>) {
    bounds.retain(|_, datum| match datum.literal() {
        iceberg::spec::PrimitiveLiteral::String(text) => text.len() <= MAX_TEXT_BOUND,
        iceberg::spec::PrimitiveLiteral::Binary(bytes) => bytes.len() <= MAX_TEXT_BOUND,
        _ => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "day", Type::Primitive(PrimitiveType::Date)).into(),
                NestedField::optional(2, "id", Type::Primitive(PrimitiveType::Long)).into(),
            ])
            .build()
            .unwrap()
    }

    fn values(
        transform: Transform,
        column: &str,
        metrics: &Metrics,
    ) -> Option<Vec<Option<Literal>>> {
        let schema = schema();
        let spec = PartitionSpec::builder(schema.clone())
            .add_partition_field(column, "p", transform)
            .unwrap()
            .build()
            .unwrap();
        partition_values(spec.fields(), &schema, metrics).unwrap()
    }

    fn metrics(rows: u64, nulls: u64, bounds: Option<(Datum, Datum)>, id: i32) -> Metrics {
        let mut metrics = Metrics { rows, ..Metrics::default() };
        metrics.null_counts.insert(id, nulls);
        if let Some((low, high)) = bounds {
            metrics.lower.insert(id, low);
            metrics.upper.insert(id, high);
        }
        metrics
    }

    #[test]
    fn a_file_fits_a_partition_only_when_its_statistics_prove_it() {
        let one_day = metrics(10, 0, Some((Datum::date(19723), Datum::date(19723))), 1);
        let day = Some(vec![Some(Literal::Primitive(Datum::date(19723).literal().clone()))]);
        assert_eq!(values(Transform::Day, "day", &one_day), day);
        assert!(values(Transform::Month, "day", &one_day).is_some());
        let two_days = metrics(10, 0, Some((Datum::date(19723), Datum::date(19724))), 1);
        assert_eq!(values(Transform::Day, "day", &two_days), None);
        assert!(values(Transform::Month, "day", &two_days).is_some(), "one month");
        let some_null = metrics(10, 1, Some((Datum::date(19723), Datum::date(19723))), 1);
        assert_eq!(values(Transform::Day, "day", &some_null), None);
        let all_null = metrics(10, 10, None, 1);
        assert_eq!(values(Transform::Day, "day", &all_null), Some(vec![None]));
        let unknown = metrics(10, 0, None, 1);
        assert_eq!(values(Transform::Day, "day", &unknown), None);
        let ids = metrics(10, 0, Some((Datum::long(1), Datum::long(2))), 2);
        assert_eq!(values(Transform::Bucket(4), "id", &ids), None, "bucket is not monotonic");
        assert!(values(Transform::Truncate(10), "id", &ids).is_some());
    }

    /// A table of `day` (a date) and `id` (a long), partitioned by the day.
    fn daily_table() -> TableMetadata {
        let spec = iceberg::spec::UnboundPartitionSpec::builder()
            .add_partition_field(1, "day_day", Transform::Day)
            .unwrap()
            .build();
        iceberg::spec::TableMetadataBuilder::new(
            schema(),
            spec,
            iceberg::spec::SortOrder::unsorted_order(),
            "file:///warehouse/t".to_string(),
            iceberg::spec::FormatVersion::V2,
            HashMap::new(),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata
    }

    /// A Parquet file of one row group per frame of `(day, ids)`.
    fn file_of_row_groups(path: &Path, row_groups: &[(i32, Vec<i64>)]) {
        use polars::prelude::{df, DataType, IntoLazy, ParquetWriter};
        let frames: Vec<_> = row_groups
            .iter()
            .map(|(day, ids)| {
                let frame = df!("day" => vec![*day; ids.len()], "id" => ids.clone()).unwrap();
                frame.lazy().with_column(polars::prelude::col("day").cast(DataType::Date))
            })
            .map(|frame| frame.collect().unwrap())
            .collect();
        let file = File::create(path).unwrap();
        let mut writer = ParquetWriter::new(file).batched(frames[0].schema()).unwrap();
        for frame in &frames {
            writer.write_batch(frame).unwrap();
        }
        writer.finish().unwrap();
    }

    /// The table file `fit` describes, written to `path` as `copy` would.
    fn write_fit(fit: &Fit, path: &Path) {
        let source = std::fs::read(&fit.source).unwrap();
        let mut bytes = Vec::new();
        for piece in &fit.pieces {
            bytes.extend_from_slice(&source[piece.start as usize..piece.end as usize]);
        }
        bytes.extend_from_slice(&fit.footer);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn row_groups_of_several_partitions_become_a_file_per_partition_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("clustered.parquet");
        // Day 19723 in the first and third row groups, 19724 in the second.
        file_of_row_groups(&source, &[(19723, vec![1, 2]), (19724, vec![3]), (19723, vec![4])]);
        let Ok(Plan::Fit(fits)) = fit(&daily_table(), &source) else { panic!("not split") };
        assert_eq!(fits.len(), 2);
        let first_day = Literal::Primitive(Datum::date(19723).literal().clone());
        let partition = |fit: &Fit| fit.partition.as_ref().unwrap().data().fields().to_vec();
        assert_eq!(partition(&fits[0]), [Some(first_day)]);
        // The magic and the first row group lie together; the third lies apart.
        assert_eq!(fits[0].pieces.len(), 2);
        assert_eq!(fits[0].pieces[0].start, 0);
        assert_eq!(fits[1].pieces.len(), 2);
        assert_eq!(fits[1].pieces[0], MAGIC);

        let mut read = Vec::new();
        for (index, fit) in fits.iter().enumerate() {
            let path = dir.path().join(format!("table-{index}.parquet"));
            write_fit(fit, &path);
            let file = File::open(&path).unwrap();
            let rows: Vec<i64> =
                parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
                    .unwrap()
                    .flat_map(|batch| {
                        let batch = batch.unwrap();
                        let ids = batch.column(1).as_any();
                        let ids = ids.downcast_ref::<arrow_array::Int64Array>().unwrap();
                        ids.values().to_vec()
                    })
                    .collect();
            assert_eq!(fit.metrics.rows, rows.len() as u64);
            assert_eq!(fit.metrics.split_offsets.first(), Some(&4), "the first row group's start");
            read.push(rows);
        }
        assert_eq!(read, [vec![1, 2, 4], vec![3]]);
        assert_eq!(fits[0].metrics.lower[&2], Datum::long(1));
        assert_eq!(fits[0].metrics.upper[&2], Datum::long(4));
    }

    #[test]
    fn a_row_group_spanning_partitions_leaves_the_file_to_be_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("mixed.parquet");
        file_of_row_groups(&source, &[(19723, vec![1]), (19724, vec![2])]);
        // Rewritten as one row group holding both days.
        let data = polars::prelude::LazyFrame::scan_parquet(
            polars::prelude::PlRefPath::new(source.to_str().unwrap()),
            Default::default(),
        )
        .unwrap()
        .collect()
        .unwrap();
        let mut data = data;
        let out = File::create(&source).unwrap();
        polars::prelude::ParquetWriter::new(out).finish(&mut data).unwrap();
        assert!(matches!(fit(&daily_table(), &source), Ok(Plan::Rewrite)));
    }

    #[test]
    fn bounds_widen_to_the_extremes_of_every_row_group() {
        let mut lower = HashMap::new();
        for value in [5, 3, 7] {
            widen(&mut lower, 1, Datum::long(value), std::cmp::Ordering::Less);
        }
        let mut upper = HashMap::new();
        for value in [5, 3, 7] {
            widen(&mut upper, 1, Datum::long(value), std::cmp::Ordering::Greater);
        }
        assert_eq!((lower[&1].clone(), upper[&1].clone()), (Datum::long(3), Datum::long(7)));
    }
}
