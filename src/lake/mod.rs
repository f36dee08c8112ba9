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
//! too. Datasets know nothing of DAGs, runs or the database; [`tables`] (Iceberg tables, whose
//! catalog lives in the database) builds on them, and `table_frames` lets Polars read a table
//! snapshot's files; [`sql_functions`] adds what lakeward's SQL has beyond Polars' (and, with
//! `sql_outputs`, names and orders the outputs Polars would get wrong), [`engine`]
//! picks the Polars engine a query runs on and runs it (rewriting some groupings first), and
//! [`query`] runs the SQL console's read-only queries over both.

mod dataset;
pub mod engine;
mod frames;
pub mod query;
mod remote;
pub mod sql_functions;
mod sql_outputs;
mod table_frames;
pub mod tables;

use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use crate::domain::ErrorClass;
pub use dataset::{Dataset, PendingVersion, Publication, Published};
pub use frames::{
    data_files, scan, sink_parquet, write_parquet, write_parquet_clustered, write_parquet_folder,
    Format, ScanOptions, Written,
};
pub use table_frames::scan_snapshot;

use std::sync::Arc;

use remote::Remote;

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
    #[error("`{0}` is not a warehouse location: use a folder or s3://bucket/prefix")]
    Unsupported(String),
    /// A write would pass through a symbolic link leading out of the warehouse.
    #[error(
        "`{path}` leads out of the warehouse through a symbolic link: writes there are refused"
    )]
    Escapes { path: PathBuf },
    /// The object store answered with an error (unreachable, denied, …).
    #[error("object store: {0}")]
    Remote(String),
    /// Data or a query lakeward cannot handle (yet): the message says what and what to do.
    #[error("{0}")]
    NotSupported(String),
}

impl LakeError {
    /// Whether this is the user's definition, a transient failure, or a bug.
    pub fn class(&self) -> ErrorClass {
        match self {
            LakeError::InvalidPath(_)
            | LakeError::Unsupported(_)
            | LakeError::NotSupported(_)
            | LakeError::Escapes { .. } => ErrorClass::Definition,
            // The task that writes it may not have run yet, or may be rerunning.
            LakeError::Missing(_) => ErrorClass::Transient,
            LakeError::Io { .. } | LakeError::Remote(_) => ErrorClass::Transient,
            LakeError::Polars(e) => polars_class(e),
        }
    }
}

/// Polars errors about the query or the schema are the definition's; I/O and computation on
/// the data at hand are transient; broken invariants are bugs.
pub fn polars_class(error: &polars::error::PolarsError) -> ErrorClass {
    use polars::error::PolarsError as E;
    match error {
        E::ColumnNotFound(_)
        | E::SchemaFieldNotFound(_)
        | E::StructFieldNotFound(_)
        | E::SchemaMismatch(_)
        | E::SQLSyntax(_)
        | E::SQLInterface(_)
        | E::InvalidOperation(_)
        | E::Duplicate(_) => ErrorClass::Definition,
        E::ShapeMismatch(_) | E::OutOfBounds(_) | E::AssertionError(_) => ErrorClass::Bug,
        E::Context { error, .. } => polars_class(error),
        _ => ErrorClass::Transient,
    }
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io { path: path.to_path_buf(), source }
}

/// The root of the lakehouse.
#[derive(Debug, Clone)]
pub struct Warehouse {
    /// The local folder: the warehouse itself, or the cache of a remote one.
    root: PathBuf,
    remote: Option<Arc<Remote>>,
}

impl Warehouse {
    /// A warehouse in a local folder (created on first write).
    pub fn open(location: &str) -> Result<Warehouse> {
        if location.contains("://") && !location.starts_with("file://") {
            return Err(LakeError::Unsupported(location.to_string()));
        }
        Ok(Warehouse { root: PathBuf::from(location.trim_start_matches("file://")), remote: None })
    }

    /// A warehouse at `location`: a local folder, or `s3://bucket/prefix` mirrored through
    /// a local cache under `cache`.
    pub fn connect(location: &str, cache: &Path) -> Result<Warehouse> {
        if location.starts_with("s3://") {
            let remote = Remote::open(location)?;
            Ok(Warehouse {
                root: remote::cache_dir(cache, location),
                remote: Some(Arc::new(remote)),
            })
        } else {
            Warehouse::open(location)
        }
    }

    /// `s3://bucket/prefix` of a remote warehouse.
    pub fn remote_location(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.location())
    }

    /// Whether datasets live in an object store.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The dataset at `name`, a relative path such as `silver/orders_enriched`.
    pub fn dataset(&self, name: &str) -> Result<Dataset> {
        check_relative(name)?;
        Ok(Dataset::new(name, &self.root, self.remote.clone()))
    }

    /// Writes `value` as pretty JSON to the warehouse file `name`, replacing it atomically.
    /// Returns the bytes written.
    pub fn write_json(&self, name: &str, value: &serde_json::Value) -> Result<u64> {
        check_relative(name)?;
        let path = self.root.join(name);
        check_confined(&self.root, &path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        let staged = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&staged, &text).map_err(io(&staged))?;
        std::fs::rename(&staged, &path).map_err(io(&path))?;
        if let Some(remote) = &self.remote {
            remote.upload_file(&path, name)?;
        }
        Ok(text.len() as u64)
    }

    /// A local path holding the immutable file at `location` (a table's data file): the file
    /// itself in a local warehouse, a cached download of a remote one. Refused when `location`
    /// lies outside the warehouse.
    pub fn local_file(&self, location: &str) -> Result<PathBuf> {
        let outside = || LakeError::Escapes { path: PathBuf::from(location) };
        let Some(remote) = &self.remote else {
            let path = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
            let real = path.canonicalize().map_err(io(&path))?;
            let root = self.root.canonicalize().map_err(io(&self.root))?;
            return if real.starts_with(root) { Ok(real) } else { Err(outside()) };
        };
        let relative = location
            .strip_prefix(remote.location())
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(outside)?;
        check_relative(relative).map_err(|_| outside())?;
        let cached = self.root.join(relative);
        if !cached.exists() {
            // Downloaded beside its place, then renamed: a crash leaves no partial file there.
            let partial = cached.with_file_name(format!(
                ".{}.part-{}",
                cached.file_name().and_then(|n| n.to_str()).unwrap_or("data"),
                crate::random::hex_digits(8)
            ));
            remote.download_object(relative, &partial)?;
            std::fs::rename(&partial, &cached).map_err(io(&cached))?;
        }
        Ok(cached)
    }

    /// Reads a warehouse file written by [`Warehouse::write_json`] (or any text file).
    pub fn read_text(&self, name: &str) -> Result<String> {
        check_relative(name)?;
        if let Some(remote) = &self.remote {
            return remote.read_text(name)?.ok_or_else(|| LakeError::Missing(name.to_string()));
        }
        let path = self.root.join(name);
        std::fs::read_to_string(&path).map_err(io(&path))
    }
}

/// Refuses to write at `path` when the deepest part of it that exists (a folder, a file or a
/// link) resolves outside `root`: a symbolic link planted in the warehouse cannot carry writes
/// out of it. Reading through such links stays allowed (data linked in by other tools).
pub(crate) fn check_confined(root: &Path, path: &Path) -> Result<()> {
    let Ok(real_root) = root.canonicalize() else {
        return Ok(()); // nothing written yet, so no link either
    };
    let mut existing = path;
    while std::fs::symlink_metadata(existing).is_err() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => return Ok(()),
        }
    }
    match existing.canonicalize() {
        Ok(real) if real.starts_with(&real_root) => Ok(()),
        _ => Err(LakeError::Escapes { path: path.to_path_buf() }),
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

    #[cfg(unix)]
    #[test]
    fn writes_never_follow_links_out_of_the_warehouse() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("gold")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("gold/escape")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", root.path().join("dangling")).unwrap();
        let warehouse = Warehouse::open(root.path().to_str().unwrap()).unwrap();
        let json = serde_json::json!({});
        assert!(matches!(
            warehouse.write_json("gold/escape/x.json", &json),
            Err(LakeError::Escapes { .. })
        ));
        assert!(warehouse.write_json("dangling/x.json", &json).is_err());
        assert!(warehouse.dataset("gold/escape/d").unwrap().begin().is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        assert!(warehouse.write_json("gold/kpi.json", &json).is_ok());
        assert!(warehouse.dataset("gold/d").unwrap().begin().is_ok());
    }
}
