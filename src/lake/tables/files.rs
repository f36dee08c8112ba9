//! The data files of a table's snapshot, for engines that read Parquet themselves (Polars SQL):
//! lakeward's own Iceberg planning names the files, the engine scans them.
//!
//! Such an engine matches columns by name, not by Iceberg field id, and applies no delete
//! files; a table that needs either (a renamed column, row-level deletes by another writer) is
//! refused with a clear error rather than read wrongly.

use futures::TryStreamExt;
use iceberg::scan::FileScanTask;
use iceberg::spec::Schema;

use super::{TableError, Tables};

/// What a reader needs to scan one snapshot of a table.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    /// `None` for a table without data yet.
    pub snapshot_id: Option<i64>,
    /// The data files' locations (`file:///…`, `s3://…`).
    pub locations: Vec<String>,
    /// The table's current schema: the columns a reader should see.
    pub schema: Schema,
}

impl Tables {
    /// The data files of table `name`'s current snapshot.
    pub async fn snapshot_files(&self, name: &str) -> Result<SnapshotFiles, TableError> {
        let table = self.load(name).await?;
        let metadata = table.metadata();
        let schema = metadata.current_schema().as_ref().clone();
        if let Some(renamed) = renamed_column(metadata.schemas_iter().map(|s| s.as_ref()), &schema)
        {
            return Err(TableError::Invalid(format!(
                "table {name}: column `{renamed}` was renamed, and SQL reads data files by \
                 column name; rewrite the table (overwrite) to read it with SQL"
            )));
        }
        let Some(snapshot_id) = metadata.current_snapshot_id() else {
            return Ok(SnapshotFiles { snapshot_id: None, locations: Vec::new(), schema });
        };
        let scan = table.scan().snapshot_id(snapshot_id).build()?;
        let planned: Vec<FileScanTask> = scan.plan_files().await?.try_collect().await?;
        if planned.iter().any(|task| !task.deletes.is_empty()) {
            return Err(TableError::Invalid(format!(
                "table {name} has row-level delete files (written by another engine), which SQL \
                 does not apply yet; compact the table first"
            )));
        }
        // A large file may be planned as several byte ranges; the engine reads it whole.
        let mut locations: Vec<String> = planned.into_iter().map(|t| t.data_file_path).collect();
        locations.dedup();
        Ok(SnapshotFiles { snapshot_id: Some(snapshot_id), locations, schema })
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
