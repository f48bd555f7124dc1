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

pub mod approvals;
pub mod audit;
pub mod captures;
pub mod checkout;
pub mod direct_debits;
pub mod disputes;
pub mod dunning;
pub mod events;
pub mod fee_invoices;
pub mod idempotency;
pub mod jobs;
pub mod ledger;
pub mod merchants;
pub mod messages;
pub mod operators;
pub mod orders;
pub mod payments;
pub mod payouts;
pub mod portal;
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
    /// The write's precondition no longer held at commit (e.g. a proposal decided meanwhile).
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    /// True when the write violated a uniqueness constraint.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }

    /// True when the same work may succeed if tried again from the start: the resource was busy,
    /// a concurrent writer created the same row first, or PostgreSQL broke a deadlock or a
    /// serialization conflict by aborting this transaction.
    pub fn is_retryable(&self) -> bool {
        let aborted = matches!(self, StoreError::Database(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("40P01" | "40001")));
        aborted || self.is_busy() || self.is_unique_violation()
    }

    /// True when the statement gave up waiting for a lock or ran past its time bound
    /// (PostgreSQL `lock_timeout` / `statement_timeout`, SQLite busy), or no connection could be
    /// had: the resource or the database is busy, and the same work may succeed later.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("55P03" | "57014" | "5" | "261" | "517"))
            }
            _ => self.is_unavailable(),
        }
    }

    /// True when the database itself could not serve the request: no connection from the pool in
    /// time, a connection lost or refused, the server shutting down, out of connections or other
    /// resources, or a statement past its time bound. Not a conflict of the request with others:
    /// the client should retry after a while.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_),
            ) => true,
            StoreError::Database(sqlx::Error::Database(e)) => {
                let code = e.code();
                let code = code.as_deref().unwrap_or("");
                // 08: connection exception; 53: insufficient resources; 57P0x: shutdown, cannot
                // connect now; 57014: statement timeout (the database is too slow to answer).
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0") || code == "57014"
            }
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A stored value that could not be read back.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A value as the JSON text columns hold it.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| corrupt("json", e))
}

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
    /// The pool, and a small pool whose commits do not wait for the WAL flush (`relaxed_conn`).
    Postgres {
        pool: sqlx::PgPool,
        relaxed: sqlx::PgPool,
    },
    Sqlite {
        write: sqlx::SqlitePool,
        read: sqlx::SqlitePool,
    },
}

/// A borrowed connection of either backend; what store functions run their SQL on.
pub enum Exec<'a> {
    Pg(&'a mut PgConnection),
    Lite(&'a mut SqliteConnection),
}

/// Anything that can lend a connection: a transaction or a pooled connection.
pub trait AsExec {
    fn exec(&mut self) -> Exec<'_>;

    /// Makes the connection ready for a statement: a transaction first sends its deferred writes,
    /// so every statement sees them. `with_conn!` calls it before each body.
    fn ready(&mut self) -> impl std::future::Future<Output = StoreResult<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// A database transaction on either backend. Dropped without `commit` it rolls back.
///
/// Writes whose results the transaction does not need can be deferred ([`Tx::defer`]): they are
/// sent together, in one round trip, by [`Tx::flush`] or at [`Tx::commit`]. Running any other
/// statement while writes are deferred is a bug (checked in debug builds), so nothing ever reads
/// around a deferred write.
pub struct Tx {
    inner: TxInner,
    pending: Batch,
    /// PostgreSQL: the PSPs whose payout lock (shared) the next flush takes before its writes,
    /// and those this transaction holds already.
    payout_locks: Vec<i64>,
    payout_locked: Vec<i64>,
}

enum TxInner {
    Pg(Transaction<'static, Postgres>),
    Lite(Transaction<'static, Sqlite>),
}

/// The advisory-lock key of a PSP's payouts (PostgreSQL): a run holds it exclusively, every
/// transaction that moves what the PSP is owed holds it shared (see [`Tx::lock_payouts_shared`]).
pub fn payout_lock_key(psp: crate::domain::ids::PspId) -> i64 {
    let v = psp.0.as_u128();
    // Both halves, and a constant of our own so other advisory locks of the database differ.
    ((v >> 64) as u64 ^ v as u64 ^ 0x6e74_7061_796f_7574) as i64
}

impl Tx {
    fn new(inner: TxInner) -> Tx {
        Tx { inner, pending: Batch::default(), payout_locks: Vec::new(), payout_locked: Vec::new() }
    }

    /// This transaction moves what `psp` is owed: before its writes are sent it takes the PSP's
    /// payout lock shared (PostgreSQL; SQLite runs one write transaction at a time anyway). A
    /// payout run takes it exclusively, so a movement either commits before the run reads the
    /// ledger, or is written after the run committed — and then dated no earlier than the run's
    /// cut-off (the ledger entry's clamp), so it belongs to the next payout by its date too.
    pub fn lock_payouts_shared(&mut self, psp: crate::domain::ids::PspId) {
        let key = payout_lock_key(psp);
        if self.backend() == Backend::Postgres
            && !self.payout_locks.contains(&key)
            && !self.payout_locked.contains(&key)
        {
            self.payout_locks.push(key);
        }
    }

    /// Takes the payout locks asked for since the last flush (one statement, before the writes:
    /// their snapshot must see a run that committed while this waited).
    async fn take_payout_locks(&mut self) -> StoreResult<()> {
        if self.payout_locks.is_empty() {
            return Ok(());
        }
        let keys = std::mem::take(&mut self.payout_locks);
        if let TxInner::Pg(t) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock_shared(k) FROM unnest(CAST($1 AS BIGINT[])) AS k")
                .bind(&keys)
                .execute(&mut **t)
                .await?;
        }
        self.payout_locked.extend(keys);
        Ok(())
    }

    /// PostgreSQL: takes `psp`'s payout lock exclusively (a payout run, before it reads the
    /// ledger); it waits for every transaction moving what the PSP is owed to finish.
    pub async fn lock_payouts_exclusive(&mut self, psp: crate::domain::ids::PspId) -> StoreResult<()> {
        self.ready().await?;
        if let TxInner::Pg(t) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(payout_lock_key(psp)).execute(&mut **t).await?;
        }
        Ok(())
    }

    /// Queues a write (`$1`… numbered from one) to be sent with the other deferred writes.
    pub fn defer(&mut self, sql: &str, args: Vec<Arg>) {
        self.pending.push(sql, args);
    }

    /// Defers one `INSERT` of many rows: `head` is `INSERT INTO t (columns) VALUES`, every row
    /// has the same number of values, `tail` follows the rows (e.g. `ON CONFLICT … DO NOTHING`).
    /// One statement instead of one per row.
    /// Statements stay under [`MAX_PARAMS_PER_STATEMENT`] values.
    pub fn defer_rows(&mut self, head: &str, rows: Vec<Vec<Arg>>, tail: &str) {
        let Some(width) = rows.first().map(Vec::len) else { return };
        debug_assert!(rows.iter().all(|r| r.len() == width), "rows of one insert have one width");
        let per = rows_per_statement(width);
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let part: Vec<Vec<Arg>> = rows.by_ref().take(per).collect();
            let values = (0..part.len())
                .map(|i| {
                    format!("({})", (1..=width).map(|k| format!("${}", i * width + k)).collect::<Vec<_>>().join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            self.defer(&format!("{head} {values} {tail}"), part.into_iter().flatten().collect());
        }
    }

    /// The backend this transaction runs on.
    pub fn backend(&self) -> Backend {
        match self.inner {
            TxInner::Pg(_) => Backend::Postgres,
            TxInner::Lite(_) => Backend::Sqlite,
        }
    }

    /// Sends the deferred writes.
    pub async fn flush(&mut self) -> StoreResult<()> {
        self.take_payout_locks().await?;
        let batch = std::mem::take(&mut self.pending);
        match &mut self.inner {
            TxInner::Pg(t) => batch.run(Exec::Pg(t)).await,
            TxInner::Lite(t) => batch.run(Exec::Lite(t)).await,
        }
    }

    /// Sends the deferred writes with `guard` last, in the same round trip, and commits only if
    /// the guard (a write with `RETURNING`) returned a row; otherwise rolls back and answers
    /// `false`. For fences: a write that must still find the row as the transaction expects it.
    pub async fn commit_guarded(mut self, guard: &str, args: Vec<Arg>) -> StoreResult<bool> {
        self.take_payout_locks().await?;
        self.pending.push(guard, args);
        let batch = std::mem::take(&mut self.pending);
        let rows = match &mut self.inner {
            TxInner::Pg(t) => batch.run_returning(Exec::Pg(t)).await?,
            TxInner::Lite(t) => batch.run_returning(Exec::Lite(t)).await?,
        };
        if rows == 0 {
            match self.inner {
                TxInner::Pg(t) => t.rollback().await?,
                TxInner::Lite(t) => t.rollback().await?,
            }
            return Ok(false);
        }
        self.commit().await?;
        Ok(true)
    }

    /// Sends the deferred writes, then commits. In an operator's request (admin API, CLI) the
    /// first commit also writes the request's audit record, in this transaction.
    pub async fn commit(mut self) -> StoreResult<()> {
        let pending = audit::take_pending();
        let decision = approvals::take_pending();
        let done: StoreResult<()> = async {
            if let Some((rec, at)) = &pending {
                audit::write(&mut self, rec, *at).await?;
            }
            // The effect of an approval commits only with the approval's decision.
            if let Some(d) = &decision {
                approvals::approve_in(&mut self, d).await?;
            }
            self.flush().await?;
            match self.inner {
                TxInner::Pg(t) => t.commit().await?,
                TxInner::Lite(t) => t.commit().await?,
            }
            Ok(())
        }
        .await;
        if done.is_err() {
            if let Some(p) = pending {
                audit::put_back(p);
            }
            if let Some(d) = decision {
                approvals::put_back(d);
            }
        }
        done
    }
}

impl AsExec for Tx {
    fn exec(&mut self) -> Exec<'_> {
        debug_assert!(self.pending.is_empty(), "a statement ran while writes were deferred; flush first");
        match &mut self.inner {
            TxInner::Pg(t) => Exec::Pg(t),
            TxInner::Lite(t) => Exec::Lite(t),
        }
    }

    async fn ready(&mut self) -> StoreResult<()> {
        if self.pending.is_empty() && self.payout_locks.is_empty() { Ok(()) } else { self.flush().await }
    }
}

/// The most values one multi-row statement binds. SQLite looks a parameter's name up by a linear
/// scan and sqlx does so for every parameter, so binding costs the square of a statement's
/// parameters: many small statements bind faster than one large one.
pub const MAX_PARAMS_PER_STATEMENT: usize = 240;

/// How many rows of `width` values one statement takes.
pub fn rows_per_statement(width: usize) -> usize {
    (MAX_PARAMS_PER_STATEMENT / width.max(1)).max(1)
}

/// A value bound to a deferred write.
#[derive(Debug, Clone)]
pub enum Arg {
    I64(i64),
    Text(String),
    OptText(Option<String>),
    OptUuid(Option<uuid::Uuid>),
    Bytes(Vec<u8>),
    Uuid(uuid::Uuid),
    Time(chrono::DateTime<chrono::Utc>),
    OptTime(Option<chrono::DateTime<chrono::Utc>>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::I64(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_owned())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::OptText(v.map(str::to_owned))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::OptText(v)
    }
}
impl From<chrono::DateTime<chrono::Utc>> for Arg {
    fn from(v: chrono::DateTime<chrono::Utc>) -> Arg {
        Arg::Time(v)
    }
}
impl From<Option<uuid::Uuid>> for Arg {
    fn from(v: Option<uuid::Uuid>) -> Arg {
        Arg::OptUuid(v)
    }
}
impl From<Option<chrono::DateTime<chrono::Utc>>> for Arg {
    fn from(v: Option<chrono::DateTime<chrono::Utc>>) -> Arg {
        Arg::OptTime(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::I64(i64::from(v))
    }
}
impl From<uuid::Uuid> for Arg {
    fn from(v: uuid::Uuid) -> Arg {
        Arg::Uuid(v)
    }
}

/// Writes sent in one round trip. Each part is a single `INSERT`/`UPDATE` numbering its
/// parameters from `$1`; the batch renumbers them. SQLite runs the parts one after another as one
/// multi-statement query; PostgreSQL runs them as one statement of data-modifying CTEs, which
/// all see the snapshot taken before it (so parts must not read each other's rows or change the
/// same row; foreign keys are checked at the end of the statement).
#[derive(Debug, Default)]
pub struct Batch {
    parts: Vec<String>,
    args: Vec<Arg>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    pub fn push(&mut self, sql: &str, args: Vec<Arg>) {
        let offset = self.args.len();
        self.parts.push(renumber(sql, offset));
        self.args.extend(args);
    }

    /// The statement text for `backend`.
    fn sql(&self, backend: Backend) -> String {
        match (backend, self.parts.as_slice()) {
            (_, [one]) => one.clone(),
            (Backend::Sqlite, parts) => parts.join(";\n"),
            (Backend::Postgres, [init @ .., last]) => {
                let ctes: Vec<String> = init.iter().enumerate().map(|(i, p)| format!("w{i} AS ({p})")).collect();
                format!("WITH {} {last}", ctes.join(", "))
            }
            (Backend::Postgres, []) => String::new(),
        }
    }

    async fn run(self, ex: Exec<'_>) -> StoreResult<()> {
        self.run_returning(ex).await.map(|_| ())
    }

    /// Runs the batch; how many rows its statements returned (only a last part with `RETURNING`
    /// returns any: on PostgreSQL it is the main statement, on SQLite the last one).
    async fn run_returning(self, ex: Exec<'_>) -> StoreResult<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        let args = self.args.clone();
        let mut ex = ex;
        crate::with_conn!(&mut ex, c, b => {
            let sql = self.sql(b);
            let mut q = sqlx::query(&sql);
            for a in &args {
                q = match a {
                    Arg::I64(v) => q.bind(*v),
                    Arg::Text(v) => q.bind(v.as_str()),
                    Arg::OptText(v) => q.bind(v.as_deref()),
                    Arg::OptUuid(v) => q.bind(*v),
                    Arg::Bytes(v) => q.bind(v.as_slice()),
                    Arg::Uuid(v) => q.bind(*v),
                    Arg::Time(v) => q.bind(*v),
                    Arg::OptTime(v) => q.bind(*v),
                };
            }
            Ok(q.fetch_all(&mut *c).await?.len())
        })
    }
}

impl AsExec for Exec<'_> {
    fn exec(&mut self) -> Exec<'_> {
        match self {
            Exec::Pg(c) => Exec::Pg(c),
            Exec::Lite(c) => Exec::Lite(c),
        }
    }
}

/// Adds `offset` to every `$n` placeholder of `sql` (our statements hold no `$` elsewhere).
fn renumber(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.char_indices().peekable();
    while let Some((_, ch)) = chars.next() {
        out.push(ch);
        if ch != '$' {
            continue;
        }
        let mut n = String::new();
        while let Some(&(_, d)) = chars.peek() {
            if !d.is_ascii_digit() {
                break;
            }
            n.push(d);
            chars.next();
        }
        match n.parse::<usize>() {
            Ok(v) => out.push_str(&(v + offset).to_string()),
            Err(_) => out.push_str(&n),
        }
    }
    out
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
/// per backend. `$b` is bound to the [`Backend`] for statements whose text must differ. A
/// transaction's deferred writes are sent first (so the body sees them); `$ex` is evaluated once.
#[macro_export]
macro_rules! with_conn {
    ($ex:expr, $c:ident => $body:expr) => {
        $crate::with_conn!($ex, $c, _backend => $body)
    };
    ($ex:expr, $c:ident, $b:ident => $body:expr) => {{
        let ex: &mut _ = $ex;
        $crate::store::AsExec::ready(&mut *ex).await?;
        match $crate::store::AsExec::exec(ex) {
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
    }};
}

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL: the longest a statement may run or wait for a lock on the main pool (`None`:
    /// unbounded, for the CLI's bulk work). The server bounds them below the idempotency claim,
    /// so a request that waits on a lock fails before a retry could take its key over.
    pub statement_timeout: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions { max_connections: 16, acquire_timeout: Duration::from_secs(5), statement_timeout: None }
    }
}

impl Db {
    /// Opens a pool for `url` (`postgres://…` or `sqlite:…`); SQLite files are created if missing.
    pub async fn connect(url: &str, opts: &PoolOptions) -> StoreResult<Db> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)?;
            let main = match opts.statement_timeout {
                Some(t) => {
                    let ms = t.as_millis().max(1).to_string();
                    connect.clone().options([("statement_timeout", ms.as_str()), ("lock_timeout", ms.as_str())])
                }
                None => connect.clone(),
            };
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(main)
                .await?;
            let relaxed = PgPoolOptions::new()
                .max_connections((opts.max_connections / 4).max(2))
                .acquire_timeout(opts.acquire_timeout)
                .connect_lazy_with(connect.options([("synchronous_commit", "off")]));
            Ok(Db::Postgres { pool, relaxed })
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
            Db::Postgres { .. } => Backend::Postgres,
            Db::Sqlite { .. } => Backend::Sqlite,
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        match self {
            Db::Postgres { pool, .. } => PG_MIGRATOR.run(pool).await?,
            Db::Sqlite { write, .. } => {
                // SQLite changes a CHECK only by rebuilding the table, which a table others refer
                // to survives only with foreign-key enforcement off (it cannot be switched inside
                // the migration's transaction). The keys are checked once the migrations ran.
                let mut c = write.acquire().await?;
                sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut *c).await?;
                let ran = SQLITE_MIGRATOR.run(&mut *c).await;
                let broken: Result<Vec<(String,)>, sqlx::Error> =
                    sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check").fetch_all(&mut *c).await;
                if sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *c).await.is_err() {
                    // Never hand a connection without enforcement back to the pool.
                    c.detach();
                }
                ran?;
                if let Some((table,)) = broken?.into_iter().next() {
                    return Err(StoreError::Corrupt(format!("a migration left {table} with a broken foreign key")));
                }
            }
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
            Db::Postgres { .. } => &PG_MIGRATOR,
            Db::Sqlite { .. } => &SQLITE_MIGRATOR,
        };
        Ok(migrator.iter().filter(|m| !applied.contains(&m.version)).count())
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`),
    /// so a transaction never fails later trying to upgrade a read lock.
    pub async fn begin(&self) -> StoreResult<Tx> {
        Ok(match self {
            Db::Postgres { pool, .. } => Tx::new(TxInner::Pg(pool.begin().await?)),
            Db::Sqlite { write, .. } => Tx::new(TxInner::Lite(write.begin_with("BEGIN IMMEDIATE").await?)),
        })
    }

    /// A connection for a single write statement outside a transaction (it commits by itself)
    /// that need not be durable on its own: on PostgreSQL its commit does not wait for the WAL
    /// to reach the disk. Only for writes that matter once a later, synchronous commit exists —
    /// that commit flushes the WAL up to itself, so it makes every earlier write durable too.
    pub async fn relaxed_conn(&self) -> StoreResult<Conn> {
        Ok(match self {
            Db::Postgres { relaxed, .. } => Conn::Pg(relaxed.acquire().await?),
            Db::Sqlite { write, .. } => Conn::Lite(write.acquire().await?),
        })
    }

    /// A connection for reads outside a transaction.
    pub async fn conn(&self) -> StoreResult<Conn> {
        Ok(match self {
            Db::Postgres { pool, .. } => Conn::Pg(pool.acquire().await?),
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
            Db::Postgres { pool, relaxed } => {
                relaxed.close().await;
                pool.close().await;
            }
            Db::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_renumber_parameters() {
        let mut b = Batch::default();
        b.push("INSERT INTO a (x, y) VALUES ($1, $2)", vec![Arg::I64(1), Arg::I64(2)]);
        b.push("UPDATE b SET x = $2 WHERE id = $1 AND y = $10", vec![Arg::I64(3), Arg::I64(4)]);
        assert_eq!(
            b.sql(Backend::Sqlite),
            "INSERT INTO a (x, y) VALUES ($1, $2);\nUPDATE b SET x = $4 WHERE id = $3 AND y = $12"
        );
        assert_eq!(
            b.sql(Backend::Postgres),
            "WITH w0 AS (INSERT INTO a (x, y) VALUES ($1, $2)) UPDATE b SET x = $4 WHERE id = $3 AND y = $12"
        );
        let mut one = Batch::default();
        one.push("DELETE FROM c WHERE id = $1", vec![Arg::I64(1)]);
        assert_eq!(one.sql(Backend::Postgres), "DELETE FROM c WHERE id = $1");
    }
}
