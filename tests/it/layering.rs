//! The module layering, checked: a module may use only modules of lower layers (and itself).
//! Lower layers never import higher ones, so the store knows nothing of DAGs or jobs, the
//! lake nothing of workers, and so on; inside the web server, the views know nothing of
//! authentication or handlers. A new module must be given a layer here.

use std::path::Path;

/// Which modules may use which: layers, lowest first, and how to find a file's module and the
/// modules its code names.
struct Layering {
    layers: &'static [&'static [&'static str]],
    /// The module a file (path under `src/`) belongs to; `None` for files outside the check.
    module_of: fn(&str) -> Option<&str>,
    /// How the code names a module of this layering: `crate::store`, `super::views`.
    prefixes: &'static [&'static str],
}

/// Top-level modules of `src/`.
const CRATE: Layering = Layering {
    layers: &[
        &["time", "random", "process", "schedule"],
        &["domain"],
        &["store", "simulate"],
        &["lake", "users", "stream", "window", "anomaly"],
        &["jobs"],
        &["dag"],
        &["notifications"],
        &["versions", "config"],
        &["scheduler", "worker"],
        &["runtime"],
        &["web"],
        &["cli"],
    ],
    module_of: top_level_module,
    prefixes: &["crate::"],
};

/// The modules of `src/web/`: what a request is made of, then views, errors, authentication,
/// then the handlers.
const WEB: Layering = Layering {
    layers: &[
        &["identity", "graph", "throttle", "catalog", "plot"],
        &["views"],
        &["error"],
        &["auth", "lookup", "metrics", "dataflow"],
        &["pages", "api", "charts", "sql", "tables"],
    ],
    module_of: web_module,
    prefixes: &["super::", "crate::web::"],
};

/// The top-level module a file under `src/` belongs to (`None` for the crate roots).
fn top_level_module(relative: &str) -> Option<&str> {
    let first = relative.split('/').next()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(module, "lib" | "main")).then_some(module)
}

/// The module of a file of `src/web/` (`None` elsewhere, and for `web/mod.rs`, the root).
fn web_module(relative: &str) -> Option<&str> {
    let module = relative.strip_prefix("web/")?.strip_suffix(".rs")?;
    (module != "mod" && !module.contains('/')).then_some(module)
}

/// Every use of a higher (or unknown) layer in `files` (path under `src/`, text).
fn violations(layering: &Layering, files: &[(String, String)]) -> Vec<String> {
    let layer_of = |module: &str| layering.layers.iter().position(|l| l.contains(&module));
    let mut found = Vec::new();
    for (path, text) in files {
        let Some(module) = (layering.module_of)(path) else { continue };
        let Some(own) = layer_of(module) else {
            found.push(format!(
                "src/{path}: module `{module}` has no layer in tests/it/layering.rs"
            ));
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for prefix in layering.prefixes {
                for used in code.split(prefix).skip(1) {
                    let name: String = used
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if name.is_empty() || name == module {
                        continue;
                    }
                    match layer_of(&name) {
                        Some(layer) if layer < own => {}
                        Some(layer) => found.push(format!(
                            "src/{path}:{}: `{module}` (layer {own}) uses `{name}` (layer {layer})",
                            number + 1
                        )),
                        // `crate::web::…` seen from the crate check, say, or an item of `super`.
                        None if *prefix != "crate::" => {}
                        None => found.push(format!(
                            "src/{path}:{}: `{name}` has no layer in tests/it/layering.rs",
                            number + 1
                        )),
                    }
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
    let files = sources(&src);
    let mut found = violations(&CRATE, &files);
    found.extend(violations(&WEB, &files));
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
        violations(&CRATE, &planted),
        [
            "src/store/planted.rs:1: `store` (layer 2) uses `web` (layer 10)",
            "src/gadgets.rs: module `gadgets` has no layer in tests/it/layering.rs",
        ]
    );
}

#[test]
fn a_planted_upward_import_inside_the_web_server_is_caught() {
    let planted = vec![
        ("web/views.rs".to_string(), "use super::auth::Identity;\n".to_string()),
        ("web/pages.rs".to_string(), "use super::views::TaskPage;\n".to_string()),
    ];
    assert_eq!(
        violations(&WEB, &planted),
        ["src/web/views.rs:1: `views` (layer 1) uses `auth` (layer 3)"]
    );
}
