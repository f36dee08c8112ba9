//! Files as a stream: which files of a folder an incremental `ingest` has not read yet.
//!
//! The table the rows go to records how far the folder was read: the modification time and
//! path of the newest file ingested (a snapshot summary property committed with the rows), so
//! a run reads exactly the files that came after it, once, whatever crashed before. Files are
//! taken in (modification time, path) order, and a file modified in the last second is left
//! for the next run (it may still be being written).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::records::Source;
use crate::jobs::JobError;

/// The newest file an incremental ingest has read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileMark {
    /// Modification time, milliseconds since the epoch.
    pub modified_ms: i64,
    pub path: String,
}

impl FileMark {
    /// The summary property holding the mark of folder `input`.
    pub fn property(input: &str) -> String {
        format!("lakeward.files.{input}")
    }

    /// The mark of `input` in a table's summary properties (`None`: nothing read yet).
    pub fn from_summary(
        summary: &BTreeMap<String, String>,
        input: &str,
    ) -> Result<Option<FileMark>, JobError> {
        let key = FileMark::property(input);
        summary
            .get(&key)
            .map(|text| {
                serde_json::from_str(text).map_err(|e| {
                    JobError::Bug(format!("the table's `{key}` property is not a file mark: {e}"))
                })
            })
            .transpose()
    }

    pub fn to_property(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The files of `sources` after `mark` and at least `min_age` old, oldest first, and the mark
/// of the newest of them.
pub fn new_files(
    sources: Vec<Source>,
    mark: Option<&FileMark>,
    now: SystemTime,
    min_age: Duration,
) -> Result<(Vec<Source>, Option<FileMark>), JobError> {
    let mut found = Vec::new();
    for source in sources {
        let modified = std::fs::metadata(&source.path)
            .and_then(|m| m.modified())
            .map_err(|e| JobError::Failed(format!("{}: {e}", source.path.display())))?;
        if now.duration_since(modified).unwrap_or_default() < min_age {
            continue;
        }
        let modified_ms =
            modified.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let file = FileMark { modified_ms, path: source.path.display().to_string() };
        if mark.is_none_or(|m| file > *m) {
            found.push((file, source));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let newest = found.last().map(|(mark, _)| mark.clone());
    Ok((found.into_iter().map(|(_, source)| source).collect(), newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settled_files_after_the_mark_are_new() {
        let dir = tempfile::tempdir().unwrap();
        let source = |name: &str, age: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, "{}\n").unwrap();
            let at = SystemTime::now() - Duration::from_secs(age);
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(at).unwrap();
            Source { path, name: name.into() }
        };
        let written = [source("a.json", 30), source("b.json", 20), source("c.json", 0)];
        let sources = || {
            let again = |s: &Source| Source { path: s.path.clone(), name: s.name.clone() };
            written.iter().map(again).collect::<Vec<_>>()
        };
        let (first, mark) =
            new_files(sources(), None, SystemTime::now(), Duration::from_secs(1)).unwrap();
        let names: Vec<&str> = first.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a.json", "b.json"], "c.json is still being written");
        let mark = mark.unwrap();
        assert!(mark.path.ends_with("b.json"));
        let summary = [(FileMark::property("raw/sensors"), mark.to_property())].into();
        let back = FileMark::from_summary(&summary, "raw/sensors").unwrap().unwrap();
        assert_eq!(back, mark);
        let later = SystemTime::now() + Duration::from_secs(5);
        let (next, newest) =
            new_files(sources(), Some(&back), later, Duration::from_secs(1)).unwrap();
        assert_eq!(next.len(), 1);
        assert!(newest.unwrap().path.ends_with("c.json"));
    }
}
