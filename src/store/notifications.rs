//! The notification queue (`notifications`): messages to channels, queued in the transaction
//! that makes the state change they tell of, and claimed for delivery with a lease.
//!
//! A message is queued once: its `event_key` (event and channel) is unique, so a second
//! enqueue of the same event (two schedulers, a retried transaction) is ignored. A claim is a
//! guarded UPDATE, so each row has one sender at a time; a sender that dies leaves its lease
//! to expire and the row is claimed again. This module only stores rows: what a message says
//! and how it is sent belong to the layer above (`notifications`).

use sqlx::{Acquire, Any, Executor, FromRow};

use super::{Backend, Result};
use crate::time::Micros;

/// A row's delivery state.
pub const PENDING: &str = "pending";
pub const SENDING: &str = "sending";
pub const SENT: &str = "sent";
pub const FAILED: &str = "failed";

/// A message to queue for one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// Names the event and the channel; the queue keeps one row per key.
    pub event_key: String,
    pub channel: String,
    /// `task_failed`, `run_succeeded`, …
    pub event: String,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: Option<String>,
    /// The message, as the JSON its sender reads.
    pub message: String,
}

/// A row claimed for delivery by this process.
#[derive(Debug, Clone, FromRow)]
pub struct ClaimedNotification {
    pub id: i64,
    pub channel: String,
    pub message: String,
    /// Delivery attempts so far, this one included.
    pub attempts: i64,
}

/// A queued notification as the run page and the API show it.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct NotificationRow {
    pub channel: String,
    pub event: String,
    pub task_id: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: Micros,
    pub sent_at: Option<Micros>,
}

/// Queues `items` (those whose key is already queued are left out); returns how many were new.
pub async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    items: &[NewNotification],
    now: Micros,
) -> Result<u64> {
    let mut added = 0;
    for item in items {
        added += sqlx::query(
            "INSERT INTO notifications (event_key, channel, event, dag_id, run_id, task_id, \
             message, state, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT (event_key) DO NOTHING",
        )
        .bind(&item.event_key)
        .bind(&item.channel)
        .bind(&item.event)
        .bind(&item.dag_id)
        .bind(&item.run_id)
        .bind(&item.task_id)
        .bind(&item.message)
        .bind(PENDING)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(added)
}

/// Claims up to `limit` rows due at `now` for `sender`, until `lease_until`: pending rows
/// whose time has come, and rows whose previous sender's lease ran out.
pub async fn claim(
    db: impl Acquire<'_, Database = Any>,
    sender: &str,
    limit: usize,
    lease_until: Micros,
    now: Micros,
) -> Result<Vec<ClaimedNotification>> {
    let mut conn = db.acquire().await?;
    let lock = Backend::of_connection(&conn).claim_lock();
    // The state and time are checked again on the row itself, so a claim that waited for
    // another's lock (Postgres rechecks the outer condition) cannot take a row just claimed.
    let sql = format!(
        "WITH picked AS MATERIALIZED (SELECT id FROM notifications \
         WHERE state IN ('{PENDING}', '{SENDING}') AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at, id LIMIT $2 {lock}) \
         UPDATE notifications SET state = '{SENDING}', claimed_by = $3, next_attempt_at = $4, \
         attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM picked) AND state IN ('{PENDING}', '{SENDING}') \
         AND next_attempt_at <= $1 \
         RETURNING id, channel, message, attempts"
    );
    Ok(sqlx::query_as(&sql)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(sender)
        .bind(lease_until)
        .fetch_all(&mut *conn)
        .await?)
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Sent,
    /// Failed; tried again at the given time.
    RetryAt {
        error: String,
        at: Micros,
    },
    /// Failed for good.
    GaveUp {
        error: String,
    },
}

/// Records the end of `sender`'s attempt at row `id`; ignored if the lease was lost to
/// another sender meanwhile. Returns whether it applied.
pub async fn record_attempt(
    db: impl Executor<'_, Database = Any>,
    id: i64,
    sender: &str,
    attempt: &Attempt,
    now: Micros,
) -> Result<bool> {
    let (state, next, error, sent_at) = match attempt {
        Attempt::Sent => (SENT, now, None, Some(now)),
        Attempt::RetryAt { error, at } => (PENDING, *at, Some(error.as_str()), None),
        Attempt::GaveUp { error } => (FAILED, now, Some(error.as_str()), None),
    };
    let done = sqlx::query(
        "UPDATE notifications SET state = $1, next_attempt_at = $2, last_error = $3, sent_at = $4 \
         WHERE id = $5 AND claimed_by = $6 AND state = $7",
    )
    .bind(state)
    .bind(next)
    .bind(error)
    .bind(sent_at)
    .bind(id)
    .bind(sender)
    .bind(SENDING)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The earliest time a queued row falls due, if any is waiting.
pub async fn next_due(db: impl Executor<'_, Database = Any>) -> Result<Option<Micros>> {
    let sql = format!(
        "SELECT MIN(next_attempt_at) FROM notifications WHERE state IN ('{PENDING}', '{SENDING}')"
    );
    Ok(sqlx::query_scalar(&sql).fetch_one(db).await?)
}

/// Rows per delivery state, for `/metrics`.
pub async fn count_by_state(db: impl Executor<'_, Database = Any>) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as("SELECT state, COUNT(*) FROM notifications GROUP BY state ORDER BY state")
        .fetch_all(db)
        .await?)
}

/// The notifications about one run, oldest first.
pub async fn of_run(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    run_id: &str,
) -> Result<Vec<NotificationRow>> {
    Ok(sqlx::query_as(
        "SELECT channel, event, task_id, state, attempts, last_error, created_at, sent_at \
         FROM notifications WHERE dag_id = $1 AND run_id = $2 ORDER BY id",
    )
    .bind(dag_id)
    .bind(run_id)
    .fetch_all(db)
    .await?)
}

/// Deletes delivered and abandoned rows queued before `before`; returns how many.
pub async fn forget_settled(db: impl Executor<'_, Database = Any>, before: Micros) -> Result<u64> {
    let sql = format!(
        "DELETE FROM notifications WHERE state IN ('{SENT}', '{FAILED}') AND created_at < $1"
    );
    Ok(sqlx::query(&sql).bind(before).execute(db).await?.rows_affected())
}
