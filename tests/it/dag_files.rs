//! File-driven DAG validation tests.
//!
//! Every `tests/dag_errors/NAME.toml` must fail to compile with exactly the diagnostics listed in
//! `tests/dag_errors/NAME.expected`, one per line. To add a case, add a DAG file and run
//! `LAKEWARD_BLESS=1 cargo test --test dag_files`, then review the generated `.expected` file.
//! The example DAGs in `dags/` must all compile.

use std::path::Path;

use lakeward::dag::folder::{dag_files, load_file, load_folder};
use lakeward::jobs::Registry;

#[test]
fn broken_dag_files_report_every_error_with_its_position() {
    let registry = Registry::builtin();
    let bless = std::env::var_os("LAKEWARD_BLESS").is_some();
    let folder = Path::new("tests/dag_errors");
    let mut failures = Vec::new();
    let files = dag_files(folder).unwrap().files;
    assert!(files.len() >= 10, "expected the error corpus in {}", folder.display());
    for file in files {
        let actual = match load_file(&file, &registry) {
            Ok(_) => "(compiled without errors)\n".to_string(),
            Err(diagnostics) => diagnostics.iter().map(|d| format!("{d}\n")).collect(),
        };
        let expected_path = file.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures
                .push(format!("{}:\n--- expected\n{expected}--- actual\n{actual}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn example_dags_compile() {
    let bag = load_folder(Path::new("dags"), &Registry::builtin());
    assert!(bag.errors.is_empty(), "{:#?}", bag.errors);
    assert!(bag.dags.contains_key("example"));
}

#[test]
fn one_broken_file_does_not_hide_the_others() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.toml"), "[tasks.a]\nkind = \"noop\"\n").unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[tasks.a]\nkind = \"nope\"\n").unwrap();
    std::fs::write(dir.path().join("other.toml"), "id = \"good\"\n[tasks.a]\nkind = \"noop\"\n")
        .unwrap();
    let bag = load_folder(dir.path(), &Registry::builtin());
    assert_eq!(bag.dags.keys().collect::<Vec<_>>(), vec!["good"]);
    let errors: Vec<String> = bag.errors.values().flatten().map(|d| d.message.clone()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("unknown task kind `nope`")));
    assert!(errors.iter().any(|e| e.starts_with("DAG id `good` is already used by")));
}
