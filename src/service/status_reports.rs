//! Banks' answers to our files (pain.002 customer payment status reports): what a bank refused of
//! a direct-debit file (pain.008) or a payout's transfer (pain.001) is marked so and reopened —
//! a rejected collection leaves its invoice to be paid by transfer, a rejected payout is owed to
//! its PSP again — and the operator is told, item by item, what was done.
//!
//! Each item is changed in its own transaction and only from the state the bank refused
//! (`pending` collections, `pending`/`sent` payouts), so importing the same report again, or after
//! a crash, changes nothing twice.

use serde::Serialize;
use utoipa::ToSchema;

use super::Services;
use super::orders::OrderError;
use super::statements::Document;
use crate::domain::pain002::{self, Pain002Error, RejectOutcome, Status};
use crate::domain::sepa;
use crate::store::StoreError;
use crate::store::direct_debits as dd_store;
use crate::store::payments as payments_store;
use crate::store::payouts as payouts_store;

/// What importing a status report did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct StatusReportSummary {
    /// The report's version, e.g. `pain.002.001.03`.
    pub version: String,
    /// The report's own message id (`GrpHdr/MsgId`).
    pub message_id: Option<String>,
    /// The `MsgId` of our file the report is about.
    pub original_message_id: String,
    /// What that file is: `direct_debit_file`, `payout`, `credit_transfer`, or `unknown` (no file
    /// of ours has that message id; its transactions are still looked up by end-to-end id).
    pub original: String,
    /// The status the bank gave the whole file (`RJCT`, `PART`, `ACCP`, …), if it gave one.
    pub group_status: Option<String>,
    /// Transactions the report gives a status other than `RJCT`.
    pub accepted: u64,
    /// Every transaction the bank rejected, and what netterms did about it.
    pub rejected: Vec<RejectedItem>,
}

/// One rejected transaction.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedItem {
    /// Its end-to-end id (empty when the report named none and it could not be derived).
    pub end_to_end_id: String,
    /// `collection`, `payout`, `credit_transfer` or `unknown`.
    pub kind: String,
    /// The invoice (`capture_id`) of a collection, the payout id of a payout, the credit
    /// transfer's id.
    pub id: Option<uuid::Uuid>,
    /// The bank's ISO 20022 reason code (`MS03` when it gave none).
    pub reason_code: String,
    /// The reason in words, and the bank's own text if it added one.
    pub reason_text: String,
    /// `rejected` (done by this import), `known` (an earlier import did it: nothing changed) or
    /// `not_applied` (see `note`: the operator decides).
    pub outcome: String,
    /// What happened, or why nothing was done.
    pub note: String,
}

/// Why a report was refused (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum StatusReportError {
    #[error("{0}")]
    Report(#[from] Pain002Error),
    #[error("the file cannot be read: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Order(#[from] OrderError),
}

impl From<StoreError> for StatusReportError {
    fn from(e: StoreError) -> StatusReportError {
        StatusReportError::Order(OrderError::Store(e))
    }
}

/// Imports a pain.002: reads it whole (a malformed or hostile file changes nothing), then applies
/// every rejected transaction.
pub async fn import(s: &Services, doc: Document) -> Result<StatusReportSummary, StatusReportError> {
    let report = tokio::task::spawn_blocking(move || -> Result<pain002::Report, StatusReportError> {
        let input = doc.open().map_err(|e| {
            match e.get_ref().and_then(|i| i.downcast_ref::<crate::domain::camt::CamtError>()) {
                Some(_) => StatusReportError::Report(Pain002Error::TooLarge),
                None => StatusReportError::Io(e),
            }
        })?;
        Ok(pain002::read(input)?)
    })
    .await
    .map_err(|e| StatusReportError::Io(std::io::Error::other(e.to_string())))??;

    let original = Original::find(s, &report.original_message_id).await?;
    let mut sum = StatusReportSummary {
        version: report.version.clone(),
        message_id: report.message_id.clone(),
        original_message_id: report.original_message_id.clone(),
        original: original.kind().into(),
        group_status: report.group.code.clone(),
        ..Default::default()
    };
    let mut rejected: Vec<(String, Status)> = Vec::new();
    for (_, t) in report.transactions() {
        if !t.status.rejected() {
            sum.accepted += 1;
            continue;
        }
        match t.end_to_end_id {
            Some(e2e) => rejected.push((e2e, t.status)),
            // A transaction rejected without its end-to-end id cannot be told apart.
            None => sum.rejected.push(item_without_id(&t.status, "the bank named no end-to-end id")),
        }
    }
    // Blocks listed without their transactions, and a file rejected whole without any block:
    // every transaction they carried.
    let mut whole: Vec<(Option<&str>, Status)> = report
        .blocks
        .iter()
        .filter(|b| b.transactions.is_empty())
        .map(|b| (b.id.as_deref(), report.block_status(b)))
        .filter(|(_, st)| st.rejected())
        .collect();
    if report.blocks.is_empty() && report.group.rejected() {
        whole.push((None, report.group.clone()));
    }
    for (block, status) in whole {
        let ids = original.end_to_end_ids(block);
        if ids.is_empty() {
            sum.rejected.push(item_without_id(&status, "the report rejects a file or block netterms does not know"));
        }
        rejected.extend(ids.into_iter().map(|e2e| (e2e, status.clone())));
    }
    for (e2e, status) in rejected {
        let item = apply(s, &e2e, &status).await?;
        sum.rejected.push(item);
    }
    tracing::info!(
        original = sum.original,
        accepted = sum.accepted,
        rejected = sum.rejected.len(),
        "payment status report imported"
    );
    Ok(sum)
}

/// The file of ours a report is about.
enum Original {
    DirectDebitFile(String),
    Payout(uuid::Uuid),
    CreditTransfer(String),
    Unknown,
}

impl Original {
    async fn find(s: &Services, message_id: &str) -> Result<Original, StatusReportError> {
        let mut conn = s.db.conn().await?;
        if let Some(f) = dd_store::file_by_message_id(&mut conn, message_id).await? {
            return Ok(Original::DirectDebitFile(f.xml));
        }
        if message_id.starts_with("NTPO") {
            let ids = payouts_store::sent_or_rejected(&mut conn).await?;
            if let Some(id) = ids.into_iter().find(|id| super::payouts::message_id(*id) == message_id) {
                return Ok(Original::Payout(id));
            }
        }
        // A credit transfer's message id is its end-to-end id.
        if let Some(id) = credit_transfer_id(message_id)
            && payments_store::get_credit_transfer(&mut conn, id).await?.is_some()
        {
            return Ok(Original::CreditTransfer(message_id.to_owned()));
        }
        Ok(Original::Unknown)
    }

    fn kind(&self) -> &'static str {
        match self {
            Original::DirectDebitFile(_) => "direct_debit_file",
            Original::Payout(_) => "payout",
            Original::CreditTransfer(_) => "credit_transfer",
            Original::Unknown => "unknown",
        }
    }

    /// The end-to-end ids of block `block` (all blocks if `None`) of the file.
    fn end_to_end_ids(&self, block: Option<&str>) -> Vec<String> {
        match self {
            Original::DirectDebitFile(xml) => sepa::blocks_of(xml)
                .into_iter()
                .filter(|(id, _)| block.is_none_or(|b| b == id))
                .flat_map(|(_, e2e)| e2e)
                .collect(),
            Original::Payout(id) => vec![id.simple().to_string()],
            Original::CreditTransfer(e2e) => vec![e2e.clone()],
            Original::Unknown => Vec::new(),
        }
    }
}

/// The credit transfer id in an end-to-end id `NT` + 32 hex digits.
fn credit_transfer_id(e2e: &str) -> Option<uuid::Uuid> {
    e2e.strip_prefix("NT").filter(|h| h.len() == 32).and_then(|h| uuid::Uuid::try_parse(h).ok())
}

fn reason_of(status: &Status) -> (String, String) {
    let code = status.reason.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| "MS03".into());
    let mut text = sepa::status_reason_text(&code).to_owned();
    if let Some(info) = status.info.as_deref().filter(|i| !i.is_empty()) {
        text.push_str(" The bank says: ");
        let shown: String = info
            .chars()
            .filter(|c| !c.is_control() && !crate::domain::validate::is_bidi_control(*c))
            .take(500)
            .collect();
        text.push_str(&shown);
    }
    (code, text)
}

fn item_without_id(status: &Status, note: &str) -> RejectedItem {
    let (reason_code, reason_text) = reason_of(status);
    RejectedItem {
        end_to_end_id: String::new(),
        kind: "unknown".into(),
        id: None,
        reason_code,
        reason_text,
        outcome: "not_applied".into(),
        note: note.into(),
    }
}

/// Applies the reject of the transaction with end-to-end id `e2e`.
async fn apply(s: &Services, e2e: &str, status: &Status) -> Result<RejectedItem, StatusReportError> {
    let (reason_code, reason_text) = reason_of(status);
    let mut item = RejectedItem {
        end_to_end_id: e2e.to_owned(),
        kind: "unknown".into(),
        id: None,
        reason_code: reason_code.clone(),
        reason_text,
        outcome: "not_applied".into(),
        note: "no collection, payout or credit transfer of netterms has this end-to-end id".into(),
    };
    let mut tx = s.db.begin().await?;
    if let Some((capture_id, _, _)) = dd_store::by_end_to_end(&mut tx, e2e).await? {
        item.kind = "collection".into();
        item.id = Some(capture_id.0);
        let outcome = super::direct_debit::rejected_in(s, &mut tx, e2e, &reason_code).await?;
        describe(&mut item, outcome, "the collection", "nothing was debited; the buyer was told to pay by transfer");
    } else if let Some(id) = uuid::Uuid::try_parse(e2e).ok().filter(|_| e2e.len() == 32) {
        let outcome = super::payouts::rejected_in(s, &mut tx, id, &reason_code).await?;
        if outcome.is_some() {
            item.kind = "payout".into();
            item.id = Some(id);
        }
        describe(&mut item, outcome, "the payout", "the amount is owed to the PSP again and paid with its next payout");
    } else if let Some(id) = credit_transfer_id(e2e)
        && payments_store::get_credit_transfer(&mut tx, id).await?.is_some()
    {
        item.kind = "credit_transfer".into();
        item.id = Some(id);
        item.note = "a transfer to a buyer (a refund of a payment or of its credit): netterms booked it as sent and \
                     does not undo it by itself — correct the buyer's account details and send it again"
            .into();
    }
    tx.commit().await?;
    Ok(item)
}

fn describe(item: &mut RejectedItem, outcome: Option<RejectOutcome>, what: &str, done: &str) {
    match outcome {
        None => {}
        Some(RejectOutcome::Rejected) => {
            item.outcome = "rejected".into();
            item.note = format!("{what} is rejected: {done}");
        }
        Some(RejectOutcome::Known) => {
            item.outcome = "known".into();
            item.note = format!("{what} was rejected by an earlier import of this report; nothing changed");
        }
        Some(RejectOutcome::Left(state)) => {
            item.note = format!(
                "{what} is {state}: the bank's statement showed it go through, which this report contradicts; \
                 nothing changed — ask the bank"
            );
        }
    }
}
