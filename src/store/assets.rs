//! Data-aware scheduling's statements: the changes of tables and datasets (written by a
//! database trigger for tables, by [`record_dataset_versions`] for datasets), which of them a
//! DAG has not consumed yet, and what triggered each run.
//!
//! A change is pending for a DAG that watches its asset until the transaction that creates the
//! run it triggers marks it consumed ([`consume`]), so no change is lost to a crash, a restart
//! or two schedulers, and none triggers twice. Changes no watcher will look at again are
//! deleted ([`forget_consumed`]). This module knows nothing of schedules: the scheduler
//! decides when pending changes make a run.

use std::collections::BTreeMap;

use sqlx::{Acquire, Any, Executor, FromRow};

use super::Result;
use crate::domain::{AssetKind, AssetRef, Direction, LineageRecord};
use crate::time::Micros;

/// How far before the newest consumed change a DAG keeps looking for pending ones: on
/// Postgres a change's id and time are taken before its transaction commits, so a slower
/// commit can land a little behind one already consumed.
pub const LATE_COMMIT_MARGIN: Micros = 60_000_000;

/// One change of a table (a new metadata file) or of a dataset (a new version).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AssetChange {
    pub id: i64,
    pub kind: AssetKind,
    pub name: String,
    /// The new metadata file of a table, the new version of a dataset.
    pub version: String,
    /// The metadata file it replaced (tables only).
    pub previous: Option<String>,
    pub changed_at: Micros,
}

/// One table snapshot or dataset version that triggered a run.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct RunTrigger {
    pub kind: AssetKind,
    pub name: String,
    pub version: String,
}

/// Starts watching `asset` for `dag_id` at `now`, unless it is watched already: changes
/// before a DAG watched an asset do not trigger it.
pub async fn watch(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    asset: &AssetRef,
    now: Micros,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO asset_watches (dag_id, kind, name, since) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(dag_id)
    .bind(asset.kind.as_str())
    .bind(&asset.name)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// The changes of `asset` that `dag_id` has not consumed, oldest first.
pub async fn pending(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    asset: &AssetRef,
) -> Result<Vec<AssetChange>> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.kind, c.name, c.version, c.previous, c.changed_at \
         FROM asset_changes c JOIN asset_watches w \
           ON w.dag_id = $1 AND w.kind = c.kind AND w.name = c.name \
         WHERE c.kind = $2 AND c.name = $3 AND c.changed_at >= w.since \
           AND NOT EXISTS (SELECT 1 FROM asset_triggers t \
                           WHERE t.dag_id = $1 AND t.change_id = c.id) \
         ORDER BY c.id",
    )
    .bind(dag_id)
    .bind(asset.kind.as_str())
    .bind(&asset.name)
    .fetch_all(db)
    .await?)
}

/// Marks `changes` consumed by run `run_pk` of `dag_id` and records what triggered it, in
/// the caller's transaction (the one that creates the run). False, with nothing written to
/// keep, when another scheduler consumed one of them first: the caller rolls back.
pub async fn consume(
    db: impl Acquire<'_, Database = Any>,
    dag_id: &str,
    run_pk: i64,
    changes: &[AssetChange],
    triggers: &[RunTrigger],
) -> Result<bool> {
    let mut tx = db.begin().await?;
    for change in changes {
        let done = sqlx::query(
            "INSERT INTO asset_triggers (dag_id, change_id, run_pk) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(dag_id)
        .bind(change.id)
        .bind(run_pk)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
    }
    for trigger in triggers {
        sqlx::query(
            "INSERT INTO run_triggers (run_pk, kind, name, version) VALUES ($1, $2, $3, $4)",
        )
        .bind(run_pk)
        .bind(trigger.kind.as_str())
        .bind(&trigger.name)
        .bind(&trigger.version)
        .execute(&mut *tx)
        .await?;
    }
    // Later lookups start a margin before the newest consumed change.
    let mut newest: BTreeMap<(AssetKind, &str), Micros> = BTreeMap::new();
    for change in changes {
        let at = newest.entry((change.kind, &change.name)).or_insert(change.changed_at);
        *at = (*at).max(change.changed_at);
    }
    for ((kind, name), at) in newest {
        sqlx::query(
            "UPDATE asset_watches SET since = $4 WHERE dag_id = $1 AND kind = $2 AND name = $3 \
             AND since < $4",
        )
        .bind(dag_id)
        .bind(kind.as_str())
        .bind(name)
        .bind(at - LATE_COMMIT_MARGIN)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Deletes what no DAG will look at again: the changes behind every watcher's `since` (and
/// changes nobody watches), older than `before`, with the records of their consumption; and
/// the watches of DAGs that no longer exist. Returns how many changes went.
pub async fn forget_consumed(db: impl Acquire<'_, Database = Any>, before: Micros) -> Result<u64> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM asset_watches WHERE dag_id NOT IN (SELECT dag_id FROM dags)")
        .execute(&mut *tx)
        .await?;
    let forgotten = sqlx::query(
        "DELETE FROM asset_changes WHERE changed_at < $1 AND changed_at < COALESCE( \
           (SELECT MIN(w.since) FROM asset_watches w \
            WHERE w.kind = asset_changes.kind AND w.name = asset_changes.name), $1)",
    )
    .bind(before)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if forgotten > 0 {
        sqlx::query(
            "DELETE FROM asset_triggers WHERE NOT EXISTS \
             (SELECT 1 FROM asset_changes c WHERE c.id = asset_triggers.change_id)",
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(forgotten)
}

/// What triggered run `run_pk`, grouped by asset.
pub async fn triggers_of_run(
    db: impl Executor<'_, Database = Any>,
    run_pk: i64,
) -> Result<Vec<RunTrigger>> {
    let mut rows: Vec<RunTrigger> =
        sqlx::query_as("SELECT kind, name, version FROM run_triggers WHERE run_pk = $1")
            .bind(run_pk)
            .fetch_all(db)
            .await?;
    rows.sort_by(|a, b| (&a.name, a.kind.as_str()).cmp(&(&b.name, b.kind.as_str())));
    Ok(rows)
}

/// Records the dataset versions a try wrote as changes, in the transaction that records its
/// end (tables need no help: a trigger on the catalog records their changes).
pub(super) async fn record_dataset_versions(
    tx: &mut sqlx::AnyConnection,
    lineage: &[LineageRecord],
    now: Micros,
) -> Result<()> {
    let written =
        lineage.iter().filter(|r| r.direction == Direction::Wrote && r.kind == AssetKind::Dataset);
    for record in written {
        sqlx::query(
            "INSERT INTO asset_changes (kind, name, version, previous, changed_at) \
             VALUES ($1, $2, $3, NULL, $4)",
        )
        .bind(AssetKind::Dataset.as_str())
        .bind(&record.name)
        .bind(&record.version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
