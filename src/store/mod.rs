//! Storage: one API over PostgreSQL (production) and SQLite (embedded default).
//!
//! Store functions are written once; `with_conn!` expands each body for both drivers, so the SQL
//! text is shared (both accept `$1` placeholders) and each backend gets its own typed code.

use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};

pub mod checkout;
pub mod events;
pub mod idempotency;
pub mod merchants;
pub mod orders;
pub mod psps;
pub mod secrets;
pub mod webhooks;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored value could not be read: {0}")]
    Corrupt(String),
    #[error("unsupported database url (expected postgres:// or sqlite:)")]
    UnsupportedUrl,
}

impl StoreError {
    /// True when the write violated a uniqueness constraint.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which SQL dialect a connection speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A connection pool on one of the two backends.
///
/// SQLite allows one writer at a time, so it gets a single-connection write pool (writers queue
/// in-process instead of failing with SQLITE_BUSY) and a separate pool for reads (WAL mode).
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(sqlx::PgPool),
    Sqlite { write: sqlx::SqlitePool, read: sqlx::SqlitePool },
}

/// A borrowed connection of either backend; what store functions run their SQL on.
pub enum Exec<'a> {
    Pg(&'a mut PgConnection),
    Lite(&'a mut SqliteConnection),
}

/// Anything that can lend a connection: a transaction or a pooled connection.
pub trait AsExec {
    fn exec(&mut self) -> Exec<'_>;
}

/// A database transaction on either backend. Dropped without `commit` it rolls back.
pub enum Tx {
    Pg(Transaction<'static, Postgres>),
    Lite(Transaction<'static, Sqlite>),
}

impl Tx {
    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Pg(t) => t.commit().await?,
            Tx::Lite(t) => t.commit().await?,
        }
        Ok(())
    }
}

impl AsExec for Tx {
    fn exec(&mut self) -> Exec<'_> {
        match self {
            Tx::Pg(t) => Exec::Pg(t),
            Tx::Lite(t) => Exec::Lite(t),
        }
    }
}

/// A pooled connection outside any explicit transaction (for reads).
pub enum Conn {
    Pg(PoolConnection<Postgres>),
    Lite(PoolConnection<Sqlite>),
}

impl AsExec for Conn {
    fn exec(&mut self) -> Exec<'_> {
        match self {
            Conn::Pg(c) => Exec::Pg(c),
            Conn::Lite(c) => Exec::Lite(c),
        }
    }
}

/// Runs `$body` with `$c` bound to the backend's `&mut Connection`; the body is compiled once
/// per backend. `$b` is bound to the [`Backend`] for statements whose text must differ.
#[macro_export]
macro_rules! with_conn {
    ($ex:expr, $c:ident => $body:expr) => {
        $crate::with_conn!($ex, $c, _backend => $body)
    };
    ($ex:expr, $c:ident, $b:ident => $body:expr) => {
        match $crate::store::AsExec::exec($ex) {
            $crate::store::Exec::Pg($c) => {
                #[allow(unused_variables)]
                let $b = $crate::store::Backend::Postgres;
                $body
            }
            $crate::store::Exec::Lite($c) => {
                #[allow(unused_variables)]
                let $b = $crate::store::Backend::Sqlite;
                $body
            }
        }
    };
}

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions { max_connections: 16, acquire_timeout: Duration::from_secs(5) }
    }
}

impl Db {
    /// Opens a pool for `url` (`postgres://…` or `sqlite:…`); SQLite files are created if missing.
    pub async fn connect(url: &str, opts: &PoolOptions) -> StoreResult<Db> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(connect)
                .await?;
            Ok(Db::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(connect.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(opts.max_connections.clamp(1, 8))
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(connect.read_only(true))
                .await?;
            Ok(Db::Sqlite { write, read })
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite { .. } => Backend::Sqlite,
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        match self {
            Db::Postgres(p) => PG_MIGRATOR.run(p).await?,
            Db::Sqlite { write, .. } => SQLITE_MIGRATOR.run(write).await?,
        }
        Ok(())
    }

    /// How many migrations this binary has that the database has not applied.
    pub async fn pending_migrations(&self) -> StoreResult<usize> {
        let mut c = self.conn().await?;
        let applied: Vec<i64> = with_conn!(&mut c, c => {
            // No migrations table yet means nothing is applied.
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&mut *c).await.unwrap_or_default()
        });
        let migrator = match self {
            Db::Postgres(_) => &PG_MIGRATOR,
            Db::Sqlite { .. } => &SQLITE_MIGRATOR,
        };
        Ok(migrator.iter().filter(|m| !applied.contains(&m.version)).count())
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`),
    /// so a transaction never fails later trying to upgrade a read lock.
    pub async fn begin(&self) -> StoreResult<Tx> {
        Ok(match self {
            Db::Postgres(p) => Tx::Pg(p.begin().await?),
            Db::Sqlite { write, .. } => Tx::Lite(write.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// A connection for a single write statement outside a transaction (it commits by itself).
    pub async fn write_conn(&self) -> StoreResult<Conn> {
        Ok(match self {
            Db::Postgres(p) => Conn::Pg(p.acquire().await?),
            Db::Sqlite { write, .. } => Conn::Lite(write.acquire().await?),
        })
    }

    /// A connection for reads outside a transaction.
    pub async fn conn(&self) -> StoreResult<Conn> {
        Ok(match self {
            Db::Postgres(p) => Conn::Pg(p.acquire().await?),
            Db::Sqlite { read, .. } => Conn::Lite(read.acquire().await?),
        })
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        let mut c = self.conn().await?;
        with_conn!(&mut c, c => { sqlx::query("SELECT 1").execute(&mut *c).await?; });
        Ok(())
    }

    /// Table and column names of the schema, sorted, for comparing the two backends.
    pub async fn schema_columns(&self) -> StoreResult<Vec<(String, String)>> {
        let mut c = self.conn().await?;
        let mut cols: Vec<(String, String)> = with_conn!(&mut c, c, b => {
            let sql = match b {
                Backend::Postgres => "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
                Backend::Sqlite => "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
            };
            sqlx::query_as(sql).fetch_all(&mut *c).await?
        });
        cols.sort();
        Ok(cols)
    }

    /// Closes the pools, waiting for connections to be returned.
    pub async fn close(&self) {
        match self {
            Db::Postgres(p) => p.close().await,
            Db::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
        }
    }
}
