//! What data a DAG reads and writes, and how DAGs feed one another through it: from the
//! tables and datasets each DAG's schedule watches and the lineage of its latest runs. Read
//! per page view: a few bounded queries for the DAG and for each DAG that used its data
//! (found through the asset index, whatever the number of DAGs); it writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::error::WebError;
use super::views::{dag_href, AssetView, DataFlowView, FeedView};
use super::AppState;
use crate::dag::Dag;
use crate::domain::{AssetKind, AssetRef, Direction};
use crate::store::{dags, lineage};

/// How many of each DAG's latest runs tell what it reads and writes.
const RECENT_RUNS: i64 = 20;

/// What one DAG reads (watched or not) and writes.
#[derive(Default)]
struct Assets {
    reads: BTreeSet<AssetRef>,
    watches: BTreeSet<AssetRef>,
    writes: BTreeSet<AssetRef>,
}

async fn assets_of(state: &AppState, dag: &Dag) -> Result<Assets, WebError> {
    let mut assets = Assets::default();
    for watched in &dag.watches {
        assets.watches.insert(watched.clone());
        assets.reads.insert(watched.clone());
    }
    for (direction, kind, name) in
        lineage::recent_assets(state.store.read(), &dag.id, RECENT_RUNS).await?
    {
        let asset = AssetRef { kind, name };
        match direction {
            Direction::Read => assets.reads.insert(asset),
            Direction::Wrote => assets.writes.insert(asset),
        };
    }
    Ok(assets)
}

/// The data flow around `dag`: its reads and writes, the DAGs that read what it writes
/// (feeds) and those that write what it reads (fed by).
pub async fn of_dag(state: &AppState, dag: &Dag) -> Result<DataFlowView, WebError> {
    let own = assets_of(state, dag).await?;
    let mut feeds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut fed_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Only DAGs that ever read what it writes or wrote what it reads can be linked to it; each
    // is then checked on its latest runs, as this DAG is.
    let mut candidates = BTreeSet::new();
    let wanted = own
        .writes
        .iter()
        .map(|a| (Direction::Read, a))
        .chain(own.reads.iter().map(|a| (Direction::Wrote, a)));
    for (direction, asset) in wanted {
        candidates.extend(
            lineage::dags_using(state.store.read(), direction, asset.kind, &asset.name).await?,
        );
    }
    candidates.remove(&dag.id);
    for dag_id in candidates {
        let Some(row) = dags::get(state.store.read(), &dag_id).await? else { continue };
        if !row.is_active {
            continue;
        }
        let Ok(other) = state.versions.get(&row.dag_id, &row.version).await else { continue };
        let theirs = assets_of(state, &other).await?;
        for asset in own.writes.intersection(&theirs.reads) {
            feeds.entry(row.dag_id.clone()).or_default().insert(asset.name.clone());
        }
        for asset in own.reads.intersection(&theirs.writes) {
            fed_by.entry(row.dag_id.clone()).or_default().insert(asset.name.clone());
        }
    }
    let view = |asset: &AssetRef| AssetView {
        name: asset.name.clone(),
        kind: match asset.kind {
            AssetKind::Table => "table",
            AssetKind::Dataset => "dataset",
        },
        triggers: own.watches.contains(asset),
    };
    let links = |map: BTreeMap<String, BTreeSet<String>>| {
        map.into_iter()
            .map(|(dag_id, through)| FeedView {
                href: dag_href(&dag_id),
                dag_id,
                through: through.into_iter().collect::<Vec<_>>().join(", "),
            })
            .collect()
    };
    Ok(DataFlowView {
        reads: own.reads.iter().map(view).collect(),
        writes: own.writes.iter().map(view).collect(),
        feeds: links(feeds),
        fed_by: links(fed_by),
    })
}
