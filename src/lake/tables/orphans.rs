//! Orphan files: files under a table's location that no snapshot (its manifests or its
//! summary properties) and no metadata file names,
//! left by commits that failed after writing (a full disk, a killed process) or by snapshots
//! expired before expiry deleted files.
//!
//! Only files older than a safety age are removed, so the data files of a commit still in
//! progress (written before its snapshot exists) are never touched; only files inside the
//! table's own location, never metadata JSON files (expiry deletes those, by its own age),
//! and never a file another table of the catalog references.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use futures::TryStreamExt;
use object_store::ObjectStore;
use serde::Serialize;

use super::maintenance::referenced_files;
use super::{location, TableError, Tables};
use crate::lake::LakeError;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct OrphanRemoval {
    pub deleted_files: usize,
    pub deleted_bytes: u64,
    /// Unreferenced files left because they are younger than the safety age.
    pub recent_files_kept: usize,
}

/// A file found under a table's location.
pub(super) struct Stored {
    pub path: String,
    pub bytes: u64,
    pub modified_ms: i64,
}

impl Tables {
    /// Deletes the files under the table's location that nothing references and that were
    /// last modified before `older_than_ms`.
    pub async fn remove_orphan_files(
        &self,
        name: &str,
        older_than_ms: i64,
    ) -> Result<OrphanRemoval, TableError> {
        let table = self.load(name).await?;
        let metadata = table.metadata();
        let own = metadata.location().to_string();
        let mut referenced: HashSet<String> = HashSet::new();
        let mut manifests = HashMap::new();
        for snapshot in metadata.snapshots() {
            referenced.extend(referenced_files(&table, snapshot, &mut manifests).await?);
            // A writer's own summary properties may name files of the table (a window
            // computation's saved state, see `Tables::put_file`).
            let properties = snapshot.summary().additional_properties.values();
            referenced.extend(properties.filter(|v| v.starts_with(&own)).cloned());
        }
        let mut removal = OrphanRemoval::default();
        let mut candidates: HashMap<String, u64> = HashMap::new();
        for file in list_files(&own).await? {
            let history =
                file.path.ends_with(".metadata.json") || file.path.contains("version-hint");
            if history || referenced.contains(&file.path) || !location::is_inside(&own, &file.path)
            {
                continue;
            }
            if file.modified_ms >= older_than_ms {
                removal.recent_files_kept += 1;
                continue;
            }
            candidates.insert(file.path, file.bytes);
        }
        if !candidates.is_empty() {
            let paths: HashSet<String> = candidates.keys().cloned().collect();
            for path in self.referenced_by_other_tables(name, &paths).await? {
                candidates.remove(&path);
            }
        }
        for (path, bytes) in candidates {
            table.file_io().delete(&path).await?;
            removal.deleted_files += 1;
            removal.deleted_bytes += bytes;
        }
        Ok(removal)
    }
}

/// Every file under `location`, named as Iceberg names them there (`file://…`, a bare path,
/// or `s3://bucket/…`).
pub(super) async fn list_files(location: &str) -> Result<Vec<Stored>, TableError> {
    if let Some(rest) = location.strip_prefix("s3://").or_else(|| location.strip_prefix("s3a://")) {
        let scheme = &location[..location.len() - rest.len()];
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| LakeError::Remote(format!("{location}: {e}")))?;
        let prefix = object_store::path::Path::from(prefix);
        let objects: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| LakeError::Remote(format!("listing {location}: {e}")))?;
        return Ok(objects
            .into_iter()
            .map(|meta| Stored {
                path: format!("{scheme}{bucket}/{}", meta.location),
                bytes: meta.size,
                modified_ms: meta.last_modified.timestamp_millis(),
            })
            .collect());
    }
    let (scheme, root) = match location.strip_prefix("file://") {
        Some(root) => ("file://", root),
        None => ("", location),
    };
    let root = root.to_string();
    let listed = root.clone();
    let found = crate::process::blocking(move || walk(Path::new(&listed)))
        .await
        .map_err(|e| LakeError::Remote(format!("listing {location}: {e}")))?
        .map_err(|source| LakeError::Io { path: root.into(), source })?;
    Ok(found
        .into_iter()
        .map(|(path, bytes, modified_ms)| Stored {
            path: format!("{scheme}{path}"),
            bytes,
            modified_ms,
        })
        .collect())
}

/// Files below `root` (links are not followed): path, size, modification time.
fn walk(root: &Path) -> std::io::Result<Vec<(String, u64, i64)>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let meta = entry.metadata()?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64);
                found.push((entry.path().display().to_string(), meta.len(), modified));
            }
        }
    }
    Ok(found)
}
