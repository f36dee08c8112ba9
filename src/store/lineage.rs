//! Lineage: the dataset versions and table snapshots each try read and wrote, written with
//! the try's result and read back per try.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Result, Store};
use crate::domain::{AssetKind, Direction, LineageRecord};

impl Store {
    /// The lineage of try `try_number` of a task instance: what it read, then what it wrote.
    pub async fn task_lineage(&self, ti_id: i64, try_number: i64) -> Result<Vec<LineageRecord>> {
        let rows = sqlx::query(
            "SELECT direction, kind, name, version, operation, row_count, file_count, byte_count \
             FROM task_lineage WHERE ti_id = $1 AND try_number = $2",
        )
        .bind(ti_id)
        .bind(try_number)
        .fetch_all(&self.reader)
        .await?;
        let count = |row: &AnyRow, column: &str| -> Result<Option<u64>> {
            Ok(row.try_get::<Option<i64>, _>(column)?.map(|n| n as u64))
        };
        let mut records = rows
            .iter()
            .map(|row| {
                Ok(LineageRecord {
                    direction: Direction::parse(&row.try_get::<String, _>("direction")?)?,
                    kind: AssetKind::parse(&row.try_get::<String, _>("kind")?)?,
                    name: row.try_get("name")?,
                    version: row.try_get("version")?,
                    operation: row.try_get("operation")?,
                    rows: count(row, "row_count")?,
                    files: count(row, "file_count")?,
                    bytes: count(row, "byte_count")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        records.sort_by_key(|r| r.direction == Direction::Wrote);
        Ok(records)
    }
}

/// Records the lineage of a try, in the transaction that records its end.
pub(super) async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
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
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
