//! `Idempotency-Key` on POST: claim the key, replay a stored response, or run the request and
//! let its handler store the response in the same transaction as the effect (see [`respond`]).

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::extract::AuthedPsp;
use crate::domain::ids::PspId;
use crate::secrets::Purpose;
use crate::store::Tx;
use crate::store::idempotency::{self, Claim};

pub const HEADER: &str = "idempotency-key";

/// The claimed key of the request being served, if it carried one.
#[derive(Debug, Clone)]
pub struct IdemKey {
    pub psp_id: PspId,
    pub key: String,
    /// The claim's fence token.
    pub token: uuid::Uuid,
}

/// Extracts the claimed key (absent when the request had no `Idempotency-Key`).
pub struct Idem(pub Option<IdemKey>);

impl<S: Send + Sync> FromRequestParts<S> for Idem {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Idem(parts.extensions.get::<IdemKey>().cloned()))
    }
}

fn valid_key(k: &str) -> bool {
    (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
}

/// The middleware; runs after authentication, so keys are scoped to the PSP.
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    if req.method() != Method::POST {
        return Ok(next.run(req).await);
    }
    let Some(raw) = req.headers().get(HEADER) else {
        return run_to_completion(next, req).await;
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| valid_key(k))
        .ok_or_else(|| {
            ApiError::bad_request(
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                Some("Idempotency-Key".into()),
            )
        })?
        .to_owned();
    let psp = req
        .extensions()
        .get::<AuthedPsp>()
        .copied()
        .ok_or(ApiError::Unauthorized { challenge: super::auth::BASIC_CHALLENGE })?;
    let (parts, body) = req.into_parts();
    let limit = super::disputes::body_limit(parts.uri.path(), state.config.max_body_bytes);
    let bytes = crate::web::extract::read_body(body, limit).await?;
    let mut material = Vec::with_capacity(bytes.len() + 64);
    material.extend_from_slice(parts.method.as_str().as_bytes());
    material.push(b'\n');
    material.extend_from_slice(parts.uri.path().as_bytes());
    material.push(b'\n');
    material.extend_from_slice(&bytes);
    let fingerprint = state.keyring.digest(Purpose::Fingerprint, &material);

    let lock_for = chrono::Duration::seconds(i64::try_from(state.config.idempotency_lock_secs).unwrap_or(60));
    match idempotency::claim(&state.db, psp.psp_id, &key, &fingerprint, state.clock.now(), lock_for).await? {
        Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut resp = (status, body).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(resp)
        }
        Claim::InFlight => Err(ApiError::IdempotencyInProgress),
        Claim::Mismatch => Err(ApiError::IdempotencyKeyReused),
        Claim::Run { token } => {
            let mut req = Request::from_parts(parts, Body::from(bytes));
            req.extensions_mut().insert(IdemKey { psp_id: psp.psp_id, key: key.clone(), token });
            let result = run_to_completion(next, req).await;
            if !result.as_ref().is_ok_and(|r| r.status().is_success()) {
                // Nothing was stored with the failed (or panicked) request: free the key for a retry.
                if let Err(e) = idempotency::release(&state.db, psp.psp_id, &key, token).await {
                    tracing::warn!(error = %super::error::error_chain(&e), "could not release idempotency key");
                }
            }
            result
        }
    }
}

/// Runs a POST on its own task, so that a client hanging up mid-request does not cut the work
/// short: the effect and its idempotency record are committed (and replayed on retry) or not at all.
async fn run_to_completion(next: Next, req: Request) -> Result<Response, ApiError> {
    let request_id = super::error::current_request_id();
    let span = tracing::Span::current();
    let task = super::error::REQUEST_ID.scope(request_id, tracing::Instrument::instrument(next.run(req), span));
    tokio::spawn(task).await.map_err(|e| {
        tracing::error!(error = %e, "request task failed");
        ApiError::Internal("request task failed".into())
    })
}

/// Finishes a POST: stores the response under the request's idempotency key (if any) in `tx`,
/// commits, and answers with exactly the stored bytes. If the key's claim was taken over by a
/// retry meanwhile (this request took longer than the claim lasts), nothing commits: the retry
/// makes the effect, and this request answers 409 `idempotency_in_progress`.
pub async fn respond(tx: Tx, idem: &Idem, status: StatusCode, body: &impl Serialize) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(ApiError::internal)?;
    match &idem.0 {
        Some(k) => {
            if !idempotency::complete_and_commit(tx, k.psp_id, &k.key, k.token, status.as_u16(), &bytes).await? {
                return Err(ApiError::IdempotencyInProgress);
            }
        }
        None => tx.commit().await?,
    }
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;
    use crate::domain::ids::CredentialId;
    use crate::service::Services;

    async fn boom() -> StatusCode {
        panic!("a bug")
    }

    #[tokio::test]
    async fn a_request_that_panics_releases_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            database_url: format!("sqlite://{}", dir.path().join("t.db").display()),
            secret_key: Some(crate::secrets::Secret::new("a-test-secret-key-that-is-long-enough-0123")),
            ..Config::default()
        };
        let services = Services::open(config, true).await.unwrap();
        let db = services.db.clone();
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
        let state = AppState::new(services, metrics);
        let psp = AuthedPsp { psp_id: PspId(uuid::Uuid::now_v7()), credential_id: CredentialId(uuid::Uuid::now_v7()) };
        let app = Router::new()
            .route("/boom", post(boom))
            .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency))
            .layer(axum::middleware::map_request(move |mut req: Request| async move {
                req.extensions_mut().insert(psp);
                req
            }))
            .with_state(state);
        let req = || Request::post("/boom").header(HEADER, "k-1").body(Body::from("{}")).unwrap();
        let resp = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let mut conn = db.conn().await.unwrap();
        let left: i64 = async {
            Ok::<_, crate::store::StoreError>(crate::with_conn!(&mut conn, c => {
                sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys").fetch_one(&mut *c).await?
            }))
        }
        .await
        .unwrap();
        assert_eq!(left, 0, "the key was released, so a retry runs at once instead of 409 for the lock's length");
        // A retry runs again (and panics again) rather than answering 409 idempotency_in_progress.
        assert_eq!(app.oneshot(req()).await.unwrap().status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
