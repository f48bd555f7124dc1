//! The buyer's e-mails as stored: for operators (`/admin/v1/messages`) and, in a sandbox, for the
//! PSP whose orders they belong to (`/v1/sandbox/messages` and the `/v1/sandbox/mailbox` page).

use axum::Json;
use axum::extract::State;
use axum::response::{Html, Response};
use maud::{DOCTYPE, html};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery, AuthedPsp};
use super::merchants::Page;
use super::sandbox::sandbox_only;
use crate::domain::ids::{CaptureId, OrderId};
use crate::domain::validate::Violations;
use crate::store::messages::{self, Filter, Message};

pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(admin_messages)).routes(routes!(admin_attachment))
}

pub fn sandbox_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sandbox_messages)).routes(routes!(mailbox)).routes(routes!(sandbox_attachment))
}

/// The messages of a page, each with the link to its PDF under `base` (`/admin/v1/messages` or
/// `/v1/sandbox/messages`).
fn linked(mut p: Page<Message>, base: &str) -> Page<Message> {
    for m in &mut p.data {
        m.attachment_url = m.attachment.as_ref().map(|_| format!("{base}/{}/attachment", m.id));
    }
    p
}

/// A message's PDF as the e-mail carried it (with the imprint at its foot).
async fn attachment(
    state: &AppState,
    id: uuid::Uuid,
    psp: Option<crate::domain::ids::PspId>,
) -> Result<Response, ApiError> {
    let mut conn = state.db.conn().await?;
    let m = messages::get(&mut conn, id, psp).await?.ok_or_else(|| ApiError::not_found("message"))?;
    drop(conn);
    let spec = m.attachment.ok_or_else(|| ApiError::not_found("attachment"))?;
    let imprint =
        crate::service::imprint::lines(&state.services.config, crate::service::messages::Locale::parse(&m.locale));
    let doc = crate::service::documents::render_attachment(&spec, &imprint)
        .map_err(|e| ApiError::internal(std::io::Error::other(e.to_string())))?;
    Ok(super::download(doc.bytes, "application/pdf", &doc.filename, true))
}

/// Get a message's PDF (operator).
#[utoipa::path(get, path = "/admin/v1/messages/{message_id}/attachment", tag = "Operator",
    params(("message_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The PDF the e-mail carried", content_type = "application/pdf", body = Vec<u8>),
              (status = 404, description = "No such message, or none attached", body = ErrorBody)),
    security(("admin" = [])))]
async fn admin_attachment(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Response, ApiError> {
    attachment(&state, id, None).await
}

/// Get a message's PDF (sandbox).
///
/// The document the e-mail carried (payment information, a dunning notice …), as the buyer got it.
#[utoipa::path(get, path = "/v1/sandbox/messages/{message_id}/attachment", tag = "Sandbox",
    params(("message_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The PDF the e-mail carried", content_type = "application/pdf", body = Vec<u8>),
              (status = 403, description = "Production", body = ErrorBody),
              (status = 404, description = "No such message of this PSP, or none attached", body = ErrorBody)),
    security(("basic" = [])))]
async fn sandbox_attachment(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Response, ApiError> {
    sandbox_only(&state)?;
    attachment(&state, id, Some(psp.psp_id)).await
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
    Ok(Json(linked(page(&state, &f, limit).await?, "/admin/v1/messages")))
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
    Ok(Json(linked(page(&state, &f, limit).await?, "/v1/sandbox/messages")))
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
    let list = linked(page(&state, &f, 50).await?, "/v1/sandbox/messages");
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
                        }
                        pre { (m.body_text) }
                        @if let Some(url) = &m.attachment_url {
                            p { a href=(url) { "The attached PDF" } " (as the e-mail carried it)" }
                        }
                    }
                }
            }
        }
    };
    Ok(Html(markup.into_string()))
}
