//! The buyer's e-mails as stored: for operators (`/admin/v1/messages`) and, in a sandbox, for the
//! PSP whose orders they belong to (`/v1/sandbox/messages` and the `/v1/sandbox/mailbox` page).

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use maud::{DOCTYPE, html};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, AuthedPsp};
use super::merchants::Page;
use super::sandbox::sandbox_only;
use crate::domain::ids::{CaptureId, OrderId};
use crate::domain::validate::Violations;
use crate::store::messages::{self, Filter, Message};

pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(admin_messages))
}

pub fn sandbox_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sandbox_messages)).routes(routes!(mailbox))
}

/// The states a message can be listed by.
pub(crate) const STATUSES: [&str; 4] = ["queued", "sent", "stored", "failed"];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MessageQuery {
    /// How many messages to return (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Return messages older than this id.
    starting_after: Option<uuid::Uuid>,
    /// Only the messages of this order.
    order_id: Option<OrderId>,
    /// Only the messages of this invoice.
    capture_id: Option<CaptureId>,
    /// Only messages in this state: `queued`, `sent`, `stored` or `failed`.
    status: Option<String>,
}

impl MessageQuery {
    fn filter(&self, psp: Option<crate::domain::ids::PspId>) -> Result<(Filter, i64), ApiError> {
        let limit = self.limit.unwrap_or(20);
        let mut v = Violations::new();
        if !(1..=100).contains(&limit) {
            v.add("limit", "limit must be between 1 and 100");
        }
        if self.status.as_deref().is_some_and(|s| !STATUSES.contains(&s)) {
            v.add("status", "status must be queued, sent, stored or failed");
        }
        v.finish().map_err(ApiError::Validation)?;
        let f = Filter {
            psp_id: psp,
            order_id: self.order_id,
            capture_id: self.capture_id,
            status: self.status.clone(),
            starting_after: self.starting_after,
        };
        Ok((f, limit))
    }
}

async fn page(state: &AppState, f: &Filter, limit: i64) -> Result<Page<Message>, ApiError> {
    let mut conn = state.db.conn().await?;
    Ok(Page::from_rows(messages::list(&mut conn, f, limit + 1).await?, limit))
}

/// List the buyers' e-mails (operator).
///
/// Every message with its status (`queued`, `sent`, `stored` when no SMTP server is configured,
/// `failed` after its retries), attempts and the last SMTP error, newest first.
#[utoipa::path(get, path = "/admin/v1/messages", tag = "Operator", params(MessageQuery),
    responses((status = 200, description = "Messages, newest first", body = Page<Message>),
              (status = 422, description = "Invalid parameters", body = ErrorBody)),
    security(("admin" = [])))]
async fn admin_messages(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<MessageQuery>,
) -> Result<Json<Page<Message>>, ApiError> {
    let (f, limit) = q.filter(None)?;
    Ok(Json(page(&state, &f, limit).await?))
}

/// List the e-mails sent to this PSP's buyers (sandbox).
#[utoipa::path(get, path = "/v1/sandbox/messages", tag = "Sandbox", params(MessageQuery),
    responses((status = 200, description = "Messages, newest first", body = Page<Message>),
              (status = 403, description = "Production", body = ErrorBody),
              (status = 422, description = "Invalid parameters", body = ErrorBody)),
    security(("basic" = [])))]
async fn sandbox_messages(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiQuery(q): ApiQuery<MessageQuery>,
) -> Result<Json<Page<Message>>, ApiError> {
    sandbox_only(&state)?;
    let (f, limit) = q.filter(Some(psp.psp_id))?;
    Ok(Json(page(&state, &f, limit).await?))
}

/// The sandbox mailbox: this PSP's buyers' e-mails as a page (sandbox).
///
/// The latest 50 messages (or those of one order or invoice), each with its subject, recipient,
/// time on the PSP's clock, status and text.
#[utoipa::path(get, path = "/v1/sandbox/mailbox", tag = "Sandbox", params(MessageQuery),
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String),
              (status = 403, description = "Production", body = ErrorBody)),
    security(("basic" = [])))]
async fn mailbox(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiQuery(q): ApiQuery<MessageQuery>,
) -> Result<Html<String>, ApiError> {
    sandbox_only(&state)?;
    let (f, _) = q.filter(Some(psp.psp_id))?;
    let list = page(&state, &f, 50).await?;
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sandbox mailbox – netterms" }
                style { "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}\
                         article{border:1px solid #ccd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}\
                         pre{white-space:pre-wrap;background:#f5f6f8;padding:.75rem;border-radius:4px}\
                         .meta{color:#555;font-size:.9rem}" }
            }
            body {
                h1 { "Sandbox mailbox" }
                p.meta { "The e-mails netterms wrote to your buyers, newest first. Times are on your sandbox clock." }
                @if list.data.is_empty() { p { "No messages yet." } }
                @for m in &list.data {
                    article {
                        h2 { (m.subject) }
                        p.meta {
                            "To " (m.to_address) " · " (m.kind) " · " (m.created_at.format("%Y-%m-%d %H:%M UTC"))
                            " · " (m.status)
                            @if m.attachment.is_some() { " · with a PDF" }
                        }
                        pre { (m.body_text) }
                    }
                }
            }
        }
    };
    Ok(Html(markup.into_string()))
}
