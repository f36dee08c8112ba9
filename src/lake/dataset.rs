//! Versioned datasets: write a new version aside, then publish it with one atomic rename; the
//! versions one task writes to several datasets are published together ([`Publication`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::remote::Remote;
use super::{io, LakeError, Result, Written};

const POINTER: &str = "_current";
pub(super) const VERSION_PREFIX: &str = "v-";
/// Marks a version folder of a remote dataset as completely downloaded into the cache.
const COMPLETE: &str = ".complete";

/// A dataset folder in the warehouse.
#[derive(Debug, Clone)]
pub struct Dataset {
    name: String,
    /// The warehouse's local folder, which writes must not leave.
    root: PathBuf,
    /// The local folder: the dataset itself, or its cache for a remote warehouse.
    dir: PathBuf,
    remote: Option<Arc<Remote>>,
}

impl Dataset {
    /// The dataset `name` (already checked to be relative) of the warehouse at `root`.
    pub(super) fn new(name: &str, root: &Path, remote: Option<Arc<Remote>>) -> Dataset {
        Dataset { name: name.to_string(), root: root.to_path_buf(), dir: root.join(name), remote }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder or file readers should read: the current version of a managed dataset, or
    /// the path itself for data written by other tools.
    pub fn current(&self) -> Result<PathBuf> {
        if let Some(remote) = &self.remote {
            return self.fetch(remote);
        }
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

    /// The name of the current version (`v-…`), or `external` for data other tools wrote.
    pub fn current_version(&self) -> Result<String> {
        let current = self.current()?;
        let name = current.file_name().map(|n| n.to_string_lossy().into_owned());
        Ok(name.filter(|n| n.starts_with(VERSION_PREFIX)).unwrap_or_else(|| "external".into()))
    }

    /// Brings the current version of a remote dataset into the cache (once per version).
    fn fetch(&self, remote: &Remote) -> Result<PathBuf> {
        if let Some(version) = remote.read_text(&format!("{}/{POINTER}", self.name))? {
            let local = self.dir.join(version.trim());
            if !local.join(COMPLETE).exists() {
                let _ = std::fs::remove_dir_all(&local);
                remote.download_tree(&format!("{}/{}", self.name, version.trim()), &local)?;
                std::fs::create_dir_all(&local).map_err(io(&local))?;
                std::fs::write(local.join(COMPLETE), "").map_err(io(&local))?;
            }
            return Ok(local);
        }
        // Data written by another tool: a single object, or a folder of objects.
        if remote.is_object(&self.name)? {
            let _ = std::fs::remove_dir_all(&self.dir);
            remote.download_object(&self.name, &self.dir)?;
            return Ok(self.dir.clone());
        }
        let local = self.dir.join("_external");
        let _ = std::fs::remove_dir_all(&local);
        match remote.download_tree(&self.name, &local)? {
            0 => Err(LakeError::Missing(self.name.clone())),
            _ => Ok(local),
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
        super::check_confined(&self.root, &dir)?;
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
        if let Some(remote) = &self.dataset.remote {
            // Files first, pointer last: a reader sees the old version or the complete new one.
            let name = &self.dataset.name;
            let previous = remote.read_text(&format!("{name}/{POINTER}"))?;
            remote.upload_tree(&self.dir, &format!("{name}/{}", self.version))?;
            remote.write_text(&format!("{name}/{POINTER}"), &self.version)?;
            let keep =
                [self.version.as_str(), previous.as_deref().map(str::trim).unwrap_or_default()];
            remote.prune_versions(name, &keep)?;
            std::fs::write(self.dir.join(COMPLETE), "").map_err(io(&self.dir))?;
        }
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

/// The new versions one task writes, published together: none becomes visible before every
/// one is written, so a failed try changes no dataset (dropping it deletes what was written).
/// Publishing is one rename per dataset, in order; only a crash between those renames, a
/// matter of microseconds, could leave some published and not others.
#[derive(Default)]
pub struct Publication {
    pending: Vec<(PendingVersion, Written)>,
}

/// A dataset version a [`Publication`] made visible.
#[derive(Debug, Clone)]
pub struct Published {
    pub dataset: String,
    pub version: String,
    pub written: Written,
}

impl Publication {
    /// Adds a version (and what was written into it) to publish with the others.
    pub fn add(&mut self, version: PendingVersion, written: Written) {
        self.pending.push((version, written));
    }

    /// Publishes every version; returns them.
    pub fn commit(self) -> Result<Vec<Published>> {
        let mut published = Vec::new();
        for (version, written) in self.pending {
            let (dataset, name) = (version.dataset.name.clone(), version.version.clone());
            version.commit()?;
            published.push(Published { dataset, version: name, written });
        }
        Ok(published)
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
