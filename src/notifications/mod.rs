//! Notifications: telling people when a task fails, is retried or succeeds, when a run ends,
//! and when a run misses its deadline, through the channels `lakeward.toml` defines.
//!
//! Messages are queued in the database ([`crate::store::notifications`]) by whoever makes the
//! state change, in the same transaction (a worker finishing a try, a scheduler ending a run);
//! [`deliver::Delivery`], run beside each scheduler, claims and sends them with retries and
//! backoff, so a channel that is down never holds up a scheduler or a worker, and each message
//! is sent once however many schedulers run. This module says which messages an event calls
//! for ([`queue`]), composes them ([`message`]) and sends them ([`channel`], [`smtp`]); it
//! does not decide when an event happened, nor change any run or task.

pub mod channel;
pub mod deliver;
pub mod message;
pub mod queue;
mod smtp;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use channel::{ChannelSpec, Secret, Security};
pub use deliver::Delivery;
pub use message::{Event, Message};

/// Why a message could not be sent, and whether trying again may help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    /// A later attempt may succeed (the receiver is down or busy); if not, the message is
    /// given up at once (a refused request, a missing secret).
    pub retryable: bool,
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), retryable: true }
    }

    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), retryable: false }
    }
}

/// `[notifications]` in `lakeward.toml`: how delivery behaves.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// The web server's address as users reach it; links in messages start with it.
    pub base_url: String,
    /// Wait before the second attempt; it doubles after each failure, up to an hour.
    #[serde(with = "crate::time::serde_duration")]
    pub retry_delay: Duration,
    /// Attempts before a message is given up (it stays in the queue as `failed`).
    pub max_attempts: u32,
    /// Longest wait for a channel to accept one message.
    #[serde(with = "crate::time::serde_duration")]
    pub timeout: Duration,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            base_url: "http://127.0.0.1:8080".to_string(),
            retry_delay: Duration::from_secs(10),
            max_attempts: 10,
            timeout: Duration::from_secs(15),
        }
    }
}

impl NotificationSettings {
    /// The wait after failed attempt number `attempts` (1-based).
    pub fn backoff(&self, attempts: i64) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX).min(20);
        self.retry_delay.saturating_mul(1 << doublings).min(Duration::from_secs(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let settings = NotificationSettings::default();
        let waits: Vec<u64> = [1, 2, 3, 12].map(|n| settings.backoff(n).as_secs()).to_vec();
        assert_eq!(waits, [10, 20, 40, 3600]);
    }
}
