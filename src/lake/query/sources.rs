//! Where the names of a query lead: each table reference planned to the data files of its
//! snapshot (time travel and pruning applied), each dataset to its current version's files, and
//! then opened as lazy Polars scans. Planning reads metadata only (what `--explain` shows);
//! opening may download a remote table's planned files into the local cache.

use std::sync::Arc;

use polars::prelude::LazyFrame;
use serde::Serialize;

use super::statement::{Source, Target, Version};
use super::QueryError;
use crate::lake::tables::{FileSelection, SnapshotFiles, Tables, TablesHandle};
use crate::lake::{data_files, scan, scan_snapshot, Dataset, LakeError, ScanOptions, Warehouse};

/// What one name of a query read: for a table, the snapshot and how many of its data files
/// (and bytes) the query's comparisons left to read.
#[derive(Debug, Clone, Serialize)]
pub struct SourcePlan {
    pub name: String,
    pub kind: &'static str,
    pub snapshot_id: Option<i64>,
    pub planned_files: usize,
    pub total_files: u64,
    pub planned_bytes: u64,
    pub total_bytes: u64,
    /// The comparisons that pruned files.
    pub pruned_by: Vec<String>,
}

/// A source planned but not opened yet.
pub enum Input {
    Table(Box<SnapshotFiles>),
    Dataset(Dataset),
}

/// Plans every source, in order.
pub async fn plan(
    warehouse: &Warehouse,
    handle: &TablesHandle,
    sources: &[Source],
) -> Result<Vec<(Input, SourcePlan)>, QueryError> {
    let mut planned = Vec::with_capacity(sources.len());
    let mut tables: Option<Arc<Tables>> = None;
    for source in sources {
        planned.push(match &source.target {
            Target::Table(name) => {
                let tables = match &tables {
                    Some(t) => t.clone(),
                    None => tables.insert(handle.get().await?).clone(),
                };
                plan_table(&tables, name, source).await?
            }
            Target::Dataset(path) => plan_dataset(warehouse, path, source).await?,
        });
    }
    Ok(planned)
}

async fn plan_table(
    tables: &Tables,
    name: &str,
    source: &Source,
) -> Result<(Input, SourcePlan), QueryError> {
    let selection = FileSelection {
        snapshot_id: match source.version {
            Some(Version::Snapshot(id)) => Some(id),
            _ => None,
        },
        as_of_ms: match source.version {
            Some(Version::AsOfMillis(at)) => Some(at),
            _ => None,
        },
        comparisons: source.comparisons.clone(),
    };
    let files = tables.select_files(name, &selection).await?;
    let plan = SourcePlan {
        name: name.to_string(),
        kind: "table",
        snapshot_id: files.snapshot_id,
        planned_files: files.locations.len(),
        total_files: files.total_files,
        planned_bytes: files.planned_bytes,
        total_bytes: files.total_bytes,
        pruned_by: files.pruned_by.clone(),
    };
    Ok((Input::Table(Box::new(files)), plan))
}

async fn plan_dataset(
    warehouse: &Warehouse,
    path: &str,
    source: &Source,
) -> Result<(Input, SourcePlan), QueryError> {
    if source.version.is_some() {
        return Err(QueryError::Refused(format!(
            "dataset \"{path}\" keeps only its current version: time travel needs an Iceberg \
             table (promote it with an `iceberg` task)"
        )));
    }
    let dataset = warehouse.dataset(path)?;
    let name = path.to_string();
    blocking(path, move || {
        let files = data_files(&dataset.current()?)?;
        let bytes = files.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
        let plan = SourcePlan {
            name,
            kind: "dataset",
            snapshot_id: None,
            planned_files: files.len(),
            total_files: files.len() as u64,
            planned_bytes: bytes,
            total_bytes: bytes,
            pruned_by: Vec::new(),
        };
        Ok((Input::Dataset(dataset), plan))
    })
    .await
}

/// Opens planned sources as lazy scans, in order.
pub async fn open(warehouse: &Warehouse, inputs: Vec<Input>) -> Result<Vec<LazyFrame>, QueryError> {
    let warehouse = warehouse.clone();
    blocking("the planned files", move || {
        inputs
            .iter()
            .map(|input| match input {
                Input::Table(files) => scan_snapshot(&warehouse, files),
                Input::Dataset(dataset) => scan(dataset, &ScanOptions::default()),
            })
            .collect::<Result<Vec<_>, LakeError>>()
    })
    .await
}

/// Runs file-system work off the async workers.
async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, LakeError> + Send + 'static,
) -> Result<T, QueryError> {
    crate::process::blocking(work)
        .await
        .map_err(|e| LakeError::NotSupported(format!("reading {what}: {e}")))?
        .map_err(QueryError::from)
}
