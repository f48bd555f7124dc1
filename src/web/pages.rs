//! Server-rendered pages: the one-time password link. No third-party assets, no scripts.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::AppState;
use super::error::ApiError;
use super::extract::ApiPath;
use crate::service::psps::{self, RevealError};

pub const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:40rem;\
margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1b1f24}h1{font-size:1.5rem}\
code{font-size:1.1rem;background:#f1f3f5;padding:.4rem .6rem;border-radius:4px;word-break:break-all;display:inline-block}\
button{font-size:1rem;padding:.6rem 1.2rem;border-radius:6px;border:1px solid #0b5cad;background:#0b5cad;color:#fff;cursor:pointer}\
button:focus-visible{outline:3px solid #f59f00;outline-offset:2px}.note{color:#555}";

pub fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · netterms" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body { main { (body) } }
        }
    }
}

fn secure(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, markup).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
    );
    resp
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("application/json")))
}

fn gone_page() -> Response {
    secure(
        StatusCode::GONE,
        page(
            "Link no longer valid",
            html! {
                h1 { "This link is no longer valid" }
                p { "A password link works once and expires. Ask your netterms operator to issue a new credential." }
            },
        ),
    )
}

fn unknown_page() -> Response {
    secure(
        StatusCode::NOT_FOUND,
        page("Unknown link", html! { h1 { "Unknown link" } p { "Check that the whole link was copied." } }),
    )
}

/// `GET /credentials/{token}`: with `Accept: application/json`, reveals the password as
/// `{"password": …}` and uses the link up. In a browser it shows a button first, so that link
/// previews (chat unfurlers, mail scanners) cannot use the link up unseen.
pub async fn password_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(token): ApiPath<String>,
) -> Result<Response, ApiError> {
    if wants_json(&headers) {
        return match psps::reveal_password(&state.services, &token).await {
            Ok(pw) => {
                let mut resp = axum::Json(serde_json::json!({ "password": pw.expose() })).into_response();
                resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                Ok(resp)
            }
            Err(RevealError::Gone) => Err(ApiError::Gone("this password link was already used or has expired".into())),
            Err(RevealError::Unknown) => Err(ApiError::not_found("password link")),
            Err(RevealError::Store(e)) => Err(e.into()),
        };
    }
    Ok(match psps::link_state(&state.services, &token).await {
        Ok(()) => secure(
            StatusCode::OK,
            page(
                "Your API password",
                html! {
                    h1 { "Your netterms API password" }
                    p { "This link reveals the password of your API credential " strong { "once" } ". Have your secret store ready: after you reveal it, the link stops working." }
                    form method="post" { button type="submit" { "Reveal password" } }
                },
            ),
        ),
        Err(RevealError::Gone) => gone_page(),
        Err(RevealError::Unknown) => unknown_page(),
        Err(RevealError::Store(e)) => return Err(e.into()),
    })
}

/// `POST /credentials/{token}`: the button of the page above.
pub async fn reveal_password_form(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(match psps::reveal_password(&state.services, &token).await {
        Ok(pw) => secure(
            StatusCode::OK,
            page(
                "Your API password",
                html! {
                    h1 { "Your netterms API password" }
                    p { code { (pw.expose()) } }
                    p.note { "Store it now: it is not shown again. Use it with your username for HTTP Basic authentication." }
                },
            ),
        ),
        Err(RevealError::Gone) => gone_page(),
        Err(RevealError::Unknown) => unknown_page(),
        Err(RevealError::Store(e)) => return Err(e.into()),
    })
}
