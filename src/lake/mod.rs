//! The lakehouse storage: a warehouse folder holding versioned datasets (raw CSV, bronze,
//! silver and gold Parquet), read and written with Polars.
//!
//! A dataset is a folder named by its path in the warehouse (`bronze/orders`). Each write goes
//! into a fresh version folder and becomes visible at once, by replacing the small `_current`
//! pointer file with an atomic rename: a reader never sees a half-written dataset, a failed
//! write leaves the previous version in place, and re-running a task replaces its output
//! instead of adding to it. The previous version is kept for readers still on it; older ones
//! are removed.
//!
//! Folders and files without a `_current` pointer (data dropped in by other tools) can be read
//! too. This module knows nothing of DAGs, runs or the database.

mod dataset;
mod frames;

use std::path::{Component, Path, PathBuf};

use thiserror::Error;

pub use dataset::{Dataset, PendingVersion};
pub use frames::{scan, sink_parquet, write_json, Format, ScanOptions, Written};

#[derive(Debug, Error)]
pub enum LakeError {
    /// The dataset path in a DAG is not usable: absolute, or climbing out of the warehouse.
    #[error("invalid dataset path `{0}`: use a relative path inside the warehouse, such as `bronze/orders`")]
    InvalidPath(String),
    #[error("dataset `{0}` does not exist (has the task that writes it run?)")]
    Missing(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("S3 warehouses (`{0}`) are not supported yet; use a local folder")]
    Unsupported(String),
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io { path: path.to_path_buf(), source }
}

/// The root of the lakehouse.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
}

impl Warehouse {
    /// A warehouse at `location`: a local folder (created on first write).
    pub fn open(location: &str) -> Result<Warehouse> {
        if location.contains("://") && !location.starts_with("file://") {
            return Err(LakeError::Unsupported(location.to_string()));
        }
        Ok(Warehouse { root: PathBuf::from(location.trim_start_matches("file://")) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The dataset at `name`, a relative path such as `silver/orders_enriched`.
    pub fn dataset(&self, name: &str) -> Result<Dataset> {
        check_relative(name)?;
        Ok(Dataset::new(name, self.root.join(name)))
    }

    /// The absolute path of a plain file in the warehouse (reports, exports).
    pub fn file(&self, name: &str) -> Result<PathBuf> {
        check_relative(name)?;
        Ok(self.root.join(name))
    }
}

/// Accepts `a/b/c` style paths that stay inside the warehouse.
pub fn check_relative(name: &str) -> Result<()> {
    let path = Path::new(name);
    let normal = !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if normal {
        Ok(())
    } else {
        Err(LakeError::InvalidPath(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_paths_stay_inside_the_warehouse() {
        let warehouse = Warehouse::open("/data").unwrap();
        assert!(warehouse.dataset("bronze/orders").is_ok());
        for bad in ["", "/etc", "../x", "a/../../b", "./a"] {
            assert!(warehouse.dataset(bad).is_err(), "{bad}");
        }
        assert!(Warehouse::open("s3://bucket/prefix").is_err());
    }
}
