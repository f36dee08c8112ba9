//! The store: every SQL statement lakeward runs, on SQLite or Postgres.
//!
//! Scheduler, workers, CLI and web talk to each other only through this database, so the same
//! code runs as one process or as many processes on many machines against one Postgres. The
//! store also carries wake-up notifications (in-process, plus LISTEN/NOTIFY on Postgres) so
//! components react to each other's writes without polling.
//!
//! The statements live in one module per aggregate ([`runs`], [`tasks`], [`dags`], [`logs`],
//! [`lineage`], [`assets`], [`processes`], [`users`], [`stats`], [`catalog`],
//! [`notifications`], [`queries`]) as free functions that take
//! the executor they run on: `store.read()` for plain reads, `store.write()` for writes, or an
//! open transaction (`&mut *tx` from [`Store::begin`]) to compose several atomically. A function
//! that runs several statements opens its own transaction on what it is given (a savepoint
//! inside the caller's). Rows are read with derived `FromRow`.
//!
//! Conventions: queries use `$n` placeholders with bound values only (both backends accept
//! them); SQL text is assembled only from fixed column lists, table names and generated
//! placeholders; timestamps are [`crate::time::Micros`]; no transaction is held across anything
//! but SQL. [`Store`] itself holds only the pools, the wake-ups and what this process saw of
//! the database's availability.

pub mod assets;
pub mod catalog;
mod columns;
mod connectivity;
pub mod dags;
mod dialect;
pub mod finished;
pub mod lineage;
pub mod logs;
pub mod metrics;
mod model;
pub mod notifications;
mod notify;
pub mod processes;
pub mod queries;
pub mod runs;
pub mod stats;
pub mod tasks;
pub mod users;

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Executor};
use thiserror::Error;

pub use connectivity::{Connectivity, Outage};

/// The migration files of each dialect as `(version, name, SQL)`, in order.
pub mod migrations {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}
pub use dags::{DagRecord, DagRow, ImportErrorRow};
pub use dialect::Backend;
pub use finished::{DurationHistogram, DurationsBy, DURATION_BUCKETS};
pub use logs::LogRow;
pub use model::{display_id, parse_display_id, RunRow, TaskInstanceRow};
pub use notify::{Waiter, Wakeups};
pub use runs::NewRun;
pub use tasks::{ClaimedTask, TaskOutcome, TaskStateRow, TryRow};
pub use users::{ApiTokenRow, SessionRow, UserRow, TOKEN_ID_LEN};

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database is unreachable or returned an error; usually worth retrying later.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}` (expected sqlite://… or postgres://…)")]
    UnsupportedUrl(String),
    /// Connecting to or migrating the database at `url` (password masked) failed.
    #[error("cannot open database {url}: {source}")]
    Open { url: String, source: Box<StoreError> },
    /// A row holds a value this version of lakeward does not understand.
    #[error("unexpected value in the database: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    /// A column that does not decode into its row's type is a bad stored value, not a failure
    /// of the database.
    fn from(error: sqlx::Error) -> StoreError {
        match error {
            sqlx::Error::ColumnDecode { index, source } => {
                StoreError::Corrupt(format!("column {index}: {source}"))
            }
            sqlx::Error::Decode(source) => StoreError::Corrupt(source.to_string()),
            other => StoreError::Database(other),
        }
    }
}

impl StoreError {
    /// Whether the database could not be reached or could not write (connection lost, pool
    /// exhausted, disk full, locked, server shutting down): trying again later can help, and
    /// the error says nothing about the statement itself.
    pub fn is_unavailable(&self) -> bool {
        let error = match self {
            StoreError::Database(error) => error,
            StoreError::Open { source, .. } => return source.is_unavailable(),
            _ => return false,
        };
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_code(&code)),
            _ => false,
        }
    }

    /// This error as one met while opening the database at `url`.
    fn opening(self, url: &str) -> StoreError {
        match self {
            StoreError::UnsupportedUrl(_) | StoreError::Open { .. } => self,
            other => StoreError::Open { url: mask_password(url), source: Box::new(other) },
        }
    }
}

/// `scheme://user:password@host/…` with the password replaced by `***`, for messages and
/// pages.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A SQLite URL that creates its file when missing (`mode=rwc`), unless it names a mode or
/// an in-memory database.
fn sqlite_creating(url: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    if url.contains(":memory:") || query.split('&').any(|p| p.starts_with("mode=")) {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

/// Error codes meaning "not now" rather than "not this": SQLite's busy, locked, I/O error,
/// disk full and cannot-open (primary codes, extended codes keep them in the low byte), and
/// Postgres's connection exceptions (08…), insufficient resources (53…, disk full among them)
/// and operator intervention (57P…, a server shutting down or restarting).
fn unavailable_code(code: &str) -> bool {
    if let Ok(number) = code.parse::<i64>() {
        return matches!(number & 0xff, 5 | 6 | 10 | 13 | 14);
    }
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle to the run-state database. Cheap to clone; clones share the pool and wake-ups.
#[derive(Clone)]
pub struct Store {
    /// Writes, and reads that must see them in the same transaction.
    pool: AnyPool,
    /// Plain reads. On SQLite a separate pool, so readers never queue behind the one writer
    /// (WAL lets them run concurrently); on Postgres the same pool.
    reader: AnyPool,
    backend: Backend,
    wakeups: std::sync::Arc<Wakeups>,
    connectivity: std::sync::Arc<Connectivity>,
    url: String,
}

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`). Does not migrate. A SQLite file
    /// that does not exist yet is created (with its folder) unless the URL sets another `mode`.
    /// Errors name the URL, its password masked.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_unnamed(url).await.map_err(|e| e.opening(url))
    }

    async fn connect_unnamed(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl(mask_password(url)))?;
        let url = &match backend {
            Backend::Sqlite => sqlite_creating(url),
            Backend::Postgres => url.to_string(),
        };
        let (pool, reader) = match backend {
            Backend::Sqlite => {
                create_parent_dir(url);
                // One writer connection: SQLite allows one writer at a time, and queueing writers
                // in the pool is much faster than SQLite's sleeping busy handler.
                let writer = AnyPoolOptions::new()
                    .max_connections(1)
                    .after_release(|conn, _| Box::pin(keep_writer(conn)))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?;
                let reader = AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA query_only = ON; PRAGMA busy_timeout = 10000;")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?;
                (writer, reader)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    // lakeward's statements are index reads of a few rows, but a statement
                    // whose bound comes from a subquery (`/metrics`' roll-up mark) is estimated
                    // at millions of rows, over `jit_above_cost`: compiling it took 230 ms of a
                    // 270 ms query at ten million task instances.
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("SET jit = off").await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
        };
        Ok(Store {
            pool,
            reader,
            backend,
            wakeups: Default::default(),
            connectivity: Default::default(),
            url: url.to_string(),
        })
    }

    /// Connects and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store> {
        let store = Store::connect(url).await?;
        store.migrate().await.map_err(|e| e.opening(url))?;
        Ok(store)
    }

    /// The URL this store was opened with (other SQL clients of the same database use it).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the migrations in `migrations/<backend>/` (embedded at build time, see
    /// `build.rs`) with sqlx's migrator. On Postgres an advisory lock makes concurrent callers
    /// wait for one another, so only one process migrates at a time.
    pub async fn migrate(&self) -> Result<()> {
        let files = match self.backend {
            Backend::Sqlite => migrations::SQLITE,
            Backend::Postgres => migrations::POSTGRES,
        };
        let migrations = files
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect::<Vec<_>>();
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        };
        // Postgres: sqlx takes an advisory lock. SQLite has none, so lock a file beside the
        // database; processes on other machines cannot share a SQLite file anyway.
        let _guard = match self.backend {
            Backend::Sqlite => {
                Some(lock_file(&format!("{}-migrate.lock", sqlite_path(&self.url))).await?)
            }
            Backend::Postgres => None,
        };
        if self.backend == Backend::Postgres {
            migrator.run(&self.pool).await?;
            return Ok(());
        }
        // SQLite changes a constraint by rebuilding the table (create, copy, drop, rename):
        // with foreign keys on, dropping the old table would cascade to the rows that point at
        // it. So migrations run with them off (SQLite's documented procedure; the pragma has
        // no effect inside the transaction each migration runs in, hence here).
        let mut conn = self.pool.acquire().await?;
        conn.execute("PRAGMA foreign_keys = OFF").await?;
        let migrated = migrator.run_direct(&mut *conn).await;
        conn.execute("PRAGMA foreign_keys = ON").await?;
        migrated?;
        Ok(())
    }

    /// The pool for plain reads. On SQLite a separate, read-only pool whose connections never
    /// wait for the writer; use [`Store::write`] for a read that must see a write of the same
    /// transaction.
    pub fn read(&self) -> &AnyPool {
        &self.reader
    }

    /// The pool for writes.
    pub fn write(&self) -> &AnyPool {
        &self.pool
    }

    /// Opens a transaction: pass `&mut *tx` to the aggregate functions to make their changes
    /// one atomic change, then commit.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, Any>> {
        Ok(self.pool.begin().await?)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// What this process has seen of the database's availability.
    pub fn connectivity(&self) -> &Connectivity {
        &self.connectivity
    }

    /// The wake-up signals of this process.
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.reader.close().await;
    }
}

/// Whether the SQLite writer connection may go back to the pool. On a full disk or an I/O
/// error SQLite may end a transaction by itself; the rollback sqlx then sends fails, and sqlx
/// goes on believing a transaction is open. Its next "transaction" would be a savepoint whose
/// rollback leaves a real transaction open: the connection would hold the write lock forever
/// while its own writes seemed to succeed. Such a connection is closed instead (SQLite rolls
/// back and releases its locks); the next write opens a fresh one.
async fn keep_writer(conn: &mut sqlx::AnyConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    // The ping is queued behind any rollback still pending, so the depth read after it is
    // the one that rollback left.
    conn.ping().await?;
    let out_of_step = conn.is_in_transaction();
    if out_of_step {
        tracing::warn!("closing the database connection: a failed rollback left it unusable");
    }
    Ok(!out_of_step)
}

/// The file path inside a `sqlite://path?options` URL.
fn sqlite_path(url: &str) -> &str {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    path.split('?').next().unwrap_or_default()
}

fn create_parent_dir(url: &str) {
    if let Some(parent) = Path::new(sqlite_path(url)).parent().filter(|p| !p.as_os_str().is_empty())
    {
        let _ = std::fs::create_dir_all(parent);
    }
}

/// Takes an exclusive advisory lock on `path`, held until the returned file is dropped.
async fn lock_file(path: &str) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = path.to_string();
    let locked = crate::process::blocking(move || {
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        // SAFETY: flock on a file descriptor we own; blocks until the lock is granted.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(file)
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("migration lock task failed: {e}")))?;
    locked.map_err(|e| StoreError::Database(sqlx::Error::Io(e)))
}

/// `$start, $start+1, …` for `count` values: the placeholders of an `IN (…)` list.
fn placeholders(start: usize, count: usize) -> String {
    (start..start + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_nothing_else() {
        assert_eq!(mask_password("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(mask_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(mask_password("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert_eq!(mask_password("postgres://u:p@h/db?x=a@b"), "postgres://u:***@h/db?x=a@b");
    }

    #[test]
    fn sqlite_files_are_created_unless_the_url_says_otherwise() {
        assert_eq!(sqlite_creating("sqlite:///a/b.db"), "sqlite:///a/b.db?mode=rwc");
        assert_eq!(
            sqlite_creating("sqlite:///a/b.db?cache=shared"),
            "sqlite:///a/b.db?cache=shared&mode=rwc"
        );
        assert_eq!(sqlite_creating("sqlite:///a/b.db?mode=ro"), "sqlite:///a/b.db?mode=ro");
        assert_eq!(sqlite_creating("sqlite::memory:"), "sqlite::memory:");
    }
}
