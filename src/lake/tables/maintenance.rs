//! Table upkeep: compaction (many small data files of a partition rewritten into few large
//! ones, as one `replace` snapshot that changes no row) and snapshot expiry (old snapshots
//! dropped, then the files only they referenced deleted, and the metadata files older than
//! the same age that the table's metadata log no longer lists). Expiry deletes only files
//! inside the table's own location that no snapshot of any table in the catalog still
//! references, so a crafted commit cannot turn it against another table.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{ManifestEntryRef, Operation, Struct};
use iceberg::table::Table;
use iceberg::TableUpdate;
use serde::Serialize;

use super::commit::{commit_change, live_entries, Change};
use super::write::Source;
use super::{location, TableError, Tables};

/// Data files smaller than this are compacted (Iceberg's default target is 512 MB).
pub const SMALL_FILE_BYTES: u64 = 128 * 1024 * 1024;

#[derive(Debug, Serialize)]
pub struct Compaction {
    /// `None` when there was nothing to compact.
    pub snapshot_id: Option<i64>,
    pub files_before: usize,
    pub files_after: usize,
    pub rewritten_files: usize,
    pub rows: u64,
}

#[derive(Debug, Serialize)]
pub struct Expiry {
    pub expired_snapshots: Vec<i64>,
    pub deleted_files: usize,
    /// Metadata JSON files (one per commit, each holding every kept snapshot) deleted.
    pub deleted_metadata_files: usize,
}

impl Tables {
    /// Rewrites the small data files of every partition that has more than one.
    pub async fn compact(&self, name: &str) -> Result<Compaction, TableError> {
        let table = self.load(name).await?;
        let (_, live) = live_entries(&table).await?;
        let mut by_partition: HashMap<&Struct, Vec<&ManifestEntryRef>> = HashMap::new();
        for entry in live.iter().filter(|e| e.data_file().file_size_in_bytes() < SMALL_FILE_BYTES) {
            by_partition.entry(entry.data_file().partition()).or_default().push(entry);
        }
        let chosen: Vec<&ManifestEntryRef> =
            by_partition.into_values().filter(|files| files.len() > 1).flatten().collect();
        if chosen.is_empty() {
            return Ok(Compaction {
                snapshot_id: None,
                files_before: live.len(),
                files_after: live.len(),
                rewritten_files: 0,
                rows: 0,
            });
        }
        let paths: Vec<Source> =
            chosen.iter().map(|e| Source::Table(e.data_file().file_path().to_string())).collect();
        let prefix = format!("compacted-{}", crate::random::hex_digits(12));
        let written = super::write::write_data_files(&table, &paths, &prefix).await?;
        let before: u64 = chosen.iter().map(|e| e.data_file().record_count()).sum();
        if written.rows != before {
            return Err(TableError::Invalid(format!(
                "compaction read {} rows from files that hold {before}; nothing was committed",
                written.rows
            )));
        }
        let rewritten: HashSet<&str> = chosen.iter().map(|e| e.data_file().file_path()).collect();
        let change = Change {
            added: &written.files,
            removes: &|entry| rewritten.contains(entry.data_file().file_path()),
            operation: Operation::Replace,
            // The writers' own properties come forward from the current snapshot.
            extra_summary: Default::default(),
        };
        let snapshot_id = commit_change(self, &table, change).await?;
        Ok(Compaction {
            snapshot_id: Some(snapshot_id),
            files_before: live.len(),
            files_after: live.len() - chosen.len() + written.files.len(),
            rewritten_files: chosen.len(),
            rows: before,
        })
    }

    /// Drops snapshots older than `older_than_ms` (always keeping the current one and the
    /// `retain_last` newest), then deletes the manifest lists, manifests and data files that
    /// no remaining snapshot references, and the metadata files older than `older_than_ms`
    /// that neither are the current one nor are in its metadata log.
    pub async fn expire_snapshots(
        &self,
        name: &str,
        older_than_ms: i64,
        retain_last: usize,
    ) -> Result<Expiry, TableError> {
        let table = self.load(name).await?;
        let metadata = table.metadata();
        let current = metadata.current_snapshot_id();
        let mut snapshots: Vec<_> = metadata.snapshots().cloned().collect();
        snapshots.sort_by_key(|s| std::cmp::Reverse(s.timestamp_ms()));
        let expired: Vec<i64> = snapshots
            .iter()
            .skip(retain_last.max(1))
            .filter(|s| s.timestamp_ms() < older_than_ms && Some(s.snapshot_id()) != current)
            .map(|s| s.snapshot_id())
            .collect();
        if expired.is_empty() {
            let deleted_metadata_files = delete_old_metadata_files(&table, older_than_ms).await?;
            return Ok(Expiry {
                expired_snapshots: Vec::new(),
                deleted_files: 0,
                deleted_metadata_files,
            });
        }
        let (kept_files, expired_files) = {
            let mut kept = HashSet::new();
            let mut gone = HashSet::new();
            // Appends share manifests between snapshots: read each manifest once.
            let mut manifests = HashMap::new();
            for snapshot in &snapshots {
                let files = referenced_files(&table, snapshot, &mut manifests).await?;
                if expired.contains(&snapshot.snapshot_id()) {
                    gone.extend(files);
                } else {
                    kept.extend(files);
                }
            }
            (kept, gone)
        };
        let own = table.metadata().location();
        let mut candidates: HashSet<String> = expired_files
            .difference(&kept_files)
            .filter(|path| location::is_inside(own, path))
            .cloned()
            .collect();
        let update = TableUpdate::RemoveSnapshots { snapshot_ids: expired.clone() };
        self.publish(&table, vec![update]).await?;
        if !candidates.is_empty() {
            for path in self.referenced_by_other_tables(name, &candidates).await? {
                candidates.remove(&path);
            }
        }
        for path in &candidates {
            table.file_io().delete(path).await?;
        }
        // The file just published is newer than `table`'s current one, which its log lists.
        let deleted_metadata_files = delete_old_metadata_files(&table, older_than_ms).await?;
        Ok(Expiry {
            expired_snapshots: expired,
            deleted_files: candidates.len(),
            deleted_metadata_files,
        })
    }

    /// Those of `paths` that a snapshot of another table than `name` references.
    pub(super) async fn referenced_by_other_tables(
        &self,
        name: &str,
        paths: &HashSet<String>,
    ) -> Result<HashSet<String>, TableError> {
        let own = super::table_ident(name)?;
        let mut found = HashSet::new();
        for ident in self.identifiers().await?.into_iter().filter(|other| *other != own) {
            let table = self.catalog.load_table(&ident).await?;
            let mut manifests = HashMap::new();
            for snapshot in table.metadata().snapshots() {
                let files = referenced_files(&table, snapshot, &mut manifests).await?;
                found.extend(files.into_iter().filter(|f| paths.contains(f)));
            }
        }
        Ok(found)
    }
}

/// Deletes the metadata files of `table` last modified before `older_than_ms` that are older
/// than its current one (by the version their name starts with) and not in its metadata log
/// (which the writer trims to `write.metadata.previous-versions-max`, 100 by default). A file
/// newer than `table`'s current one (the one expiry just published, or another writer's) is
/// never touched. A stream committing every second writes a file a second, each holding
/// every kept snapshot: without this they pile up at megabytes a second. A file this old
/// names only snapshots as old as those expiry drops; data-aware scheduling that reads one
/// after it is gone (a `min_interval` longer than the age) records the run's triggers by
/// metadata file instead of by snapshot.
async fn delete_old_metadata_files(table: &Table, older_than_ms: i64) -> Result<usize, TableError> {
    let metadata = table.metadata();
    let Some(current) = table.metadata_location().and_then(metadata_version) else {
        return Ok(0);
    };
    let logged: HashSet<&str> =
        metadata.metadata_log().iter().map(|entry| entry.metadata_file.as_str()).collect();
    let folder = format!("{}/metadata", metadata.location().trim_end_matches('/'));
    let mut deleted = 0;
    for file in super::orphans::list_files(&folder).await? {
        let superseded = metadata_version(&file.path).is_some_and(|version| version < current);
        if superseded && file.modified_ms < older_than_ms && !logged.contains(file.path.as_str()) {
            table.file_io().delete(&file.path).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The version a metadata file's name starts with (`00042-<uuid>.metadata.json`), if it is
/// one.
fn metadata_version(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?.strip_suffix(".metadata.json")?;
    let (version, _) = name.split_once('-')?;
    version.parse().ok()
}

/// Every file a snapshot needs: its manifest list, its manifests and their live data files.
/// `manifests` caches the live data files of each manifest already read.
pub(super) async fn referenced_files(
    table: &Table,
    snapshot: &iceberg::spec::SnapshotRef,
    manifests: &mut HashMap<String, Vec<String>>,
) -> Result<HashSet<String>, TableError> {
    let mut files = HashSet::from([snapshot.manifest_list().to_string()]);
    let list = table.manifest_list_reader(snapshot).load().await?;
    for manifest in list.entries() {
        files.insert(manifest.manifest_path.clone());
        if !manifests.contains_key(&manifest.manifest_path) {
            let loaded = manifest.load_manifest(table.file_io()).await?;
            let live = loaded.entries().iter().filter(|e| e.is_alive());
            let data = live.map(|e| e.data_file().file_path().to_string()).collect();
            manifests.insert(manifest.manifest_path.clone(), data);
        }
        files.extend(manifests[&manifest.manifest_path].iter().cloned());
    }
    Ok(files)
}
