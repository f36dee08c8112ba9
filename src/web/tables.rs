//! The table pages: every Iceberg table of the catalog, and one table's schema (with its
//! history), partition spec, snapshots (with the run and task that wrote each), partitions
//! with their rows and files, and a sample of rows. Reads the catalog, the lake and the
//! lineage; writes nothing.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::Extension;

use super::error::{PageError, WebError};
use super::identity::Identity;
use super::views::{encode_component, task_href, Chrome};
use super::AppState;
use crate::lake::query::render;
use crate::lake::tables::{PartitionInfo, SchemaInfo, TableError, TableInfo, Tables};
use crate::store::lineage;
use crate::time::display;

/// Rows of the sample; snapshots and partitions listed (the latest ones, newest first).
const SAMPLE_ROWS: usize = 20;
const SNAPSHOTS: usize = 50;
const PARTITIONS: usize = 200;

fn not_found(e: TableError) -> WebError {
    match e {
        TableError::Missing(_) => WebError::NotFound(e.to_string()),
        TableError::Iceberg(ref inner) if inner.kind() == iceberg::ErrorKind::TableNotFound => {
            WebError::NotFound(e.to_string())
        }
        other => WebError::Internal(other.to_string()),
    }
}

async fn tables(state: &AppState) -> Result<std::sync::Arc<Tables>, WebError> {
    let console = state
        .console
        .as_ref()
        .ok_or_else(|| WebError::NotFound("this server shows no tables".into()))?;
    console.tables().get().await.map_err(|e| WebError::Internal(e.to_string()))
}

pub struct TableItem {
    pub name: String,
    pub href: String,
    pub rows: u64,
    pub files: u64,
    pub partitioned_by: String,
}

#[derive(Template)]
#[template(path = "tables.html")]
pub struct TablesPage {
    pub chrome: Chrome,
    pub tables: Vec<TableItem>,
}

/// `GET /tables`.
pub async fn list(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
) -> Result<Html<String>, PageError> {
    let catalog = tables(&state).await?;
    let mut items = Vec::new();
    for name in catalog.list().await.map_err(|e| WebError::Internal(e.to_string()))? {
        let Ok(info) = catalog.describe(&name).await else { continue };
        items.push(TableItem {
            href: format!("/tables/{}", encode_component(&name)),
            rows: info.rows,
            files: info.data_files,
            partitioned_by: info.partition_spec.join(", "),
            name,
        });
    }
    Ok(Html(TablesPage { chrome: Chrome::from(&identity), tables: items }.render()?))
}

pub struct SnapshotRow {
    pub snapshot_id: i64,
    pub time: String,
    pub operation: String,
    pub added_rows: u64,
    pub removed_rows: u64,
    pub total_rows: u64,
    /// `run / task` that wrote it, with a link to the task, when lakeward did.
    pub writer: Option<(String, String)>,
    pub query_href: String,
}

#[derive(Template)]
#[template(path = "table.html")]
pub struct TablePage {
    pub chrome: Chrome,
    pub info: TableInfo,
    pub schemas: Vec<SchemaInfo>,
    pub snapshots: Vec<SnapshotRow>,
    pub partitions: Vec<PartitionInfo>,
    pub more_partitions: usize,
    pub sample_columns: Vec<String>,
    pub sample: Vec<Vec<Option<String>>>,
    pub sample_error: Option<String>,
    pub query_href: String,
}

/// `GET /tables/{table}`.
pub async fn table(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Html<String>, PageError> {
    let catalog = tables(&state).await?;
    let info = catalog.describe(&name).await.map_err(not_found)?;
    let schemas = catalog.schemas(&name).await.map_err(not_found)?;
    // Latest first (for time partitions, the newest days).
    let mut partitions = catalog.partitions(&name).await.map_err(not_found)?;
    partitions.reverse();
    let more_partitions = partitions.len().saturating_sub(PARTITIONS);
    partitions.truncate(PARTITIONS);
    let writers: HashMap<String, (String, String, String)> =
        lineage::writers_of(state.store.read(), "table", &name, SNAPSHOTS as i64)
            .await?
            .into_iter()
            .map(|(version, dag, run, task)| (version, (dag, run, task)))
            .collect();
    let mut history = catalog.history(&name).await.map_err(not_found)?;
    history.reverse();
    let snapshots = history
        .into_iter()
        .take(SNAPSHOTS)
        .map(|s| SnapshotRow {
            writer: writers.get(&s.snapshot_id.to_string()).map(|(dag, run, task)| {
                (format!("{dag} / {run} / {task}"), task_href(dag, run, task))
            }),
            query_href: format!(
                "/sql?q={}",
                encode_component(&format!(
                    "SELECT * FROM {name} FOR VERSION AS OF {} LIMIT 100",
                    s.snapshot_id
                ))
            ),
            snapshot_id: s.snapshot_id,
            time: display(s.timestamp_ms.saturating_mul(1000)),
            operation: s.operation,
            added_rows: s.added_rows,
            removed_rows: s.removed_rows,
            total_rows: s.total_rows,
        })
        .collect();
    let mut page = TablePage {
        chrome: Chrome::from(&identity),
        query_href: format!(
            "/sql?q={}",
            encode_component(&format!("SELECT * FROM {name} LIMIT 100"))
        ),
        info,
        schemas,
        snapshots,
        partitions,
        more_partitions,
        sample_columns: Vec::new(),
        sample: Vec::new(),
        sample_error: None,
    };
    if let Some(console) = &state.console {
        match console.run(&format!("SELECT * FROM {name}"), SAMPLE_ROWS).await {
            Ok(answer) => {
                page.sample_columns =
                    render::columns(&answer.frame).into_iter().map(|(n, _)| n).collect();
                page.sample = render::cells(&answer.frame);
            }
            Err(e) => page.sample_error = Some(e.to_string()),
        }
    }
    Ok(Html(page.render()?))
}
