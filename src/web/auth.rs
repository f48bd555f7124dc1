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

/// Checks the operator's bearer token. Without a configured token the admin API is disabled.
pub async fn admin_auth(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(expected) = state.config.admin_token.as_ref() else {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            title: "the admin API is disabled: configure admin_token (NETTERMS_ADMIN_TOKEN)".into(),
        });
    };
    let ip = client_ip(&req);
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare digests so the comparison's time does not depend on the token's length either.
    let a = state.keyring.digest(Purpose::AdminToken, given.as_bytes());
    let b = state.keyring.digest(Purpose::AdminToken, expected.expose().as_bytes());
    if given.is_empty() || !bool::from(a.ct_eq(&b)) {
        // Past the limit, failures wait longer and longer; the valid token always gets in.
        let n = state.admin_auth_failures.count(&ip);
        let limit = state.config.auth_failure_limit;
        let over = (n >= limit).then(|| (n - limit, state.admin_auth_failures.retry_after(&ip)));
        state.admin_auth_failures.record(ip);
        return Err(failed(over, ApiError::Unauthorized { challenge: BEARER_CHALLENGE }).await);
    }
    Ok(next.run(req).await)
}
