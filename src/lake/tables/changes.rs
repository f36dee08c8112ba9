//! What a table gained since a snapshot: the data files its append commits added after it,
//! oldest commit first, and their rows read as record batches of the columns asked for. A
//! reader that records the snapshot it processed (in a commit of its own) reads each appended
//! row exactly once. Compaction's rewrites are skipped (their rows were there before); an
//! overwrite or a delete since the snapshot is refused, as its rows cannot be told apart as
//! new.

use std::sync::Arc;

use arrow_array::{new_null_array, RecordBatch};
use arrow_schema::{Field, Schema as ArrowSchema, SchemaRef};
use bytes::Bytes;
use iceberg::spec::{DataContentType, ManifestContentType, ManifestStatus, Operation};
use iceberg::table::Table;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::{TableError, Tables};

/// A data file an append commit added.
#[derive(Debug, Clone)]
pub struct AppendedFile {
    pub path: String,
    pub snapshot_id: i64,
}

/// The files appended after a snapshot, up to the table's current one.
#[derive(Debug)]
pub struct Appended {
    /// The table as read (for [`Tables::fetch_file`]).
    pub table: Table,
    /// The current snapshot: where a reader that processes `files` stands afterwards.
    pub snapshot_id: Option<i64>,
    /// The snapshots after `after`, oldest first (appends, rewrites and empty ones).
    pub snapshots: Vec<i64>,
    pub files: Vec<AppendedFile>,
}

impl Tables {
    /// The snapshots commits added to `name` between two of its metadata files: those of
    /// `current` newer (by sequence number) than every snapshot of `previous` (`None`: the
    /// table's first metadata), oldest first. What data-aware scheduling records as the
    /// snapshots that triggered a run.
    pub async fn snapshots_added(
        &self,
        name: &str,
        previous: Option<&str>,
        current: &str,
    ) -> Result<Vec<i64>, TableError> {
        let table = self.load(name).await?;
        let io = table.file_io();
        let seen = match previous {
            Some(location) => iceberg::spec::TableMetadata::read_from(io, location)
                .await?
                .snapshots()
                .map(|s| s.sequence_number())
                .max(),
            None => None,
        };
        let current = iceberg::spec::TableMetadata::read_from(io, current).await?;
        let mut added: Vec<(i64, i64)> = current
            .snapshots()
            .filter(|s| seen.is_none_or(|seen| s.sequence_number() > seen))
            .map(|s| (s.sequence_number(), s.snapshot_id()))
            .collect();
        added.sort_unstable();
        Ok(added.into_iter().map(|(_, id)| id).collect())
    }

    /// The data files `name` gained after snapshot `after` (everything for `None`).
    pub async fn appended_since(
        &self,
        name: &str,
        after: Option<i64>,
    ) -> Result<Appended, TableError> {
        let table = self.load(name).await?;
        let metadata = table.metadata();
        let mut chain = Vec::new();
        let mut cursor = metadata.current_snapshot_id();
        let mut reached = after.is_none();
        while let Some(id) = cursor {
            if Some(id) == after {
                reached = true;
                break;
            }
            let Some(snapshot) = metadata.snapshot_by_id(id) else { break };
            chain.push(snapshot.clone());
            cursor = snapshot.parent_snapshot_id();
        }
        if !reached {
            return Err(TableError::Invalid(format!(
                "snapshot {} of {name}, where the reader last stopped, is no longer in the \
                 table's history (its snapshots were expired before they were read, or the table \
                 was replaced): keep snapshots longer than the reader may pause, or start the \
                 reader over on a new output table",
                after.unwrap_or_default()
            )));
        }
        chain.reverse();
        let mut files = Vec::new();
        for snapshot in &chain {
            let id = snapshot.snapshot_id();
            match snapshot.summary().operation {
                Operation::Append => {}
                Operation::Replace => continue,
                Operation::Overwrite | Operation::Delete => {
                    return Err(TableError::Invalid(format!(
                        "snapshot {id} of {name} {}s rows: an incremental reader can only follow \
                         appends (and compaction)",
                        snapshot.summary().operation.as_str()
                    )))
                }
            }
            let list = table.manifest_list_reader(snapshot).load().await?;
            for manifest in list.entries() {
                if manifest.added_snapshot_id != id || manifest.content != ManifestContentType::Data
                {
                    continue;
                }
                let loaded = manifest.load_manifest(table.file_io()).await?;
                for entry in loaded.entries() {
                    let added = entry.status() == ManifestStatus::Added
                        && entry.snapshot_id() == Some(id)
                        && entry.content_type() == DataContentType::Data;
                    if added {
                        files.push(AppendedFile {
                            path: entry.file_path().to_string(),
                            snapshot_id: id,
                        });
                    }
                }
            }
        }
        let snapshot_id = metadata.current_snapshot_id();
        let snapshots = chain.iter().map(|s| s.snapshot_id()).collect();
        Ok(Appended { snapshot_id, snapshots, files, table })
    }

    /// The bytes of a file of `table` (data files, or files written by [`Tables::put_file`]).
    pub async fn fetch_file(table: &Table, path: &str) -> Result<Bytes, TableError> {
        Ok(table.file_io().new_input(path)?.read().await?)
    }

    /// Writes `bytes` to a new file `<table location>/<folder>/<unique name>.<extension>` and
    /// returns its path; a commit can then name it in a summary property (such files count as
    /// referenced, see `orphans`).
    pub async fn put_file(
        table: &Table,
        folder: &str,
        extension: &str,
        bytes: Vec<u8>,
    ) -> Result<String, TableError> {
        let name =
            format!("{}-{}", chrono::Utc::now().timestamp_millis(), super::data_file_prefix());
        let path = format!(
            "{}/{folder}/{name}.{extension}",
            table.metadata().location().trim_end_matches('/')
        );
        table.file_io().new_output(&path)?.write(Bytes::from(bytes)).await?;
        Ok(path)
    }
}

/// The table's current schema as Arrow, for [`decode_columns`].
pub fn current_arrow_schema(table: &Table) -> Result<SchemaRef, TableError> {
    let schema = table.metadata().current_schema();
    Ok(Arc::new(iceberg::arrow::schema_to_arrow_schema(schema)?))
}

/// Decodes `columns` of a Parquet file into batches shaped as `schema` (the table's current
/// one, projected, every column nullable, without Iceberg's field ids, so the batches can go
/// to another table): a column an older file lacks is all nulls. CPU-bound: call it off the
/// async runtime.
pub fn decode_columns(
    bytes: Bytes,
    columns: &[String],
    schema: &ArrowSchema,
) -> Result<Vec<RecordBatch>, TableError> {
    let target = Arc::new(ArrowSchema::new(
        columns
            .iter()
            .map(|c| {
                schema
                    .field_with_name(c)
                    .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                    .map_err(|_| TableError::Invalid(format!("the table has no column `{c}`")))
            })
            .collect::<Result<Vec<_>, _>>()?,
    ));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(64 * 1024);
    let file_schema = builder.schema().clone();
    let present: Vec<usize> =
        target.fields().iter().filter_map(|f| file_schema.index_of(f.name()).ok()).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), present);
    let mut batches = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let columns = target
            .fields()
            .iter()
            .map(|field| match batch.column_by_name(field.name()) {
                Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
                Some(column) => arrow_cast::cast(column, field.data_type()),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        batches.push(RecordBatch::try_new(target.clone(), columns)?);
    }
    Ok(batches)
}
