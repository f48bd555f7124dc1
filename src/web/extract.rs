//! Extractors that turn whatever a client sends into typed values or an [`ApiError`]:
//! unreadable bodies → 400 with the path of the offending field, unknown ids → 404.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::error::ApiError;
use crate::domain::ids::{CredentialId, PspId};
use crate::domain::validate::Violations;

/// A JSON body. Requires `Content-Type: application/json`; reports type errors with their path.
pub struct ApiJson<T>(pub T);

fn is_json(ct: Option<&axum::http::HeaderValue>) -> bool {
    let Some(ct) = ct.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Parses JSON bytes into `T`, mapping serde's error to a 400 whose `source` is the field path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("request body is empty; a JSON object was expected", None));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let title = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("request body is not valid JSON: {inner}")
            }
            _ => format!("request body has a wrong type: {inner}"),
        };
        ApiError::bad_request(title, (path != ".").then_some(path))
    })
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::bad_request("Content-Type must be application/json", None));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::bad_request("request body could not be read", None)
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A UUID path segment; anything that is not one answers 404, like an unknown id.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| ApiError::NotFound("resource not found".into()))
    }
}

/// Query parameters; unreadable ones answer 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(format!("query string could not be read: {}", e.body_text()), None))
    }
}

/// `?limit=1..100&starting_after=<id>`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many objects to return (1–100, default 20).
    pub limit: Option<i64>,
    /// Return objects older than this id (the last id of the previous page).
    pub starting_after: Option<uuid::Uuid>,
}

impl ListParams {
    /// The checked limit.
    pub fn limit(&self) -> Result<i64, ApiError> {
        let limit = self.limit.unwrap_or(20);
        let mut v = Violations::new();
        if !(1..=100).contains(&limit) {
            v.add("limit", "limit must be between 1 and 100");
        }
        v.finish().map_err(ApiError::Validation)?;
        Ok(limit)
    }
}

/// The PSP a request is authenticated as (set by the auth middleware).
#[derive(Debug, Clone, Copy)]
pub struct AuthedPsp {
    pub psp_id: PspId,
    pub credential_id: CredentialId,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthedPsp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<AuthedPsp>()
            .copied()
            .ok_or(ApiError::Unauthorized { challenge: super::auth::BASIC_CHALLENGE })
    }
}
