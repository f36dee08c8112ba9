//! Runs on data (Airflow's asset schedules): a DAG whose schedule names tables or datasets
//! (`schedule = { on = [...] }`) gets a run when they change, whoever changed them; with a
//! `cron` as well, on the first tick after they changed ("cron and data ready").
//!
//! The changes come from the store ([`assets::pending`]); every change pending when a run is
//! created is consumed by it, in the transaction that creates it, so several changes collapse
//! into one run and none is lost or counted twice; `min_interval` (data without cron) spaces
//! runs out, the changes meanwhile collapsing into the next. While a run of the DAG waits for a
//! `max_active_runs` slot no other is created: changes wait and collapse into the next one.
//! The run records which table snapshots (read from the metadata files the changes name) or
//! dataset versions triggered it. This module decides when a run is due; it writes through
//! [`trigger::create_run`] only.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::trigger::{create_run, DataTrigger, RunRequest, TriggerError};
use crate::dag::Dag;
use crate::domain::{AssetKind, RunType};
use crate::lake::tables::TablesHandle;
use crate::schedule::DataInterval;
use crate::store::assets::{self, AssetChange, RunTrigger};
use crate::store::{runs, Store, StoreError};
use crate::time::{from_micros, to_micros, Micros};

/// Creates the run `dag`'s watched data calls for at `now`, if one is due. Returns when to
/// look again without a change (the next cron tick), `None` if only a change can make a run.
pub(super) async fn create_data_run(
    store: &Store,
    tables: Option<&TablesHandle>,
    dag: &Dag,
    now: DateTime<Utc>,
) -> Result<Option<Micros>, StoreError> {
    // Run ids and logical dates keep microseconds, as the store does.
    let now = from_micros(to_micros(now));
    let timetable = dag.timetable();
    let next_tick = timetable.as_ref().and_then(|t| t.next_tick(now)).map(to_micros);
    if runs::has_queued(store.read(), &dag.id).await? {
        return Ok(next_tick);
    }
    let mut changes: Vec<AssetChange> = Vec::new();
    for asset in &dag.watches {
        changes.extend(assets::pending(store.read(), &dag.id, asset).await?);
    }
    let (run_type, interval, logical_date) = match &timetable {
        None => {
            let Some(first) = changes.iter().map(|c| c.changed_at).min() else {
                return Ok(None);
            };
            if let Some(allowed) = held_until(store, dag).await? {
                if allowed > to_micros(now) {
                    return Ok(Some(allowed));
                }
            }
            let interval = DataInterval { start: from_micros(first).min(now), end: now };
            (RunType::AssetTriggered, interval, now)
        }
        Some(timetable) => {
            let Some(closed) = timetable.latest_closed(now) else { return Ok(None) };
            let last = runs::last_scheduled_interval(store.read(), &dag.id).await?;
            if last.is_some_and(|(start, _)| start >= to_micros(closed.start)) {
                return Ok(next_tick);
            }
            // Only what changed before the tick counts for it; later changes wait for the next.
            changes.retain(|c| c.changed_at < to_micros(closed.end));
            (RunType::Scheduled, closed, closed.start)
        }
    };
    if changes.is_empty() {
        return Ok(next_tick);
    }
    let triggers = resolve(tables, &changes).await;
    let request = RunRequest {
        run_type,
        logical_date,
        interval: Some(interval),
        params: Default::default(),
        queue: None,
        triggered_by: Some(DataTrigger { changes, triggers }),
    };
    match create_run(store, dag, request).await {
        Ok(run) => tracing::info!(dag = %dag.id, run = %run.run_id, "run created on data"),
        Err(TriggerError::Duplicate { .. } | TriggerError::Consumed) => {}
        Err(TriggerError::Store(e)) => return Err(e),
        Err(e) => tracing::error!(dag = %dag.id, "cannot create a run on data: {e}"),
    }
    Ok(next_tick)
}

/// When `dag`'s `min_interval` lets the next run made by data be created, if it holds one
/// back: its previous such run's creation (its logical date) + the interval.
async fn held_until(store: &Store, dag: &Dag) -> Result<Option<Micros>, StoreError> {
    if dag.watch_interval.is_zero() {
        return Ok(None);
    }
    let last = runs::last_of_type(store.read(), &dag.id, RunType::AssetTriggered).await?;
    let interval = i64::try_from(dag.watch_interval.as_micros()).unwrap_or(i64::MAX);
    Ok(last.map(|at| at.saturating_add(interval)))
}

/// What the changes added: for a table, the snapshots between the metadata before its first
/// change and after its last; for a dataset, each version. A table whose metadata cannot be
/// read (no catalog at hand, files expired) is recorded by its metadata files instead.
async fn resolve(tables: Option<&TablesHandle>, changes: &[AssetChange]) -> Vec<RunTrigger> {
    let mut by_asset: BTreeMap<(&str, &str), Vec<&AssetChange>> = BTreeMap::new();
    for change in changes {
        by_asset.entry((change.kind.as_str(), change.name.as_str())).or_default().push(change);
    }
    let mut triggers = Vec::new();
    for ((_, name), changes) in by_asset {
        let kind = changes[0].kind;
        let trigger = |version: String| RunTrigger { kind, name: name.to_string(), version };
        if kind == AssetKind::Dataset {
            triggers.extend(changes.iter().map(|c| trigger(c.version.clone())));
            continue;
        }
        let (first, last) = (changes[0], changes[changes.len() - 1]);
        let snapshots = match tables {
            Some(handle) => match handle.get().await {
                Ok(tables) => tables
                    .snapshots_added(name, first.previous.as_deref(), &last.version)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            None => Err("no table catalog in this process".to_string()),
        };
        match snapshots {
            Ok(ids) => triggers.extend(ids.into_iter().map(|id| trigger(id.to_string()))),
            Err(e) => {
                tracing::warn!(table = %name, "recording the metadata files that triggered a run, not its snapshots: {e}");
                triggers.extend(changes.iter().map(|c| trigger(format!("metadata:{}", c.version))));
            }
        }
    }
    triggers
}
