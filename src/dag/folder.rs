//! Loading a folder of DAG files. A broken file becomes an import error; it never stops the
//! other files from loading.

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

/// Every `*.toml` file under `folder`, sorted, searched recursively.
pub fn dag_files(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Compiles one file; its DAG id defaults to the file stem.
pub fn load_file(path: &Path, registry: &Registry) -> Result<Dag, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: file.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read file: {e}"),
        }]
    })?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    compile(&file, &source, &stem, registry)
}

/// Loads every DAG file of `folder`. A missing folder is an empty bag.
pub fn load_folder(folder: &Path, registry: &Registry) -> DagBag {
    let mut bag = DagBag::default();
    let files = match dag_files(folder) {
        Ok(files) => files,
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
