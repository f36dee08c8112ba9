//! Process wiring: the pieces a scheduler (with its notification delivery), a worker or
//! `standalone` (scheduler + worker + web server in one process) are built from. Shutdown
//! signals and process identity live in [`crate::process`], below the scheduler and workers;
//! they are re-exported here for the layers above.

use std::sync::Arc;

pub use crate::process::{
    hostname, process_id, shutdown_channel, termination_signal, Shutdown, ShutdownTrigger,
};

use crate::config::Config;
use crate::jobs::Registry;
use crate::lake::tables::TablesHandle;
use crate::lake::Warehouse;
use crate::notifications::Delivery;
use crate::scheduler::{Scheduler, SchedulerOptions};
use crate::store::Store;
use crate::versions::DagVersions;
use crate::worker::{Worker, WorkerOptions};

/// Why a lakeward process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
}

/// The pieces every lakeward process shares.
pub struct Components {
    pub config: Config,
    pub store: Store,
    pub versions: Arc<DagVersions>,
    /// The lakehouse the configuration names.
    pub warehouse: Warehouse,
    pub worker_options: WorkerOptions,
}

impl Components {
    /// Opens (and migrates) the database named by `config` and checks the warehouse location.
    pub async fn open(config: Config, registry: Registry) -> Result<Components, StartError> {
        let warehouse = Warehouse::connect(&config.warehouse(), &config.home.join("cache"))?;
        let worker_options = WorkerOptions::from_config(&config, warehouse.clone());
        let store = Store::open(&config.database_url()).await?;
        let versions = Arc::new(DagVersions::new(store.clone(), registry));
        Ok(Components { config, store, versions, warehouse, worker_options })
    }

    pub fn scheduler(&self) -> Scheduler {
        Scheduler::new(
            self.store.clone(),
            self.versions.clone(),
            SchedulerOptions::from_config(&self.config),
        )
        .with_tables(self.tables())
    }

    /// Notification delivery, which runs beside each scheduler.
    pub fn delivery(&self) -> Delivery {
        Delivery::new(
            self.store.clone(),
            self.config.channels.clone(),
            self.config.notifications.clone(),
        )
    }

    pub fn worker(&self) -> Worker {
        Worker::new(self.store.clone(), self.versions.clone(), self.worker_options.clone())
    }

    /// The table catalog the configuration names (for the web server and the CLI; workers
    /// open their own).
    pub fn tables(&self) -> TablesHandle {
        let warehouse = self.warehouse.clone();
        TablesHandle::new(self.store.clone(), warehouse, self.config.catalog.clone())
    }
}
