//! Snapshot commits of our own: append, overwrite, replace-partitions and compaction's replace
//! (iceberg-rust 0.10 only offers append). An append keeps the current manifests and adds one
//! for the new files, until [`MERGE_MANIFESTS_AT`] such small manifests piled up: then it
//! merges them into one (as Iceberg's `commit.manifest-merge.enabled` does), and it merges
//! everything once as many merged manifests piled up, so a stream's frequent appends grow
//! neither every later commit's manifest list nor what a merge rewrites. A commit that removes
//! files, or merges, rewrites the live entries into one manifest (new files `added`, kept files
//! `existing`, removed files `deleted`). Then a manifest list and the snapshot is published to
//! the catalog (see `catalog`); a writer that lost the race gets [`TableError::Conflict`] and
//! [`super::Tables::promote`] retries on top of the new metadata. The manifests and appended
//! entries of the latest commit of each table are kept in memory ([`RecentCommits`]): an
//! append reads nothing back that this process wrote.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use iceberg::spec::{
    DataFile, FormatVersion, ManifestContentType, ManifestEntry, ManifestEntryRef, ManifestFile,
    ManifestListWriter, ManifestStatus, ManifestWriterBuilder, Operation, Snapshot,
    SnapshotReference, SnapshotRetention, Struct, Summary, MAIN_BRANCH, UNASSIGNED_SEQUENCE_NUMBER,
};
use iceberg::table::Table;
use iceberg::TableUpdate;

use super::{TableError, Tables};
use crate::random::{hex_digits, new_secret};

/// How new data files relate to what the table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add the files; keep everything.
    Append,
    /// The files replace the whole table.
    Overwrite,
    /// The files replace the partitions they have data in; other partitions are kept.
    ReplacePartitions,
}

impl WriteMode {
    /// The name DAG files use.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Append => "append",
            WriteMode::Overwrite => "overwrite",
            WriteMode::ReplacePartitions => "replace_partitions",
        }
    }
}

/// Manifests an append lets a snapshot have before it merges them into one (Iceberg's
/// `commit.manifest.min-count-to-merge` default).
pub const MERGE_MANIFESTS_AT: usize = 100;

/// Live entries of the table's current snapshot, and its manifests.
pub(super) async fn live_entries(
    table: &Table,
) -> Result<(Vec<ManifestFile>, Vec<ManifestEntryRef>), TableError> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let list = table.manifest_list_reader(snapshot).load().await?;
    let entries = entries_of(table, list.entries(), None).await?;
    Ok((list.entries().to_vec(), entries))
}

/// The live entries of `manifests`: those this process's appends wrote from `recent`, the
/// others read.
async fn entries_of(
    table: &Table,
    manifests: &[ManifestFile],
    recent: Option<&Recent>,
) -> Result<Vec<ManifestEntryRef>, TableError> {
    let mut entries = Vec::new();
    for manifest in manifests {
        if let Some(known) = recent.and_then(|r| r.appended.get(&manifest.manifest_path)) {
            entries.extend(known.iter().cloned());
            continue;
        }
        let loaded = manifest.load_manifest(table.file_io()).await?;
        entries.extend(loaded.entries().iter().filter(|e| e.is_alive()).cloned());
    }
    Ok(entries)
}

/// What this process's latest commit of each table (by the table's location) wrote, so that
/// the next append neither reads back the manifest list nor, when it merges, the manifests
/// appends wrote.
#[derive(Default)]
pub(super) struct RecentCommits(Mutex<HashMap<String, Recent>>);

struct Recent {
    /// The manifest list, and the manifests it holds.
    list: String,
    manifests: Vec<ManifestFile>,
    /// The entries of the manifests appends wrote, by manifest path.
    appended: HashMap<String, Vec<ManifestEntryRef>>,
}

impl RecentCommits {
    /// What the commit that wrote manifest list `list` of `table` left, if this process made it.
    fn take(&self, table: &str, list: &str) -> Option<Recent> {
        let mut recent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        recent.remove(table).filter(|r| r.list == list)
    }

    fn put(&self, table: &str, commit: Recent) {
        let mut recent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        recent.insert(table.to_string(), commit);
    }
}

/// The manifests of the table's current snapshot.
async fn current_manifests(table: &Table) -> Result<Vec<ManifestFile>, TableError> {
    let Some(snapshot) = table.metadata().current_snapshot() else { return Ok(Vec::new()) };
    let list = table.manifest_list_reader(snapshot).load().await?;
    Ok(list.entries().to_vec())
}

/// Which manifests an append rewrites into one, if any. Appends leave a small manifest each;
/// once there are [`MERGE_MANIFESTS_AT`] of them they are merged, and merged manifests are
/// left as they are until there are as many of those, when everything is merged: a merge
/// rewrites about a hundred appends' files, not the table's. Tables with delete manifests
/// (another engine's) are left as they are.
fn merge_plan(manifests: &[ManifestFile]) -> Option<fn(&ManifestFile) -> bool> {
    if !manifests.iter().all(|m| m.content == ManifestContentType::Data) {
        return None;
    }
    let small = manifests.iter().filter(|m| is_small(m)).count();
    if manifests.len() - small >= MERGE_MANIFESTS_AT {
        Some(|_| true)
    } else if small + 1 >= MERGE_MANIFESTS_AT {
        Some(is_small)
    } else {
        None
    }
}

/// A manifest of fewer files than a merge gathers: an append's own.
fn is_small(manifest: &ManifestFile) -> bool {
    let files =
        manifest.added_files_count.unwrap_or(0) + manifest.existing_files_count.unwrap_or(0);
    (files as usize) < MERGE_MANIFESTS_AT
}

/// Data files, records and bytes of the current snapshot as its summary states them (`None`
/// when it does not state all three); an empty table has none of each.
fn parent_totals(table: &Table) -> Option<(u64, u64, u64)> {
    let Some(snapshot) = table.metadata().current_snapshot() else { return Some((0, 0, 0)) };
    let summary = &snapshot.summary().additional_properties;
    let total = |key: &str| summary.get(key).and_then(|v| v.parse::<u64>().ok());
    Some((total("total-data-files")?, total("total-records")?, total("total-files-size")?))
}

fn new_snapshot_id(table: &Table) -> i64 {
    loop {
        let id = i64::from_str_radix(&hex_digits(15), 16).unwrap_or(1);
        if table.metadata().snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// Commits `added` to `table` with `mode` and the writer's own summary properties `summary`;
/// returns the new snapshot's id.
pub async fn commit(
    tables: &Tables,
    table: &Table,
    added: &[DataFile],
    mode: WriteMode,
    summary: &BTreeMap<String, String>,
) -> Result<i64, TableError> {
    let replaced: HashSet<&Struct> = added.iter().map(DataFile::partition).collect();
    let change = Change {
        added,
        removes: &|entry: &ManifestEntryRef| match mode {
            WriteMode::Append => false,
            WriteMode::Overwrite => true,
            WriteMode::ReplacePartitions => replaced.contains(entry.data_file().partition()),
        },
        operation: if mode == WriteMode::Append { Operation::Append } else { Operation::Overwrite },
        extra_summary: {
            let mut extra = summary.clone();
            if mode == WriteMode::ReplacePartitions {
                extra.insert("replace-partitions".into(), "true".into());
            }
            extra
        },
    };
    commit_change(tables, table, change).await
}

/// A new snapshot: files added, and which live files it removes.
pub(super) struct Change<'a> {
    pub added: &'a [DataFile],
    pub removes: &'a (dyn Fn(&ManifestEntryRef) -> bool + Sync),
    pub operation: Operation,
    /// Summary properties beyond the computed ones.
    pub extra_summary: BTreeMap<String, String>,
}

/// Summary properties Iceberg defines, computed for each commit. Every other property is a
/// writer's own (a source offset, the snapshot a table was derived from): a commit carries the
/// parent snapshot's forward unless it sets them anew, so the current snapshot always holds
/// the newest value of each, through compaction and whatever expiry removes.
const COMPUTED_SUMMARY: &[&str] = &[
    "added-data-files",
    "added-records",
    "added-files-size",
    "deleted-data-files",
    "deleted-records",
    "removed-files-size",
    "total-data-files",
    "total-records",
    "total-files-size",
    "total-delete-files",
    "total-position-deletes",
    "total-equality-deletes",
    "added-delete-files",
    "removed-delete-files",
    "added-position-deletes",
    "removed-position-deletes",
    "added-equality-deletes",
    "removed-equality-deletes",
    "changed-partition-count",
    "replace-partitions",
];

/// The writer's own summary properties of `table`'s current snapshot.
pub fn custom_summary(table: &Table) -> BTreeMap<String, String> {
    let Some(snapshot) = table.metadata().current_snapshot() else { return BTreeMap::new() };
    snapshot
        .summary()
        .additional_properties
        .iter()
        .filter(|(key, _)| !COMPUTED_SUMMARY.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Writes and publishes the snapshot of `change`; returns its id.
pub(super) async fn commit_change(
    tables: &Tables,
    table: &Table,
    change: Change<'_>,
) -> Result<i64, TableError> {
    let Change { added, removes, operation, extra_summary } = change;
    let metadata = table.metadata();
    let file_io = table.file_io();
    let snapshot_id = new_snapshot_id(table);
    let sequence_number = metadata.next_sequence_number();
    let recent = match metadata.current_snapshot() {
        Some(current) => tables.recent.take(metadata.location(), current.manifest_list()),
        None => None,
    };
    // An append removes nothing: its totals come from the parent's summary, so it reads the
    // manifest list (unless this process wrote it) but none of the manifests, except every
    // hundredth append or so, which merges the small manifests appends left.
    let parent_totals = if operation == Operation::Append { parent_totals(table) } else { None };
    // The manifests kept whatever happens; those whose live entries were read, which are
    // rewritten if a file is removed (or the append merges them); and those entries.
    let (untouched, read, live, merging) = match parent_totals {
        None => {
            let (manifests, live) = live_entries(table).await?;
            (Vec::new(), manifests, live, false)
        }
        Some(_) => {
            let manifests = match &recent {
                Some(recent) => recent.manifests.clone(),
                None => current_manifests(table).await?,
            };
            match merge_plan(&manifests) {
                None => (manifests, Vec::new(), Vec::new(), false),
                Some(merged) => {
                    let (merged, kept): (Vec<_>, Vec<_>) = manifests.into_iter().partition(merged);
                    let live = entries_of(table, &merged, recent.as_ref()).await?;
                    (kept, merged, live, true)
                }
            }
        }
    };
    let (deleted, kept): (Vec<&ManifestEntryRef>, Vec<&ManifestEntryRef>) =
        live.iter().partition(|e| removes(e));
    // An append keeps the current manifests as they are (unless it merges them); any other
    // change rewrites the entries into one manifest: added, existing (kept) and deleted files.
    let rewrite = merging || !deleted.is_empty();
    let unique = new_secret();
    let location = metadata.location().trim_end_matches('/');
    let mut new_manifests: Vec<ManifestFile> = untouched;
    if !rewrite {
        new_manifests.extend(read);
    }
    if !added.is_empty() || rewrite {
        let path = format!("{location}/metadata/{}-m0.avro", &unique[..32]);
        let mut writer = ManifestWriterBuilder::new(
            file_io.new_output(&path)?,
            Some(snapshot_id),
            metadata.current_schema().clone(),
            metadata.default_partition_spec().as_ref().clone(),
        )
        .build_v2_data();
        for file in added {
            writer.add_file(file.clone(), sequence_number)?;
        }
        if rewrite {
            for entry in &kept {
                writer.add_existing_file(
                    entry.data_file().clone(),
                    entry.snapshot_id().unwrap_or(snapshot_id),
                    entry.sequence_number().unwrap_or(0),
                    entry.file_sequence_number,
                )?;
            }
        }
        for entry in &deleted {
            writer.add_delete_file(
                entry.data_file().clone(),
                entry.sequence_number().unwrap_or(0),
                entry.file_sequence_number,
            )?;
        }
        new_manifests.push(writer.write_manifest_file().await?);
    }
    // What the next append needs of this commit: the entries of the appends' own manifests.
    let mut appended = match recent {
        Some(recent) if !rewrite => recent.appended,
        _ => HashMap::new(),
    };
    if !rewrite && !added.is_empty() {
        let manifest = new_manifests.last().expect("the manifest of the added files");
        let entries = added.iter().map(|file| {
            Arc::new(ManifestEntry {
                status: ManifestStatus::Added,
                snapshot_id: Some(snapshot_id),
                sequence_number: Some(sequence_number),
                file_sequence_number: Some(sequence_number),
                data_file: file.clone(),
            })
        });
        appended.insert(manifest.manifest_path.clone(), entries.collect());
    }

    let list_path = format!("{location}/metadata/snap-{snapshot_id}-1-{}.avro", &unique[..32]);
    let mut list = ManifestListWriter::v2(
        file_io.new_output(&list_path)?.writer().await?,
        snapshot_id,
        metadata.current_snapshot_id(),
        sequence_number,
    );
    list.add_manifests(new_manifests.iter().cloned())?;
    list.close().await?;
    if metadata.format_version() == FormatVersion::V2 {
        // Kept for the next commit of this table (unused if this one loses a race), as the
        // list holds them: the new manifest numbered with this snapshot.
        for manifest in &mut new_manifests {
            for number in [&mut manifest.sequence_number, &mut manifest.min_sequence_number] {
                if *number == UNASSIGNED_SEQUENCE_NUMBER {
                    *number = sequence_number;
                }
            }
        }
        appended.retain(|path, _| new_manifests.iter().any(|m| &m.manifest_path == path));
        let commit = Recent { list: list_path.clone(), manifests: new_manifests, appended };
        tables.recent.put(metadata.location(), commit);
    }

    let count = |entries: &[&ManifestEntryRef]| -> (u64, u64, u64) {
        entries.iter().fold((0, 0, 0), |(files, rows, bytes), e| {
            let f = e.data_file();
            (files + 1, rows + f.record_count(), bytes + f.file_size_in_bytes())
        })
    };
    let (kept_files, kept_rows, kept_bytes) = parent_totals.unwrap_or_else(|| count(&kept));
    let (deleted_files, deleted_rows, deleted_bytes) = count(&deleted);
    let added_rows: u64 = added.iter().map(DataFile::record_count).sum();
    let added_bytes: u64 = added.iter().map(DataFile::file_size_in_bytes).sum();
    let mut summary: HashMap<String, String> = custom_summary(table).into_iter().collect();
    let computed: Vec<(String, String)> = [
        ("added-data-files", added.len() as u64),
        ("added-records", added_rows),
        ("added-files-size", added_bytes),
        ("deleted-data-files", deleted_files),
        ("deleted-records", deleted_rows),
        ("removed-files-size", deleted_bytes),
        ("total-data-files", kept_files + added.len() as u64),
        ("total-records", kept_rows + added_rows),
        ("total-files-size", kept_bytes + added_bytes),
        ("total-delete-files", 0),
        ("total-position-deletes", 0),
        ("total-equality-deletes", 0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    summary.extend(computed);
    summary.extend(extra_summary);
    let operation = if deleted.is_empty() { Operation::Append } else { operation };
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(metadata.current_snapshot_id())
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .with_manifest_list(list_path)
        .with_summary(Summary { operation, additional_properties: summary })
        .with_schema_id(metadata.current_schema_id())
        .build();
    let reference =
        SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None));
    let updates = vec![
        TableUpdate::AddSnapshot { snapshot },
        TableUpdate::SetSnapshotRef { ref_name: MAIN_BRANCH.to_string(), reference },
    ];
    tables.publish(table, updates).await?;
    Ok(snapshot_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: u32) -> ManifestFile {
        ManifestFile {
            manifest_path: format!("m-{files}.avro"),
            manifest_length: 1,
            partition_spec_id: 0,
            content: ManifestContentType::Data,
            sequence_number: 1,
            min_sequence_number: 1,
            added_snapshot_id: 1,
            added_files_count: Some(files),
            existing_files_count: Some(0),
            deleted_files_count: Some(0),
            added_rows_count: Some(0),
            existing_rows_count: Some(0),
            deleted_rows_count: Some(0),
            partitions: None,
            key_metadata: None,
            first_row_id: None,
        }
    }

    fn many(count: usize, files: u32) -> Vec<ManifestFile> {
        (0..count).map(|_| manifest(files)).collect()
    }

    #[test]
    fn appends_merge_their_own_manifests_then_everything() {
        assert!(merge_plan(&many(98, 1)).is_none(), "the 99th manifest is not merged yet");
        // The append that would make the 100th small manifest merges the small ones only.
        let plan = merge_plan(&[many(99, 1), many(3, 400)].concat()).expect("a merge");
        assert!(plan(&manifest(1)) && !plan(&manifest(400)));
        // Once merged manifests piled up as much, everything is merged.
        let plan = merge_plan(&[many(100, 150), many(2, 1)].concat()).expect("a merge");
        assert!(plan(&manifest(150)) && plan(&manifest(1)));
        // A table with delete manifests (another engine's) is left as it is.
        let mut deletes = many(150, 1);
        deletes[0].content = ManifestContentType::Deletes;
        assert!(merge_plan(&deletes).is_none());
    }
}
