//! Operators as people (SPEC §14.1): accounts with roles, a one-time set-password link,
//! Argon2id passwords, TOTP with recovery codes, console sessions in the database, admin API
//! tokens; every change written to the audit trail in its own transaction.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::Services;
use super::audit::{self, Actor, ActorKind, Entry};
use crate::config::Environment;
use crate::domain::operators::{Role, Roles, WeakPassword, check_password, mask};
use crate::domain::totp;
use crate::domain::validate::{FieldError, Violations, is_email};
use crate::secrets::{Purpose, random_alphanumeric};
use crate::store::StoreError;
use crate::store::operators::{self as store, OperatorRow, TokenRow};

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no such operator")]
    NotFound,
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("an operator with this e-mail address exists")]
    Exists,
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(source: &str, title: impl Into<String>) -> OperatorError {
    OperatorError::Invalid(vec![FieldError { source: source.into(), title: title.into() }])
}

/// An operator as the API and the console show it (no secrets).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Operator {
    pub operator_id: uuid::Uuid,
    pub email: String,
    pub name: String,
    #[schema(value_type = Vec<String>, example = json!(["risk"]))]
    pub roles: Vec<Role>,
    /// Whether the operator has set a password (through the link).
    pub password_set: bool,
    /// Whether a second factor (TOTP) is enrolled.
    pub second_factor: bool,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

impl Operator {
    fn from_row(r: &OperatorRow) -> Result<Operator, StoreError> {
        Ok(Operator {
            operator_id: r.id,
            email: r.email.clone(),
            name: r.name.clone(),
            roles: roles_of(r)?.list().to_vec(),
            password_set: r.password_hash.is_some(),
            second_factor: r.totp_seed.is_some(),
            active: r.active,
            created_at: r.created_at,
        })
    }
}

fn roles_of(r: &OperatorRow) -> Result<Roles, StoreError> {
    Roles::parse(&r.roles).map_err(|e| crate::store::corrupt("operator roles", e))
}

/// What creating an operator answers: the link to set the password (shown once).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedOperator {
    pub operator_id: uuid::Uuid,
    pub set_password_url: String,
    pub set_password_expires_at: DateTime<Utc>,
}

/// The fields of a new operator.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
pub struct NewOperator {
    #[schema(example = "anna.schmidt@netterms.example")]
    pub email: Option<String>,
    #[schema(example = "Anna Schmidt")]
    pub name: Option<String>,
    #[schema(value_type = Vec<String>, example = json!(["risk"]))]
    pub roles: Option<Vec<String>>,
}

fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    (e.len() <= 254 && is_email(&e)).then_some(e)
}

fn token(n: usize) -> String {
    random_alphanumeric(n)
}

fn plausible(t: &str, n: usize) -> bool {
    t.len() == n && t.bytes().all(|b| b.is_ascii_alphanumeric())
}

const LINK_LEN: usize = 43;
const SESSION_LEN: usize = 43;

/// Creates an operator with its roles and a set-password link.
pub async fn create(s: &Services, actor: &Actor, input: NewOperator) -> Result<CreatedOperator, OperatorError> {
    let mut v = Violations::new();
    let email = v.required("email", input.email.as_deref().map(normalize_email));
    let email = match email {
        Some(Some(e)) => Some(e),
        Some(None) => {
            v.add("email", "must be an e-mail address");
            None
        }
        None => None,
    };
    let name = v.text("name", input.name, 200);
    let mut roles = Vec::new();
    match input.roles {
        None => v.add("roles", "is required: one or more of admin, risk, collections, finance, support, read_only"),
        Some(list) if list.is_empty() => v.add("roles", "needs at least one role"),
        Some(list) => {
            for (i, r) in list.iter().enumerate() {
                match Role::parse(r) {
                    Some(r) => roles.push(r),
                    None => v.add(
                        format!("roles/{i}"),
                        "must be one of admin, risk, collections, finance, support, read_only",
                    ),
                }
            }
        }
    }
    v.finish().map_err(OperatorError::Invalid)?;
    let (Some(email), Some(name)) = (email, name) else { return Err(invalid("email", "is required")) };
    let roles = Roles::new(roles);
    let now = s.clock.now();
    let id = uuid::Uuid::now_v7();
    let mut tx = s.db.begin().await?;
    if store::by_email(&mut tx, &email).await?.is_some() {
        return Err(OperatorError::Exists);
    }
    let row = OperatorRow {
        id,
        email: email.clone(),
        name: name.clone(),
        roles: roles.stored(),
        password_hash: None,
        totp_seed: None,
        totp_pending: None,
        totp_last_step: None,
        locale: "en".into(),
        active: true,
        created_at: now,
        updated_at: now,
    };
    store::insert(&mut tx, &row).await?;
    let (url, expires_at) = new_link(s, &mut tx, id, now).await?;
    audit::record(
        &mut tx,
        actor,
        Entry {
            action: "operator.created",
            object_kind: Some("operator"),
            object_id: Some(id.to_string()),
            reason: None,
            changes: serde_json::json!({"email": email, "name": name, "roles": roles.stored()}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedOperator { operator_id: id, set_password_url: url, set_password_expires_at: expires_at })
}

async fn new_link(
    s: &Services,
    tx: &mut crate::store::Tx,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>), StoreError> {
    store::end_links(tx, id, now).await?;
    let t = token(LINK_LEN);
    let expires_at = now + Duration::hours(s.config.password_link_ttl_hours);
    store::insert_link(tx, &s.keyring.digest(Purpose::OperatorLink, t.as_bytes()), id, now, expires_at).await?;
    Ok((format!("{}/console/set-password/{t}", s.config.public_url()), expires_at))
}

/// A new set-password link for an operator (the old ones end): after a lost link, or to reset
/// a forgotten password.
pub async fn reset_link(s: &Services, actor: &Actor, id: uuid::Uuid) -> Result<CreatedOperator, OperatorError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    store::get_for_update(&mut tx, id).await?.ok_or(OperatorError::NotFound)?;
    let (url, expires_at) = new_link(s, &mut tx, id, now).await?;
    audit::record(
        &mut tx,
        actor,
        Entry {
            action: "operator.password_link_issued",
            object_kind: Some("operator"),
            object_id: Some(id.to_string()),
            reason: None,
            changes: serde_json::json!({}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedOperator { operator_id: id, set_password_url: url, set_password_expires_at: expires_at })
}

/// A change of an operator's roles or access.
#[derive(Debug, Clone, Default, serde::Deserialize, ToSchema)]
pub struct OperatorPatch {
    /// The roles from now on (replacing the old ones).
    #[schema(value_type = Option<Vec<String>>, example = json!(["risk", "collections"]))]
    pub roles: Option<Vec<String>>,
    /// `false` deactivates: sessions end, tokens stop working, sign-in is refused.
    pub active: Option<bool>,
}

fn parse_roles(list: &[String]) -> Result<Roles, OperatorError> {
    let mut v = Violations::new();
    if list.is_empty() {
        v.add("roles", "needs at least one role");
    }
    let mut roles = Vec::new();
    for (i, r) in list.iter().enumerate() {
        match Role::parse(r) {
            Some(r) => roles.push(r),
            None => v.add(format!("roles/{i}"), "must be one of admin, risk, collections, finance, support, read_only"),
        }
    }
    v.finish().map_err(OperatorError::Invalid)?;
    Ok(Roles::new(roles))
}

/// Whether `patch` gives the operator a role it does not have (four eyes, SPEC §14.2).
pub async fn adds_a_role(s: &Services, id: uuid::Uuid, patch: &OperatorPatch) -> bool {
    let Some(list) = &patch.roles else { return false };
    let Ok(new) = parse_roles(list) else { return false };
    let Ok(mut conn) = s.db.conn().await else { return false };
    match store::get(&mut conn, id).await {
        Ok(Some(row)) => roles_of(&row).is_ok_and(|old| new.list().iter().any(|r| !old.contains(*r))),
        _ => false,
    }
}

/// Changes an operator's roles or deactivates/reactivates it. The last active admin cannot
/// lose the role or be deactivated (someone must be able to manage operators).
pub async fn update(
    s: &Services,
    actor: &Actor,
    id: uuid::Uuid,
    patch: OperatorPatch,
) -> Result<Operator, OperatorError> {
    let new_roles = patch.roles.as_deref().map(parse_roles).transpose()?;
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    // Every operator row stays locked until commit, so two changes at once cannot both take
    // the role or access of one of the last two admins.
    store::lock_all(&mut tx).await?;
    let row = store::get_for_update(&mut tx, id).await?.ok_or(OperatorError::NotFound)?;
    let old_roles = roles_of(&row)?;
    let roles = new_roles.clone().unwrap_or_else(|| old_roles.clone());
    let active = patch.active.unwrap_or(row.active);
    let admin_now = row.active && old_roles.contains(Role::Admin);
    if admin_now && !(active && roles.contains(Role::Admin)) {
        let others = store::list(&mut tx, 10_000)
            .await?
            .into_iter()
            .filter(|o| o.id != id && o.active && roles_of(o).is_ok_and(|r| r.contains(Role::Admin)));
        if others.count() == 0 {
            return Err(OperatorError::Conflict("the last active admin keeps the role and access".into()));
        }
    }
    if roles != old_roles {
        store::set_roles(&mut tx, id, &roles.stored(), now).await?;
    }
    if active != row.active {
        store::set_active(&mut tx, id, active, now).await?;
        if !active {
            store::end_sessions_of(&mut tx, id, now).await?;
        }
    }
    let mut changes = serde_json::Map::new();
    if roles != old_roles {
        changes.insert("roles".into(), serde_json::json!({"before": old_roles.stored(), "after": roles.stored()}));
    }
    if active != row.active {
        changes.insert("active".into(), serde_json::json!({"before": row.active, "after": active}));
    }
    let entry = Entry {
        action: "operator.updated",
        object_kind: Some("operator"),
        object_id: Some(id.to_string()),
        reason: None,
        changes: serde_json::Value::Object(changes),
    };
    audit::record(&mut tx, actor, entry, now).await?;
    tx.commit().await?;
    get(s, id).await
}

/// Removes an operator's second factor and recovery codes (a lost phone); its sessions end and
/// it enrols again at the next sign-in (required in production).
pub async fn reset_second_factor(s: &Services, actor: &Actor, id: uuid::Uuid) -> Result<Operator, OperatorError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let row = store::get_for_update(&mut tx, id).await?.ok_or(OperatorError::NotFound)?;
    store::set_totp(&mut tx, id, None, None, now).await?;
    store::replace_recovery_codes(&mut tx, id, &[]).await?;
    store::end_sessions_of(&mut tx, id, now).await?;
    let entry = Entry {
        action: "operator.second_factor_reset",
        object_kind: Some("operator"),
        object_id: Some(id.to_string()),
        reason: None,
        changes: serde_json::json!({"second_factor": {"before": row.totp_seed.is_some(), "after": false}}),
    };
    audit::record(&mut tx, actor, entry, now).await?;
    tx.commit().await?;
    get(s, id).await
}

pub async fn list(s: &Services) -> Result<Vec<Operator>, OperatorError> {
    let mut conn = s.db.conn().await?;
    let rows = store::list(&mut conn, 1000).await?;
    Ok(rows.iter().map(Operator::from_row).collect::<Result<_, _>>()?)
}

pub async fn get(s: &Services, id: uuid::Uuid) -> Result<Operator, OperatorError> {
    let mut conn = s.db.conn().await?;
    let row = store::get(&mut conn, id).await?.ok_or(OperatorError::NotFound)?;
    Ok(Operator::from_row(&row)?)
}

pub async fn by_email(s: &Services, email: &str) -> Result<Operator, OperatorError> {
    let email = normalize_email(email).ok_or(OperatorError::NotFound)?;
    let mut conn = s.db.conn().await?;
    let row = store::by_email(&mut conn, &email).await?.ok_or(OperatorError::NotFound)?;
    Ok(Operator::from_row(&row)?)
}

// ---------------------------------------------------------------------------------------------
// Passwords

fn argon2() -> Argon2<'static> {
    // Argon2id, version 19, 19 MiB, two passes, one lane: OWASP's minimum.
    Argon2::default()
}

async fn hash_password(password: String) -> Result<String, OperatorError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon2().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|e| OperatorError::Store(crate::store::corrupt("password hashing", e)))?
    .map_err(|e| OperatorError::Store(crate::store::corrupt("password hashing", e)))
}

/// A stored hash for addresses that have none, so that checking costs the same either way.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2().hash_password(random_alphanumeric(24).as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default()
});

async fn password_matches(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        PasswordHash::new(&stored).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// The operator a set-password link belongs to, if it is still usable.
pub async fn link_operator(s: &Services, token: &str) -> Result<Option<Operator>, OperatorError> {
    if !plausible(token, LINK_LEN) {
        return Ok(None);
    }
    let mut conn = s.db.conn().await?;
    let digest = s.keyring.digest(Purpose::OperatorLink, token.as_bytes());
    let Some(id) = store::link_operator(&mut conn, &digest, s.clock.now()).await? else { return Ok(None) };
    let row = store::get(&mut conn, id).await?.ok_or(OperatorError::NotFound)?;
    Ok(Some(Operator::from_row(&row)?))
}

/// Why a new password was not set.
#[derive(Debug)]
pub enum SetPassword {
    Done(Operator),
    Weak(WeakPassword),
    Mismatch,
    LinkGone,
}

/// Sets the password through a one-time link; the link is used up and every session ends.
pub async fn set_password(
    s: &Services,
    actor: &Actor,
    token: &str,
    password: &str,
    repeated: &str,
) -> Result<SetPassword, OperatorError> {
    let Some(op) = link_operator(s, token).await? else { return Ok(SetPassword::LinkGone) };
    if let Err(w) = check_password(password, &op.email) {
        return Ok(SetPassword::Weak(w));
    }
    if password != repeated {
        return Ok(SetPassword::Mismatch);
    }
    let hash = hash_password(password.to_owned()).await?;
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let digest = s.keyring.digest(Purpose::OperatorLink, token.as_bytes());
    let Some(id) = store::consume_link(&mut tx, &digest, now).await? else { return Ok(SetPassword::LinkGone) };
    store::set_password(&mut tx, id, &hash, now).await?;
    store::end_sessions_of(&mut tx, id, now).await?;
    let actor = Actor { operator_id: Some(id), label: op.name.clone(), ..actor.clone() };
    audit::record(
        &mut tx,
        &actor,
        Entry {
            action: "operator.password_set",
            object_kind: Some("operator"),
            object_id: Some(id.to_string()),
            reason: None,
            changes: serde_json::json!({}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(SetPassword::Done(get(s, id).await?))
}

// ---------------------------------------------------------------------------------------------
// Sign-in

/// A console session, as the web layer sees it.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    digest: [u8; 32],
    pub operator: Operator,
    /// The password was right and the second factor is still to come (or to be enrolled).
    pub needs_second_factor: bool,
    pub csrf: String,
    pub locale: crate::domain::locale::Locale,
}

impl ConsoleSession {
    pub fn csrf_ok(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        token.len() == self.csrf.len() && bool::from(token.as_bytes().ct_eq(self.csrf.as_bytes()))
    }

    /// The actor of this session's requests.
    pub fn actor(&self, request_id: Option<String>, client_ip: Option<String>) -> Actor {
        Actor {
            kind: ActorKind::Operator,
            operator_id: Some(self.operator.operator_id),
            label: self.operator.name.clone(),
            roles: Roles::new(self.operator.roles.clone()),
            request_id,
            client_ip,
        }
    }
}

/// A session to set as the cookie (its value is shown once; the database holds its digest).
#[derive(Debug)]
pub struct NewSession {
    pub cookie: String,
    pub max_age_secs: i64,
    pub needs_second_factor: bool,
}

#[derive(Debug)]
pub enum SignIn {
    Session(NewSession),
    /// Wrong address or password (the same answer for both).
    Failed,
    /// Too many failures for the account or the address: locked until the window ends, without
    /// the password having been checked.
    Locked {
        retry_after_secs: i64,
    },
}

fn account_key(email: &str) -> String {
    format!("console:account:{email}")
}

fn address_key(ip: &str) -> String {
    format!("console:address:{ip}")
}

/// Whether the second factor is required: always in production; in a sandbox once enrolled.
pub fn second_factor_required(s: &Services, op: &OperatorRow) -> bool {
    op.totp_seed.is_some() || s.config.environment == Environment::Production
}

async fn locked(s: &Services, email: &str, ip: &str, now: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
    let window = Duration::seconds(s.config.console_failure_window_secs);
    let mut conn = s.db.conn().await?;
    let mine = store::failures(&mut conn, &account_key(email), now - window).await?;
    let all = store::failures(&mut conn, &address_key(ip), now - window).await?;
    let over =
        mine >= i64::from(s.config.console_failure_limit) || all >= i64::from(s.config.auth_failures_per_address);
    Ok(over.then_some(s.config.console_failure_window_secs))
}

async fn count_failure(s: &Services, actor: &Actor, email: &str, ip: &str, why: &str) -> Result<(), StoreError> {
    let now = s.clock.now();
    let since = now - Duration::seconds(s.config.console_failure_window_secs);
    let mut tx = s.db.begin().await?;
    let mine = store::record_failure(&mut tx, &account_key(email), now, since).await?;
    let all = store::record_failure(&mut tx, &address_key(ip), now, since).await?;
    if mine == i64::from(s.config.console_failure_limit) || all == i64::from(s.config.auth_failures_per_address) {
        let what = if mine == i64::from(s.config.console_failure_limit) { "account" } else { "address" };
        let entry = Entry {
            action: "operator.sign_in_locked",
            object_kind: Some("operator"),
            object_id: actor.operator_id.map(|i| i.to_string()),
            reason: None,
            changes: serde_json::json!({"email": mask(email), "locked": what, "for_secs": s.config.console_failure_window_secs}),
        };
        audit::record(&mut tx, actor, entry, now).await?;
    }
    audit::record(
        &mut tx,
        actor,
        Entry {
            action: "operator.sign_in_failed",
            object_kind: Some("operator"),
            object_id: None,
            reason: None,
            changes: serde_json::json!({"email": mask(email), "why": why}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Checks address and password. On success a new session (the previous one of this browser
/// ends: the id changes at sign-in), at the second-factor stage when one is required.
pub async fn sign_in(
    s: &Services,
    email: &str,
    password: &str,
    previous: Option<&str>,
    request_id: Option<String>,
    ip: &str,
) -> Result<SignIn, OperatorError> {
    let email = normalize_email(email).unwrap_or_else(|| email.trim().to_lowercase().chars().take(254).collect());
    let now = s.clock.now();
    let anon = Actor::anonymous(mask(&email), request_id.clone(), Some(ip.to_owned()));
    // A locked account or address is answered without checking the password and without a
    // write: the failure that locked it was audited, so a flood of attempts writes nothing.
    if let Some(retry_after_secs) = locked(s, &email, ip, now).await? {
        return Ok(SignIn::Locked { retry_after_secs });
    }
    let row = {
        let mut conn = s.db.conn().await?;
        store::by_email(&mut conn, &email).await?
    };
    let ok = password_matches(password.to_owned(), row.as_ref().and_then(|r| r.password_hash.clone())).await;
    let row = match row {
        Some(r) if ok && r.active && r.password_hash.is_some() => r,
        Some(r) => {
            let why = if !r.active { "deactivated" } else { "wrong password" };
            let actor = Actor { operator_id: Some(r.id), label: r.name.clone(), ..anon };
            count_failure(s, &actor, &email, ip, why).await?;
            return Ok(SignIn::Failed);
        }
        None => {
            count_failure(s, &anon, &email, ip, "unknown address").await?;
            return Ok(SignIn::Failed);
        }
    };
    let needs = second_factor_required(s, &row);
    let session = open_session(s, &row, needs, previous, request_id, ip, now).await?;
    Ok(SignIn::Session(session))
}

async fn open_session(
    s: &Services,
    row: &OperatorRow,
    needs_second_factor: bool,
    previous: Option<&str>,
    request_id: Option<String>,
    ip: &str,
    now: DateTime<Utc>,
) -> Result<NewSession, OperatorError> {
    let mut tx = s.db.begin().await?;
    if let Some(old) = previous.filter(|p| plausible(p, SESSION_LEN)) {
        store::end_session(&mut tx, &s.keyring.digest(Purpose::OperatorSession, old.as_bytes()), now).await?;
    }
    let id = token(SESSION_LEN);
    let max = s.config.console_session_max_secs;
    let stage = if needs_second_factor { "password" } else { "full" };
    let digest = s.keyring.digest(Purpose::OperatorSession, id.as_bytes());
    store::insert_session(&mut tx, &digest, row.id, stage, &token(32), now, now + Duration::seconds(max)).await?;
    if !needs_second_factor {
        store::clear_failures(&mut tx, &account_key(&row.email)).await?;
        let actor = Actor {
            kind: ActorKind::Operator,
            operator_id: Some(row.id),
            label: row.name.clone(),
            roles: roles_of(row)?,
            request_id,
            client_ip: Some(ip.to_owned()),
        };
        audit::record(
            &mut tx,
            &actor,
            Entry {
                action: "operator.signed_in",
                object_kind: Some("operator"),
                object_id: Some(row.id.to_string()),
                reason: None,
                changes: serde_json::json!({"second_factor": row.totp_seed.is_some()}),
            },
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(NewSession { cookie: id, max_age_secs: max, needs_second_factor })
}

/// The live session of a cookie, with its operator (none for a deactivated one); records the
/// activity at most every half idle time.
pub async fn session(s: &Services, cookie: &str) -> Result<Option<ConsoleSession>, OperatorError> {
    if !plausible(cookie, SESSION_LEN) {
        return Ok(None);
    }
    let digest = s.keyring.digest(Purpose::OperatorSession, cookie.as_bytes());
    let now = s.clock.now();
    let idle = Duration::seconds(s.config.console_session_idle_secs);
    let mut conn = s.db.conn().await?;
    let Some(row) = store::live_session(&mut conn, &digest, now, now - idle).await? else { return Ok(None) };
    let Some(op) = store::get(&mut conn, row.operator_id).await?.filter(|o| o.active) else { return Ok(None) };
    drop(conn);
    let every = Duration::seconds((s.config.console_session_idle_secs / 2).clamp(1, 60));
    if now - row.last_seen_at >= every {
        let mut tx = s.db.begin().await?;
        store::touch_session(&mut tx, &digest, now).await?;
        tx.commit().await?;
    }
    Ok(Some(ConsoleSession {
        digest,
        locale: crate::domain::locale::Locale::parse(&op.locale),
        operator: Operator::from_row(&op)?,
        needs_second_factor: row.stage != "full",
        csrf: row.csrf_token,
    }))
}

/// The second factor of a half-open session: a TOTP code (never the same one twice) or an
/// unused recovery code. On success the session is replaced by a new, full one (new id).
pub async fn second_factor(
    s: &Services,
    session: &ConsoleSession,
    code: &str,
    request_id: Option<String>,
    ip: &str,
) -> Result<SignIn, OperatorError> {
    let now = s.clock.now();
    let email = session.operator.email.clone();
    if let Some(retry_after_secs) = locked(s, &email, ip, now).await? {
        return Ok(SignIn::Locked { retry_after_secs });
    }
    let mut conn = s.db.conn().await?;
    let row = store::get(&mut conn, session.operator.operator_id).await?.ok_or(OperatorError::NotFound)?;
    drop(conn);
    let Some(seed) = row.totp_seed.as_deref() else {
        return Err(OperatorError::Conflict("no second factor is enrolled yet".into()));
    };
    let secret = totp_secret(s, seed);
    let mut tx = s.db.begin().await?;
    let used = match totp::verify(&secret, code, now.timestamp(), row.totp_last_step) {
        Some(step) => store::use_totp_step(&mut tx, row.id, step).await?.then_some("totp"),
        None => {
            let normalized = normalize_recovery(code);
            let digest = s.keyring.digest(Purpose::RecoveryCode, normalized.as_bytes());
            (!normalized.is_empty() && store::use_recovery_code(&mut tx, row.id, &digest, now).await?)
                .then_some("recovery_code")
        }
    };
    let Some(how) = used else {
        drop(tx);
        let actor = session.actor(request_id, Some(ip.to_owned()));
        count_failure(s, &actor, &email, ip, "wrong second factor").await?;
        return Ok(SignIn::Failed);
    };
    // The half-open session ends; whoever raced us with the same session gets nothing.
    if !store::end_session(&mut tx, &session.digest, now).await? {
        return Ok(SignIn::Failed);
    }
    let actor = session.actor(request_id.clone(), Some(ip.to_owned()));
    audit::record(
        &mut tx,
        &actor,
        Entry {
            action: "operator.second_factor_used",
            object_kind: Some("operator"),
            object_id: Some(row.id.to_string()),
            reason: None,
            changes: serde_json::json!({"method": how}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    let new = open_session(s, &row, false, None, request_id, ip, now).await?;
    Ok(SignIn::Session(new))
}

/// Ten characters in two groups, from an alphabet without look-alikes (no 0/o, 1/l/i).
fn recovery_code() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let c: String = (0..10).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect();
    format!("{}-{}", &c[..5], &c[5..])
}

fn normalize_recovery(code: &str) -> String {
    let c: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    if c.len() == 10 { c } else { String::new() }
}

fn totp_secret(s: &Services, seed: &[u8]) -> Vec<u8> {
    // 160 bits, the size authenticator apps expect for SHA-1.
    s.keyring.digest(Purpose::TotpSecret, seed)[..20].to_vec()
}

/// An enrolment under way: what the authenticator app needs.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
}

/// Starts (or shows again) the enrolment of a second factor.
pub async fn begin_enrolment(s: &Services, session: &ConsoleSession) -> Result<Enrolment, OperatorError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let row = store::get_for_update(&mut tx, session.operator.operator_id).await?.ok_or(OperatorError::NotFound)?;
    if row.totp_seed.is_some() && session.needs_second_factor {
        return Err(OperatorError::Conflict("a second factor is enrolled: enter its code".into()));
    }
    let seed = match row.totp_pending {
        Some(p) => p,
        None => {
            let seed: [u8; 32] = rand::random();
            store::set_pending_totp(&mut tx, row.id, Some(&seed), now).await?;
            seed.to_vec()
        }
    };
    tx.commit().await?;
    let secret = totp_secret(s, &seed);
    let issuer = if s.config.is_sandbox() { "netterms sandbox" } else { "netterms" };
    Ok(Enrolment { secret_base32: totp::base32(&secret), otpauth_uri: totp::otpauth_uri(issuer, &row.email, &secret) })
}

/// Confirms an enrolment with a code of the new secret: the second factor is on, ten recovery
/// codes (shown once) replace any earlier ones, other sessions end, and a half-open session
/// becomes a full one (new id).
pub async fn confirm_enrolment(
    s: &Services,
    session: &ConsoleSession,
    code: &str,
    request_id: Option<String>,
    ip: &str,
) -> Result<Option<(Vec<String>, Option<NewSession>)>, OperatorError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let row = store::get_for_update(&mut tx, session.operator.operator_id).await?.ok_or(OperatorError::NotFound)?;
    if row.totp_seed.is_some() && session.needs_second_factor {
        return Err(OperatorError::Conflict("a second factor is enrolled: enter its code".into()));
    }
    let Some(pending) = row.totp_pending.clone() else { return Ok(None) };
    let Some(step) = totp::verify(&totp_secret(s, &pending), code, now.timestamp(), None) else { return Ok(None) };
    store::set_totp(&mut tx, row.id, Some(&pending), Some(step), now).await?;
    let codes: Vec<String> = (0..10).map(|_| recovery_code()).collect();
    let digests: Vec<[u8; 32]> =
        codes.iter().map(|c| s.keyring.digest(Purpose::RecoveryCode, normalize_recovery(c).as_bytes())).collect();
    store::replace_recovery_codes(&mut tx, row.id, &digests).await?;
    store::end_sessions_of(&mut tx, row.id, now).await?;
    let actor = session.actor(request_id.clone(), Some(ip.to_owned()));
    audit::record(
        &mut tx,
        &actor,
        Entry {
            action: "operator.second_factor_enrolled",
            object_kind: Some("operator"),
            object_id: Some(row.id.to_string()),
            reason: None,
            changes: serde_json::json!({"second_factor": {"before": row.totp_seed.is_some(), "after": true}, "recovery_codes": 10}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    let mut row = row;
    row.totp_seed = Some(pending);
    let new = open_session(s, &row, false, None, request_id, ip, now).await?;
    Ok(Some((codes, Some(new))))
}

pub async fn recovery_codes_left(s: &Services, id: uuid::Uuid) -> Result<i64, OperatorError> {
    let mut conn = s.db.conn().await?;
    Ok(store::recovery_codes_left(&mut conn, id).await?)
}

pub async fn sign_out(s: &Services, session: &ConsoleSession, actor: &Actor) -> Result<(), OperatorError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    if store::end_session(&mut tx, &session.digest, now).await? {
        audit::record(
            &mut tx,
            actor,
            Entry {
                action: "operator.signed_out",
                object_kind: Some("operator"),
                object_id: Some(session.operator.operator_id.to_string()),
                reason: None,
                changes: serde_json::json!({}),
            },
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Ends every session of the operator, on every device.
pub async fn sign_out_everywhere(s: &Services, actor: &Actor, id: uuid::Uuid) -> Result<u64, OperatorError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let n = store::end_sessions_of(&mut tx, id, now).await?;
    audit::record(
        &mut tx,
        actor,
        Entry {
            action: "operator.signed_out_everywhere",
            object_kind: Some("operator"),
            object_id: Some(id.to_string()),
            reason: None,
            changes: serde_json::json!({"sessions_ended": n}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

pub async fn set_locale(
    s: &Services,
    id: uuid::Uuid,
    locale: crate::domain::locale::Locale,
) -> Result<(), OperatorError> {
    let mut tx = s.db.begin().await?;
    store::set_locale(&mut tx, id, locale.as_str()).await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Admin API tokens

/// A token as listed (never its value).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenInfo {
    pub token_id: uuid::Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<&TokenRow> for TokenInfo {
    fn from(r: &TokenRow) -> TokenInfo {
        TokenInfo {
            token_id: r.id,
            name: r.name.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// A new token: its value is shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: String,
    pub token_id: uuid::Uuid,
    pub expires_at: Option<DateTime<Utc>>,
}

pub const TOKEN_PREFIX: &str = "ntop_";
const TOKEN_LEN: usize = 40;

/// Creates an admin API token that acts with the operator's roles.
pub async fn create_token(
    s: &Services,
    actor: &Actor,
    operator_id: uuid::Uuid,
    name: &str,
    expires_in_days: Option<i64>,
) -> Result<CreatedToken, OperatorError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid("name", "must be 1 to 100 characters without control characters"));
    }
    if let Some(d) = expires_in_days
        && !(1..=3650).contains(&d)
    {
        return Err(invalid("expires_in_days", "must be between 1 and 3650"));
    }
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let op = store::get_for_update(&mut tx, operator_id).await?.ok_or(OperatorError::NotFound)?;
    if !op.active {
        return Err(OperatorError::Conflict("the operator is deactivated".into()));
    }
    let value = format!("{TOKEN_PREFIX}{}", token(TOKEN_LEN));
    let row = TokenRow {
        id: uuid::Uuid::now_v7(),
        operator_id,
        name: name.to_owned(),
        created_at: now,
        expires_at: expires_in_days.map(|d| now + Duration::days(d)),
        revoked_at: None,
        last_used_at: None,
    };
    store::insert_token(&mut tx, &row, &s.keyring.digest(Purpose::OperatorToken, value.as_bytes())).await?;
    audit::record(
        &mut tx,
        actor,
        Entry {
            action: "operator.token_created",
            object_kind: Some("operator_token"),
            object_id: Some(row.id.to_string()),
            reason: None,
            changes: serde_json::json!({"operator_id": operator_id, "name": name, "expires_at": row.expires_at}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedToken { token: value, token_id: row.id, expires_at: row.expires_at })
}

pub async fn tokens(s: &Services, operator_id: uuid::Uuid) -> Result<Vec<TokenInfo>, OperatorError> {
    let mut conn = s.db.conn().await?;
    Ok(store::tokens_of(&mut conn, operator_id).await?.iter().map(TokenInfo::from).collect())
}

pub async fn revoke_token(
    s: &Services,
    actor: &Actor,
    operator_id: uuid::Uuid,
    token_id: uuid::Uuid,
) -> Result<(), OperatorError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    if !store::revoke_token(&mut tx, operator_id, token_id, now).await? {
        return Err(OperatorError::NotFound);
    }
    audit::record(
        &mut tx,
        actor,
        Entry {
            action: "operator.token_revoked",
            object_kind: Some("operator_token"),
            object_id: Some(token_id.to_string()),
            reason: None,
            changes: serde_json::json!({"operator_id": operator_id}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The actor of an `ntop_…` token: live (not revoked, not expired) and its operator active.
pub async fn token_actor(
    s: &Services,
    value: &str,
    request_id: Option<String>,
    client_ip: Option<String>,
) -> Result<Option<Actor>, OperatorError> {
    let Some(rest) = value.strip_prefix(TOKEN_PREFIX) else { return Ok(None) };
    if !plausible(rest, TOKEN_LEN) {
        return Ok(None);
    }
    let now = s.clock.now();
    let digest = s.keyring.digest(Purpose::OperatorToken, value.as_bytes());
    let mut conn = s.db.conn().await?;
    let Some(t) = store::token_by_digest(&mut conn, &digest).await? else { return Ok(None) };
    if t.revoked_at.is_some() || t.expires_at.is_some_and(|e| e <= now) {
        return Ok(None);
    }
    let Some(op) = store::get(&mut conn, t.operator_id).await?.filter(|o| o.active) else { return Ok(None) };
    drop(conn);
    // Last use is written at most once a minute, so reads stay reads.
    if t.last_used_at.is_none_or(|u| now - u > Duration::minutes(1)) {
        let mut tx = s.db.begin().await?;
        store::touch_token(&mut tx, t.id, now).await?;
        tx.commit().await?;
    }
    Ok(Some(Actor {
        kind: ActorKind::Token,
        operator_id: Some(op.id),
        label: format!("{} ({})", op.name, t.name),
        roles: roles_of(&op)?,
        request_id,
        client_ip,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_read_forgivingly() {
        assert_eq!(normalize_recovery("ab3de-fgh1j"), "ab3defgh1j");
        assert_eq!(normalize_recovery(" AB3DE FGH1J "), "ab3defgh1j");
        assert_eq!(normalize_recovery("123456"), "");
        assert_eq!(normalize_recovery(""), "");
        let c = recovery_code();
        assert_eq!(normalize_recovery(&c).len(), 10, "{c}");
        assert!(!c.contains(['0', 'o', '1', 'l', 'i']), "{c}");
    }

    #[tokio::test]
    async fn a_password_hash_is_argon2id_and_checks() {
        let h = hash_password("correct horse battery staple".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(password_matches("correct horse battery staple".into(), Some(h.clone())).await);
        assert!(!password_matches("correct horse battery stable".into(), Some(h)).await);
        assert!(!password_matches("anything".into(), None).await);
    }
}
