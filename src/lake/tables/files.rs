//! The data files of a table's snapshot, for engines that read Parquet themselves (Polars SQL):
//! lakeward's own Iceberg planning names the files, the engine scans them.
//!
//! Such an engine matches columns by name, not by Iceberg field id, and applies no delete
//! files; a table that needs either (a renamed column, row-level deletes by another writer) is
//! refused with a clear error rather than read wrongly.

use futures::TryStreamExt;
use iceberg::expr::Predicate;
use iceberg::scan::FileScanTask;
use iceberg::spec::Schema;

use super::inspect::{comparison, pick_snapshot, summary_number};
use super::{TableError, Tables};

/// What a reader needs to scan one snapshot of a table.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    /// `None` for a table without data yet.
    pub snapshot_id: Option<i64>,
    /// The data files' locations (`file:///…`, `s3://…`): those whose partition and column
    /// bounds can match the selection's comparisons.
    pub locations: Vec<String>,
    /// The columns a reader should see: the table's current schema, or the snapshot's own
    /// when reading an older one.
    pub schema: Schema,
    /// Bytes of the planned files.
    pub planned_bytes: u64,
    /// Data files and bytes of the whole snapshot.
    pub total_files: u64,
    pub total_bytes: u64,
    /// The comparisons that pruned files (`order_date = 2024-01-05`); those that could not be
    /// used (unknown column, value of another type) are left to the reader's own filter.
    pub pruned_by: Vec<String>,
}

/// Which snapshot to read, and comparisons every row read must pass: they prune files whose
/// partition values or column bounds rule them out. The reader still filters the rows.
#[derive(Debug, Default, Clone)]
pub struct FileSelection {
    pub snapshot_id: Option<i64>,
    /// The snapshot current at this time (milliseconds since the epoch).
    pub as_of_ms: Option<i64>,
    pub comparisons: Vec<Comparison>,
}

/// `column op value`, `op` one of `=`, `!=`, `<`, `<=`, `>`, `>=`; `value` as written (read as
/// the column's type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub column: String,
    pub op: &'static str,
    pub value: String,
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.column, self.op, self.value)
    }
}

impl Tables {
    /// The data files of table `name`'s current snapshot.
    pub async fn snapshot_files(&self, name: &str) -> Result<SnapshotFiles, TableError> {
        self.select_files(name, &FileSelection::default()).await
    }

    /// The data files of the snapshot `selection` picks that may hold rows it wants.
    pub async fn select_files(
        &self,
        name: &str,
        selection: &FileSelection,
    ) -> Result<SnapshotFiles, TableError> {
        let table = self.load(name).await?;
        let metadata = table.metadata();
        let picked = pick_snapshot(&table, name, selection.snapshot_id, selection.as_of_ms)?;
        let snapshot = picked.and_then(|id| metadata.snapshot_by_id(id));
        let schema = match snapshot {
            Some(s) if selection.snapshot_id.is_some() || selection.as_of_ms.is_some() => {
                s.schema(metadata)?.as_ref().clone()
            }
            _ => metadata.current_schema().as_ref().clone(),
        };
        if let Some(renamed) = renamed_column(metadata.schemas_iter().map(|s| s.as_ref()), &schema)
        {
            return Err(TableError::Invalid(format!(
                "table {name}: column `{renamed}` was renamed, and SQL reads data files by \
                 column name; rewrite the table (overwrite) to read it with SQL"
            )));
        }
        let Some(snapshot) = snapshot else {
            return Ok(SnapshotFiles {
                snapshot_id: None,
                locations: Vec::new(),
                schema,
                planned_bytes: 0,
                total_files: 0,
                total_bytes: 0,
                pruned_by: Vec::new(),
            });
        };
        let mut filter: Option<Predicate> = None;
        let mut pruned_by = Vec::new();
        for c in &selection.comparisons {
            if let Ok(next) = comparison(&schema, &c.column, c.op, &c.value) {
                filter = Some(match filter {
                    Some(p) => p.and(next),
                    None => next,
                });
                pruned_by.push(c.to_string());
            }
        }
        let mut scan = table.scan().snapshot_id(snapshot.snapshot_id());
        if let Some(filter) = filter {
            scan = scan.with_filter(filter);
        }
        let planned: Vec<FileScanTask> = scan.build()?.plan_files().await?.try_collect().await?;
        if planned.iter().any(|task| !task.deletes.is_empty()) {
            return Err(TableError::Invalid(format!(
                "table {name} has row-level delete files (written by another engine), which SQL \
                 does not apply yet; compact the table first"
            )));
        }
        // A large file may be planned as several byte ranges; the engine reads it whole.
        let mut files: Vec<(String, u64)> =
            planned.into_iter().map(|t| (t.data_file_path, t.file_size_in_bytes)).collect();
        files.dedup_by(|a, b| a.0 == b.0);
        Ok(SnapshotFiles {
            snapshot_id: Some(snapshot.snapshot_id()),
            planned_bytes: files.iter().map(|(_, size)| size).sum(),
            locations: files.into_iter().map(|(location, _)| location).collect(),
            schema,
            total_files: summary_number(snapshot, "total-data-files"),
            total_bytes: summary_number(snapshot, "total-files-size"),
            pruned_by,
        })
    }
}

/// A current column that some schema of the table's history knew by another name.
fn renamed_column<'a>(
    history: impl Iterator<Item = &'a Schema>,
    current: &Schema,
) -> Option<String> {
    for schema in history {
        for field in schema.as_struct().fields() {
            if let Some(now) = current.field_by_id(field.id) {
                if now.name != field.name {
                    return Some(format!("{} (once `{}`)", now.name, field.name));
                }
            }
        }
    }
    None
}
