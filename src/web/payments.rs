//! Money in (SPEC §9.5): bank statements posted by operators, the unmatched queue, direct-debit
//! collection files and credit transfers; and the sandbox helpers that simulate a buyer's
//! transfer and a returned direct debit.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, AuthedPsp, ListParams};
use super::idempotency::{Idem, respond};
use super::merchants::Page;
use super::sandbox::sandbox_only;
use crate::domain::camt::{self, CamtError};
use crate::domain::ids::BuyerId;
use crate::domain::validate::FieldError;
use crate::service::direct_debit::{self, FileView, ReturnView, SandboxReturnInput};
use crate::service::payments::{
    self, AssignInput, BuyerCredit, CreditRefundInput, CreditTransferView, PaymentView, RefundInput,
    SandboxPaymentInput,
};
use crate::service::statements::{self, Document, ImportError, ImportSummary, StatementView};
use crate::service::status_reports::{self, StatusReportError, StatusReportSummary};
use crate::store::direct_debits::UnmatchedReturn;

pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_statements, import_statement))
        .routes(routes!(import_status_report))
        .routes(routes!(list_unmatched))
        .routes(routes!(list_unmatched_returns))
        .routes(routes!(apply_return))
        .routes(routes!(dismiss_return))
        .routes(routes!(get_payment))
        .routes(routes!(assign))
        .routes(routes!(refund))
        .routes(routes!(buyer_credit))
        .routes(routes!(refund_credit))
        .routes(routes!(credit_transfer_xml))
        .routes(routes!(list_files, export_files))
        .routes(routes!(file_xml))
}

pub fn sandbox_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sandbox_payment)).routes(routes!(sandbox_return))
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> ApiError {
        match e {
            ImportError::Statement(c) => statement_error(c),
            ImportError::Order(o) => o.into(),
            ImportError::Io(e) => ApiError::internal(e),
        }
    }
}

impl From<StatusReportError> for ApiError {
    fn from(e: StatusReportError) -> ApiError {
        use crate::domain::pain002::Pain002Error as E;
        match e {
            StatusReportError::Report(c) => {
                let title = c.to_string();
                match c {
                    E::TooLarge => ApiError::TooLarge,
                    E::NotAReport(_) | E::TooMany => ApiError::Validation(vec![FieldError {
                        source: "body".into(),
                        title: format!("the body is {title}"),
                    }]),
                    E::Empty | E::Doctype | E::TooDeep | E::UndefinedEntity(_) | E::Malformed { .. } => {
                        ApiError::bad_request(title, Some("body".into()))
                    }
                }
            }
            StatusReportError::Order(o) => o.into(),
            StatusReportError::Io(e) => ApiError::internal(e),
        }
    }
}

/// A refused statement: unreadable XML is 400, too large 413, readable but not a usable
/// statement 422 — each naming the problem.
pub fn statement_error(c: CamtError) -> ApiError {
    let title = c.to_string();
    match c {
        CamtError::TooLarge => ApiError::TooLarge,
        CamtError::NotAStatement(_) => {
            ApiError::Validation(vec![FieldError { source: "body".into(), title: format!("the body is {title}") }])
        }
        CamtError::Entry { index, .. } => {
            ApiError::Validation(vec![FieldError { source: format!("body.entries[{index}]"), title }])
        }
        CamtError::Empty
        | CamtError::Doctype
        | CamtError::TooDeep
        | CamtError::UndefinedEntity(_)
        | CamtError::Malformed { .. } => ApiError::bad_request(title, Some("body".into())),
    }
}

/// Import a bank statement (operator).
///
/// The body is one ISO 20022 camt.053, camt.054 or camt.052 document (any version from .001.02),
/// as the bank wrote it: elements are read by name and the XSD is not required. Every entry is
/// booked once, by the bank's reference or else a digest of the entry, so importing the same or
/// an overlapping statement again books nothing twice. Each credit is matched to invoices (RF
/// reference, RF in the text, virtual IBAN, our direct debits, amount and name) or held in the
/// unmatched queue; returned direct debits reopen their invoices. Refused, with nothing booked:
/// malformed or truncated XML, a DOCTYPE (external entities, entity expansion), more than 50 MiB,
/// nesting deeper than 100, another message type, unreadable amounts or currencies.
#[utoipa::path(post, path = "/admin/v1/bank-statements", tag = "Operator",
    request_body(content = String, content_type = "application/xml", description = "The camt document"),
    responses(
        (status = 200, description = "What the import booked", body = ImportSummary),
        (status = 400, description = "Unreadable: malformed, truncated, empty, DOCTYPE, too deep, wrong content type", body = ErrorBody),
        (status = 413, description = "Larger than 50 MiB", body = ErrorBody),
        (status = 422, description = "Not a statement, or an entry that cannot be read", body = ErrorBody),
    ),
    security(("admin" = [])))]
async fn import_statement(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportSummary>, ApiError> {
    let bytes = bank_file(&headers, body, "statement").await?;
    Ok(Json(statements::import(&state.services, Document::Bytes(bytes), "api").await?))
}

/// The body of a bank file upload: XML (`application/xml` or `text/xml`), at most 50 MiB.
async fn bank_file(headers: &HeaderMap, body: Body, what: &str) -> Result<bytes::Bytes, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/xml");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(mime.as_str(), "application/xml" | "text/xml") {
        return Err(ApiError::bad_request(format!("send the {what} as application/xml"), None));
    }
    let limit = usize::try_from(camt::MAX_BYTES).unwrap_or(usize::MAX);
    crate::web::extract::read_body(body, limit).await
}

/// Import a bank's payment status report (operator).
///
/// The body is one ISO 20022 pain.002 (any version from .001.02, and the DK's) in which the bank
/// answers a direct-debit file (pain.008) or a payout's or refund's transfer (pain.001) of ours.
/// Every transaction it rejects — by itself, as part of a rejected payment block or of a file
/// rejected whole — is looked up by its end-to-end id: a **collection** becomes `rejected`
/// (nothing was debited; the invoice stays open, the buyer's `direct_debit_rejected` e-mail says
/// how to pay by transfer and by when, dunning waits for that date, and after a code meaning the
/// mandate cannot be used the buyer pays by transfer from now on); a **payout** becomes
/// `rejected` (`payout.rejected` goes out, the amount is owed to the PSP again and its next
/// payout pays it). Transfers to buyers and anything unknown are listed for the operator, not
/// changed. The answer lists every rejected item with its reason in words and what was done.
/// Importing the same report again changes nothing twice. Refused, with nothing changed:
/// malformed or truncated XML, a DOCTYPE, more than 50 MiB, nesting deeper than 100, another
/// message type.
#[utoipa::path(post, path = "/admin/v1/payment-status-reports", tag = "Operator",
    request_body(content = String, content_type = "application/xml", description = "The pain.002 document"),
    responses(
        (status = 200, description = "What the report rejected and what was done", body = StatusReportSummary),
        (status = 400, description = "Unreadable: malformed, truncated, empty, DOCTYPE, too deep, wrong content type", body = ErrorBody),
        (status = 413, description = "Larger than 50 MiB", body = ErrorBody),
        (status = 422, description = "Not a payment status report", body = ErrorBody),
    ),
    security(("admin" = [])))]
async fn import_status_report(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<StatusReportSummary>, ApiError> {
    let bytes = bank_file(&headers, body, "report").await?;
    Ok(Json(status_reports::import(&state.services, Document::Bytes(bytes)).await?))
}

/// List bank-statement imports (operator).
///
/// Newest first. An import `incomplete` did not finish: it is running, or it was interrupted (a
/// crash, a lost connection) — import the same file again and it books the rest, nothing twice.
#[utoipa::path(get, path = "/admin/v1/bank-statements", tag = "Operator", params(ListParams),
    responses((status = 200, description = "A page of imports", body = Page<StatementView>),
              (status = 400, description = "Unreadable query", body = ErrorBody),
              (status = 422, description = "Invalid limit", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_statements(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<StatementView>>, ApiError> {
    let limit = q.limit()?;
    let (data, has_more) = statements::list(&state.services, q.starting_after, limit).await?;
    Ok(Json(Page { data, has_more }))
}

/// List unmatched payments (operator).
///
/// Money that arrived and matched no invoice, newest first, with why. Assign each to an invoice
/// or send it back.
#[utoipa::path(get, path = "/admin/v1/unmatched-payments", tag = "Operator", params(ListParams),
    responses((status = 200, description = "A page of payments", body = Page<PaymentView>),
              (status = 400, description = "Unreadable query", body = ErrorBody),
              (status = 422, description = "Invalid limit", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_unmatched(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<PaymentView>>, ApiError> {
    let limit = q.limit()?;
    let (data, has_more) = payments::unmatched(&state.services, q.starting_after, limit).await?;
    Ok(Json(Page { data, has_more }))
}

/// Get a payment (operator).
#[utoipa::path(get, path = "/admin/v1/payments/{payment_id}", tag = "Operator",
    params(("payment_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The payment, how it matched and what it paid", body = PaymentView),
              (status = 404, description = "No such payment", body = ErrorBody)),
    security(("admin" = [])))]
async fn get_payment(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<PaymentView>, ApiError> {
    Ok(Json(payments::get(&state.services, id, None).await?))
}

/// Assign an unmatched payment to an invoice (operator).
///
/// Books it as if it had matched: the invoice's fees and interest first, then its amount; what is
/// more than it owes becomes its buyer's credit.
#[utoipa::path(post, path = "/admin/v1/unmatched-payments/{payment_id}/assign", tag = "Operator",
    params(("payment_id" = uuid::Uuid, Path)), request_body = AssignInput,
    responses((status = 200, description = "The payment, matched", body = PaymentView),
              (status = 404, description = "No such payment", body = ErrorBody),
              (status = 409, description = "Not unmatched any more, or the invoice is settled", body = ErrorBody),
              (status = 422, description = "No such invoice, or in another currency", body = ErrorBody)),
    security(("admin" = [])))]
async fn assign(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<AssignInput>,
) -> Result<Json<PaymentView>, ApiError> {
    Ok(Json(payments::assign(&state.services, id, body).await?))
}

/// Send an unmatched payment back (operator).
///
/// Writes a SEPA credit transfer (pain.001.001.09) from netterms' account to the payer; fetch it
/// at `GET /admin/v1/credit-transfers/{id}` and give it to the bank.
#[utoipa::path(post, path = "/admin/v1/unmatched-payments/{payment_id}/refund", tag = "Operator",
    params(("payment_id" = uuid::Uuid, Path)), request_body = RefundInput,
    responses(
        (status = 202, description = "Held back by four eyes: a proposal that waits for another operator's approval (`POST /admin/v1/approvals/{approval_id}/approve`)", body = crate::service::approvals::Approval),(status = 200, description = "The credit transfer", body = CreditTransferView),
              (status = 404, description = "No such payment", body = ErrorBody),
              (status = 409, description = "Not unmatched any more", body = ErrorBody),
              (status = 422, description = "No payer account or name known or given, or not euro", body = ErrorBody)),
    security(("admin" = [])))]
async fn refund(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<RefundInput>,
) -> Result<Json<CreditTransferView>, ApiError> {
    Ok(Json(payments::refund_unmatched(&state.services, id, body).await?))
}

/// The states an unmatched return can be listed by.
pub(crate) const RETURN_STATES: [&str; 3] = ["open", "applied", "dismissed"];

/// List direct-debit returns that matched no collection (operator).
///
/// A return names its collection by end-to-end id, or only by mandate and amount (the DK
/// "Rücklastschrift" layout); one that matches neither waits here with its reason, newest first.
/// `state=open` is the queue to work.
#[utoipa::path(get, path = "/admin/v1/unmatched-returns", tag = "Operator", params(super::documents::QueueParams),
    responses((status = 200, description = "A page of returns", body = Page<UnmatchedReturn>),
              (status = 400, description = "Unreadable query", body = ErrorBody),
              (status = 422, description = "Invalid state or limit", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_unmatched_returns(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<super::documents::QueueParams>,
) -> Result<Json<Page<UnmatchedReturn>>, ApiError> {
    let (st, limit) = q.checked(&RETURN_STATES)?;
    let rows = direct_debit::unmatched_returns(&state.services, st, q.starting_after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit)))
}

/// What `apply` names: the collection the return belongs to.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct ApplyReturnInput {
    /// The collection's end-to-end id (as in its pain.008 and `GET /admin/v1/direct-debit-files`).
    #[schema(required = true, example = "NT6C1F0E3B2A4D5E6F708192A3B4C5D6E")]
    pub end_to_end_id: Option<String>,
}

/// What `dismiss` says.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct DismissReturnInput {
    /// Why the return is not applied to a collection (kept with it).
    #[schema(required = true, example = "A return of another creditor's debit; the bank will correct it")]
    pub reason: Option<String>,
}

/// Apply an unmatched return to a collection (operator).
///
/// Reverses the collection as a matched return does: the invoice is open again, the booking
/// reversed, the PSP gets `payment.returned` and the buyer an e-mail with a new date to pay by.
#[utoipa::path(post, path = "/admin/v1/unmatched-returns/{unmatched_return_id}/apply", tag = "Operator",
    params(("unmatched_return_id" = uuid::Uuid, Path)), request_body = ApplyReturnInput,
    responses((status = 200, description = "The return, applied", body = UnmatchedReturn),
              (status = 404, description = "No such return", body = ErrorBody),
              (status = 409, description = "Not open any more, or the collection is not collected", body = ErrorBody),
              (status = 422, description = "No such collection, in another currency or more than came back", body = ErrorBody)),
    security(("admin" = [])))]
async fn apply_return(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<ApplyReturnInput>,
) -> Result<Json<UnmatchedReturn>, ApiError> {
    let Some(e2e) = body.end_to_end_id.filter(|x| !x.trim().is_empty()) else {
        return Err(ApiError::Validation(vec![FieldError {
            source: "end_to_end_id".into(),
            title: "end_to_end_id is required".into(),
        }]));
    };
    Ok(Json(direct_debit::apply_return(&state.services, id, e2e.trim()).await?))
}

/// Dismiss an unmatched return (operator).
#[utoipa::path(post, path = "/admin/v1/unmatched-returns/{unmatched_return_id}/dismiss", tag = "Operator",
    params(("unmatched_return_id" = uuid::Uuid, Path)), request_body = DismissReturnInput,
    responses((status = 200, description = "The return, dismissed", body = UnmatchedReturn),
              (status = 404, description = "No such return", body = ErrorBody),
              (status = 409, description = "Not open any more", body = ErrorBody),
              (status = 422, description = "No reason given", body = ErrorBody)),
    security(("admin" = [])))]
async fn dismiss_return(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<DismissReturnInput>,
) -> Result<Json<UnmatchedReturn>, ApiError> {
    Ok(Json(direct_debit::dismiss_return(&state.services, id, body.reason.as_deref().unwrap_or("")).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CreditQuery {
    /// Default `EUR`.
    currency: Option<String>,
}

/// Get a buyer's credit (operator).
///
/// What netterms owes the buyer back: over-payments, refunds and disputes of paid invoices, less
/// what was sent back.
#[utoipa::path(get, path = "/admin/v1/buyers/{buyer_id}/credit", tag = "Operator",
    params(("buyer_id" = uuid::Uuid, Path), CreditQuery),
    responses((status = 200, description = "The buyer's credit", body = BuyerCredit),
              (status = 404, description = "No such buyer", body = ErrorBody)),
    security(("admin" = [])))]
async fn buyer_credit(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<BuyerId>,
    ApiQuery(q): ApiQuery<CreditQuery>,
) -> Result<Json<BuyerCredit>, ApiError> {
    let currency = q.currency.unwrap_or_else(|| "EUR".into());
    Ok(Json(payments::buyer_credit(&state.services, id, &currency).await?))
}

/// Send a buyer's credit back (operator).
///
/// Writes a SEPA credit transfer (pain.001.001.09) of the credit (or `amount` of it) from
/// netterms' account to the buyer's (`iban`, default the account it last paid from); fetch it at
/// `GET /admin/v1/credit-transfers/{id}` for the bank. Never more than the credit.
#[utoipa::path(post, path = "/admin/v1/buyers/{buyer_id}/credit-refunds", tag = "Operator",
    params(("buyer_id" = uuid::Uuid, Path)), request_body = CreditRefundInput,
    responses(
        (status = 202, description = "Held back by four eyes: a proposal that waits for another operator's approval (`POST /admin/v1/approvals/{approval_id}/approve`)", body = crate::service::approvals::Approval),(status = 201, description = "The credit transfer", body = CreditTransferView),
              (status = 404, description = "No such buyer", body = ErrorBody),
              (status = 409, description = "The buyer has no credit", body = ErrorBody),
              (status = 422, description = "More than the credit, not euro, or no account known or given", body = ErrorBody)),
    security(("admin" = [])))]
async fn refund_credit(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<BuyerId>,
    ApiJson(body): ApiJson<CreditRefundInput>,
) -> Result<(StatusCode, Json<CreditTransferView>), ApiError> {
    Ok((StatusCode::CREATED, Json(payments::refund_credit(&state.services, id, body).await?)))
}

fn xml(body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8"));
    r
}

/// Get a credit transfer's pain.001 (operator).
#[utoipa::path(get, path = "/admin/v1/credit-transfers/{credit_transfer_id}", tag = "Operator",
    params(("credit_transfer_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "pain.001.001.09", content_type = "application/xml", body = String),
              (status = 404, description = "No such credit transfer", body = ErrorBody)),
    security(("admin" = [])))]
async fn credit_transfer_xml(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Response, ApiError> {
    Ok(xml(payments::credit_transfer_xml(&state.services, id).await?))
}

/// List direct-debit collection files (operator).
#[utoipa::path(get, path = "/admin/v1/direct-debit-files", tag = "Operator", params(ListParams),
    responses((status = 200, description = "A page of files with their collections", body = Page<FileView>),
              (status = 400, description = "Unreadable query", body = ErrorBody),
              (status = 422, description = "Invalid limit", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_files(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<FileView>>, ApiError> {
    let limit = q.limit()?;
    let (data, has_more) = direct_debit::list_files(&state.services, q.starting_after, limit).await?;
    Ok(Json(Page { data, has_more }))
}

/// Write collection files now (operator).
///
/// Collects every invoice paid by SEPA B2B direct debit that is due within `direct_debit_days_ahead`
/// days and not collected yet (the job does the same every day): one pain.008 per PSP, grouped by
/// sequence type and collection date. Each invoice is collected once, whoever asks.
#[utoipa::path(post, path = "/admin/v1/direct-debit-files", tag = "Operator",
    responses((status = 200, description = "The files written (none when nothing is due)", body = Vec<FileView>),
              (status = 409, description = "Another export is collecting the same invoices", body = ErrorBody)),
    security(("admin" = [])))]
async fn export_files(State(state): State<AppState>) -> Result<Json<Vec<FileView>>, ApiError> {
    Ok(Json(direct_debit::export_all(&state.services).await?))
}

/// Get a collection file's pain.008 (operator).
#[utoipa::path(get, path = "/admin/v1/direct-debit-files/{file_id}", tag = "Operator",
    params(("file_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "pain.008.001.08", content_type = "application/xml", body = String),
              (status = 404, description = "No such file", body = ErrorBody)),
    security(("admin" = [])))]
async fn file_xml(State(state): State<AppState>, ApiPath(id): ApiPath<uuid::Uuid>) -> Result<Response, ApiError> {
    Ok(xml(direct_debit::file_xml(&state.services, id).await?))
}

/// Simulate a buyer's bank transfer.
///
/// Goes through the very matching a bank statement entry goes through, among this PSP's
/// invoices: an RF reference (in `reference`, any spacing or case), the virtual IBAN (`iban`)
/// with the amount, or the payer's name with the amount. Booked: `payment.received` per invoice
/// it paid, `capture.paid` and `order.complete` when settled, the buyer's `payment_received`
/// e-mail. Not matched: it waits in the operator's unmatched queue.
#[utoipa::path(post, path = "/v1/sandbox/payments", tag = "Sandbox", request_body = SandboxPaymentInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 201, description = "The payment and what it paid", body = PaymentView),
        (status = 400, description = "Unreadable body", body = ErrorBody),
        (status = 403, description = "Production", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn sandbox_payment(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiJson(body): ApiJson<SandboxPaymentInput>,
) -> Result<Response, ApiError> {
    sandbox_only(&state)?;
    let mut tx = state.db.begin().await?;
    let view = payments::sandbox_payment(&state.services, &mut tx, psp.psp_id, body).await?;
    respond(tx, &idem, StatusCode::CREATED, &view).await
}

/// Simulate a returned direct debit.
///
/// The collected direct debit of one of this PSP's invoices comes back from the buyer's bank with
/// a SEPA reason code: the invoice is open again, the payment reversed, `payment.returned` sent
/// and the buyer's `direct_debit_returned` e-mail queued; after codes that mean the mandate cannot
/// be used (MD01, MS02, AC01, AC04, AG01, MD07) the buyer pays by bank transfer from now on.
#[utoipa::path(post, path = "/v1/sandbox/direct-debit-returns", tag = "Sandbox", request_body = SandboxReturnInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 200, description = "What the return did", body = ReturnView),
        (status = 400, description = "Unreadable body", body = ErrorBody),
        (status = 403, description = "Production", body = ErrorBody),
        (status = 404, description = "No such invoice", body = ErrorBody),
        (status = 409, description = "The invoice has no collected direct debit", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn sandbox_return(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiJson(body): ApiJson<SandboxReturnInput>,
) -> Result<Response, ApiError> {
    sandbox_only(&state)?;
    let view = direct_debit::sandbox_return(&state.services, psp.psp_id, body).await?;
    let tx = state.db.begin().await?;
    respond(tx, &idem, StatusCode::OK, &view).await
}
