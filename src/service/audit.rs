//! Who did what (SPEC §14.2): the actor of an operator's request, the audit record written in
//! the transaction of the change, the list and the check of the chain.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Services;
use crate::domain::operators::{GENESIS, Permission, Role, Roles};
use crate::store::audit::{self as store, AuditFilter, AuditRow, NewAudit};
use crate::store::{StoreError, Tx};

/// How an actor authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// An operator signed in to the console.
    Operator,
    /// An operator's admin API token (`ntop_…`).
    Token,
    /// The command line on the server.
    Cli,
    /// The configured bootstrap `admin_token`.
    AdminToken,
    /// Nobody yet: a sign-in attempt, a set-password link.
    Anonymous,
    /// netterms itself (a proposal expiring).
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Operator => "operator",
            ActorKind::Token => "token",
            ActorKind::Cli => "cli",
            ActorKind::AdminToken => "admin_token",
            ActorKind::Anonymous => "anonymous",
            ActorKind::System => "system",
        }
    }
}

/// Who is acting, with what roles, from where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorKind,
    pub operator_id: Option<uuid::Uuid>,
    /// A name a person recognizes: the operator's name (and the token's), `cli`, `admin_token`.
    pub label: String,
    pub roles: Roles,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

impl Actor {
    /// The command line acts with the server's own authority (SPEC §14.2).
    pub fn cli() -> Actor {
        Actor {
            kind: ActorKind::Cli,
            operator_id: None,
            label: "cli".into(),
            roles: Roles::new(vec![Role::Admin]),
            request_id: None,
            client_ip: None,
        }
    }

    pub fn admin_token(request_id: Option<String>, client_ip: Option<String>) -> Actor {
        Actor {
            kind: ActorKind::AdminToken,
            operator_id: None,
            label: "admin_token".into(),
            roles: Roles::new(vec![Role::Admin]),
            request_id,
            client_ip,
        }
    }

    pub fn anonymous(label: impl Into<String>, request_id: Option<String>, client_ip: Option<String>) -> Actor {
        Actor {
            kind: ActorKind::Anonymous,
            operator_id: None,
            label: label.into(),
            roles: Roles::default(),
            request_id,
            client_ip,
        }
    }

    pub fn may(&self, p: Permission) -> bool {
        self.roles.allows(p)
    }
}

/// What an action did to an object, for one audit record.
pub struct Entry<'a> {
    pub action: &'a str,
    pub object_kind: Option<&'a str>,
    pub object_id: Option<String>,
    pub reason: Option<&'a str>,
    /// Before → after, or the facts of the action; never secrets, personal data masked unless
    /// the change is about it.
    pub changes: serde_json::Value,
}

/// Writes the audit record of `entry` by `actor` in `tx`, the transaction of the change.
pub async fn record(tx: &mut Tx, actor: &Actor, entry: Entry<'_>, at: DateTime<Utc>) -> Result<i64, StoreError> {
    let rec = NewAudit {
        actor_kind: actor.kind.as_str().into(),
        actor_id: actor.operator_id.map(|i| i.to_string()),
        actor_label: actor.label.clone(),
        action: entry.action.into(),
        object_kind: entry.object_kind.map(str::to_owned),
        object_id: entry.object_id,
        reason: entry.reason.map(str::to_owned),
        changes: entry.changes.to_string(),
        request_id: actor.request_id.clone(),
        client_ip: actor.client_ip.clone(),
    };
    store::append(tx, &rec, at).await
}

/// Records matching the filter, newest first.
pub async fn list(s: &Services, f: &AuditFilter, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
    let mut conn = s.db.conn().await?;
    store::list(&mut conn, f, limit).await
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    pub records: i64,
    /// The first problem found, in words.
    pub problem: Option<String>,
}

/// Walks the whole chain: numbers without gaps from 1, each record's previous hash the hash of
/// the record before, each hash that of its content, and the chain's head (kept in the same
/// transactions) at the last record — so an altered, removed, inserted or reordered record, or
/// a cut-off end, is found.
pub async fn verify(s: &Services) -> Result<Verified, StoreError> {
    let mut conn = s.db.conn().await?;
    let (head_seq, head_hash) = store::head(&mut conn).await?;
    let mut prev = GENESIS.to_vec();
    let mut seq = 0i64;
    let fail = |records: i64, p: String| Ok(Verified { ok: false, records, problem: Some(p) });
    loop {
        let page = store::page(&mut conn, seq, 1000).await?;
        if page.is_empty() {
            break;
        }
        for r in page {
            if r.seq != seq + 1 {
                return fail(seq, format!("record {} is missing (the next one is {})", seq + 1, r.seq));
            }
            if r.prev_hash != prev {
                return fail(seq, format!("record {} does not follow record {}", r.seq, seq));
            }
            if r.expected_hash(&prev)[..] != r.hash[..] {
                return fail(seq, format!("record {} was altered", r.seq));
            }
            prev = r.hash;
            seq = r.seq;
        }
    }
    if seq != head_seq || prev != head_hash {
        return fail(seq, format!("the chain ends at record {seq}, but {head_seq} were written"));
    }
    Ok(Verified { ok: true, records: seq, problem: None })
}
