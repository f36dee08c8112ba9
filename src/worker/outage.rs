//! Waiting out a database outage: an attempt that failed because the database could not be
//! reached is made again, backing off, until the database answers or the caller gives up.
//! What an answer means, and when to give up, is the caller's business.

use std::future::Future;
use std::time::Duration;

/// First and longest pause between two attempts.
const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(5);

/// The first result of `attempt` that is not an `unreachable` error, or the last result when
/// `give_up` completes first.
pub(super) async fn until_answered<T, E, F: Future<Output = Result<T, E>>>(
    mut attempt: impl FnMut() -> F,
    unreachable: impl Fn(&E) -> bool,
    give_up: impl Future<Output = ()>,
) -> Result<T, E> {
    tokio::pin!(give_up);
    let mut wait = FIRST_WAIT;
    loop {
        let result = attempt().await;
        if !result.as_ref().is_err_and(&unreachable) {
            return result;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut give_up => return result,
        }
        wait = (wait * 2).min(LONGEST_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn unreachable(e: &&str) -> bool {
        *e == "unreachable"
    }

    #[tokio::test]
    async fn an_unreachable_database_is_tried_again_until_it_answers() {
        let calls = AtomicUsize::new(0);
        let attempt = || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if call < 2 { Err("unreachable") } else { Ok(7) })
        };
        let answer = until_answered(attempt, unreachable, std::future::pending()).await;
        assert_eq!((answer, calls.load(Ordering::SeqCst)), (Ok(7), 3));
    }

    #[tokio::test]
    async fn other_errors_are_answers() {
        let calls = AtomicUsize::new(0);
        let attempt = || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err::<(), _>("refused"))
        };
        let answer = until_answered(attempt, unreachable, std::future::pending()).await;
        assert_eq!((answer, calls.load(Ordering::SeqCst)), (Err("refused"), 1));
    }

    #[tokio::test]
    async fn giving_up_returns_the_last_failure() {
        let give_up = tokio::time::sleep(Duration::from_millis(300));
        let attempt = || std::future::ready(Err::<(), _>("unreachable"));
        assert_eq!(until_answered(attempt, unreachable, give_up).await, Err("unreachable"));
    }
}
