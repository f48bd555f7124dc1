//! Payouts to the PSP (SPEC §10): the PSP lists and reads its payouts and streams their reports;
//! the operator takes the SEPA file for the bank and marks payouts paid.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery, AuthedPsp, ListParams};
use super::merchants::Page;
use crate::service::fee_invoices;
use crate::service::payouts::{self, CSV_HEADER, PayoutDetail, PayoutView};

pub fn psp_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_payouts))
        .routes(routes!(get_payout))
        .routes(routes!(report_csv))
        .routes(routes!(statement_pdf))
        .routes(routes!(fee_invoice_pdf))
        .routes(routes!(fee_invoice_xml))
}

pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(pain001)).routes(routes!(mark_paid))
}

/// List payouts.
///
/// Newest first. A payout is made at each cut-off of the PSP's payout frequency (its clock:
/// daily; weekly on Mondays; monthly on the 1st), per currency, of everything owed up to it.
#[utoipa::path(get, path = "/v1/payouts", tag = "Payouts", params(ListParams),
    responses((status = 200, description = "A page of payouts", body = Page<PayoutView>),
              (status = 400, description = "Unreadable query", body = ErrorBody),
              (status = 422, description = "Invalid limit", body = ErrorBody)),
    security(("basic" = [])))]
async fn list_payouts(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<PayoutView>>, ApiError> {
    let limit = q.limit()?;
    let rows = payouts::list(&state.services, psp.psp_id, q.starting_after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit)))
}

/// `?limit=1..1000&starting_after=<entry_id>` for a payout's lines.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LineParams {
    /// How many lines (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Lines after this `entry_id` (the last of the previous page).
    starting_after: Option<uuid::Uuid>,
}

/// Get a payout with its lines.
///
/// The header and a page of its lines: one per ledger movement (capture net of fees, refund,
/// direct payment), in booking order; all lines sum to `amount`.
#[utoipa::path(get, path = "/v1/payouts/{payout_id}", tag = "Payouts",
    params(("payout_id" = uuid::Uuid, Path), LineParams),
    responses((status = 200, description = "The payout", body = PayoutDetail),
              (status = 404, description = "No such payout for this PSP", body = ErrorBody),
              (status = 422, description = "Invalid limit", body = ErrorBody)),
    security(("basic" = [])))]
async fn get_payout(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiQuery(q): ApiQuery<LineParams>,
) -> Result<Json<PayoutDetail>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Validation(vec![crate::domain::validate::FieldError {
            source: "limit".into(),
            title: "limit must be between 1 and 1000".into(),
        }]));
    }
    Ok(Json(payouts::get(&state.services, psp.psp_id, id, q.starting_after, limit).await?))
}

/// Lines per database round while streaming a report.
const CSV_PAGE: i64 = 2000;

/// A payout's report as CSV.
///
/// RFC 4180, UTF-8, CRLF, a header line, then one line per ledger movement in booking order:
/// `payout_id, entry_id, booked_at, kind, amount` (minor units, what it adds to the payout),
/// `currency, order_id, external_order_id, capture_id, external_invoice_number, refund_id,
/// external_credit_note_number, direct_payment_id, dispute_id, merchant_id, merchant_external_id`.
/// `kind` is `capture` (net of netterms' fee), `refund`, `direct_payment` or `chargeback`. The amounts
/// sum to the payout. Streamed: memory does not grow with the report.
#[utoipa::path(get, path = "/v1/payouts/{payout_id}/report.csv", tag = "Payouts",
    params(("payout_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The report", content_type = "text/csv", body = String),
              (status = 404, description = "No such payout for this PSP", body = ErrorBody)),
    security(("basic" = [])))]
async fn report_csv(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Response, ApiError> {
    payouts::owned(&state.services, psp.psp_id, id).await?;
    let services = state.services.clone();
    // First the header, then page after page until a short one.
    let stream = futures_util::stream::unfold(Some(None), move |cursor: Option<Option<uuid::Uuid>>| {
        let services = services.clone();
        async move {
            let after = cursor?;
            match payouts::csv_page(&services, id, after, CSV_PAGE).await {
                Ok((text, next)) => {
                    let text = if after.is_none() { format!("{CSV_HEADER}{text}") } else { text };
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(text)), next.map(Some)))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let csv = "text/csv; charset=utf-8; header=present";
    Ok(super::download(Body::from_stream(stream), csv, &format!("payout-{id}.csv"), false))
}

/// Get a payout's SEPA credit transfer (operator).
///
/// pain.001.001.09 from netterms' account (`bank_iban`) to the PSP's payout IBAN, `EndToEndId` =
/// the payout id without hyphens, for the bank. Fetching it marks a `pending` payout `sent`.
#[utoipa::path(get, path = "/admin/v1/payouts/{payout_id}/pain.001", tag = "Operator",
    params(("payout_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "pain.001.001.09", content_type = "application/xml", body = String),
              (status = 404, description = "No such payout", body = ErrorBody),
              (status = 409, description = "Not a euro payout", body = ErrorBody)),
    security(("admin" = [])))]
async fn pain001(State(state): State<AppState>, ApiPath(id): ApiPath<uuid::Uuid>) -> Result<Response, ApiError> {
    let xml = payouts::pain001(&state.services, id).await?;
    let mut r = (StatusCode::OK, xml).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8"));
    Ok(r)
}

/// Mark a payout paid (operator).
///
/// The transfer left netterms' account (a statement showing the debit with the payout's
/// end-to-end id does this by itself). Sends `payout.paid`.
#[utoipa::path(post, path = "/admin/v1/payouts/{payout_id}/mark-paid", tag = "Operator",
    params(("payout_id" = uuid::Uuid, Path)),
    responses(
        (status = 202, description = "Held back by four eyes: a proposal that waits for another operator's approval (`POST /admin/v1/approvals/{approval_id}/approve`)", body = crate::service::approvals::Approval),(status = 200, description = "The payout, paid", body = PayoutView),
              (status = 404, description = "No such payout", body = ErrorBody),
              (status = 409, description = "Paid already", body = ErrorBody)),
    security(("admin" = [])))]
async fn mark_paid(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<PayoutView>, ApiError> {
    Ok(Json(payouts::mark_paid(&state.services, id).await?))
}

/// Get a payout's statement as PDF.
///
/// One page: the payee, the payout's ids and state, and what it is made of — invoices captured
/// (gross), netterms' fees, refunds, direct payments and chargebacks recovered — adding up to the
/// amount paid out. The movements one by one are in `report.csv`.
#[utoipa::path(get, path = "/v1/payouts/{payout_id}/statement.pdf", tag = "Payouts",
    params(("payout_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The statement", content_type = "application/pdf", body = Vec<u8>),
              (status = 404, description = "No such payout for this PSP", body = ErrorBody)),
    security(("basic" = [])))]
async fn statement_pdf(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Response, ApiError> {
    let (name, bytes) = payouts::statement_pdf(&state.services, psp.psp_id, id).await?;
    Ok(super::download(bytes, "application/pdf", &name, false))
}

/// Get a payout's fee invoice as Factur-X PDF.
///
/// netterms' invoice for the fees the payout withheld (numbered without gaps per year; VAT by
/// where the PSP is: 19 % in Germany, reverse charge elsewhere in the EU with a VAT id, outside the
/// scope of VAT beyond). ZUGFeRD / Factur-X profile EN 16931: PDF/A-3 with the CII XML embedded as
/// `factur-x.xml`. 404 when the payout withheld no fees.
#[utoipa::path(get, path = "/v1/payouts/{payout_id}/fee-invoice.pdf", tag = "Payouts",
    params(("payout_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The invoice", content_type = "application/pdf", body = Vec<u8>),
              (status = 404, description = "No such payout for this PSP, or no fees in it", body = ErrorBody)),
    security(("basic" = [])))]
async fn fee_invoice_pdf(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Response, ApiError> {
    let (name, bytes) = fee_invoices::pdf(&state.services, psp.psp_id, id).await?;
    Ok(super::download(bytes, "application/pdf", &name, false))
}

/// Get a payout's fee invoice as XRechnung CII XML.
///
/// The same invoice as an XRechnung 3.0 e-invoice (UN/CEFACT CII syntax).
#[utoipa::path(get, path = "/v1/payouts/{payout_id}/fee-invoice.xml", tag = "Payouts",
    params(("payout_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The invoice", content_type = "application/xml", body = String),
              (status = 404, description = "No such payout for this PSP, or no fees in it", body = ErrorBody)),
    security(("basic" = [])))]
async fn fee_invoice_xml(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Response, ApiError> {
    let (name, xml) = fee_invoices::xml(&state.services, psp.psp_id, id).await?;
    Ok(super::download(xml, "application/xml; charset=utf-8", &name, false))
}
