//! Snapshot commits of our own: append, overwrite, replace-partitions and compaction's replace
//! (iceberg-rust 0.10 only offers append). An append keeps the current manifests and adds one
//! for the new files, until the table has [`MERGE_MANIFESTS_AT`] manifests: then it merges them
//! (as Iceberg's `commit.manifest-merge.enabled` does), so a stream's frequent appends do not
//! grow every later commit's manifest list. A commit that removes files, or merges, rewrites the
//! live entries into one manifest (new files `added`, kept files `existing`, removed files
//! `deleted`). Then a manifest list and
//! the snapshot is published to the catalog (see `catalog`); a writer that lost the race gets
//! [`TableError::Conflict`] and [`super::Tables::promote`] retries on top of the new metadata.

use std::collections::{BTreeMap, HashMap, HashSet};

use iceberg::spec::{
    DataFile, ManifestContentType, ManifestEntryRef, ManifestFile, ManifestListWriter,
    ManifestWriterBuilder, Operation, Snapshot, SnapshotReference, SnapshotRetention, Struct,
    Summary, MAIN_BRANCH,
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
    let mut entries = Vec::new();
    for manifest in list.entries() {
        let loaded = manifest.load_manifest(table.file_io()).await?;
        entries.extend(loaded.entries().iter().filter(|e| e.is_alive()).cloned());
    }
    Ok((list.entries().to_vec(), entries))
}

/// The manifests of the table's current snapshot.
async fn current_manifests(table: &Table) -> Result<Vec<ManifestFile>, TableError> {
    let Some(snapshot) = table.metadata().current_snapshot() else { return Ok(Vec::new()) };
    let list = table.manifest_list_reader(snapshot).load().await?;
    Ok(list.entries().to_vec())
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
    // An append removes nothing: its totals come from the parent's summary, so it reads the
    // manifest list but none of the manifests (a stream's commit stays cheap however many
    // appends came before it).
    let parent_totals = if operation == Operation::Append { parent_totals(table) } else { None };
    let (mut manifests, mut live) = match parent_totals {
        Some(_) => (current_manifests(table).await?, Vec::new()),
        None => live_entries(table).await?,
    };
    // Every hundredth append or so merges the manifests appends left.
    // (Only data manifests: another engine's delete manifests are left as they are.)
    let merge = parent_totals.is_some()
        && manifests.len() + 1 >= MERGE_MANIFESTS_AT
        && manifests.iter().all(|m| m.content == ManifestContentType::Data);
    if merge {
        (manifests, live) = live_entries(table).await?;
    }
    let (deleted, kept): (Vec<&ManifestEntryRef>, Vec<&ManifestEntryRef>) =
        live.iter().partition(|e| removes(e));
    // An append keeps the current manifests as they are (unless it merges them); any other
    // change rewrites the entries into one manifest: added, existing (kept) and deleted files.
    let rewrite = merge || !deleted.is_empty();
    let unique = new_secret();
    let location = metadata.location().trim_end_matches('/');
    let mut new_manifests: Vec<ManifestFile> = Vec::new();
    if !rewrite {
        new_manifests.extend(manifests);
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

    let list_path = format!("{location}/metadata/snap-{snapshot_id}-1-{}.avro", &unique[..32]);
    let mut list = ManifestListWriter::v2(
        file_io.new_output(&list_path)?.writer().await?,
        snapshot_id,
        metadata.current_snapshot_id(),
        sequence_number,
    );
    list.add_manifests(new_manifests.into_iter())?;
    list.close().await?;

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
