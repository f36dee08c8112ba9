//! Where table files may be: every location a table, a namespace or a commit names must lie
//! inside the catalog's root (`<warehouse>/iceberg`), and file deletions inside the table's
//! own location. This keeps REST catalog clients, and lakeward's own writes and deletions
//! that follow their metadata, inside the warehouse.
//!
//! Locations are compared as text after refusing anything that could resolve elsewhere
//! (`..` and `.` segments, empty segments, backslashes, percent-encoded dots and slashes), so
//! no file system is consulted.

use iceberg::spec::TableMetadata;
use iceberg::TableUpdate;

use super::TableError;

/// Table properties that redirect where data or metadata files are written.
const PATH_PROPERTIES: &[&str] = &[
    "write.data.path",
    "write.metadata.path",
    "write.object-storage.path",
    "write.folder-storage.path",
];

/// Whether `path` names something strictly below `root` and cannot climb out of it.
pub fn is_inside(root: &str, path: &str) -> bool {
    let root = root.trim_end_matches('/');
    let Some(rest) = path.strip_prefix(root).and_then(|rest| rest.strip_prefix('/')) else {
        return false;
    };
    let lower = rest.to_ascii_lowercase();
    !rest.is_empty()
        && !rest.contains('\\')
        && !["%2e", "%2f", "%5c"].iter().any(|encoded| lower.contains(encoded))
        && rest.split('/').all(|segment| !matches!(segment, "" | "." | ".."))
}

/// Names of namespaces and tables: letters, digits, `_` and `-` (no `.`, which separates
/// levels in lakeward's names, and nothing that could climb a path).
pub fn check_name(kind: &str, name: &str) -> Result<(), TableError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(TableError::Invalid(format!(
            "invalid {kind} name `{name}`: use letters, digits, `_` and `-`"
        )))
    }
}

/// The root every table of a catalog lives under.
#[derive(Debug, Clone)]
pub struct Confinement {
    root: String,
}

impl Confinement {
    pub fn new(root: String) -> Confinement {
        Confinement { root }
    }

    /// The default location of table `ident`: `<root>/<namespace levels>/<table>`.
    pub fn table_location(&self, ident: &iceberg::TableIdent) -> String {
        let root = self.root.trim_end_matches('/');
        format!("{root}/{}/{}", ident.namespace().join("/"), ident.name())
    }

    /// Refuses a location outside the root, without saying where the root is.
    pub fn check(&self, what: &str, location: &str) -> Result<(), TableError> {
        if is_inside(&self.root, location) {
            Ok(())
        } else {
            Err(TableError::Invalid(format!(
                "{what} `{location}` is outside the warehouse: leave it unset, or give a \
                 location inside the warehouse's iceberg folder"
            )))
        }
    }

    /// Checks a namespace's properties (`location`).
    pub fn check_namespace_properties<'a>(
        &self,
        properties: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<(), TableError> {
        for (key, value) in properties {
            if key == "location" {
                self.check("namespace location", value)?;
            }
        }
        Ok(())
    }

    /// Checks what a table's metadata points at: its location, the write paths among its
    /// properties, and its snapshots' manifest lists.
    pub fn check_metadata(&self, metadata: &TableMetadata) -> Result<(), TableError> {
        self.check("table location", metadata.location())?;
        for key in PATH_PROPERTIES {
            if let Some(path) = metadata.properties().get(*key) {
                self.check(key, path)?;
            }
        }
        for snapshot in metadata.snapshots() {
            self.check("manifest list", snapshot.manifest_list())?;
        }
        Ok(())
    }

    /// Checks the locations a commit's updates would set.
    pub fn check_updates(&self, updates: &[TableUpdate]) -> Result<(), TableError> {
        for update in updates {
            match update {
                TableUpdate::SetLocation { location } => self.check("table location", location)?,
                TableUpdate::SetProperties { updates } => {
                    for (key, value) in updates {
                        if PATH_PROPERTIES.contains(&key.as_str()) {
                            self.check(key, value)?;
                        }
                    }
                }
                TableUpdate::AddSnapshot { snapshot } => {
                    self.check("manifest list", snapshot.manifest_list())?
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_strictly_below_the_root_are_inside() {
        let root = "file:///srv/wh/iceberg";
        assert!(is_inside(root, "file:///srv/wh/iceberg/bronze/orders"));
        assert!(is_inside("s3://b/p/iceberg/", "s3://b/p/iceberg/ns/t/data/x.parquet"));
        for outside in [
            "file:///srv/wh/iceberg",
            "file:///srv/wh/iceberg-evil/t",
            "file:///srv/wh/iceberg/../secrets",
            "file:///srv/wh/iceberg/ns/./t",
            "file:///srv/wh/iceberg//t",
            "file:///srv/wh/iceberg/%2E%2E/x",
            "file:///srv/wh/iceberg/a\\..\\b",
            "/srv/wh/iceberg/ns/t",
            "s3://other/iceberg/ns/t",
        ] {
            assert!(!is_inside(root, outside), "{outside}");
        }
    }

    #[test]
    fn names_cannot_climb_or_nest() {
        assert!(check_name("table", "orders_2024-x").is_ok());
        for bad in ["", "a.b", "..", "a/b", "a b"] {
            assert!(check_name("table", bad).is_err(), "{bad}");
        }
    }
}
