//! Task logs, stored in the database so any process (web UI, CLI) can read logs of tasks that
//! ran on another machine.

use serde::Serialize;
use sqlx::FromRow;
use sqlx::{Acquire, Any, Executor};

use super::{placeholders, Result};
use crate::domain::LogLine;
use crate::time::Micros;

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct LogRow {
    /// Increases with every line; read "after" a previous id to follow a live log.
    pub id: i64,
    pub try_number: i64,
    pub at: Micros,
    pub stream: String,
    pub line: String,
}

const LINES_PER_INSERT: usize = 200;

/// Appends lines to the log of one try of a task instance.
pub async fn append(
    db: impl Acquire<'_, Database = Any>,
    ti_id: i64,
    try_number: i64,
    lines: &[LogLine],
) -> Result<()> {
    let mut conn = db.acquire().await?;
    for chunk in lines.chunks(LINES_PER_INSERT) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("({})", placeholders(1 + i * 5, 5))).collect();
        let sql = format!(
            "INSERT INTO task_logs (ti_id, try_number, at, stream, line) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for line in chunk {
            query = query
                .bind(ti_id)
                .bind(try_number)
                .bind(line.at)
                .bind(line.stream.as_str())
                .bind(&line.text);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Log lines of a task instance (one try, or all tries), after line id `after`, oldest first.
pub async fn read(
    db: impl Executor<'_, Database = Any>,
    ti_id: i64,
    try_number: Option<i64>,
    after: i64,
    limit: i64,
) -> Result<Vec<LogRow>> {
    // A NULL try number matches every try.
    Ok(sqlx::query_as(
        "SELECT id, try_number, at, stream, line FROM task_logs \
         WHERE ti_id = $1 AND (CAST($2 AS BIGINT) IS NULL OR try_number = $2) AND id > $3 \
         ORDER BY try_number, id LIMIT $4",
    )
    .bind(ti_id)
    .bind(try_number)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}
