//! Writing table data files that are pieces of a local file followed by new bytes (a Parquet
//! file's row groups, all of them or some, under a new footer), as `register` makes them.
//!
//! Into a local warehouse (`file:` locations) the copies run on several threads side by side,
//! each a kernel copy (`copy_file_range`) and synced to disk before it counts as written, as
//! the table's FileIO syncs every file it closes. Partitioned promotions make hundreds of small
//! files, and most of a small file's time is spent waiting for the disk to confirm the sync,
//! which threads overlap: one after another, 365 of them took about 1 ms each. Elsewhere (object
//! stores) the files go through the table's FileIO, one after another.
//!
//! A source that is a scratch file of the caller's (a promotion's staging file), copied from its
//! start, may be taken over instead: renamed into place and cut back to that first piece before
//! the tail is written, which spares copying its bytes, creating a new file and deleting the old
//! one.
//!
//! This module only copies bytes; it does not decide what goes where, and changes a source file
//! only when the copy says it may take it over.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use iceberg::table::Table;

use super::TableError;
use crate::lake::io;

/// Local copies made at once.
const LOCAL_COPIERS: usize = 8;
/// Bytes read per chunk from the source file for a remote destination.
const REMOTE_CHUNK: usize = 8 * 1024 * 1024;

/// One file to write: the byte ranges `pieces` of `source` one after the other, then `tail`,
/// at `location`.
pub(super) struct FileCopy {
    pub source: PathBuf,
    pub pieces: Vec<Range<u64>>,
    pub tail: Vec<u8>,
    pub location: String,
    /// Whether `source` is a scratch file that may become the written file (on the same local
    /// file system); otherwise it is left as it is.
    pub take_source: bool,
}

impl FileCopy {
    /// The size of the file written.
    pub fn size(&self) -> u64 {
        self.pieces.iter().map(|piece| piece.end - piece.start).sum::<u64>()
            + self.tail.len() as u64
    }

    /// The length of the source's first bytes when they are all the copy takes of it.
    fn head(&self) -> Option<u64> {
        match self.pieces.as_slice() {
            [only] if only.start == 0 => Some(only.end),
            _ => None,
        }
    }
}

/// Writes every copy of `copies`; all are on disk (or in the store) when it returns.
pub(super) async fn write_all(table: &Table, copies: Vec<FileCopy>) -> Result<(), TableError> {
    if copies.iter().all(|copy| local_path(&copy.location).is_some()) {
        return crate::process::blocking(move || write_local(&copies))
            .await
            .map_err(|e| TableError::Invalid(format!("copying data files: {e}")))?;
    }
    for copy in copies {
        write_remote(table, copy).await?;
    }
    Ok(())
}

/// The local path a `file:` location names (as the table's FileIO reads it), or `None` for
/// another scheme.
fn local_path(location: &str) -> Option<PathBuf> {
    let rest = location.strip_prefix("file://").or_else(|| location.strip_prefix("file:"))?;
    Some(Path::new("/").join(rest.trim_start_matches('/')))
}

/// The local copies, on up to [`LOCAL_COPIERS`] threads; a copier stops at its first error,
/// which is returned once every copier has stopped.
fn write_local(copies: &[FileCopy]) -> Result<(), TableError> {
    let next = AtomicUsize::new(0);
    let copier = || -> Result<(), TableError> {
        while let Some(copy) = copies.get(next.fetch_add(1, Ordering::Relaxed)) {
            copy_local(copy)?;
        }
        Ok(())
    };
    let threads = LOCAL_COPIERS.min(copies.len());
    std::thread::scope(|scope| {
        let running: Vec<_> = (0..threads).map(|_| scope.spawn(copier)).collect();
        let mut outcome = Ok(());
        for thread in running {
            let done = thread.join().unwrap_or_else(|_| {
                Err(TableError::Invalid("a data file copier panicked".to_string()))
            });
            outcome = outcome.and(done);
        }
        outcome
    })
}

fn copy_local(copy: &FileCopy) -> Result<(), TableError> {
    let destination = local_path(&copy.location).expect("checked by write_all");
    if let Some(folder) = destination.parent() {
        std::fs::create_dir_all(folder).map_err(io(folder))?;
    }
    if let (true, Some(head)) = (copy.take_source, copy.head()) {
        if take_over(copy, head, &destination)? {
            return Ok(());
        }
    }
    let mut source = File::open(&copy.source).map_err(io(&copy.source))?;
    let mut out = File::create(&destination).map_err(io(&destination))?;
    for piece in &copy.pieces {
        source.seek(SeekFrom::Start(piece.start)).map_err(io(&copy.source))?;
        let wanted = piece.end - piece.start;
        let copied =
            std::io::copy(&mut (&source).take(wanted), &mut out).map_err(io(&destination))?;
        if copied != wanted {
            return Err(too_short(copy, piece.start + copied, piece.end));
        }
    }
    out.write_all(&copy.tail).map_err(io(&destination))?;
    out.sync_all().map_err(io(&destination))?;
    Ok(())
}

/// Renames `copy`'s source to `destination` and puts the tail in place of what follows its
/// first `head` bytes; false, the source untouched, when the rename is refused (another file
/// system).
fn take_over(copy: &FileCopy, head: u64, destination: &Path) -> Result<bool, TableError> {
    let length = std::fs::metadata(&copy.source).map_err(io(&copy.source))?.len();
    if length < head {
        return Err(too_short(copy, length, head));
    }
    if std::fs::rename(&copy.source, destination).is_err() {
        return Ok(false);
    }
    let mut out = OpenOptions::new().write(true).open(destination).map_err(io(destination))?;
    out.set_len(head).map_err(io(destination))?;
    out.seek(SeekFrom::Start(head)).map_err(io(destination))?;
    out.write_all(&copy.tail).map_err(io(destination))?;
    out.sync_all().map_err(io(destination))?;
    Ok(true)
}

fn too_short(copy: &FileCopy, length: u64, wanted: u64) -> TableError {
    let source = copy.source.display();
    TableError::Invalid(format!("{source} ends after {length} of {wanted} bytes"))
}

/// One copy through the table's FileIO.
async fn write_remote(table: &Table, copy: FileCopy) -> Result<(), TableError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut source = tokio::fs::File::open(&copy.source).await.map_err(io(&copy.source))?;
    let mut out = table.file_io().new_output(&copy.location)?.writer().await?;
    for piece in &copy.pieces {
        source.seek(SeekFrom::Start(piece.start)).await.map_err(io(&copy.source))?;
        let mut left = piece.end - piece.start;
        while left > 0 {
            let mut chunk = vec![0; REMOTE_CHUNK.min(left as usize)];
            source.read_exact(&mut chunk).await.map_err(io(&copy.source))?;
            left -= chunk.len() as u64;
            out.write(Bytes::from(chunk)).await?;
        }
    }
    out.write(Bytes::from(copy.tail)).await?;
    out.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `bytes` bytes of a source, as one piece.
    fn first(bytes: u64) -> Vec<Range<u64>> {
        std::iter::once(0..bytes).collect()
    }

    #[test]
    fn file_locations_name_local_paths_and_others_do_not() {
        for (location, path) in [
            ("file:///srv/wh/t/data/a.parquet", "/srv/wh/t/data/a.parquet"),
            ("file:/srv/wh/a.parquet", "/srv/wh/a.parquet"),
            ("file://srv/a.parquet", "/srv/a.parquet"),
        ] {
            assert_eq!(local_path(location), Some(PathBuf::from(path)), "{location}");
        }
        assert_eq!(local_path("s3://bucket/wh/a.parquet"), None);
    }

    #[test]
    fn local_copies_hold_the_head_of_the_source_then_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::write(&source, b"0123456789old footer").unwrap();
        let copies: Vec<FileCopy> = (0..20)
            .map(|index| FileCopy {
                source: source.clone(),
                pieces: first(10),
                tail: format!("new {index}").into_bytes(),
                location: format!("file://{}/p={index}/f.parquet", dir.path().display()),
                take_source: false,
            })
            .collect();
        write_local(&copies).unwrap();
        for (index, copy) in copies.iter().enumerate() {
            let written = std::fs::read(dir.path().join(format!("p={index}/f.parquet"))).unwrap();
            assert_eq!(written, format!("0123456789new {index}").into_bytes());
            assert_eq!(written.len() as u64, copy.size());
        }
        assert_eq!(std::fs::read(&source).unwrap(), b"0123456789old footer", "unchanged");
    }

    #[test]
    fn pieces_of_the_source_are_copied_in_the_order_given() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::write(&source, b"PAR1aaaabbbbccccfooter").unwrap();
        for take_source in [false, true] {
            let location = format!("file://{}/out-{take_source}.parquet", dir.path().display());
            let copy = FileCopy {
                source: source.clone(),
                pieces: vec![0..4, 12..16, 4..8],
                tail: b"new".to_vec(),
                location,
                take_source,
            };
            assert_eq!(copy.size(), 15);
            write_local(&[copy]).unwrap();
            let written = std::fs::read(dir.path().join(format!("out-{take_source}.parquet")));
            assert_eq!(written.unwrap(), b"PAR1ccccaaaanew");
            assert!(source.exists(), "a copy of pieces never takes its source over");
        }
    }

    #[test]
    fn a_source_shorter_than_its_head_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("short.parquet");
        std::fs::write(&source, b"abc").unwrap();
        let location = format!("file://{}/out.parquet", dir.path().display());
        for take_source in [false, true] {
            let copy = FileCopy {
                source: source.clone(),
                pieces: first(10),
                tail: vec![],
                location: location.clone(),
                take_source,
            };
            let error = write_local(&[copy]).unwrap_err().to_string();
            assert!(error.contains("short.parquet ends after 3 of 10 bytes"), "{error}");
            assert_eq!(std::fs::read(&source).unwrap(), b"abc", "left as it was");
        }
    }

    #[test]
    fn a_source_taken_over_becomes_the_file_without_a_copy() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("staging.parquet");
        std::fs::write(&source, b"0123456789old footer").unwrap();
        let inode = std::fs::metadata(&source).unwrap().ino();
        let location = format!("file://{}/p=1/f.parquet", dir.path().display());
        let tail = b"new".to_vec();
        let copy = FileCopy {
            source: source.clone(),
            pieces: first(10),
            tail,
            location,
            take_source: true,
        };
        write_local(&[copy]).unwrap();
        let written = dir.path().join("p=1/f.parquet");
        assert_eq!(std::fs::read(&written).unwrap(), b"0123456789new");
        assert_eq!(std::fs::metadata(&written).unwrap().ino(), inode, "the same file, renamed");
        assert!(!source.exists());
    }
}
