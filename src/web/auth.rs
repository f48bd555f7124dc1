//! Authentication: HTTP Basic for PSPs, a bearer token for operators, and throttling of clients
//! that keep failing.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use super::extract::AuthedPsp;
use super::throttle::client_ip;
use crate::secrets::Purpose;
use crate::store::psps;

pub const BASIC_CHALLENGE: &str = "Basic realm=\"netterms\", charset=\"UTF-8\"";
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"netterms-admin\"";

/// `(username, password)` from an `Authorization: Basic …` header.
fn basic_credentials(req: &Request) -> Option<(String, String)> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// How long a failed authentication over its limits waits before its answer: 250 ms, doubling
/// with each further failure, at most 8 s.
fn failure_delay(over: u32) -> std::time::Duration {
    std::time::Duration::from_millis(250u64 << over.min(5)).min(std::time::Duration::from_secs(8))
}

/// Answers a failed authentication: 401 while the client is within its limits; past them, a
/// growing delay, then 429 with `Retry-After`.
async fn failed(over: Option<(u32, u64)>, unauthorized: ApiError) -> ApiError {
    match over {
        None => unauthorized,
        Some((excess, retry_after_secs)) => {
            tokio::time::sleep(failure_delay(excess)).await;
            ApiError::RateLimited { retry_after_secs }
        }
    }
}

/// Checks HTTP Basic credentials against the stored keyed digest. Unknown user, wrong password
/// and revoked credential all answer the same 401 (a revoked one is logged as such). Failures
/// are counted per client address and username (`auth_failure_limit`) and per client address
/// across usernames (`auth_failures_per_address`, spraying); past either, failures are answered
/// after a growing delay with 429 — but a valid credential always gets in, so nobody guessing at
/// a username (from a shared address) locks its owner out.
pub async fn psp_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let ip = client_ip(&req);
    let unauthorized = ApiError::Unauthorized { challenge: BASIC_CHALLENGE };
    let (username, password) = basic_credentials(&req).unwrap_or_default();
    // Keys are bounded: a username longer than any real one counts as one key per address.
    let key = (ip, username.chars().take(64).collect::<String>());
    let over = || {
        let (mine, all) = (state.psp_auth_failures.count(&key), state.auth_failures_per_address.count(&ip));
        let limit = state.config.auth_failure_limit;
        let spray = state.config.auth_failures_per_address;
        (mine >= limit || all >= spray).then(|| {
            let excess = mine.saturating_sub(limit).max(all.saturating_sub(spray));
            let retry = if mine >= limit {
                state.psp_auth_failures.retry_after(&key)
            } else {
                state.auth_failures_per_address.retry_after(&ip)
            };
            (excess, retry)
        })
    };
    let record = if username.is_empty() {
        None
    } else {
        let mut conn = state.db.conn().await?;
        let r = psps::auth_record(&mut conn, &username).await?;
        drop(conn);
        r
    };
    let now = state.clock.now();
    let authed = match record {
        Some(r) if state.keyring.verify(Purpose::CredentialSecret, password.as_bytes(), &r.secret_digest) => {
            if r.revoked_at.is_some() {
                tracing::info!(credential_id = %r.credential_id, "revoked credential used");
                None
            } else {
                Some(r)
            }
        }
        Some(_) => None,
        None => {
            // Spend the same work as a wrong password, so timing does not tell which usernames exist.
            let _ = state.keyring.verify(Purpose::CredentialSecret, password.as_bytes(), &[0u8; 32]);
            None
        }
    };
    let Some(r) = authed else {
        let limited = over();
        state.psp_auth_failures.record(key);
        state.auth_failures_per_address.record(ip);
        return Err(failed(limited, unauthorized).await);
    };
    state.psp_auth_failures.clear(&key);
    // Record use at most once a minute, so reads stay reads.
    if r.last_used_at.is_none_or(|t| now - t > chrono::Duration::minutes(1)) {
        let mut tx = state.db.begin().await?;
        psps::touch_credential(&mut tx, r.credential_id, now).await?;
        tx.commit().await?;
    }
    let authed = AuthedPsp { psp_id: r.psp_id, credential_id: r.credential_id };
    req.extensions_mut().insert(authed);
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(authed);
    Ok(resp)
}

/// Authenticates an admin API request and checks its permission (SPEC §14.1): an operator's
/// token (`ntop_…`, acting with the operator's roles) or the configured `admin_token` (acting as
/// the actor `admin_token`, with every permission). The operation's permission comes from
/// [`super::permissions::ADMIN`]; an operation not listed there, or a role without it, is 403
/// before the handler runs, so nothing changes. The actor is put in the request's extensions.
pub async fn admin_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let ip = client_ip(&req);
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let request_id = super::error::REQUEST_ID.try_with(Clone::clone).ok();
    // An approved proposal made again as its approver (set only by `approvals::carry_out`).
    let replay = req.extensions_mut().remove::<super::approvals::Replay>();
    let actor = if let Some(r) = &replay {
        Some(r.actor.clone())
    } else if given.starts_with(crate::service::operators::TOKEN_PREFIX) {
        crate::service::operators::token_actor(&state.services, &given, request_id, Some(ip.to_string()))
            .await
            .map_err(operator_error)?
    } else if let Some(expected) = state.config.admin_token.as_ref() {
        // Compare digests so the comparison's time does not depend on the token's length either.
        let a = state.keyring.digest(Purpose::AdminToken, given.as_bytes());
        let b = state.keyring.digest(Purpose::AdminToken, expected.expose().as_bytes());
        (!given.is_empty() && bool::from(a.ct_eq(&b)))
            .then(|| crate::service::audit::Actor::admin_token(request_id, Some(ip.to_string())))
    } else if given.is_empty() {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            title: "the admin API needs an operator's token (ntop_…, `netterms operator token create`) or the \
                    configured admin_token (NETTERMS_ADMIN_TOKEN)"
                .into(),
        });
    } else {
        None
    };
    let Some(actor) = actor else {
        // Past the limit, failures wait longer and longer; a valid token always gets in.
        let n = state.admin_auth_failures.count(&ip);
        let limit = state.config.auth_failure_limit;
        let over = (n >= limit).then(|| (n - limit, state.admin_auth_failures.retry_after(&ip)));
        state.admin_auth_failures.record(ip);
        return Err(failed(over, ApiError::Unauthorized { challenge: BEARER_CHALLENGE }).await);
    };
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let needed = super::permissions::admin(req.method(), &route);
    let action = match needed {
        Some((p, action)) if actor.may(p) => action.map(|a| (p, a)),
        _ => {
            tracing::info!(actor = %actor.kind.as_str(), route = %route, "admin operation refused: missing permission");
            return Err(ApiError::Forbidden {
                code: "forbidden",
                title: match needed {
                    Some((p, _)) => format!("your roles do not allow this ({})", permission_name(p)),
                    None => "this operation is not open to operators".into(),
                },
            });
        }
    };
    req.extensions_mut().insert(actor.clone());
    // A change is audited: its record is written by the request's first commit, in that
    // transaction (`store::audit::scope`).
    let Some((permission, action)) = action else { return Ok(next.run(req).await) };
    let (mut parts, body) = req.into_parts();
    // The object is the last id of the path (`…/credentials/{credential_id}/revoke`: the credential).
    let object_id = <axum::extract::RawPathParams as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    .ok()
    .and_then(|p| p.iter().last().map(|(_, v)| v.to_owned()));
    // The body is read first (a refusal then leaves nothing unread on the connection).
    let (req, changes) = request_changes(&state, Request::from_parts(parts, body)).await?;
    let reason = match &replay {
        Some(r) => Some(r.decision.reason.clone()),
        None => audit_reason(&req)?,
    };
    if reason.is_none() && super::permissions::needs_reason(permission) {
        return Err(ApiError::Validation(vec![crate::domain::validate::FieldError {
            source: "Audit-Reason".into(),
            title: "this action moves money, changes a policy or changes access: say why in the Audit-Reason header"
                .into(),
        }]));
    }

    let now = state.clock.now();
    let object_kind = action.split('.').next().map(str::to_owned);
    let mut rec = crate::store::audit::NewAudit {
        actor_kind: actor.kind.as_str().into(),
        actor_id: actor.operator_id.map(|i| i.to_string()),
        actor_label: actor.label.clone(),
        action: action.into(),
        object_kind: object_kind.clone(),
        object_id: object_id.clone(),
        reason: reason.clone(),
        changes: changes.to_string(),
        request_id: actor.request_id.clone(),
        client_ip: actor.client_ip.clone(),
    };
    if let Some(r) = replay {
        // The effect of an approval: audited as the approver's, naming the proposal; its first
        // commit carries the decision.
        rec.reason = Some(r.decision.reason.clone());
        rec.changes =
            serde_json::json!({"approval_id": r.decision.id, "proposed_by": r.proposed_by, "request": changes})
                .to_string();
        let run = crate::store::audit::scope(rec, now, next.run(req));
        return Ok(crate::store::approvals::scope(r.decision, run).await);
    }
    let body_json = changes.clone();
    if let Some(held) = super::approvals::four_eyes_action(&state, action, &body_json, object_id.as_deref()).await {
        // Four eyes: kept as a proposal until another operator approves it.
        let (parts, body) = req.into_parts();
        let raw = super::extract::read_body(body, state.config.max_body_bytes).await?;
        // What the operation would refuse as unreadable is refused now, not proposed.
        let raw = proposal_body(held, parts.headers.get(axum::http::header::CONTENT_TYPE), &raw)?;
        let proposal = crate::service::approvals::Proposal {
            action: held,
            method: parts.method.as_str(),
            route: &route,
            path: parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(parts.uri.path()),
            body: raw,
            summary: changes,
            object_kind,
            object_id,
            reason: reason.as_deref().unwrap_or(""),
        };
        let a = crate::service::approvals::propose(&state.services, &actor, proposal).await?;
        return Ok(super::approvals::proposed(a));
    }
    Ok(crate::store::audit::scope(rec, now, next.run(req)).await)
}

/// The body a proposal keeps: none for operations that take none; otherwise it must read as the
/// operation's input (400/422 as the operation itself would answer).
fn proposal_body(held: &str, ct: Option<&axum::http::HeaderValue>, raw: &[u8]) -> Result<String, ApiError> {
    use super::extract::parse_json;
    let check = |raw: &[u8]| -> Result<(), ApiError> {
        if !super::extract::is_json(ct) {
            return Err(ApiError::bad_request("Content-Type must be application/json", None));
        }
        match held {
            "payment.refunded" => parse_json::<crate::service::payments::RefundInput>(raw).map(drop),
            "buyer.credit_refunded" => parse_json::<crate::service::payments::CreditRefundInput>(raw).map(drop),
            "credit_policy.changed" => parse_json::<crate::domain::decision::Policy>(raw).map(drop),
            "dunning_policy.changed" => parse_json::<crate::domain::dunning::Policy>(raw).map(drop),
            "base_rate.set" => parse_json::<crate::service::dunning::BaseRateInput>(raw).map(drop),
            "psp.bank_account_changed" => parse_json::<crate::domain::psp::PspPatch>(raw).map(drop),
            "operator.created" => parse_json::<crate::service::operators::NewOperator>(raw).map(drop),
            "operator.role_added" => parse_json::<crate::service::operators::OperatorPatch>(raw).map(drop),
            _ => parse_json::<serde_json::Value>(raw).map(drop),
        }
    };
    match held {
        "payout.marked_paid" | "psp.credential_issued" | "order.approved_above_four_eyes_amount" => Ok(String::new()),
        _ => {
            check(raw)?;
            Ok(String::from_utf8_lossy(raw).into_owned())
        }
    }
}

/// The `Audit-Reason` header: one line of at most 500 characters.
fn audit_reason(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("audit-reason") else { return Ok(None) };
    let text = std::str::from_utf8(v.as_bytes()).unwrap_or("").trim().to_owned();
    let bad = text.chars().any(|c| c.is_control() || crate::domain::validate::is_bidi_control(c));
    if text.is_empty() || bad || text.chars().count() > 500 {
        return Err(ApiError::Validation(vec![crate::domain::validate::FieldError {
            source: "Audit-Reason".into(),
            title: "Audit-Reason must be one line of 1 to 500 characters".into(),
        }]));
    }
    Ok(Some(text))
}

/// What a change request sends, for its audit record: a JSON body with secrets left out and
/// personal data masked; of any other body its type and size. The request goes on unchanged.
async fn request_changes(state: &AppState, req: Request) -> Result<(Request, serde_json::Value), ApiError> {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    let ct = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if !super::extract::is_json(req.headers().get(CONTENT_TYPE)) {
        let len = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let facts =
            if ct.is_empty() { serde_json::json!({}) } else { serde_json::json!({"content_type": ct, "bytes": len}) };
        return Ok((req, facts));
    }
    let (parts, body) = req.into_parts();
    let max = state.config.max_body_bytes;
    let declared =
        parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::TooLarge);
    }
    let bytes = super::extract::read_body(body, max).await?;
    let changes = serde_json::from_slice::<serde_json::Value>(&bytes).map(masked).unwrap_or(serde_json::json!({}));
    Ok((Request::from_parts(parts, axum::body::Body::from(bytes)), changes))
}

/// A request body as an audit record keeps it: secrets out, personal data masked, long texts cut.
pub(crate) fn masked(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    const SECRET: [&str; 3] = ["password", "secret", "token"];
    const PERSONAL: [&str; 5] = ["iban", "email", "phone", "body", "account_holder"];
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let v = if SECRET.iter().any(|s| lower.contains(s)) {
                        Value::String("***".into())
                    } else if PERSONAL.iter().any(|s| lower.contains(s)) {
                        match v {
                            Value::String(s) => Value::String(crate::domain::operators::mask(&s)),
                            Value::Null => Value::Null,
                            _ => Value::String("***".into()),
                        }
                    } else {
                        masked(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().take(100).map(masked).collect()),
        Value::String(s) if s.chars().count() > 300 => {
            Value::String(format!("{}…", s.chars().take(300).collect::<String>()))
        }
        other => other,
    }
}

/// A permission's name as the API says it.
pub fn permission_name(p: crate::domain::operators::Permission) -> String {
    serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

pub(crate) fn operator_error(e: crate::service::operators::OperatorError) -> ApiError {
    use crate::service::operators::OperatorError as E;
    match e {
        E::NotFound => ApiError::not_found("operator"),
        E::Invalid(v) => ApiError::Validation(v),
        E::Conflict(t) => ApiError::conflict(t),
        E::Exists => ApiError::already_exists("an operator with this e-mail address exists"),
        E::Forbidden(t) => ApiError::Forbidden { code: "forbidden", title: t },
        E::Store(s) => s.into(),
    }
}
