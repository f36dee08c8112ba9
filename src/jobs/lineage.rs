//! Where a job records the lineage of its data: every dataset version and table snapshot it
//! read or wrote. The worker stores the records with the try when it ends (a failed try keeps
//! what it read; what it wrote is recorded only once published).

use std::sync::{Arc, Mutex};

use crate::domain::{AssetKind, Direction, LineageRecord};
use crate::lake::{Dataset, LakeError, Published};

/// A try's lineage records, shared by the job's threads. Cheap to clone.
#[derive(Clone, Default)]
pub struct Lineage(Arc<Mutex<Vec<LineageRecord>>>);

impl Lineage {
    fn push(&self, record: LineageRecord) {
        self.0.lock().unwrap().push(record);
    }

    /// Records that the job reads the current version of `dataset`.
    pub fn read_dataset(&self, dataset: &Dataset) -> Result<(), LakeError> {
        let version = dataset.current_version()?;
        self.push(record(Direction::Read, AssetKind::Dataset, dataset.name(), version));
        Ok(())
    }

    /// Records the dataset versions a job published.
    pub fn wrote_datasets(&self, published: &[Published]) {
        for p in published {
            let mut wrote =
                record(Direction::Wrote, AssetKind::Dataset, &p.dataset, p.version.clone());
            wrote.rows = Some(p.written.rows);
            wrote.files = Some(p.written.files);
            wrote.bytes = Some(p.written.bytes);
            self.push(wrote);
        }
    }

    /// Records that the job read table `name` at `snapshot_id`.
    pub fn read_table(&self, name: &str, snapshot_id: i64) {
        self.push(record(Direction::Read, AssetKind::Table, name, snapshot_id.to_string()));
    }

    /// Records a snapshot the job committed to table `name`.
    pub fn wrote_table(
        &self,
        name: &str,
        snapshot_id: i64,
        operation: &str,
        rows: u64,
        files: u64,
    ) {
        let mut wrote = record(Direction::Wrote, AssetKind::Table, name, snapshot_id.to_string());
        wrote.operation = Some(operation.to_string());
        wrote.rows = Some(rows);
        wrote.files = Some(files);
        self.push(wrote);
    }

    /// The records so far, leaving none behind.
    pub fn take(&self) -> Vec<LineageRecord> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn record(direction: Direction, kind: AssetKind, name: &str, version: String) -> LineageRecord {
    LineageRecord {
        direction,
        kind,
        name: name.to_string(),
        version,
        operation: None,
        rows: None,
        files: None,
        bytes: None,
    }
}
