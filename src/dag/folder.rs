//! Loading a folder of DAG files. A broken file becomes an import error; it never stops the
//! other files from loading. Links to folders are not followed (they could leave the folder or
//! loop back into it); each one found is reported as an import error.

use std::collections::BTreeMap;
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
    listing.files.sort();
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
    let mut bag = DagBag::default();
    let files = match dag_files(folder) {
        Ok(listing) => {
            for diagnostic in listing.skipped {
                bag.errors.insert(diagnostic.file.clone(), vec![diagnostic]);
            }
            listing.files
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return bag,
        Err(e) => {
            let file = folder.display().to_string();
            let message = format!("cannot read DAG folder: {e}");
            bag.errors.insert(file.clone(), vec![Diagnostic { file, line: 1, column: 1, message }]);
            return bag;
        }
    };
    for path in files {
        match load_file(&path, registry) {
            Ok(dag) => {
                if let Some(other) = bag.dags.get(&dag.id) {
                    let message = format!("DAG id `{}` is already used by {}", dag.id, other.file);
                    let diagnostic =
                        Diagnostic { file: dag.file.clone(), line: 1, column: 1, message };
                    bag.errors.insert(dag.file.clone(), vec![diagnostic]);
                } else {
                    bag.dags.insert(dag.id.clone(), Arc::new(dag));
                }
            }
            Err(diagnostics) => {
                bag.errors.insert(path.display().to_string(), diagnostics);
            }
        }
    }
    bag
}
