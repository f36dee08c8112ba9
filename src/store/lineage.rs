//! Lineage: the dataset versions and table snapshots each try read and wrote, written with
//! the try's result and read back per try, and which DAGs use which assets (`dag_assets`, kept
//! with it).

use sqlx::FromRow;
use sqlx::{Any, Executor};

use super::columns::Count;
use super::Result;
use crate::domain::{AssetKind, Direction, LineageRecord};

/// A lineage row as stored; the domain's record has no idea of columns.
#[derive(FromRow)]
struct Row {
    direction: Direction,
    kind: AssetKind,
    name: String,
    version: String,
    operation: Option<String>,
    #[sqlx(try_from = "Count")]
    row_count: Option<u64>,
    #[sqlx(try_from = "Count")]
    file_count: Option<u64>,
    #[sqlx(try_from = "Count")]
    byte_count: Option<u64>,
}

/// The lineage of try `try_number` of a task instance: what it read, then what it wrote.
pub async fn of_try(
    db: impl Executor<'_, Database = Any>,
    ti_id: i64,
    try_number: i64,
) -> Result<Vec<LineageRecord>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT direction, kind, name, version, operation, row_count, file_count, byte_count \
         FROM task_lineage WHERE ti_id = $1 AND try_number = $2",
    )
    .bind(ti_id)
    .bind(try_number)
    .fetch_all(db)
    .await?;
    let mut records: Vec<LineageRecord> = rows
        .into_iter()
        .map(|row| LineageRecord {
            direction: row.direction,
            kind: row.kind,
            name: row.name,
            version: row.version,
            operation: row.operation,
            rows: row.row_count,
            files: row.file_count,
            bytes: row.byte_count,
        })
        .collect();
    records.sort_by_key(|r| r.direction == Direction::Wrote);
    Ok(records)
}

/// Records the lineage of a try, in the transaction that records its end.
pub(super) async fn insert(
    tx: &mut sqlx::AnyConnection,
    ti_id: i64,
    try_number: i64,
    records: &[LineageRecord],
) -> Result<()> {
    for record in records {
        sqlx::query(
            "INSERT INTO task_lineage (ti_id, try_number, direction, kind, name, version, \
             operation, row_count, file_count, byte_count) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(ti_id)
        .bind(try_number)
        .bind(record.direction.as_str())
        .bind(record.kind.as_str())
        .bind(&record.name)
        .bind(&record.version)
        .bind(&record.operation)
        .bind(record.rows.map(|n| n as i64))
        .bind(record.files.map(|n| n as i64))
        .bind(record.bytes.map(|n| n as i64))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO dag_assets (dag_id, direction, kind, name, last_run_pk) \
             SELECT dag_id, $2, $3, $4, run_pk FROM task_instances WHERE id = $1 \
             ON CONFLICT (dag_id, direction, kind, name) DO UPDATE SET last_run_pk = \
             CASE WHEN excluded.last_run_pk > dag_assets.last_run_pk \
             THEN excluded.last_run_pk ELSE dag_assets.last_run_pk END",
        )
        .bind(ti_id)
        .bind(record.direction.as_str())
        .bind(record.kind.as_str())
        .bind(&record.name)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The DAGs whose lineage ever went `direction` for the asset (most recent first), and, for
/// reads, those whose schedule watches it: the candidates a DAG page checks for data flowing
/// to or from it, found through the asset's index whatever the number of DAGs.
pub async fn dags_using(
    db: impl Executor<'_, Database = Any> + Copy,
    direction: Direction,
    kind: AssetKind,
    name: &str,
) -> Result<Vec<String>> {
    let mut dags: Vec<String> = sqlx::query_scalar(
        "SELECT dag_id FROM dag_assets WHERE kind = $1 AND name = $2 AND direction = $3 \
         ORDER BY last_run_pk DESC",
    )
    .bind(kind.as_str())
    .bind(name)
    .bind(direction.as_str())
    .fetch_all(db)
    .await?;
    if direction == Direction::Read {
        let watching: Vec<String> =
            sqlx::query_scalar("SELECT dag_id FROM asset_watches WHERE kind = $1 AND name = $2")
                .bind(kind.as_str())
                .bind(name)
                .fetch_all(db)
                .await?;
        dags.extend(watching);
    }
    Ok(dags)
}

/// What the DAG's latest `runs` runs read and wrote: each asset once, by direction, kind and
/// name (what a DAG page shows as its data; bounded so a continuous DAG's history costs
/// nothing).
pub async fn recent_assets(
    db: impl Executor<'_, Database = Any>,
    dag_id: &str,
    runs: i64,
) -> Result<Vec<(Direction, AssetKind, String)>> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT l.direction, l.kind, l.name FROM task_lineage l \
         JOIN task_instances ti ON ti.id = l.ti_id \
         WHERE ti.run_pk IN (SELECT id FROM dag_runs WHERE dag_id = $1 \
                             ORDER BY logical_date DESC LIMIT $2) \
         ORDER BY l.name",
    )
    .bind(dag_id)
    .bind(runs)
    .fetch_all(db)
    .await?)
}

/// The latest `limit` versions of an asset written, with the DAG, run and task that wrote
/// each: (version, DAG id, run id, task id), newest first.
pub async fn writers_of(
    db: impl Executor<'_, Database = Any>,
    kind: &str,
    name: &str,
    limit: i64,
) -> Result<Vec<(String, String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT l.version, r.dag_id, r.run_id, ti.task_id FROM task_lineage l \
         JOIN task_instances ti ON ti.id = l.ti_id JOIN dag_runs r ON r.id = ti.run_pk \
         WHERE l.kind = $1 AND l.name = $2 AND l.direction = 'wrote' \
         ORDER BY ti.id DESC, l.try_number DESC LIMIT $3",
    )
    .bind(kind)
    .bind(name)
    .bind(limit)
    .fetch_all(db)
    .await?)
}
