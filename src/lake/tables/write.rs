//! Writing rows into a table's data files: record batches (read from a dataset's Parquet files
//! with parquet-rs, or handed over by a caller as a stream) are conformed to the table's Arrow
//! schema (which carries the Iceberg field ids), split by the table's partition spec and
//! gathered per partition (`split`), and written by iceberg-rust's Parquet data file writers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{new_null_array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;

use super::split::{Assigned, Gather, Splitter};
use super::TableError;

/// Rows per record batch read from the dataset.
const BATCH_ROWS: usize = 64 * 1024;

/// The Arrow schema of a dataset's first Parquet file, with types Iceberg can hold.
pub fn dataset_schema(files: &[PathBuf]) -> Result<ArrowSchema, TableError> {
    let first = files
        .first()
        .ok_or_else(|| TableError::Invalid("the dataset has no Parquet files".into()))?;
    let file = std::fs::File::open(first)
        .map_err(|e| TableError::Invalid(format!("{}: {e}", first.display())))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let fields: Vec<Field> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), iceberg_type(f.data_type()), true))
        .collect();
    Ok(ArrowSchema::new(fields))
}

/// The nearest Arrow type with an Iceberg equivalent.
fn iceberg_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
        DataType::Date64 => DataType::Date32,
        DataType::Dictionary(_, value) => iceberg_type(value),
        other => other.clone(),
    }
}

/// Reshapes `batch` to `schema`: columns by name, cast to the table's types; a column the data
/// lacks is all nulls (the table has it from an earlier write).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, TableError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => arrow_cast::cast(column, field.data_type()).map_err(|e| {
                TableError::Invalid(format!(
                    "column `{}` is {} in the data but {} in the table: {e}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                ))
            }),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A Parquet file to write into a table.
#[derive(Debug, Clone)]
pub enum Source {
    /// A dataset file on the local disk (or the warehouse cache).
    Local(PathBuf),
    /// One of the table's own data files (compaction), read through the table's FileIO.
    Table(String),
}

/// A batch conformed to the table schema and, for a partitioned table, its rows assigned to
/// partitions.
enum Piece {
    Unpartitioned(RecordBatch),
    Partitioned(Assigned),
}

/// Streams one Parquet file: a blocking thread decodes, conforms and splits it batch by batch,
/// at most two batches ahead of the writer, so memory stays bounded whatever the file's size.
async fn stream_file(
    table: &Table,
    source: &Source,
    schema: SchemaRef,
    splitter: Option<Arc<Splitter>>,
) -> Result<mpsc::Receiver<Result<Piece, TableError>>, TableError> {
    enum Input {
        File(std::fs::File),
        Bytes(bytes::Bytes),
    }
    let input = match source {
        Source::Local(path) => Input::File(
            std::fs::File::open(path)
                .map_err(|e| TableError::Invalid(format!("{}: {e}", path.display())))?,
        ),
        Source::Table(location) => Input::Bytes(table.file_io().new_input(location)?.read().await?),
    };
    let (sender, receiver) = mpsc::channel(2);
    // Stops at its next batch once the receiver is dropped.
    crate::process::blocking_producer(move || {
        let parts = |batch: RecordBatch| piece(&batch, &schema, splitter.as_deref());
        fn batches<R: parquet::file::reader::ChunkReader + 'static>(
            reader: R,
        ) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, TableError> {
            Ok(ParquetRecordBatchReaderBuilder::try_new(reader)?
                .with_batch_size(BATCH_ROWS)
                .build()?)
        }
        let reader = match input {
            Input::File(file) => batches(file),
            Input::Bytes(bytes) => batches(bytes),
        };
        let reader = match reader {
            Ok(reader) => reader,
            Err(e) => {
                let _ = sender.blocking_send(Err(e));
                return;
            }
        };
        for batch in reader {
            let item = batch.map_err(TableError::from).and_then(parts);
            let failed = item.is_err();
            if sender.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    Ok(receiver)
}

/// How much of a write is held in memory: rows held back to gather them by partition, and the
/// rows of a row group (each open partition file holds one until it is written).
#[derive(Debug, Clone, Copy)]
pub struct Buffering {
    pub held_rows: usize,
    pub row_group_rows: usize,
}

impl Buffering {
    /// A dataset promotion: large batches, for fewer and larger writes.
    pub const PROMOTION: Buffering =
        Buffering { held_rows: 2 * 1024 * 1024, row_group_rows: 256 * 1024 };
    /// Rows streamed in by a caller (a Kafka ingest), where bounded memory matters more: with
    /// 256k rows held and 256k-row groups a Kafka ingest peaked at 250-280 MB uncompressed and
    /// 290-340 MB from a zstd topic; with these at 180-200 MB and 266-273 MB, at the same
    /// throughput (`LAKEWARD_BENCH_PARTS=throughput cargo bench --bench streaming`).
    pub const STREAM: Buffering = Buffering { held_rows: 64 * 1024, row_group_rows: 128 * 1024 };

    /// Data files are zstd-compressed at its fastest level (Iceberg's default codec): files
    /// about a third of the uncompressed size, for little CPU.
    fn writer_properties(self) -> WriterProperties {
        let level = ZstdLevel::try_new(1).expect("1 is a valid zstd level");
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .build()
    }
}

/// What a write produced: data files not yet committed, and their row count.
pub struct Written {
    pub files: Vec<DataFile>,
    pub rows: u64,
}

impl Written {
    /// Adds what another write produced.
    pub fn add(&mut self, other: Written) {
        self.files.extend(other.files);
        self.rows += other.rows;
    }
}

/// Writes every row of `files` as new data files of `table`, partitioned by its spec.
pub async fn write_data_files(
    table: &Table,
    files: &[Source],
    prefix: &str,
) -> Result<Written, TableError> {
    let mut writer = DataWriter::new(table, prefix, Buffering::PROMOTION).await?;
    for source in files {
        let parts =
            stream_file(table, source, writer.arrow_schema.clone(), writer.splitter.clone());
        let mut parts = parts.await?;
        while let Some(piece) = parts.recv().await {
            writer.write_piece(piece?).await?;
        }
    }
    writer.finish().await
}

/// Writes record batches into new data files of a table: each batch is conformed to the
/// table's schema, split by its partition spec and gathered per partition.
pub struct DataWriter {
    arrow_schema: SchemaRef,
    splitter: Option<Arc<Splitter>>,
    /// One of the two: a writer per partition, or a single writer.
    fanout: Option<FanoutWriter<Builder>>,
    single: Option<<Builder as IcebergWriterBuilder>::R>,
    gather: Gather,
    rows: u64,
}

type Builder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

impl DataWriter {
    /// A writer of data files named `prefix-…` for `table`, holding as much in memory as
    /// `buffering` says (memory against fewer, larger writes).
    pub async fn new(
        table: &Table,
        prefix: &str,
        buffering: Buffering,
    ) -> Result<DataWriter, TableError> {
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let arrow_schema: SchemaRef = Arc::new(schema_to_arrow_schema(&schema)?);
        let spec = metadata.default_partition_spec().clone();
        let builder =
            DataFileWriterBuilder::new(RollingFileWriterBuilder::new_with_default_file_size(
                ParquetWriterBuilder::new(buffering.writer_properties(), schema.clone()),
                table.file_io().clone(),
                DefaultLocationGenerator::new(metadata)?,
                DefaultFileNameGenerator::new(prefix.to_string(), None, DataFileFormat::Parquet),
            ));
        let splitter = if spec.is_unpartitioned() {
            None
        } else {
            Some(Arc::new(Splitter::try_new(&schema, &spec)?))
        };
        let (fanout, single) = match splitter {
            Some(_) => (Some(FanoutWriter::new(builder)), None),
            None => (None, Some(builder.build(None).await?)),
        };
        Ok(DataWriter {
            arrow_schema,
            splitter,
            fanout,
            single,
            gather: Gather::new(buffering.held_rows),
            rows: 0,
        })
    }

    /// Writes the rows of `batch`.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), TableError> {
        let piece = piece(batch, &self.arrow_schema, self.splitter.as_deref())?;
        self.write_piece(piece).await
    }

    async fn write_piece(&mut self, piece: Piece) -> Result<(), TableError> {
        match (piece, self.fanout.as_mut(), self.single.as_mut()) {
            (Piece::Partitioned(assigned), Some(writer), _) => {
                self.rows += assigned.batch.num_rows() as u64;
                for (key, batch) in self.gather.add(assigned)? {
                    writer.write(key, batch).await?;
                }
            }
            (Piece::Unpartitioned(batch), _, Some(writer)) => {
                self.rows += batch.num_rows() as u64;
                writer.write(batch).await?;
            }
            _ => unreachable!("partitioned batches go with the fanout writer"),
        }
        Ok(())
    }

    /// Closes the data files; they are not part of the table until committed.
    pub async fn finish(mut self) -> Result<Written, TableError> {
        let files = match (self.fanout, self.single) {
            (Some(mut writer), _) => {
                for (key, batch) in self.gather.drain()? {
                    writer.write(key, batch).await?;
                }
                writer.close().await?
            }
            (_, Some(mut writer)) => writer.close().await?,
            _ => Vec::new(),
        };
        Ok(Written { files, rows: self.rows })
    }
}

/// `batch` conformed to the table's schema and, for a partitioned table, assigned to partitions.
fn piece(
    batch: &RecordBatch,
    schema: &SchemaRef,
    splitter: Option<&Splitter>,
) -> Result<Piece, TableError> {
    let batch = conform(batch, schema)?;
    match splitter {
        Some(splitter) => Ok(Piece::Partitioned(splitter.assign(batch)?)),
        None => Ok(Piece::Unpartitioned(batch)),
    }
}

/// The Parquet files of a dataset folder (or the file itself).
pub fn parquet_files(path: &Path) -> Result<Vec<PathBuf>, TableError> {
    let files = crate::lake::frames::data_files(path)?;
    if let Some(other) = files.iter().find(|f| f.extension().is_none_or(|e| e != "parquet")) {
        return Err(TableError::Invalid(format!(
            "only Parquet datasets can be promoted to a table; {} is not Parquet",
            other.display()
        )));
    }
    Ok(files)
}
