//! Compiled DAG versions, by (DAG id, version), shared by the scheduler and workers.
//!
//! A run executes the DAG version it was created with, even after its file changes. Any process
//! can rebuild that version from the source stored in the database, so a worker on another
//! machine needs no copy of the DAG folder. [`run_info`] gives the template variables of a run
//! under its version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::dag::template::RunInfo;
use crate::dag::{compile, Dag};
use crate::jobs::Registry;
use crate::store::dags;
use crate::store::{DagRecord, RunRow, Store, StoreError};
use crate::time::from_micros;

/// What templates know of `run`, executing `dag` (its version).
pub fn run_info<'a>(run: &'a RunRow, dag: &Dag) -> RunInfo<'a> {
    RunInfo {
        dag_id: &run.dag_id,
        run_id: &run.run_id,
        logical_date: from_micros(run.logical_date),
        data_interval_start: from_micros(run.interval_start),
        data_interval_end: from_micros(run.interval_end),
        timezone: dag.timezone,
        params: &run.params,
    }
}

#[derive(Debug, Error)]
pub enum VersionError {
    #[error("DAG `{dag_id}` has no stored version `{version}`")]
    Missing { dag_id: String, version: String },
    /// The stored source no longer compiles here, e.g. a custom task kind is not registered.
    #[error("DAG `{dag_id}` version `{version}` does not compile in this process:\n{message}")]
    Invalid { dag_id: String, version: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VersionError {
    /// Whether the database could not be reached (see [`StoreError::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, VersionError::Store(e) if e.is_unavailable())
    }
}

pub struct DagVersions {
    store: Store,
    registry: Registry,
    cache: Mutex<HashMap<(String, String), Arc<Dag>>>,
}

impl DagVersions {
    pub fn new(store: Store, registry: Registry) -> DagVersions {
        DagVersions { store, registry, cache: Mutex::default() }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Adds a DAG compiled elsewhere (from the DAG folder) to the cache.
    pub fn insert(&self, dag: Arc<Dag>) {
        let key = (dag.id.clone(), dag.version.clone());
        self.cache.lock().unwrap().insert(key, dag);
    }

    /// The compiled DAG of that version, from the cache or else from the database.
    pub async fn get(&self, dag_id: &str, version: &str) -> Result<Arc<Dag>, VersionError> {
        let key = (dag_id.to_string(), version.to_string());
        if let Some(dag) = self.cache.lock().unwrap().get(&key) {
            return Ok(dag.clone());
        }
        let (file, source) =
            dags::source(self.store.read(), dag_id, version).await?.ok_or_else(|| {
                VersionError::Missing { dag_id: key.0.clone(), version: key.1.clone() }
            })?;
        let dag = compile(&file, &source, dag_id, &self.registry).map_err(|diagnostics| {
            VersionError::Invalid {
                dag_id: key.0.clone(),
                version: key.1.clone(),
                message: diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
            }
        })?;
        let dag = Arc::new(dag);
        self.cache.lock().unwrap().insert(key, dag.clone());
        Ok(dag)
    }
}

/// What the database keeps of a DAG version.
impl From<&Dag> for DagRecord {
    fn from(dag: &Dag) -> Self {
        DagRecord {
            dag_id: dag.id.clone(),
            file_path: dag.file.clone(),
            version: dag.version.clone(),
            source: dag.source.to_string(),
            description: dag.description.clone(),
            schedule: dag.schedule_text(),
            tags: dag.tags.clone(),
            paused_on_creation: dag.paused_on_creation,
        }
    }
}
