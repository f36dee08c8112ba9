//! Embeds the SQL migrations: one ordered set per dialect, read from
//! `migrations/<dialect>/NNNN_name.sql`, so adding a migration is adding a file.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let mut code = String::new();
    for dialect in ["sqlite", "postgres"] {
        let folder = Path::new("migrations").join(dialect);
        println!("cargo:rerun-if-changed={}", folder.display());
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("reading {}: {e}", folder.display()))
            .map(|entry| entry.expect("a readable migration folder").path())
            .filter(|path| path.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        writeln!(code, "pub const {}: &[(i64, &str, &str)] = &[", dialect.to_uppercase()).unwrap();
        for path in files {
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("a UTF-8 file name");
            let (number, name) = stem
                .split_once('_')
                .unwrap_or_else(|| panic!("{}: expected NNNN_name.sql", path.display()));
            let version: i64 = number
                .parse()
                .unwrap_or_else(|_| panic!("{}: expected NNNN_name.sql", path.display()));
            let absolute = std::fs::canonicalize(&path).expect("the migration exists");
            writeln!(
                code,
                "    ({version}, {name:?}, include_str!({:?})),",
                absolute.display().to_string()
            )
            .unwrap();
        }
        writeln!(code, "];").unwrap();
    }
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    std::fs::write(out, code).expect("writing the migration list");
}
