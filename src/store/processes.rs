//! Live lakeward processes (schedulers and workers) and their heartbeats. Every function takes
//! the executor it runs on (see [`super::runs`]).

use sqlx::{Any, Executor};

use super::Result;
use crate::time::Micros;

/// Records that process `id` of `kind` (`scheduler` or `worker`) is alive at `now`;
/// schedulers also report their slowest pass since the previous heartbeat.
pub async fn heartbeat(
    db: impl Executor<'_, Database = Any>,
    id: &str,
    kind: &str,
    hostname: &str,
    now: Micros,
    loop_micros: Option<Micros>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO processes (id, kind, hostname, started_at, heartbeat_at, loop_micros) \
         VALUES ($1, $2, $3, $4, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = CASE WHEN excluded.heartbeat_at < \
         processes.heartbeat_at THEN processes.heartbeat_at ELSE excluded.heartbeat_at END, \
         loop_micros = excluded.loop_micros",
    )
    .bind(id)
    .bind(kind)
    .bind(hostname)
    .bind(now)
    .bind(loop_micros)
    .execute(db)
    .await?;
    Ok(())
}

/// The most recent heartbeat of any process of `kind`.
pub async fn latest_heartbeat(
    db: impl Executor<'_, Database = Any>,
    kind: &str,
) -> Result<Option<Micros>> {
    Ok(sqlx::query_scalar("SELECT MAX(heartbeat_at) FROM processes WHERE kind = $1")
        .bind(kind)
        .fetch_one(db)
        .await?)
}

/// Forgets the processes that have not heartbeated since `cutoff` (dead long enough that
/// nobody needs to see them listed); returns how many.
pub async fn forget_silent(db: impl Executor<'_, Database = Any>, cutoff: Micros) -> Result<u64> {
    let done = sqlx::query("DELETE FROM processes WHERE heartbeat_at < $1")
        .bind(cutoff)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Forgets a process that is shutting down cleanly.
pub async fn remove(db: impl Executor<'_, Database = Any>, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM processes WHERE id = $1").bind(id).execute(db).await?;
    Ok(())
}
