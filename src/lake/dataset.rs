//! Versioned datasets: write a new version aside, then publish it with one atomic rename.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{io, LakeError, Result};

const POINTER: &str = "_current";
const VERSION_PREFIX: &str = "v-";

/// A dataset folder in the warehouse.
#[derive(Debug, Clone)]
pub struct Dataset {
    name: String,
    dir: PathBuf,
}

impl Dataset {
    pub(super) fn new(name: &str, dir: PathBuf) -> Dataset {
        Dataset { name: name.to_string(), dir }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder or file readers should read: the current version of a managed dataset, or
    /// the path itself for data written by other tools.
    pub fn current(&self) -> Result<PathBuf> {
        if self.dir.is_file() {
            return Ok(self.dir.clone());
        }
        let pointer = self.dir.join(POINTER);
        match std::fs::read_to_string(&pointer) {
            Ok(version) => Ok(self.dir.join(version.trim())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // No pointer: data written by another tool, unless a first version is still
                // being written (then there is nothing to read yet).
                if self.dir.exists() && !self.has_versions() {
                    Ok(self.dir.clone())
                } else {
                    Err(LakeError::Missing(self.name.clone()))
                }
            }
            Err(e) => Err(io(&pointer)(e)),
        }
    }

    fn has_versions(&self) -> bool {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return false };
        entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with(VERSION_PREFIX))
    }

    /// Starts a new version. Nothing is visible to readers until [`PendingVersion::commit`];
    /// dropping the pending version deletes what was written.
    pub fn begin(&self) -> Result<PendingVersion> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%6f");
        let unique = format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let version = format!("{VERSION_PREFIX}{stamp}-{unique}");
        let dir = self.dir.join(&version);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(PendingVersion { dataset: self.clone(), version, dir, committed: false })
    }
}

/// A version being written.
pub struct PendingVersion {
    dataset: Dataset,
    version: String,
    dir: PathBuf,
    committed: bool,
}

impl PendingVersion {
    /// Where to write the version's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes this version the one readers see, and removes versions older than the previous.
    pub fn commit(mut self) -> Result<PathBuf> {
        let root = &self.dataset.dir;
        let previous = std::fs::read_to_string(root.join(POINTER)).ok();
        let staged = root.join(format!(".{POINTER}.{}", self.version));
        std::fs::write(&staged, &self.version).map_err(io(&staged))?;
        let pointer = root.join(POINTER);
        std::fs::rename(&staged, &pointer).map_err(io(&pointer))?;
        self.committed = true;
        let keep = [Some(self.version.as_str()), previous.as_deref().map(str::trim)];
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(VERSION_PREFIX) && !keep.contains(&Some(name.as_str())) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(self.dir.clone())
    }
}

impl Drop for PendingVersion {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Warehouse;

    #[test]
    fn versions_appear_atomically_and_failed_writes_leave_no_trace() {
        let root = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(root.path().to_str().unwrap()).unwrap();
        let dataset = warehouse.dataset("bronze/orders").unwrap();
        assert!(dataset.current().is_err());

        let first = dataset.begin().unwrap();
        std::fs::write(first.dir().join("a.txt"), "one").unwrap();
        assert!(dataset.current().is_err(), "uncommitted data must be invisible");
        let first_dir = first.commit().unwrap();
        assert_eq!(dataset.current().unwrap(), first_dir);

        let failed = dataset.begin().unwrap();
        let failed_dir = failed.dir().to_path_buf();
        std::fs::write(failed_dir.join("a.txt"), "half").unwrap();
        drop(failed);
        assert!(!failed_dir.exists());
        assert_eq!(dataset.current().unwrap(), first_dir);

        let second = dataset.begin().unwrap().commit().unwrap();
        let third = dataset.begin().unwrap().commit().unwrap();
        assert_eq!(dataset.current().unwrap(), third);
        assert!(second.exists(), "the previous version stays for readers still on it");
        assert!(!first_dir.exists(), "older versions are removed");
    }
}
