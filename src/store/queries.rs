//! The SQL console's query history: what each user ran from the web and how it ended. Only the
//! latest [`KEPT_PER_USER`] queries of a user are kept. Every function takes the executor it
//! runs on (see [`super::runs`]).

use sqlx::{Any, Executor, FromRow};

use super::Result;
use crate::time::Micros;

/// Queries kept per user.
pub const KEPT_PER_USER: i64 = 100;

/// One query as run.
#[derive(Debug, Clone, FromRow)]
pub struct QueryRow {
    pub username: String,
    pub query: String,
    pub ran_at: Micros,
    /// `ok`, `error`, `timeout` or `cancelled` (the client went away).
    pub outcome: String,
    pub row_count: i64,
    pub elapsed_us: i64,
    pub error: Option<String>,
}

/// Records `row` and forgets the user's queries beyond the latest [`KEPT_PER_USER`].
pub async fn record<'c, E>(db: E, row: &QueryRow) -> Result<()>
where
    E: Executor<'c, Database = Any> + Copy,
{
    sqlx::query(
        "INSERT INTO sql_queries (username, query, ran_at, outcome, row_count, elapsed_us, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.username)
    .bind(&row.query)
    .bind(row.ran_at)
    .bind(&row.outcome)
    .bind(row.row_count)
    .bind(row.elapsed_us)
    .bind(&row.error)
    .execute(db)
    .await?;
    sqlx::query(
        "DELETE FROM sql_queries WHERE username = $1 AND id NOT IN \
         (SELECT id FROM sql_queries WHERE username = $1 ORDER BY id DESC LIMIT $2)",
    )
    .bind(&row.username)
    .bind(KEPT_PER_USER)
    .execute(db)
    .await?;
    Ok(())
}

/// The user's latest queries, newest first, each text once.
pub async fn recent(
    db: impl Executor<'_, Database = Any>,
    username: &str,
    limit: i64,
) -> Result<Vec<QueryRow>> {
    Ok(sqlx::query_as(
        "SELECT username, query, ran_at, outcome, row_count, elapsed_us, error FROM sql_queries \
         WHERE id IN (SELECT MAX(id) FROM sql_queries WHERE username = $1 GROUP BY query) \
         ORDER BY id DESC LIMIT $2",
    )
    .bind(username)
    .bind(limit)
    .fetch_all(db)
    .await?)
}
