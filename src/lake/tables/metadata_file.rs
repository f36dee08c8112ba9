//! The bytes of a table's next metadata file, without encoding every snapshot again.
//!
//! A metadata file lists every snapshot the table keeps, and a stream commits every second, so
//! iceberg-rust's own encoder (which clones the whole metadata, then each snapshot, before it
//! writes them) made each commit cost more than the one before: 2.6 µs per kept snapshot. A
//! snapshot never changes once committed, so its JSON is kept here by id and a commit copies
//! it. The table's refs have no getter in iceberg-rust; they are known from the file this
//! process last wrote for the table (the changes a commit applied say how they moved), and read
//! from iceberg-rust's own encoding otherwise.
//!
//! iceberg-rust's encoder stays the reference: a format other than v2, a compressed metadata
//! file, or a table this process has not written just before (another writer committed
//! since) goes through it, and a test compares both encodings. This module writes no file.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use iceberg::spec::{
    FormatVersion, Snapshot, SnapshotReference, TableMetadata, TableMetadataBuildResult,
};
use iceberg::TableUpdate;
use serde::{Deserialize, Serialize};

use super::TableError;

/// What this process knows of the metadata files it wrote, per table (by its location).
#[derive(Default)]
pub(super) struct MetadataFiles {
    tables: Mutex<HashMap<String, Known>>,
}

/// A table's latest metadata file as this process wrote it.
struct Known {
    location: String,
    refs: HashMap<String, SnapshotReference>,
    /// The JSON of each of its snapshots, by id.
    snapshots: HashMap<i64, Arc<str>>,
}

impl MetadataFiles {
    /// The JSON of `built`, the metadata made from the file at `previous` by its changes, to
    /// be written at `location`; `None` for a file only iceberg-rust writes (not format v2, or
    /// compressed).
    pub fn encode(
        &self,
        previous: &str,
        built: &TableMetadataBuildResult,
        location: &str,
    ) -> Result<Option<Vec<u8>>, TableError> {
        let metadata = &built.metadata;
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let known = tables.remove(metadata.location());
        if !fast_path_applies(metadata) {
            return Ok(None);
        }
        let known = known.filter(|known| known.location == previous).and_then(|k| k.after(built));
        let (bytes, known) = match known {
            Some(mut known) => {
                let bytes = encode_v2(metadata, &known.refs, &mut known.snapshots)?;
                (bytes, known)
            }
            None => {
                let bytes = serde_json::to_vec(metadata).map_err(encoding_failed)?;
                let Refs { refs } = serde_json::from_slice(&bytes).map_err(encoding_failed)?;
                (bytes, Known { location: String::new(), refs, snapshots: HashMap::new() })
            }
        };
        let known = Known { location: location.to_string(), ..known };
        tables.insert(metadata.location().to_string(), known);
        Ok(Some(bytes))
    }
}

/// The part of a metadata file this module reads back.
#[derive(Deserialize)]
struct Refs {
    #[serde(default)]
    refs: HashMap<String, SnapshotReference>,
}

/// Format v2 and an uncompressed file: what [`encode_v2`] writes.
fn fast_path_applies(metadata: &TableMetadata) -> bool {
    metadata.format_version() == FormatVersion::V2
        && metadata
            .properties()
            .get("write.metadata.compression-codec")
            .is_none_or(|codec| codec.eq_ignore_ascii_case("none"))
}

impl Known {
    /// What is known after `built`'s changes, or `None` when its refs cannot be vouched for.
    fn after(mut self, built: &TableMetadataBuildResult) -> Option<Known> {
        for change in &built.changes {
            match change {
                TableUpdate::SetSnapshotRef { ref_name, reference } => {
                    self.refs.insert(ref_name.clone(), reference.clone());
                }
                TableUpdate::RemoveSnapshotRef { ref_name } => {
                    self.refs.remove(ref_name);
                }
                _ => {}
            }
        }
        let metadata = &built.metadata;
        // Refs to removed snapshots go with them (as iceberg-rust's builder does).
        self.refs.retain(|_, r| metadata.snapshot_by_id(r.snapshot_id).is_some());
        let consistent = self.refs.iter().all(|(name, reference)| {
            metadata.snapshot_for_ref(name).map(|s| s.snapshot_id()) == Some(reference.snapshot_id)
        }) && self.refs.get(iceberg::spec::MAIN_BRANCH).map(|r| r.snapshot_id)
            == metadata.current_snapshot_id();
        self.snapshots.retain(|id, _| metadata.snapshot_by_id(*id).is_some());
        consistent.then_some(self)
    }
}

/// A snapshot as format v2 writes it.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct SnapshotV2<'a> {
    snapshot_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_snapshot_id: Option<i64>,
    sequence_number: i64,
    timestamp_ms: i64,
    manifest_list: &'a str,
    summary: &'a iceberg::spec::Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_id: Option<i32>,
}

fn snapshot_json(snapshot: &Snapshot) -> Result<Arc<str>, TableError> {
    let json = serde_json::to_string(&SnapshotV2 {
        snapshot_id: snapshot.snapshot_id(),
        parent_snapshot_id: snapshot.parent_snapshot_id(),
        sequence_number: snapshot.sequence_number(),
        timestamp_ms: snapshot.timestamp_ms(),
        manifest_list: snapshot.manifest_list(),
        summary: snapshot.summary(),
        schema_id: snapshot.schema_id(),
    })
    .map_err(encoding_failed)?;
    Ok(json.into())
}

/// Writes `"key":value` members of a JSON object.
struct Members {
    out: Vec<u8>,
    first: bool,
}

impl Members {
    fn value(&mut self, key: &str, value: &impl Serialize) -> Result<(), TableError> {
        self.key(key);
        serde_json::to_writer(&mut self.out, value).map_err(encoding_failed)
    }

    fn key(&mut self, key: &str) {
        self.out.push(if self.first { b'{' } else { b',' });
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn array<T: Serialize>(
        &mut self,
        key: &str,
        items: impl Iterator<Item = T>,
    ) -> Result<(), TableError> {
        self.list(key, items, |out, item| {
            serde_json::to_writer(out, &item).map_err(encoding_failed)
        })
    }

    /// `"key":[…]`, each item written by `write`.
    fn list<T>(
        &mut self,
        key: &str,
        items: impl Iterator<Item = T>,
        mut write: impl FnMut(&mut Vec<u8>, T) -> Result<(), TableError>,
    ) -> Result<(), TableError> {
        self.key(key);
        self.out.push(b'[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write(&mut self.out, item)?;
        }
        self.out.push(b']');
        Ok(())
    }
}

/// The members format v2 has, as iceberg-rust writes them (empty optional lists left out).
fn encode_v2(
    metadata: &TableMetadata,
    refs: &HashMap<String, SnapshotReference>,
    snapshots: &mut HashMap<i64, Arc<str>>,
) -> Result<Vec<u8>, TableError> {
    let kept = metadata.snapshots().len();
    let mut m = Members { out: Vec::with_capacity(4096 + kept * 1024), first: true };
    m.value("format-version", &2)?;
    m.value("table-uuid", &metadata.uuid())?;
    m.value("location", &metadata.location())?;
    m.value("last-sequence-number", &metadata.last_sequence_number())?;
    m.value("last-updated-ms", &metadata.last_updated_ms())?;
    m.value("last-column-id", &metadata.last_column_id())?;
    m.array("schemas", metadata.schemas_iter().map(|s| s.as_ref()))?;
    m.value("current-schema-id", &metadata.current_schema_id())?;
    m.array("partition-specs", metadata.partition_specs_iter().map(|s| s.as_ref()))?;
    m.value("default-spec-id", &metadata.default_partition_spec_id())?;
    m.value("last-partition-id", &metadata.last_partition_id())?;
    if !metadata.properties().is_empty() {
        m.value("properties", metadata.properties())?;
    }
    if let Some(id) = metadata.current_snapshot_id() {
        m.value("current-snapshot-id", &id)?;
    }
    if !metadata.history().is_empty() {
        m.value("snapshot-log", &metadata.history())?;
    }
    if !metadata.metadata_log().is_empty() {
        m.value("metadata-log", &metadata.metadata_log())?;
    }
    m.array("sort-orders", metadata.sort_orders_iter().map(|s| s.as_ref()))?;
    m.value("default-sort-order-id", &metadata.default_sort_order_id())?;
    m.value("refs", refs)?;
    if metadata.statistics_iter().len() > 0 {
        m.array("statistics", metadata.statistics_iter())?;
    }
    if metadata.partition_statistics_iter().len() > 0 {
        m.array("partition-statistics", metadata.partition_statistics_iter())?;
    }
    if kept > 0 {
        m.list("snapshots", metadata.snapshots(), |out, snapshot| {
            let json = match snapshots.entry(snapshot.snapshot_id()) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(snapshot_json(snapshot)?),
            };
            out.extend_from_slice(json.as_bytes());
            Ok(())
        })?;
    }
    m.out.push(b'}');
    Ok(m.out)
}

fn encoding_failed(e: serde_json::Error) -> TableError {
    TableError::Invalid(format!("encoding table metadata: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata made by `updates` applied one commit at a time, each encoded both ways.
    #[test]
    fn encodes_as_iceberg_rust_does() {
        use iceberg::spec::{
            NestedField, Operation, PrimitiveType, Schema, SnapshotRetention, Summary,
            TableMetadataBuilder, Type, UnboundPartitionSpec,
        };
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "at", Type::Primitive(PrimitiveType::Timestamp)).into(),
            ])
            .build()
            .unwrap();
        let spec = UnboundPartitionSpec::builder()
            .add_partition_field(2, "at_day", iceberg::spec::Transform::Day)
            .unwrap()
            .build();
        let created = TableMetadataBuilder::new(
            schema,
            spec,
            iceberg::spec::SortOrder::unsorted_order(),
            "file:///warehouse/t".to_string(),
            FormatVersion::V2,
            HashMap::from([("owner".to_string(), "lakeward".to_string())]),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata;

        let files = MetadataFiles::default();
        let mut metadata = created;
        let mut location = "file:///warehouse/t/metadata/00000-a.metadata.json".to_string();
        // The first write goes through iceberg-rust's encoder; later ones are this module's.
        for commit in 1..=12i64 {
            let mut updates = Vec::new();
            let snapshot = Snapshot::builder()
                .with_snapshot_id(commit * 1000)
                .with_parent_snapshot_id(metadata.current_snapshot_id())
                .with_sequence_number(commit)
                .with_timestamp_ms(chrono::Utc::now().timestamp_millis() + commit)
                .with_manifest_list(format!("file:///warehouse/t/metadata/snap-{commit}.avro"))
                .with_summary(Summary {
                    operation: Operation::Append,
                    additional_properties: HashMap::from([
                        ("added-records".to_string(), commit.to_string()),
                        ("lakeward.kafka.t.offsets".to_string(), format!("{{\"0\":{commit}}}")),
                    ]),
                })
                .with_schema_id(0)
                .build();
            updates.push(TableUpdate::AddSnapshot { snapshot });
            let branch =
                SnapshotReference::new(commit * 1000, SnapshotRetention::branch(None, None, None));
            updates.push(TableUpdate::SetSnapshotRef {
                ref_name: iceberg::spec::MAIN_BRANCH.to_string(),
                reference: branch,
            });
            match commit {
                // A tag, then its snapshot expired (the tag goes with it).
                4 => updates.push(TableUpdate::SetSnapshotRef {
                    ref_name: "audit".to_string(),
                    reference: SnapshotReference::new(
                        2000,
                        SnapshotRetention::Tag { max_ref_age_ms: Some(86_400_000) },
                    ),
                }),
                7 => updates.push(TableUpdate::RemoveSnapshots { snapshot_ids: vec![1000, 2000] }),
                9 => updates.push(TableUpdate::SetProperties {
                    updates: HashMap::from([(
                        "write.metadata.previous-versions-max".to_string(),
                        "3".to_string(),
                    )]),
                }),
                _ => {}
            }
            let mut builder =
                TableMetadataBuilder::new_from_metadata(metadata.clone(), Some(location.clone()));
            for update in updates {
                builder = update.apply(builder).unwrap();
            }
            let built = builder.build().unwrap();
            let next = format!("file:///warehouse/t/metadata/{commit:05}-a.metadata.json");
            let ours = files.encode(&location, &built, &next).unwrap().unwrap();
            let theirs = serde_json::to_vec(&built.metadata).unwrap();
            assert_eq!(comparable(&ours), comparable(&theirs), "commit {commit}");
            // And it reads back as the same metadata.
            let read: TableMetadata = serde_json::from_slice(&ours).unwrap();
            assert_eq!(read, built.metadata, "commit {commit}");
            metadata = built.metadata;
            location = next;
        }
        let known = files.tables.lock().unwrap();
        let known = &known[metadata.location()];
        assert_eq!(known.snapshots.len(), metadata.snapshots().len(), "expired ones are dropped");
        assert!(!known.refs.contains_key("audit"), "a ref goes with its snapshot");
    }

    /// A metadata file as JSON, its snapshots in id order (both encoders list them in the
    /// order of a hash map).
    fn comparable(bytes: &[u8]) -> serde_json::Value {
        let mut value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        if let Some(snapshots) = value.get_mut("snapshots").and_then(|s| s.as_array_mut()) {
            snapshots.sort_by_key(|s| s["snapshot-id"].as_i64());
        }
        value
    }

    /// A file this process did not write just before is encoded by iceberg-rust.
    #[test]
    fn another_writers_file_goes_through_iceberg_rust() {
        let files = MetadataFiles::default();
        let known = Known {
            location: "file:///t/metadata/00001-a.metadata.json".into(),
            refs: HashMap::new(),
            snapshots: HashMap::from([(1, Arc::from("{\"stale\":true}"))]),
        };
        let metadata = iceberg::spec::TableMetadataBuilder::new(
            iceberg::spec::Schema::builder().build().unwrap(),
            iceberg::spec::UnboundPartitionSpec::builder().build(),
            iceberg::spec::SortOrder::unsorted_order(),
            "file:///t".to_string(),
            FormatVersion::V2,
            HashMap::new(),
        )
        .unwrap()
        .build()
        .unwrap();
        files.tables.lock().unwrap().insert("file:///t".into(), known);
        let bytes = files
            .encode("file:///t/metadata/00002-b.metadata.json", &metadata, "file:///t/m3.json")
            .unwrap();
        assert_eq!(bytes, Some(serde_json::to_vec(&metadata.metadata).unwrap()));
        let tables = files.tables.lock().unwrap();
        assert_eq!(tables["file:///t"].location, "file:///t/m3.json");
        assert!(tables["file:///t"].snapshots.is_empty());
    }
}
