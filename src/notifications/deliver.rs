//! Delivery: a loop beside each scheduler that claims due messages from the queue, sends them
//! concurrently, and records each attempt: sent, tried again later with backoff, or given up.
//!
//! A claim is a lease (see [`crate::store::notifications`]): two deliverers never hold the
//! same message, and one that dies mid-send leaves it to be claimed again when the lease ends.
//! Nothing here waits on a channel while holding anything a scheduler or worker needs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::{ChannelSpec, Senders};
use super::message::Message;
use super::{NotificationSettings, SendError};
use crate::process::{process_id, Shutdown};
use crate::store::notifications::{self, Attempt, ClaimedNotification};
use crate::store::{Store, StoreError};
use crate::time::{now_micros, Micros};

/// Messages claimed per pass.
const BATCH: usize = 32;
/// How long delivered and given-up messages stay in the queue (shown on run pages).
const KEEP_SETTLED: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest sleep between passes when nothing is queued: messages queued by other processes
/// are found at the latest this late.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Delivery {
    id: String,
    store: Store,
    channels: Arc<BTreeMap<String, ChannelSpec>>,
    settings: NotificationSettings,
    senders: Senders,
    last_cleanup: Option<Instant>,
}

impl Delivery {
    pub fn new(
        store: Store,
        channels: BTreeMap<String, ChannelSpec>,
        settings: NotificationSettings,
    ) -> Delivery {
        for (name, spec) in &channels {
            for problem in spec.unreadable_secrets() {
                tracing::warn!("channel `{name}`: {problem}; its messages will not be sent");
            }
        }
        Delivery {
            id: process_id("notifier"),
            store,
            channels: Arc::new(channels),
            senders: Senders::new(settings.timeout),
            settings,
            last_cleanup: None,
        }
    }

    /// Delivers until shutdown.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        loop {
            let pause = match self.pass(now_micros()).await {
                Ok(claimed) if claimed == BATCH => Duration::ZERO,
                Ok(_) => self.until_next_due().await,
                Err(e) => {
                    tracing::warn!("notification delivery pass failed, retrying: {e}");
                    IDLE_POLL
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait() => break,
            }
        }
    }

    /// One pass at `now`: claims due messages, sends them, records the attempts. Returns how
    /// many were claimed.
    pub async fn pass(&mut self, now: Micros) -> Result<usize, StoreError> {
        if self.last_cleanup.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
            let before = now - i64::try_from(KEEP_SETTLED.as_micros()).unwrap_or(i64::MAX);
            notifications::forget_settled(self.store.write(), before).await?;
            self.last_cleanup = Some(Instant::now());
        }
        // A lease outlasts a send that times out, with room for recording it.
        let lease = 2 * self.settings.timeout + Duration::from_secs(30);
        let lease_until = now + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
        let claimed =
            notifications::claim(self.store.write(), &self.id, BATCH, lease_until, now).await?;
        let attempts = claimed.iter().map(|row| self.attempt(row));
        let results = futures::future::join_all(attempts).await;
        for (row, attempt) in claimed.iter().zip(results) {
            let recorded = notifications::record_attempt(
                self.store.write(),
                row.id,
                &self.id,
                &attempt,
                now_micros(),
            )
            .await?;
            if !recorded {
                tracing::warn!(channel = %row.channel, "notification lease lost while sending");
            }
        }
        Ok(claimed.len())
    }

    /// Sends one claimed message and says how the attempt ended.
    async fn attempt(&self, row: &ClaimedNotification) -> Attempt {
        let result = match self.channels.get(&row.channel) {
            None => Err(SendError::permanent(format!(
                "no channel `{}` in lakeward.toml (define it under [channels.{}])",
                row.channel, row.channel
            ))),
            Some(spec) => match serde_json::from_str::<Message>(&row.message) {
                Err(e) => Err(SendError::permanent(format!("unreadable message: {e}"))),
                Ok(message) => {
                    let send = self.senders.send(spec, &message, &self.settings.base_url);
                    match tokio::time::timeout(self.settings.timeout, send).await {
                        Ok(result) => result,
                        Err(_) => Err(SendError::retryable(format!(
                            "no answer within {}",
                            humantime::format_duration(self.settings.timeout)
                        ))),
                    }
                }
            },
        };
        match result {
            Ok(()) => {
                tracing::info!(channel = %row.channel, "notification sent");
                Attempt::Sent
            }
            Err(e) if e.retryable && row.attempts < i64::from(self.settings.max_attempts) => {
                let wait = self.settings.backoff(row.attempts);
                tracing::warn!(
                    channel = %row.channel,
                    "notification not sent (attempt {}), trying again in {}: {e}",
                    row.attempts,
                    humantime::format_duration(wait)
                );
                let wait = i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
                Attempt::RetryAt { error: e.message, at: now_micros().saturating_add(wait) }
            }
            Err(e) => {
                tracing::error!(
                    channel = %row.channel,
                    "notification given up after {} attempt(s): {e}",
                    row.attempts
                );
                Attempt::GaveUp { error: e.message }
            }
        }
    }

    /// How long to sleep: until the next queued message is due, at most [`IDLE_POLL`].
    async fn until_next_due(&self) -> Duration {
        match notifications::next_due(self.store.read()).await {
            Ok(Some(at)) => {
                let wait = u64::try_from(at - now_micros()).unwrap_or(0);
                Duration::from_micros(wait).min(IDLE_POLL)
            }
            _ => IDLE_POLL,
        }
    }
}
