//! What differs between the SQL dialects, in one place: every statement elsewhere is written
//! once, in the syntax both accept (`$n` placeholders, `RETURNING`, `ON CONFLICT`, CTEs), and
//! asks here for the few pieces that cannot be shared. Migrations are per dialect by file
//! (`migrations/<dialect>/`, embedded by `build.rs`).

/// Which SQL dialect is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend of a database URL, if lakeward knows it.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// The backend behind an open connection.
    pub fn of_connection(conn: &sqlx::AnyConnection) -> Backend {
        match conn.backend_name() {
            "PostgreSQL" => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    /// What a `SELECT` of rows about to be claimed ends with: on Postgres, lock them and skip
    /// those another claim holds; SQLite has one writer at a time and needs nothing.
    pub fn claim_lock(self) -> &'static str {
        match self {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// Whether the database carries notifications between processes (`LISTEN`/`NOTIFY`).
    pub fn has_notifications(self) -> bool {
        self == Backend::Postgres
    }
}
