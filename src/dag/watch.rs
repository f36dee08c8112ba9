//! Watching a DAG folder with the operating system's file notifications (inotify on Linux),
//! so a new, edited or deleted DAG file is noticed at once without listing the folder again
//! and again. A watch only says *that* something changed; reading the folder is
//! [`super::folder`]'s job. Where notifications cannot be had (inotify limits, some network
//! file systems) [`FolderWatch::start`] fails and the caller keeps polling.

use std::path::Path;
use std::sync::Arc;

use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// A running watch on a folder and the folders under it; dropping it stops watching.
pub struct FolderWatch {
    _watcher: notify::RecommendedWatcher,
    changed: Arc<Notify>,
}

impl FolderWatch {
    /// Starts watching `folder`, which must exist.
    pub fn start(folder: &Path) -> Result<FolderWatch, notify::Error> {
        let changed = Arc::new(Notify::new());
        let signal = changed.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            // An error (a lost or overflowing event queue among them) may hide a change.
            if event.as_ref().map_or(true, is_change) {
                signal.notify_one();
            }
        })?;
        watcher.watch(folder, RecursiveMode::Recursive)?;
        Ok(FolderWatch { _watcher: watcher, changed })
    }

    /// Waits until something in the folder changed since the previous call returned (a
    /// change made while nobody waited is not lost).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Whether `event` may change what the folder holds. Opening and reading files (the folder's
/// own scans do) changes nothing.
fn is_change(event: &Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn writes_are_signalled_and_reads_are_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("team")).unwrap();
        let watch = FolderWatch::start(dir.path()).unwrap();
        let within = Duration::from_secs(5);
        std::fs::write(dir.path().join("team/new.toml"), "[tasks.t]\nkind = \"noop\"\n").unwrap();
        let signalled = tokio::time::timeout(within, watch.changed()).await.is_ok();
        assert!(signalled, "a new file in a subfolder was not signalled");
        // Let the burst of events of that write arrive, then take them all.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tokio::time::timeout(Duration::from_millis(10), watch.changed()).await;

        let _ = std::fs::read_to_string(dir.path().join("team/new.toml")).unwrap();
        let _ = std::fs::read_dir(dir.path()).unwrap().count();
        let quiet = tokio::time::timeout(Duration::from_millis(300), watch.changed()).await;
        assert!(quiet.is_err(), "reading the folder was taken for a change");

        std::fs::remove_file(dir.path().join("team/new.toml")).unwrap();
        let signalled = tokio::time::timeout(within, watch.changed()).await.is_ok();
        assert!(signalled, "a deleted file was not signalled");
    }
}
