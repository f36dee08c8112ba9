//! S3-compatible warehouses. Polars works on local files, so a remote warehouse is mirrored
//! through a local cache: reading a dataset downloads its current version once, and publishing
//! a version uploads its files first and the `_current` pointer last (a single PUT, atomic).
//!
//! Endpoint and credentials come from the standard `AWS_*` variables (`AWS_ENDPOINT`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`), as every S3
//! client reads them. The blocking methods here must run off the async runtime's workers
//! (inside `spawn_blocking`, where Polars work runs anyway).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{io, LakeError, Result};

/// A bucket and prefix holding a warehouse.
#[derive(Debug)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// `s3://bucket/prefix`, as configured.
    location: String,
}

fn remote_error(e: object_store::Error) -> LakeError {
    LakeError::Remote(e.to_string())
}

/// Runs a future to completion from blocking code inside the runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(future)
}

impl Remote {
    /// Connects to `s3://bucket/prefix`.
    pub fn open(location: &str) -> Result<Remote> {
        let rest = location.trim_start_matches("s3://");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let store =
            AmazonS3Builder::from_env().with_bucket_name(bucket).build().map_err(remote_error)?;
        Ok(Remote {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            location: location.trim_end_matches('/').to_string(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn key(&self, relative: &str) -> Key {
        let relative = relative.trim_matches('/');
        match (self.prefix.is_empty(), relative.is_empty()) {
            (true, _) => Key::from(relative),
            (false, true) => Key::from(self.prefix.as_str()),
            (false, false) => Key::from(format!("{}/{relative}", self.prefix)),
        }
    }

    /// The text of a small object, or `None` if it does not exist.
    pub fn read_text(&self, relative: &str) -> Result<Option<String>> {
        let got = block_on(async { self.store.get(&self.key(relative)).await?.bytes().await });
        match got {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote_error(e)),
        }
    }

    pub fn write_text(&self, relative: &str, text: &str) -> Result<()> {
        let payload = PutPayload::from(text.as_bytes().to_vec());
        block_on(self.store.put(&self.key(relative), payload)).map_err(remote_error)?;
        Ok(())
    }

    /// Whether `relative` is a single object (a file).
    pub fn is_object(&self, relative: &str) -> Result<bool> {
        match block_on(self.store.head(&self.key(relative))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(remote_error(e)),
        }
    }

    /// Downloads every object under `relative/` into `into`, keeping relative paths.
    /// Returns how many objects there were.
    pub fn download_tree(&self, relative: &str, into: &Path) -> Result<usize> {
        let base = self.key(relative);
        let objects: Vec<_> =
            block_on(self.store.list(Some(&base)).try_collect::<Vec<_>>()).map_err(remote_error)?;
        for object in &objects {
            let Some(suffix) = object.location.prefix_match(&base) else { continue };
            let local = suffix.fold(into.to_path_buf(), |path, part| path.join(part.as_ref()));
            self.download(&object.location, &local)?;
        }
        Ok(objects.len())
    }

    /// Downloads one object.
    pub fn download_object(&self, relative: &str, to: &Path) -> Result<()> {
        self.download(&self.key(relative), to)
    }

    fn download(&self, key: &Key, to: &Path) -> Result<()> {
        let bytes =
            block_on(async { self.store.get(key).await?.bytes().await }).map_err(remote_error)?;
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(to, &bytes).map_err(io(to))
    }

    /// Uploads every file under `from` to `relative/`, keeping relative paths.
    pub fn upload_tree(&self, from: &Path, relative: &str) -> Result<()> {
        let mut pending = vec![from.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let path = entry.map_err(io(&dir))?.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let inside =
                    path.strip_prefix(from).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                self.upload_file(&path, &format!("{relative}/{inside}"))?;
            }
        }
        Ok(())
    }

    pub fn upload_file(&self, path: &Path, relative: &str) -> Result<()> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        block_on(self.store.put(&self.key(relative), PutPayload::from(bytes)))
            .map_err(remote_error)?;
        Ok(())
    }

    /// Deletes the `v-…` version folders of a dataset except those in `keep`.
    pub fn prune_versions(&self, dataset: &str, keep: &[&str]) -> Result<()> {
        let base = self.key(dataset);
        let listing =
            block_on(self.store.list_with_delimiter(Some(&base))).map_err(remote_error)?;
        for folder in listing.common_prefixes {
            let name = folder.filename().unwrap_or_default().to_string();
            if name.starts_with(super::dataset::VERSION_PREFIX) && !keep.contains(&name.as_str()) {
                let objects: Vec<_> =
                    block_on(self.store.list(Some(&folder)).try_collect::<Vec<_>>())
                        .map_err(remote_error)?;
                for object in objects {
                    block_on(self.store.delete(&object.location)).map_err(remote_error)?;
                }
            }
        }
        Ok(())
    }
}

/// Where a remote warehouse's local copies live.
pub fn cache_dir(home_cache: &Path, location: &str) -> PathBuf {
    let safe: String =
        location.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    home_cache.join(safe)
}
