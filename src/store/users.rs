//! Web users, browser sessions and API tokens. Secrets arrive here already hashed: this module
//! stores and looks up digests, it never sees a password or a token in clear.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Result, Role, Store};
use crate::time::Micros;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub username: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub role: Role,
}

/// A logged-in browser session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub username: String,
    pub role: Role,
    /// Every form POST of this session must carry this value.
    pub csrf_token: String,
    pub expires_at: Micros,
}

fn user_from_row(row: &AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::parse(&row.try_get::<String, _>("role")?)?,
    })
}

impl Store {
    /// Creates a user, or replaces the password and role of an existing one.
    pub async fn upsert_user(&self, user: &UserRow, now: Micros) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role",
        )
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_user(&self, username: &str) -> Result<Option<UserRow>> {
        let row =
            sqlx::query("SELECT username, password_hash, role FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.reader)
                .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn count_users(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.reader).await?;
        Ok(row.try_get("n")?)
    }

    pub async fn create_session(
        &self,
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this id digest, unless it has expired at `now`.
    pub async fn get_session(&self, id_hash: &str, now: Micros) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT username, role, csrf_token, expires_at FROM web_sessions \
             WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(SessionRow {
                username: row.try_get("username")?,
                role: Role::parse(&row.try_get::<String, _>("role")?)?,
                csrf_token: row.try_get("csrf_token")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Ends a session, and drops every session that has expired by `now`.
    pub async fn delete_session(&self, id_hash: &str, now: Micros) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1 OR expires_at <= $2")
            .bind(id_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_expired_sessions(&self, now: Micros) -> Result<u64> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn create_api_token(
        &self,
        token_hash: &str,
        username: &str,
        name: &str,
        now: Micros,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, username, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(username)
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user owning the API token with this digest (tokens of deleted users do not count).
    pub async fn user_of_api_token(&self, token_hash: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(
            "SELECT u.username, u.password_hash, u.role FROM api_tokens t \
             JOIN users u ON u.username = t.username WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }
}
