//! The one error type at the HTTP edge and its envelope:
//! `{"errors": [{"code", "title", "source"?}], "request_id"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::validate::FieldError;
use crate::store::StoreError;

tokio::task_local! {
    /// The id of the request being served, for error bodies and logs.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Every error the API answers with. Each variant has a stable public `code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body cannot be read (malformed JSON, wrong type, wrong content type).
    #[error("{title}")]
    BadRequest { title: String, field: Option<String> },
    /// 401: no or bad credentials.
    #[error("unauthorized")]
    Unauthorized { challenge: &'static str },
    /// 403: authenticated but not permitted.
    #[error("{title}")]
    Forbidden { code: &'static str, title: String },
    /// 404: unknown object, or another PSP's.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 400: a confirmation that differs from what was authorized; one entry per field.
    #[error("confirmation differs from the authorization")]
    Mismatch(Vec<FieldError>),
    /// 409: conflicts with the resource's current state.
    #[error("{title}")]
    Conflict { code: &'static str, title: String },
    /// 410: a one-time link that was used or has expired.
    #[error("{0}")]
    Gone(String),
    /// 408: the body did not arrive within `body_read_timeout_secs` of the request's head.
    #[error("request body timed out")]
    RequestTimeout,
    /// 413: the body is larger than allowed.
    #[error("request body is too large")]
    TooLarge,
    /// 422: readable but invalid; one entry per violated field.
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    /// 422: the idempotency key was used with a different request.
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    /// 409: a request with the same idempotency key is still being processed.
    #[error("idempotency key in progress")]
    IdempotencyInProgress,
    /// 429: throttled.
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// 503: the database could not serve the request now (no connection in time, a connection
    /// lost); nothing was changed, retry after the indicated time.
    #[error("service unavailable")]
    Unavailable { retry_after_secs: u64 },
    /// 500: our fault; the cause is logged, never shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One entry of the error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorItem {
    /// Stable machine-readable code.
    #[schema(example = "request_validation_error")]
    pub code: &'static str,
    /// Human-readable explanation.
    #[schema(example = "gross must equal net + tax")]
    pub title: String,
    /// Path of the offending field in the request, if one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "amount.gross")]
    pub source: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub errors: Vec<ErrorItem>,
    pub request_id: String,
}

impl ApiError {
    pub fn bad_request(title: impl Into<String>, source: Option<String>) -> ApiError {
        ApiError::BadRequest { title: title.into(), field: source }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn conflict(title: impl Into<String>) -> ApiError {
        ApiError::Conflict { code: "state_conflict", title: title.into() }
    }

    pub fn already_exists(title: impl Into<String>) -> ApiError {
        ApiError::Conflict { code: "resource_already_exists", title: title.into() }
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError::Internal(Box::new(e))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::Mismatch(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } | ApiError::IdempotencyInProgress => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Validation(_) | ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the error says, in words (every item's title).
    pub fn title(&self) -> String {
        self.items().into_iter().map(|i| i.title).collect::<Vec<_>>().join("; ")
    }

    fn items(&self) -> Vec<ErrorItem> {
        let one = |code, title: String| vec![ErrorItem { code, title, source: None }];
        match self {
            ApiError::BadRequest { title, field } => {
                vec![ErrorItem { code: "request_invalid", title: title.clone(), source: field.clone() }]
            }
            ApiError::Unauthorized { .. } => one("unauthorized", "missing or invalid credentials".into()),
            ApiError::Forbidden { code, title } => one(code, title.clone()),
            ApiError::NotFound(t) => one("resource_not_found", t.clone()),
            ApiError::MethodNotAllowed => one("method_not_allowed", "this method is not allowed on this path".into()),
            ApiError::Conflict { code, title } => one(code, title.clone()),
            ApiError::Gone(t) => one("gone", t.clone()),
            ApiError::TooLarge => one("request_too_large", "request body is too large".into()),
            ApiError::RequestTimeout => {
                one("request_timeout", "the request body did not arrive in time; send it again, faster".into())
            }
            ApiError::Validation(errs) => field_items("request_validation_error", errs),
            ApiError::Mismatch(errs) => field_items("authorization_mismatch", errs),
            ApiError::IdempotencyKeyReused => one(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request; use a new key".into(),
            ),
            ApiError::IdempotencyInProgress => one(
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being processed; retry later".into(),
            ),
            ApiError::RateLimited { .. } => {
                one("rate_limited", "too many requests; retry after the indicated time".into())
            }
            ApiError::Unavailable { .. } => one(
                "service_unavailable",
                "the service cannot answer this request right now; nothing was changed, retry after the indicated time"
                    .into(),
            ),
            ApiError::Internal(_) => one("internal_error", "something went wrong on our side".into()),
        }
    }
}

fn field_items(code: &'static str, errs: &[FieldError]) -> Vec<ErrorItem> {
    errs.iter()
        .map(|e| ErrorItem { code, title: e.title.clone(), source: (!e.source.is_empty()).then(|| e.source.clone()) })
        .collect()
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if let StoreError::Conflict(title) = e {
            return ApiError::conflict(title);
        }
        // A uniqueness check that passed, then lost to a concurrent request at commit, is still
        // the client's conflict, never a server error.
        if e.is_unique_violation() {
            return ApiError::already_exists("a concurrent request created the same thing first; retry to see it");
        }
        if e.is_unavailable() {
            tracing::warn!(error = %error_chain(&e), "database unavailable");
            return ApiError::Unavailable { retry_after_secs: 2 };
        }
        if e.is_busy() {
            return ApiError::conflict("the resource is busy with another request; retry shortly");
        }
        ApiError::internal(e)
    }
}

/// The chain of `source()` messages, for logs (Display only: values inside errors stay out).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = %error_chain(e.as_ref()), "request failed");
        }
        let status = self.status();
        let body = ErrorBody { errors: self.items(), request_id: current_request_id() };
        let mut resp = (status, axum::Json(body)).into_response();
        // Answered before (or instead of) reading the whole body: what is left of it cannot be
        // told from the next request, so the connection ends here.
        if matches!(self, ApiError::Unauthorized { .. } | ApiError::TooLarge | ApiError::RequestTimeout) {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        match self {
            ApiError::Unauthorized { challenge } => {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            ApiError::RateLimited { retry_after_secs } | ApiError::Unavailable { retry_after_secs } => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
            }
            _ => {}
        }
        resp
    }
}
