//! The audit trail (SPEC §14.2): append-only records, each chained to the one before by its
//! hash. Appends are serialized by the chain's head row (locked by each append until its
//! transaction ends), so the chain has exactly one order and its end is known.

use chrono::{DateTime, Utc};

use super::{AsExec, Backend, StoreResult, Tx};
use crate::domain::operators::{AuditContent, audit_hash};
use crate::with_conn;

tokio::task_local! {
    /// The audit record an operator's request (admin API, CLI) still has to write: the first
    /// transaction of the request that commits writes it, inside itself (see [`Tx::commit`]).
    static PENDING: std::sync::Mutex<Option<(NewAudit, DateTime<Utc>)>>;
}

/// Runs `f` with `rec` as its pending audit record: the first transaction `f` commits writes
/// it (in that transaction), unless a use case writes its own record first, which then takes
/// the request's reason and origin. A request that commits nothing leaves no record.
pub async fn scope<F: std::future::Future>(rec: NewAudit, at: DateTime<Utc>, f: F) -> F::Output {
    PENDING.scope(std::sync::Mutex::new(Some((rec, at))), f).await
}

/// Runs `f` without the task's pending record: what `f` commits is not the change being
/// audited (e.g. a fresh sandbox keeping its generated key while a command starts).
pub async fn outside<F: std::future::Future>(f: F) -> F::Output {
    PENDING.scope(std::sync::Mutex::new(None), f).await
}

/// The pending record of this task, taken (once).
pub(crate) fn take_pending() -> Option<(NewAudit, DateTime<Utc>)> {
    PENDING.try_with(|p| p.lock().ok().and_then(|mut g| g.take())).ok().flatten()
}

/// Puts a taken record back (its transaction did not commit).
pub(crate) fn put_back(rec: (NewAudit, DateTime<Utc>)) {
    let _ = PENDING.try_with(|p| {
        if let Ok(mut g) = p.lock() {
            *g = Some(rec);
        }
    });
}

/// What an audit record says, before it is numbered and hashed.
#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_label: String,
    pub action: String,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub reason: Option<String>,
    /// JSON: what changed, `{"field": {"before": …, "after": …}}` or facts of the action.
    pub changes: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub id: uuid::Uuid,
    pub at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_label: String,
    pub action: String,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub reason: Option<String>,
    pub changes: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    #[serde(skip)]
    pub prev_hash: Vec<u8>,
    #[serde(skip)]
    pub hash: Vec<u8>,
}

const COLUMNS: &str = "seq, id, at, actor_kind, actor_id, actor_label, action, object_kind, object_id, reason, changes, \
                       request_id, client_ip, prev_hash, hash";

/// The time as both databases keep it (microseconds) and as the hash covers it.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Microseconds, as PostgreSQL stores a time: what is hashed is what is read back.
fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

impl AuditRow {
    /// The hash this record's content and `prev` give.
    pub fn expected_hash(&self, prev: &[u8]) -> [u8; 32] {
        let at = stamp(self.at);
        audit_hash(
            prev,
            &AuditContent {
                seq: self.seq,
                id: self.id,
                at: &at,
                actor_kind: &self.actor_kind,
                actor_id: self.actor_id.as_deref(),
                actor_label: &self.actor_label,
                action: &self.action,
                object_kind: self.object_kind.as_deref(),
                object_id: self.object_id.as_deref(),
                reason: self.reason.as_deref(),
                changes: &self.changes,
                request_id: self.request_id.as_deref(),
                client_ip: self.client_ip.as_deref(),
            },
        )
    }
}

/// Appends a record inside `tx` (the transaction of the change it records). A pending record of
/// the request (see [`scope`]) is replaced by this one, which takes its reason and origin.
pub async fn append(tx: &mut Tx, rec: &NewAudit, at: DateTime<Utc>) -> StoreResult<i64> {
    match take_pending() {
        Some((p, _)) => {
            let mut rec = rec.clone();
            rec.reason = rec.reason.or(p.reason);
            rec.request_id = rec.request_id.or(p.request_id);
            rec.client_ip = rec.client_ip.or(p.client_ip);
            write(tx, &rec, at).await
        }
        None => write(tx, rec, at).await,
    }
}

/// Writes the record: numbered after the chain's head, hashed with the head's hash.
pub(crate) async fn write(tx: &mut Tx, rec: &NewAudit, at: DateTime<Utc>) -> StoreResult<i64> {
    let at = truncate(at);
    let id = uuid::Uuid::now_v7();
    // The head row is locked until the transaction ends: appends take turns, in one order.
    let (last_seq, prev): (i64, Vec<u8>) = with_conn!(tx, c, b => {
        let lock = if b == Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!("SELECT seq, hash FROM audit_head WHERE id = 1{lock}")).fetch_one(&mut *c).await?
    });
    let seq = last_seq + 1;
    let row = AuditRow {
        seq,
        id,
        at,
        actor_kind: rec.actor_kind.clone(),
        actor_id: rec.actor_id.clone(),
        actor_label: rec.actor_label.clone(),
        action: rec.action.clone(),
        object_kind: rec.object_kind.clone(),
        object_id: rec.object_id.clone(),
        reason: rec.reason.clone(),
        changes: rec.changes.clone(),
        request_id: rec.request_id.clone(),
        client_ip: rec.client_ip.clone(),
        prev_hash: prev.clone(),
        hash: Vec::new(),
    };
    let hash = row.expected_hash(&prev);
    with_conn!(tx, c => {
        sqlx::query(&format!("INSERT INTO audit_events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"))
            .bind(row.seq).bind(row.id).bind(row.at).bind(&row.actor_kind).bind(&row.actor_id).bind(&row.actor_label)
            .bind(&row.action).bind(&row.object_kind).bind(&row.object_id).bind(&row.reason).bind(&row.changes)
            .bind(&row.request_id).bind(&row.client_ip).bind(&prev).bind(&hash[..]).execute(&mut *c).await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1").bind(seq).bind(&hash[..]).execute(&mut *c).await?;
    });
    Ok(seq)
}

/// The number and hash of the last record written (0 and zeros before the first).
pub async fn head(conn: &mut impl AsExec) -> StoreResult<(i64, Vec<u8>)> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&mut *c).await?
    }))
}

/// Records in order from `after_seq`, at most `limit` (for verifying the chain in pages).
pub async fn page(conn: &mut impl AsExec, after_seq: i64, limit: i64) -> StoreResult<Vec<AuditRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"))
            .bind(after_seq).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// Filters of the audit list (all optional; `before_seq` pages backwards, newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub object: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub before_seq: Option<i64>,
}

/// Records matching `f`, newest first, at most `limit`.
pub async fn list(conn: &mut impl AsExec, f: &AuditFilter, limit: i64) -> StoreResult<Vec<AuditRow>> {
    let mut sql = format!("SELECT {COLUMNS} FROM audit_events WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if f.actor.is_some() {
        let (a, b) = (next(), next());
        sql.push_str(&format!(" AND (actor_id = ${a} OR actor_label = ${b})"));
    }
    if f.action.is_some() {
        sql.push_str(&format!(" AND action = ${}", next()));
    }
    if f.object.is_some() {
        sql.push_str(&format!(" AND object_id = ${}", next()));
    }
    if f.from.is_some() {
        sql.push_str(&format!(" AND at >= ${}", next()));
    }
    if f.to.is_some() {
        sql.push_str(&format!(" AND at < ${}", next()));
    }
    if f.before_seq.is_some() {
        sql.push_str(&format!(" AND seq < ${}", next()));
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", next()));
    Ok(with_conn!(conn, c => {
        let mut q = sqlx::query_as(&sql);
        if let Some(a) = &f.actor {
            q = q.bind(a).bind(a);
        }
        if let Some(a) = &f.action {
            q = q.bind(a);
        }
        if let Some(o) = &f.object {
            q = q.bind(o);
        }
        if let Some(t) = f.from {
            q = q.bind(t);
        }
        if let Some(t) = f.to {
            q = q.bind(t);
        }
        if let Some(s) = f.before_seq {
            q = q.bind(s);
        }
        q.bind(limit).fetch_all(&mut *c).await?
    }))
}
