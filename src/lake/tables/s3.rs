//! Iceberg file IO on S3-compatible object stores through `object_store` (the client the lake
//! already uses, configured by the same `AWS_*` variables), so tables can live in an `s3://`
//! warehouse without another S3 stack. Writes are buffered and sent as one PUT on close.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

fn io_error(path: &str) -> impl Fn(object_store::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Unexpected, format!("{path}: {e}"))
}

/// Builds [`S3Storage`] for a table's FileIO.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct S3StorageFactory;

#[typetag::serde]
impl StorageFactory for S3StorageFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(S3Storage::default()))
    }
}

/// `s3://bucket/key` paths, one client per bucket.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct S3Storage {
    #[serde(skip)]
    buckets: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
}

impl S3Storage {
    fn locate(&self, path: &str) -> iceberg::Result<(Arc<dyn ObjectStore>, Key)> {
        let rest = path.strip_prefix("s3://").or_else(|| path.strip_prefix("s3a://")).ok_or_else(
            || Error::new(ErrorKind::DataInvalid, format!("`{path}` is not an s3:// location")),
        )?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let mut buckets = self.buckets.lock().unwrap();
        let store = match buckets.get(bucket) {
            Some(store) => store.clone(),
            None => {
                let store: Arc<dyn ObjectStore> = Arc::new(
                    AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        .build()
                        .map_err(io_error(path))?,
                );
                buckets.insert(bucket.to_string(), store.clone());
                store
            }
        };
        Ok((store, Key::from(key)))
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for S3Storage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        let (store, key) = self.locate(path)?;
        match store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_error(path)(e)),
        }
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let (store, key) = self.locate(path)?;
        let meta = store.head(&key).await.map_err(io_error(path))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        let (store, key) = self.locate(path)?;
        let got = store.get(&key).await.map_err(io_error(path))?;
        got.bytes().await.map_err(io_error(path))
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        let (store, key) = self.locate(path)?;
        Ok(Box::new(S3Read { store, key, path: path.to_string() }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        let (store, key) = self.locate(path)?;
        store.put(&key, PutPayload::from(bs)).await.map_err(io_error(path))?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let (store, key) = self.locate(path)?;
        Ok(Box::new(S3Write { store, key, path: path.to_string(), buffer: Some(Vec::new()) }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        let (store, key) = self.locate(path)?;
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(path)(e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        let (store, key) = self.locate(path)?;
        let keys: Vec<_> = store.list(Some(&key)).try_collect().await.map_err(io_error(path))?;
        for meta in keys {
            store.delete(&meta.location).await.map_err(io_error(path))?;
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

struct S3Read {
    store: Arc<dyn ObjectStore>,
    key: Key,
    path: String,
}

#[async_trait]
impl FileRead for S3Read {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        self.store.get_range(&self.key, range).await.map_err(io_error(&self.path))
    }
}

struct S3Write {
    store: Arc<dyn ObjectStore>,
    key: Key,
    path: String,
    buffer: Option<Vec<u8>>,
}

#[async_trait]
impl FileWrite for S3Write {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        let buffer = self
            .buffer
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::DataInvalid, "write after close"))?;
        buffer.extend_from_slice(&bs);
        Ok(())
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        let buffer =
            self.buffer.take().ok_or_else(|| Error::new(ErrorKind::DataInvalid, "closed twice"))?;
        self.store.put(&self.key, PutPayload::from(buffer)).await.map_err(io_error(&self.path))?;
        Ok(())
    }
}
