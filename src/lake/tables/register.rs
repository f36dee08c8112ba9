//! Adding a dataset's Parquet files to a table without decoding them. A file *fits* when its
//! columns are the table's (the same names, each stored as Iceberg stores that type) and all
//! its rows fall in one partition of the table's spec, which its column statistics prove
//! (a monotonic transform of the column's minimum and maximum gives the same value). A fitting
//! file is copied byte for byte into the table's data folder with a new footer: the same row
//! groups, the table's field ids, Iceberg's logical types and no Arrow schema. Its data file
//! entry (rows, sizes, value and null counts, bounds, partition) is read from that footer.
//!
//! Files that do not fit are left to `write`, which decodes and rewrites them.
//! This module must not change the dataset's files (a caller's scratch files, such as
//! `relayout`'s, may be moved into the table instead of copied), and never reads a data page.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, Datum, Literal, NestedField, PartitionKey,
    PrimitiveType, Struct, TableMetadata, Transform, Type,
};
use iceberg::table::Table;
use iceberg::transform::create_transform_function;
use iceberg::writer::file_writer::location_generator::{
    DefaultLocationGenerator, LocationGenerator,
};
use parquet::basic::{ConvertedType, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::file::metadata::{
    FileMetaData, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader, ParquetMetaDataWriter,
};
use parquet::file::statistics::Statistics;
use parquet::schema::types::{SchemaDescriptor, Type as ParquetType};

use super::file_copy::{self, FileCopy};
use super::write::Written;
use super::TableError;

/// Text bounds longer than this are left out of the table's metadata (Iceberg's writers
/// truncate theirs to 16 characters; long values only bloat the manifests).
const MAX_TEXT_BOUND: usize = 64;

/// A dataset file that can join the table as it is.
pub(super) struct Fit {
    source: PathBuf,
    /// Where the file's own footer begins: the bytes before it are copied unchanged.
    data_end: u64,
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
    Fit(Box<Fit>),
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
            Ok(Plan::Fit(fit)) => fits.push(*fit),
            Ok(Plan::Empty) => {}
            Ok(Plan::Rewrite) | Err(_) => rest.push(file.clone()),
        }
    }
    (fits, rest)
}

/// Copies each fitting file into `table`'s data folder (named `prefix-…`) with its new
/// footer; with `take_sources`, the files are scratch files that may be moved there instead.
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
            head: fit.data_end,
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
    let metrics = metrics(&parquet, &columns);
    let spec = metadata.default_partition_spec();
    let partition = if spec.is_unpartitioned() {
        None
    } else {
        let Some(values) = partition_values(spec.fields(), schema.as_ref(), &metrics)? else {
            return Ok(Plan::Rewrite);
        };
        let data = Struct::from_iter(values);
        Some(PartitionKey::new(spec.as_ref().clone(), schema.clone(), data))
    };
    let footer = footer(&parquet, &columns)?;
    let fit = Fit { source: path.to_path_buf(), data_end, footer, partition, metrics };
    Ok(Plan::Fit(Box::new(fit)))
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

/// The file's footer rewritten for the table: its row groups as they are, under a schema
/// carrying the table's field ids and Iceberg's annotations, without other key-value metadata
/// (an Arrow schema there would make readers expect the dataset's own types).
fn footer(parquet: &ParquetMetaData, columns: &[&NestedField]) -> Result<Vec<u8>, TableError> {
    let file = parquet.file_metadata();
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
    let rewritten = FileMetaData::new(
        file.version(),
        file.num_rows(),
        file.created_by().map(str::to_string),
        None,
        Arc::new(SchemaDescriptor::new(Arc::new(schema))),
        file.column_orders().cloned(),
    );
    let rewritten = ParquetMetaData::new(rewritten, parquet.row_groups().to_vec());
    let mut footer = Vec::new();
    ParquetMetaDataWriter::new(&mut footer, &rewritten).finish()?;
    Ok(footer)
}

/// The file's metrics by table field id, from its row groups' column chunks.
fn metrics(parquet: &ParquetMetaData, columns: &[&NestedField]) -> Metrics {
    let mut metrics =
        Metrics { rows: parquet.file_metadata().num_rows() as u64, ..Metrics::default() };
    let mut bounds_known = vec![true; columns.len()];
    let mut nulls_known = vec![true; columns.len()];
    for group in parquet.row_groups() {
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
    schema: &iceberg::spec::Schema,
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
    use iceberg::spec::{NestedField, PartitionSpec, Schema};

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
