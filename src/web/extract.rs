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

pub(crate) fn is_json(ct: Option<&axum::http::HeaderValue>) -> bool {
    let Some(ct) = ct.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Parses JSON bytes into `T`: exactly one JSON object with nothing after it (else 400), serde's
/// type errors as a 400 whose `source` is the field path, and no control characters in any
/// string the server reads (else 422 naming the field). Fields it does not know are ignored,
/// whatever they hold.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("request body is empty; a JSON object was expected", None));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_json::Value::deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}"), None))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("request body must be a JSON object", None));
    }
    let mut ignored = std::collections::HashSet::new();
    let mut note = |path: serde_ignored::Path<'_>| {
        ignored.insert(field_path(&path));
    };
    let typed =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value.clone(), &mut note)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ApiError::bad_request(format!("request body has a wrong type: {inner}"), (path != ".").then_some(path))
        })?;
    let mut bad = Violations::new();
    check_text(&value, "", &ignored, &mut bad);
    bad.finish().map_err(ApiError::Validation)?;
    Ok(typed)
}

/// A path of serde_ignored's as error sources spell it (`a.b[0].c`), without `Option` levels.
fn field_path(p: &serde_ignored::Path<'_>) -> String {
    match p {
        serde_ignored::Path::Root => String::new(),
        serde_ignored::Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        serde_ignored::Path::Map { parent, key } => {
            let parent = field_path(parent);
            if parent.is_empty() { key.clone() } else { format!("{parent}.{key}") }
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// Whether `s` holds a control character other than tab, line feed and carriage return (C0,
/// DEL, C1): text fields never accept them (SPEC §4), on either backend.
pub fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// Reports every string (key or value) of `v` that holds a control character, by its path;
/// fields the server ignored are skipped.
fn check_text(v: &serde_json::Value, path: &str, ignored: &std::collections::HashSet<String>, bad: &mut Violations) {
    if ignored.contains(path) {
        return;
    }
    let field = |p: &str| if p.is_empty() { "body".to_owned() } else { p.to_owned() };
    match v {
        serde_json::Value::String(s) if has_control(s) => {
            bad.add(field(path), "text must not contain control characters");
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_text(item, &format!("{path}[{i}]"), ignored, bad);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                if ignored.contains(&p) {
                    continue;
                }
                if has_control(k) {
                    bad.add(field(path), "field names must not contain control characters");
                } else {
                    check_text(item, &p, ignored, bad);
                }
            }
        }
        _ => {}
    }
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
            } else if super::server::is_body_timeout(&e) {
                ApiError::RequestTimeout
            } else {
                ApiError::bad_request("request body could not be read", None)
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Reads a whole body of at most `limit` bytes: a larger one is 413, one that did not arrive in
/// time 408.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| if super::server::is_body_timeout(&e) { ApiError::RequestTimeout } else { ApiError::TooLarge })
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
        let unreadable = |e: axum::extract::rejection::QueryRejection| {
            ApiError::bad_request(format!("query string could not be read: {}", e.body_text()), None)
        };
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(unreadable)?;
        if let Some((name, _)) = pairs.0.iter().find(|(k, v)| has_control(k) || has_control(v)) {
            let name = if has_control(name) { None } else { Some(name.clone()) };
            return Err(ApiError::bad_request("query parameters must not contain control characters", name));
        }
        axum::extract::Query::<T>::try_from_uri(&parts.uri).map(|q| ApiQuery(q.0)).map_err(unreadable)
    }
}

/// `?limit=1..100&starting_after=<id>`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many objects to return (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
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
