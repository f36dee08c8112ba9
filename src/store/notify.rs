//! Wake-ups: "something changed, look again". In-process through watch channels; across
//! processes through Postgres LISTEN/NOTIFY. A lost or spurious wake-up is harmless: every
//! waiter also polls on a timer, so notifications only cut latency.

use std::time::Duration;

use crate::process::{spawn_owned, Owned};
use tokio::sync::watch;

use super::Store;

const SCHEDULER_CHANNEL: &str = "lakeward_scheduler";
const WORKERS_CHANNEL: &str = "lakeward_workers";

/// This process's wake-up signals.
pub struct Wakeups {
    scheduler: watch::Sender<u64>,
    workers: watch::Sender<u64>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups { scheduler: watch::channel(0).0, workers: watch::channel(0).0 }
    }
}

/// Waits for wake-ups sent after the previous wait returned (or after it was created).
pub struct Waiter(watch::Receiver<u64>);

impl Waiter {
    pub async fn wait(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Wakeups {
    pub fn scheduler_waiter(&self) -> Waiter {
        Waiter(self.scheduler.subscribe())
    }

    pub fn workers_waiter(&self) -> Waiter {
        Waiter(self.workers.subscribe())
    }

    fn poke(sender: &watch::Sender<u64>) {
        sender.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Store {
    /// Tells schedulers that task or run state changed.
    pub async fn wake_scheduler(&self) {
        Wakeups::poke(&self.wakeups.scheduler);
        self.notify_other_processes(SCHEDULER_CHANNEL).await;
    }

    /// Tells workers that tasks were queued.
    pub async fn wake_workers(&self) {
        Wakeups::poke(&self.wakeups.workers);
        self.notify_other_processes(WORKERS_CHANNEL).await;
    }

    async fn notify_other_processes(&self, channel: &str) {
        if self.backend.has_notifications() {
            let sent =
                sqlx::query("SELECT pg_notify($1, '')").bind(channel).execute(&self.pool).await;
            if let Err(e) = sent {
                tracing::debug!("pg_notify failed (the poll will catch up): {e}");
            }
        }
    }

    /// On Postgres, forwards other processes' notifications to this process's waiters, until the
    /// returned task is dropped. On SQLite there is nothing to listen to and `None` is returned.
    pub fn listen(&self) -> Option<Owned<()>> {
        if !self.backend.has_notifications() {
            return None;
        }
        let store = self.clone();
        Some(spawn_owned(async move {
            loop {
                if let Err(e) = store.forward_notifications().await {
                    tracing::warn!("LISTEN connection lost, reconnecting: {e}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }

    async fn forward_notifications(&self) -> Result<(), sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen_all([SCHEDULER_CHANNEL, WORKERS_CHANNEL]).await?;
        loop {
            let notification = listener.recv().await?;
            match notification.channel() {
                SCHEDULER_CHANNEL => Wakeups::poke(&self.wakeups.scheduler),
                WORKERS_CHANNEL => Wakeups::poke(&self.wakeups.workers),
                _ => {}
            }
        }
    }
}
