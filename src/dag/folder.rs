//! Loading a folder of DAG files. A broken file becomes an import error; it never stops the
//! other files from loading. Links to folders are not followed (they could leave the folder or
//! loop back into it); each one found is reported as an import error. A [`LoadedFolder`] keeps
//! what it compiled and re-reads only the files whose size, times or inode changed, so checking
//! a folder of 10,000 DAGs costs a directory listing and a `stat` per file. Watching the folder
//! for changes is [`super::watch`]'s job, not this module's.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{compile, Dag, Diagnostic};
use crate::jobs::Registry;

/// The DAGs of a folder, and the files that failed to compile.
#[derive(Debug, Default, Clone)]
pub struct DagBag {
    pub dags: BTreeMap<String, Arc<Dag>>,
    /// File path → every problem found in it.
    pub errors: BTreeMap<String, Vec<Diagnostic>>,
}

/// The DAG files found under a folder, and the folder links passed over.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every `*.toml` file, sorted.
    pub files: Vec<PathBuf>,
    /// Links to folders, which are not followed, each with why.
    pub skipped: Vec<Diagnostic>,
}

/// Every `*.toml` file under `folder`, searched recursively without following links to
/// folders (a link to a file is read).
pub fn dag_files(folder: &Path) -> std::io::Result<Listing> {
    let mut listing = Listing::default();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_symlink() && path.is_dir() {
                let message = "link to a folder not followed: DAG folder links could leave the \
                               folder or loop back into it; link the files instead";
                listing.skipped.push(Diagnostic {
                    file: path.display().to_string(),
                    line: 1,
                    column: 1,
                    message: message.to_string(),
                });
            } else if kind.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                listing.files.push(path);
            }
        }
    }
    listing.files.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(listing)
}

/// Largest DAG file read; a DAG is a page of TOML, not a data file.
pub const MAX_DAG_FILE_BYTES: u64 = 1024 * 1024;

/// Compiles one file; its DAG id defaults to the file stem.
pub fn load_file(path: &Path, registry: &Registry) -> Result<Dag, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let fail =
        |message: String| vec![Diagnostic { file: file.clone(), line: 1, column: 1, message }];
    let size = std::fs::metadata(path).map_err(|e| fail(format!("cannot read file: {e}")))?.len();
    if size > MAX_DAG_FILE_BYTES {
        return Err(fail(format!(
            "file is {size} bytes, more than the {MAX_DAG_FILE_BYTES} a DAG file may have"
        )));
    }
    let source =
        std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read file: {e}")))?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    compile(&file, &source, &stem, registry)
}

/// Loads every DAG file of `folder`. A missing folder is an empty bag.
pub fn load_folder(folder: &Path, registry: &Registry) -> DagBag {
    LoadedFolder::new(folder).refresh(registry).bag.unwrap_or_default()
}

/// What identifies one version of a file without reading it: a file replaced, rewritten or
/// touched gets another stamp (ctime changes even when a tool restores the mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    inode: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            len: meta.len(),
            inode: meta.ino(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// One file as last read: its stamp then, and what compiling it gave.
#[derive(Debug)]
struct LoadedFile {
    stamp: Option<FileStamp>,
    compiled: Result<Arc<Dag>, Vec<Diagnostic>>,
}

/// A DAG folder as last loaded: each file's stamp and what compiling it gave.
#[derive(Debug)]
pub struct LoadedFolder {
    folder: PathBuf,
    files: HashMap<PathBuf, LoadedFile>,
    /// Folder-level problems of the last listing (links not followed, an unreadable folder).
    listing_errors: Vec<Diagnostic>,
    refreshed: bool,
}

/// What a [`LoadedFolder::refresh`] found.
#[derive(Debug)]
pub struct Refresh {
    /// Files compiled: new or changed since the last refresh.
    pub read: usize,
    /// The folder's DAGs and import errors, when anything changed (always the first time).
    pub bag: Option<DagBag>,
}

impl LoadedFolder {
    /// Nothing loaded yet: the first [`LoadedFolder::refresh`] reads every file.
    pub fn new(folder: &Path) -> LoadedFolder {
        LoadedFolder {
            folder: folder.to_path_buf(),
            files: HashMap::new(),
            listing_errors: Vec::new(),
            refreshed: false,
        }
    }

    /// Lists the folder, compiles the files that are new or changed since the last call and
    /// forgets the deleted ones. The whole bag comes back only when something changed (and on
    /// the first call), so checking an unchanged folder costs a listing and a `stat` per file.
    pub fn refresh(&mut self, registry: &Registry) -> Refresh {
        let first = !self.refreshed;
        self.refreshed = true;
        let before = std::mem::take(&mut self.listing_errors);
        let paths = match dag_files(&self.folder) {
            Ok(listing) => {
                self.listing_errors = listing.skipped;
                listing.files
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                let file = self.folder.display().to_string();
                let message = format!("cannot read DAG folder: {e}");
                self.listing_errors.push(Diagnostic { file, line: 1, column: 1, message });
                // Unreadable for now: keep what was loaded rather than unload every DAG.
                let changed = first || self.listing_errors != before;
                return Refresh { read: 0, bag: changed.then(|| self.bag()) };
            }
        };
        let mut read = 0;
        let mut files = HashMap::with_capacity(paths.len());
        for path in paths {
            let stamp = FileStamp::of(&path);
            let known =
                self.files.remove(&path).filter(|old| stamp.is_some() && old.stamp == stamp);
            let entry = known.unwrap_or_else(|| {
                read += 1;
                LoadedFile { stamp, compiled: load_file(&path, registry).map(Arc::new) }
            });
            files.insert(path, entry);
        }
        // What is left of the old files was deleted.
        let changed = first || read > 0 || !self.files.is_empty() || self.listing_errors != before;
        self.files = files;
        Refresh { read, bag: changed.then(|| self.bag()) }
    }

    /// The DAGs and import errors of the files as loaded, in path order; of two files with
    /// the same DAG id, the first keeps it.
    fn bag(&self) -> DagBag {
        let mut bag = DagBag::default();
        for diagnostic in &self.listing_errors {
            bag.errors.insert(diagnostic.file.clone(), vec![diagnostic.clone()]);
        }
        let mut paths: Vec<&PathBuf> = self.files.keys().collect();
        paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        for path in paths {
            match &self.files[path].compiled {
                Ok(dag) => {
                    if let Some(other) = bag.dags.get(&dag.id) {
                        let message =
                            format!("DAG id `{}` is already used by {}", dag.id, other.file);
                        let diagnostic =
                            Diagnostic { file: dag.file.clone(), line: 1, column: 1, message };
                        bag.errors.insert(dag.file.clone(), vec![diagnostic]);
                    } else {
                        bag.dags.insert(dag.id.clone(), dag.clone());
                    }
                }
                Err(diagnostics) => {
                    bag.errors.insert(path.display().to_string(), diagnostics.clone());
                }
            }
        }
        bag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn only_new_and_changed_files_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::builtin();
        let task = "[tasks.t]\nkind = \"noop\"\n";
        for name in ["a", "b", "c"] {
            write(&dir.path().join(format!("{name}.toml")), task);
        }
        let mut folder = LoadedFolder::new(dir.path());
        let Refresh { read, bag } = folder.refresh(&registry);
        assert_eq!((read, bag.unwrap().dags.len()), (3, 3));
        let again = folder.refresh(&registry);
        assert!(again.read == 0 && again.bag.is_none(), "nothing changed, nothing read");

        write(&dir.path().join("b.toml"), "[tasks.t]\nkind = \"noop\"\nretries = 2\n");
        write(&dir.path().join("d.toml"), "[tasks.t]\nkind = \"nope\"\n");
        std::fs::remove_file(dir.path().join("c.toml")).unwrap();
        let Refresh { read, bag } = folder.refresh(&registry);
        let bag = bag.unwrap();
        assert_eq!(read, 2, "the changed and the new file");
        assert_eq!(bag.dags.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(bag.dags["b"].tasks["t"].retries, 2);
        assert!(bag.errors.keys().any(|f| f.ends_with("d.toml")), "{:?}", bag.errors);

        // A second file claiming an id is an error; the first keeps the DAG.
        write(&dir.path().join("e.toml"), "id = \"a\"\n[tasks.t]\nkind = \"noop\"\n");
        let Refresh { read, bag } = folder.refresh(&registry);
        let bag = bag.unwrap();
        assert_eq!(read, 1);
        assert!(bag.dags["a"].file.ends_with("a.toml"));
        assert!(bag.errors.keys().any(|f| f.ends_with("e.toml")), "{:?}", bag.errors);

        // A deletion alone is a change.
        std::fs::remove_file(dir.path().join("e.toml")).unwrap();
        let Refresh { read, bag } = folder.refresh(&registry);
        assert_eq!(read, 0);
        assert!(!bag.unwrap().errors.keys().any(|f| f.ends_with("e.toml")));
    }
}
