//! Web users, browser sessions and API tokens. Secrets arrive here already hashed: this module
//! stores and looks up digests, it never sees a password or a token in clear. A session or a
//! token carries no role of its own: every lookup reads the user's current role, so a demoted
//! or deleted user's credentials change or stop at once. Every function takes the executor it
//! runs on (see [`super::runs`]).

use sqlx::FromRow;
use sqlx::{Acquire, Any, Executor};

use super::Result;
use crate::domain::Role;
use crate::time::Micros;

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub username: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub role: Role,
}

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, serde::Serialize, FromRow)]
pub struct ApiTokenRow {
    /// The first 16 hex digits of the token's digest: enough to name it, useless to use it.
    pub id: String,
    pub username: String,
    pub name: String,
    pub created_at: Micros,
    pub expires_at: Option<Micros>,
}

/// Length of an [`ApiTokenRow::id`].
pub const TOKEN_ID_LEN: usize = 16;

/// A logged-in browser session.
#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub username: String,
    pub role: Role,
    /// Every form POST of this session must carry this value.
    pub csrf_token: String,
    pub expires_at: Micros,
}

/// Creates a user, or replaces the password and role of an existing one.
pub async fn upsert(
    db: impl Executor<'_, Database = Any>,
    user: &UserRow,
    now: Micros,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role",
    )
    .bind(&user.username)
    .bind(&user.password_hash)
    .bind(user.role.as_str())
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn get(db: impl Executor<'_, Database = Any>, username: &str) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as("SELECT username, password_hash, role FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(db)
        .await?)
}

pub async fn count(db: impl Executor<'_, Database = Any>) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(db).await?)
}

pub async fn create_session(
    db: impl Executor<'_, Database = Any>,
    id_hash: &str,
    session: &SessionRow,
    now: Micros,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO web_sessions (id_hash, username, role, csrf_token, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id_hash)
    .bind(&session.username)
    .bind(session.role.as_str())
    .bind(&session.csrf_token)
    .bind(now)
    .bind(session.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// The session with this id digest, unless it has expired at `now`, with its user's
/// current role (none once the user is deleted).
pub async fn get_session(
    db: impl Executor<'_, Database = Any>,
    id_hash: &str,
    now: Micros,
) -> Result<Option<SessionRow>> {
    Ok(sqlx::query_as(
        "SELECT s.username, u.role, s.csrf_token, s.expires_at FROM web_sessions s \
         JOIN users u ON u.username = s.username WHERE s.id_hash = $1 AND s.expires_at > $2",
    )
    .bind(id_hash)
    .bind(now)
    .fetch_optional(db)
    .await?)
}

/// Ends a session, and drops every session that has expired by `now`.
pub async fn delete_session(
    db: impl Executor<'_, Database = Any>,
    id_hash: &str,
    now: Micros,
) -> Result<()> {
    sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1 OR expires_at <= $2")
        .bind(id_hash)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete_expired_sessions(
    db: impl Executor<'_, Database = Any>,
    now: Micros,
) -> Result<u64> {
    let done = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Deletes a user with its sessions and API tokens; false if there was no such user.
pub async fn delete(db: impl Acquire<'_, Database = Any>, username: &str) -> Result<bool> {
    let mut tx = db.begin().await?;
    for statement in [
        "DELETE FROM web_sessions WHERE username = $1",
        "DELETE FROM api_tokens WHERE username = $1",
    ] {
        sqlx::query(statement).bind(username).execute(&mut *tx).await?;
    }
    let done = sqlx::query("DELETE FROM users WHERE username = $1")
        .bind(username)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

pub async fn create_api_token(
    db: impl Executor<'_, Database = Any>,
    token_hash: &str,
    token: &ApiTokenRow,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (token_hash, username, name, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(&token.username)
    .bind(&token.name)
    .bind(token.created_at)
    .bind(token.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// The user owning the API token with this digest, unless the token expired by `now`
/// (tokens of deleted users do not count).
pub async fn user_of_api_token(
    db: impl Executor<'_, Database = Any>,
    token_hash: &str,
    now: Micros,
) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(
        "SELECT u.username, u.password_hash, u.role FROM api_tokens t \
         JOIN users u ON u.username = t.username \
         WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2)",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(db)
    .await?)
}

/// The API tokens of `username`, or of everyone, oldest first.
pub async fn list_api_tokens(
    db: impl Executor<'_, Database = Any>,
    username: Option<&str>,
) -> Result<Vec<ApiTokenRow>> {
    // The id is the digest's first TOKEN_ID_LEN (16) hex digits.
    Ok(sqlx::query_as(
        "SELECT substr(token_hash, 1, 16) AS id, username, name, created_at, expires_at \
         FROM api_tokens WHERE $1 IS NULL OR username = $1 ORDER BY created_at, token_hash",
    )
    .bind(username)
    .fetch_all(db)
    .await?)
}

/// Revokes the token whose id is `id`, if it belongs to `username` (any owner for `None`);
/// false if there was none.
pub async fn revoke_api_token(
    db: impl Executor<'_, Database = Any>,
    id: &str,
    username: Option<&str>,
) -> Result<bool> {
    if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let done = sqlx::query(
        "DELETE FROM api_tokens WHERE substr(token_hash, 1, 16) = $1 \
         AND ($2 IS NULL OR username = $2)",
    )
    .bind(id.to_ascii_lowercase())
    .bind(username)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}
