//! The module layering, checked: a module may use only modules of lower layers (and itself).
//! Lower layers never import higher ones, so the store knows nothing of DAGs or jobs, the
//! lake nothing of workers, and so on. A new top-level module must be given a layer here.

use std::path::Path;

/// Top-level modules of `src/`, lowest layer first.
const LAYERS: &[&[&str]] = &[
    &["time", "random", "process", "schedule"],
    &["domain"],
    &["store"],
    &["lake", "users"],
    &["jobs"],
    &["dag"],
    &["versions", "config"],
    &["scheduler", "worker"],
    &["runtime"],
    &["web"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a file under `src/` belongs to (`None` for the crate roots).
fn module_of(relative: &str) -> Option<&str> {
    let first = relative.split('/').next()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(module, "lib" | "main")).then_some(module)
}

/// Every use of a higher (or unknown) layer in `files` (path under `src/`, text).
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        let Some(module) = module_of(path) else { continue };
        let Some(own) = layer_of(module) else {
            found.push(format!(
                "src/{path}: module `{module}` has no layer in tests/it/layering.rs"
            ));
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for used in code.split("crate::").skip(1) {
                let name: String =
                    used.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name.is_empty() || name == module {
                    continue;
                }
                match layer_of(&name) {
                    Some(layer) if layer < own => {}
                    Some(layer) => found.push(format!(
                        "src/{path}:{}: `{module}` (layer {own}) uses `{name}` (layer {layer})",
                        number + 1
                    )),
                    None => found.push(format!(
                        "src/{path}:{}: `{name}` has no layer in tests/it/layering.rs",
                        number + 1
                    )),
                }
            }
        }
    }
    found
}

fn sources(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                files.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files
}

#[test]
fn no_module_uses_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&sources(&src));
    assert!(found.is_empty(), "layering violations:\n{}", found.join("\n"));
}

#[test]
fn a_planted_upward_import_is_caught() {
    let planted = vec![
        ("store/planted.rs".to_string(), "use crate::web::AppState;\n".to_string()),
        (
            "lake/fine.rs".to_string(),
            "use crate::store::Store; // crate::cli in a comment\n".into(),
        ),
        ("gadgets.rs".to_string(), "use crate::time::Micros;\n".to_string()),
    ];
    assert_eq!(
        violations(&planted),
        [
            "src/store/planted.rs:1: `store` (layer 2) uses `web` (layer 9)",
            "src/gadgets.rs: module `gadgets` has no layer in tests/it/layering.rs",
        ]
    );
}
