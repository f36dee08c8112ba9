//! Login abuse control: failed logins are counted per user name and per client address, and
//! past a few free failures each key is locked out for a time that doubles with every further
//! failure; password hashing runs at most [`HASHING_AT_ONCE`] at a time, with a bounded queue.
//!
//! State lives in this web process's memory (several web processes each keep their own). It
//! knows nothing of HTTP or the database: `auth` asks it and tells it what happened.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Failures allowed before a key is locked.
pub const FREE_FAILURES: u32 = 5;
/// The first lockout; each further failure doubles it…
const FIRST_LOCKOUT: Duration = Duration::from_secs(1);
/// …up to this.
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// A key with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Keys kept at most; past that the oldest are forgotten first.
const MAX_KEYS: usize = 100_000;
/// Password hashes computed at once (argon2 takes ~19 MiB each).
pub const HASHING_AT_ONCE: usize = 2;
/// Logins waiting for a hashing slot at most; more are told to come back.
const MAX_WAITING: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Who is trying to log in.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
enum Key {
    User(String),
    Client(IpAddr),
}

/// Why a login attempt is not even checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many recent failures for this user or address: try again after this long.
    LockedOut(Duration),
    /// Too many logins are waiting for a hashing slot.
    Busy,
}

pub struct LoginThrottle {
    failures: Mutex<HashMap<Key, Failures>>,
    hashing: Semaphore,
    waiting: AtomicUsize,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            failures: Mutex::new(HashMap::new()),
            hashing: Semaphore::new(HASHING_AT_ONCE),
            waiting: AtomicUsize::new(0),
        }
    }
}

fn keys(username: &str, client: Option<IpAddr>) -> impl Iterator<Item = Key> {
    std::iter::once(Key::User(username.to_string())).chain(client.map(Key::Client))
}

impl LoginThrottle {
    /// Refuses an attempt while the user or the address is locked out.
    pub fn check(&self, username: &str, client: Option<IpAddr>) -> Result<(), Refusal> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let wait = keys(username, client)
            .filter_map(|key| failures.get(&key)?.locked_until)
            .filter(|until| *until > now)
            .max();
        match wait {
            Some(until) => Err(Refusal::LockedOut(until - now)),
            None => Ok(()),
        }
    }

    /// Waits for a hashing slot, unless too many attempts wait already.
    pub async fn hashing_slot(&self) -> Result<SemaphorePermit<'_>, Refusal> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Busy);
        }
        let permit = self.hashing.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit.map_err(|_| Refusal::Busy)
    }

    /// Counts a failed attempt against the user and the address.
    pub fn failed(&self, username: &str, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_KEYS {
            forget_oldest(&mut failures, now);
        }
        for key in keys(username, client) {
            let entry =
                failures.entry(key).or_insert(Failures { count: 0, last: now, locked_until: None });
            if now.duration_since(entry.last) > FORGET_AFTER {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
            entry.locked_until = lockout(entry.count).map(|wait| now + wait);
        }
    }

    /// A successful login clears the user's failures (the address keeps its own).
    pub fn succeeded(&self, username: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&Key::User(username.to_string()));
    }
}

/// How long a key is locked after its `count`th failure.
fn lockout(count: u32) -> Option<Duration> {
    let over = count.checked_sub(FREE_FAILURES)?;
    Some(FIRST_LOCKOUT.saturating_mul(1 << over.min(20)).min(MAX_LOCKOUT))
}

/// Drops keys idle past [`FORGET_AFTER`], then the oldest half if that was not enough.
fn forget_oldest(failures: &mut HashMap<Key, Failures>, now: Instant) {
    failures.retain(|_, f| now.duration_since(f.last) <= FORGET_AFTER);
    if failures.len() >= MAX_KEYS {
        let mut ages: Vec<Instant> = failures.values().map(|f| f.last).collect();
        ages.sort_unstable();
        let cutoff = ages[ages.len() / 2];
        failures.retain(|_, f| f.last > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_start_after_the_free_failures_and_double() {
        assert_eq!(lockout(FREE_FAILURES - 1), None);
        assert_eq!(lockout(FREE_FAILURES), Some(Duration::from_secs(1)));
        assert_eq!(lockout(FREE_FAILURES + 3), Some(Duration::from_secs(8)));
        assert_eq!(lockout(FREE_FAILURES + 40), Some(MAX_LOCKOUT));
    }

    #[tokio::test]
    async fn hashing_is_bounded_and_the_queue_too() {
        let throttle = std::sync::Arc::new(LoginThrottle::default());
        let held: Vec<_> =
            (0..HASHING_AT_ONCE).map(|_| throttle.hashing.try_acquire().unwrap()).collect();
        let waiters: Vec<_> = (0..MAX_WAITING)
            .map(|_| {
                let throttle = throttle.clone();
                crate::process::spawn_owned(
                    async move { throttle.hashing_slot().await.map(|_| ()) },
                )
            })
            .collect();
        while throttle.waiting.load(Ordering::SeqCst) < MAX_WAITING {
            tokio::task::yield_now().await;
        }
        assert_eq!(throttle.hashing_slot().await.err(), Some(Refusal::Busy));
        drop(held);
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Ok(()));
        }
    }

    #[test]
    fn a_user_and_an_address_are_locked_separately() {
        let throttle = LoginThrottle::default();
        let attacker: IpAddr = "10.0.0.9".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert!(throttle.check("admin", Some(attacker)).is_ok());
            throttle.failed("admin", Some(attacker));
        }
        assert!(matches!(throttle.check("admin", None), Err(Refusal::LockedOut(_))));
        assert!(matches!(throttle.check("other", Some(attacker)), Err(Refusal::LockedOut(_))));
        assert!(throttle.check("other", Some("10.0.0.10".parse().unwrap())).is_ok());
        throttle.succeeded("admin");
        assert!(throttle.check("admin", None).is_ok());
    }
}
