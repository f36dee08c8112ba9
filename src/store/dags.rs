//! DAG rows, DAG versions and import errors. Every function takes the executor it runs on
//! (see [`super::runs`]).

use serde::Serialize;
use sqlx::FromRow;
use sqlx::{Acquire, Any, AnyConnection, Executor};

use super::columns::{IntFlag, JsonList};
use super::{placeholders, Result};
use crate::time::Micros;

/// What the scheduler records about a compiled DAG.
#[derive(Debug, Clone)]
pub struct DagRecord {
    pub dag_id: String,
    pub file_path: String,
    pub version: String,
    pub source: String,
    pub description: Option<String>,
    pub schedule: Option<String>,
    pub tags: Vec<String>,
    /// Whether a DAG new to the database starts paused.
    pub paused_on_creation: bool,
}

/// A DAG as the database knows it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct DagRow {
    pub dag_id: String,
    pub file_path: String,
    pub version: String,
    pub description: Option<String>,
    pub schedule: Option<String>,
    #[sqlx(try_from = "JsonList")]
    pub tags: Vec<String>,
    #[sqlx(try_from = "IntFlag")]
    pub is_paused: bool,
    /// False once its file has been deleted.
    #[sqlx(try_from = "IntFlag")]
    pub is_active: bool,
    pub next_run_at: Option<Micros>,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ImportErrorRow {
    pub file_path: String,
    pub message: String,
    pub updated_at: Micros,
}

const DAG_COLUMNS: &str =
    "dag_id, file_path, version, description, schedule, tags, is_paused, is_active, next_run_at";

/// Records the DAG folder as just loaded: new versions and metadata for `dags`, inactive
/// for DAGs no longer present, and `import_errors` (file, message) replacing the old ones.
/// Paused flags are kept.
pub async fn sync(
    db: impl Acquire<'_, Database = Any>,
    dags: &[DagRecord],
    import_errors: &[(String, String)],
    now: Micros,
) -> Result<()> {
    let mut tx = db.begin().await?;
    for dag in dags {
        upsert_dag(&mut tx, dag, now).await?;
    }
    let ids: Vec<&str> = dags.iter().map(|d| d.dag_id.as_str()).collect();
    let sql = if ids.is_empty() {
        "UPDATE dags SET is_active = 0, description = NULL WHERE is_active = 1".to_string()
    } else {
        format!(
            "UPDATE dags SET is_active = 0, description = NULL \
             WHERE is_active = 1 AND dag_id NOT IN ({})",
            placeholders(1, ids.len())
        )
    };
    let mut query = sqlx::query(&sql);
    for id in &ids {
        query = query.bind(*id);
    }
    query.execute(&mut *tx).await?;
    replace_import_errors(&mut tx, import_errors, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Records what changed in the DAG folder since the last [`sync`]: new versions and metadata
/// for `changed`, inactive for `removed` (ids), and `import_errors` replacing the old ones.
/// Paused flags are kept.
pub async fn sync_changes(
    db: impl Acquire<'_, Database = Any>,
    changed: &[DagRecord],
    removed: &[String],
    import_errors: &[(String, String)],
    now: Micros,
) -> Result<()> {
    let mut tx = db.begin().await?;
    for dag in changed {
        upsert_dag(&mut tx, dag, now).await?;
    }
    for id in removed {
        sqlx::query("UPDATE dags SET is_active = 0, description = NULL WHERE dag_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    replace_import_errors(&mut tx, import_errors, now).await?;
    tx.commit().await?;
    Ok(())
}

async fn replace_import_errors(
    tx: &mut AnyConnection,
    import_errors: &[(String, String)],
    now: Micros,
) -> Result<()> {
    sqlx::query("DELETE FROM import_errors").execute(&mut *tx).await?;
    for (file, message) in import_errors {
        sqlx::query(
            "INSERT INTO import_errors (file_path, message, updated_at) VALUES ($1, $2, $3)",
        )
        .bind(file)
        .bind(message)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The active DAGs that are paused.
pub async fn paused(db: impl Executor<'_, Database = Any>) -> Result<Vec<String>> {
    let sql = "SELECT dag_id FROM dags WHERE is_paused = 1 AND is_active = 1";
    Ok(sqlx::query_scalar(sql).fetch_all(db).await?)
}

/// Records one DAG (its version and metadata) without touching the others.
pub async fn register(
    db: impl Acquire<'_, Database = Any>,
    dag: &DagRecord,
    now: Micros,
) -> Result<()> {
    let mut tx = db.begin().await?;
    upsert_dag(&mut tx, dag, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Every DAG, active ones first, by id.
pub async fn list(db: impl Executor<'_, Database = Any>) -> Result<Vec<DagRow>> {
    let sql = format!("SELECT {DAG_COLUMNS} FROM dags ORDER BY is_active DESC, dag_id");
    Ok(sqlx::query_as(&sql).fetch_all(db).await?)
}

/// Which active DAGs a list shows: those whose id contains `name` (any case), and with `tag`
/// among their tags when given.
#[derive(Debug, Default, Clone)]
pub struct DagFilter {
    pub name: String,
    pub tag: Option<String>,
}

/// One page of the active DAGs `filter` keeps, by id, and how many it keeps in all: the
/// database filters and pages, so a list of thousands of DAGs reads one page of rows.
pub async fn page<'c>(
    db: impl Executor<'c, Database = Any> + Copy,
    filter: &DagFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<DagRow>, i64)> {
    // Tags are stored as a JSON list: a tag is found as a whole JSON string in it. REPLACE
    // finds a part exactly in both dialects (SQLite's LIKE ignores case).
    let tag = filter.tag.as_ref().map(|t| serde_json::to_string(t).unwrap_or_default());
    let tag = tag.unwrap_or_default();
    let name = filter.name.to_lowercase();
    let matching = "FROM dags WHERE is_active = 1 \
         AND ($1 = '' OR REPLACE(LOWER(dag_id), $1, '') <> LOWER(dag_id)) \
         AND ($2 = '' OR REPLACE(tags, $2, '') <> tags)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) {matching}"))
        .bind(&name)
        .bind(&tag)
        .fetch_one(db)
        .await?;
    let sql = format!("SELECT {DAG_COLUMNS} {matching} ORDER BY dag_id LIMIT $3 OFFSET $4");
    let rows =
        sqlx::query_as(&sql).bind(&name).bind(&tag).bind(limit).bind(offset).fetch_all(db).await?;
    Ok((rows, total))
}

/// Every tag of the active DAGs, sorted, each once.
pub async fn active_tags(db: impl Executor<'_, Database = Any>) -> Result<Vec<String>> {
    let lists: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT tags FROM dags WHERE is_active = 1")
            .fetch_all(db)
            .await?;
    let mut tags: Vec<String> = lists
        .iter()
        .flat_map(|l| serde_json::from_str::<Vec<String>>(l).unwrap_or_default())
        .collect();
    tags.sort();
    tags.dedup();
    Ok(tags)
}

/// The DAG `dag_id`.
pub async fn get(db: impl Executor<'_, Database = Any>, dag_id: &str) -> Result<Option<DagRow>> {
    let sql = format!("SELECT {DAG_COLUMNS} FROM dags WHERE dag_id = $1");
    Ok(sqlx::query_as(&sql).bind(dag_id).fetch_optional(db).await?)
}

/// Pauses or unpauses a DAG; false if there is no such DAG.
pub async fn set_paused(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    paused: bool,
) -> Result<bool> {
    let done = sqlx::query("UPDATE dags SET is_paused = $1 WHERE dag_id = $2")
        .bind(paused as i64)
        .bind(dag_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The file path and text of a DAG version.
pub async fn source(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    version: &str,
) -> Result<Option<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT file_path, source FROM dag_versions WHERE dag_id = $1 AND version = $2",
    )
    .bind(dag_id)
    .bind(version)
    .fetch_optional(db)
    .await?)
}

/// Records when the DAG's next scheduled run will be created (for display).
pub async fn set_next_run(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    at: Option<Micros>,
) -> Result<()> {
    sqlx::query("UPDATE dags SET next_run_at = $1 WHERE dag_id = $2")
        .bind(at)
        .bind(dag_id)
        .execute(db)
        .await?;
    Ok(())
}

/// The files of the DAG folder that failed to load, and why.
pub async fn import_errors(db: impl Executor<'_, Database = Any>) -> Result<Vec<ImportErrorRow>> {
    Ok(sqlx::query_as(
        "SELECT file_path, message, updated_at FROM import_errors ORDER BY file_path",
    )
    .fetch_all(db)
    .await?)
}

async fn upsert_dag(tx: &mut AnyConnection, dag: &DagRecord, now: Micros) -> Result<()> {
    sqlx::query(
        "INSERT INTO dag_versions (dag_id, version, file_path, source, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&dag.dag_id)
    .bind(&dag.version)
    .bind(&dag.file_path)
    .bind(&dag.source)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let tags = serde_json::to_string(&dag.tags).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO dags (dag_id, file_path, version, description, schedule, tags, is_active, updated_at, is_paused) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8) \
         ON CONFLICT (dag_id) DO UPDATE SET file_path = excluded.file_path, version = excluded.version, \
         description = excluded.description, schedule = excluded.schedule, tags = excluded.tags, \
         is_active = 1, updated_at = excluded.updated_at",
    )
    .bind(&dag.dag_id)
    .bind(&dag.file_path)
    .bind(&dag.version)
    .bind(&dag.description)
    .bind(&dag.schedule)
    .bind(tags)
    .bind(now)
    .bind(dag.paused_on_creation as i64)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
