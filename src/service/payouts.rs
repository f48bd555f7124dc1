//! Paying PSPs (SPEC §10): at each cut-off of the PSP's payout frequency (on its clock: daily;
//! weekly on Mondays; monthly on the 1st) everything the ledger owes it and has not paid out yet
//! — captures net of fees, less refunds and direct payments — becomes one payout per currency.
//! A run is claimed once per PSP and cut-off in the transaction that makes its payouts, so two
//! nodes, a repeated scan or a crash mid-run never pay twice or leave half a payout; a sum that
//! is not positive pays nothing and carries over. The operator sends the pain.001 to the bank;
//! the statement showing the debit (or the operator) marks the payout paid.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::Services;
use super::orders::{OrderError, conflict};
use crate::clock::PspTime;
use crate::domain::events::{Event, PayoutEvent, PayoutEventKind};
use crate::domain::ids::PspId;
use crate::domain::ledger;
use crate::domain::pain002::RejectOutcome;
use crate::domain::psp::PayoutFrequency;
use crate::store::payouts::{self as store, LineRow, PayoutRow};
use crate::store::{StoreError, Tx, events, ledger as journal, psps};

/// The cut-off in force at `now` for `freq`: the start (00:00 UTC on the PSP's clock) of today,
/// of this week's Monday, or of this month's 1st. Everything booked before it is paid out.
pub fn cutoff(freq: PayoutFrequency, now: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
    let today = now.date_naive();
    let day = match freq {
        PayoutFrequency::Daily => today,
        PayoutFrequency::Weekly => today - Duration::days(i64::from(today.weekday().num_days_from_monday())),
        PayoutFrequency::Monthly => today.with_day(1).unwrap_or(today),
    };
    (day, day.and_hms_opt(0, 0, 0).map(|d| d.and_utc()).unwrap_or(now))
}

/// Runs the payout of `psp_id` due at `at` if it has not run; the payouts it made.
pub async fn run_for(s: &Services, psp_id: PspId, at: PspTime) -> Result<usize, OrderError> {
    let (psp, period_end, cut) = {
        // A read first: the scan asks every minute, and almost always the run is done.
        let mut conn = s.db.conn().await?;
        let Some(psp) = psps::get(&mut conn, psp_id).await? else { return Ok(0) };
        let (period_end, cut) = cutoff(psp.payout_frequency, at.now);
        // Nothing can be owed from before the PSP existed.
        if psp.created_at >= cut || store::run_done(&mut conn, psp_id, period_end).await? {
            return Ok(0);
        }
        (psp, period_end, cut)
    };
    let mut tx = s.db.begin().await?;
    // Every movement of the PSP's payable in flight commits first; later ones are dated after
    // the cut-off (see `Tx::lock_payouts_shared`).
    tx.lock_payouts_exclusive(psp_id).await?;
    if !store::claim_run(&mut tx, psp_id, period_end, cut, at.now).await? {
        return Ok(0);
    }
    let mut made = 0;
    for currency in store::open_currencies(&mut tx, psp_id, cut).await? {
        let id = uuid::Uuid::now_v7();
        let (_, sum) = store::make_up(
            &mut tx,
            id,
            psp_id,
            &currency,
            period_end,
            cut,
            (&psp.name, &psp.iban, psp.bic.as_deref()),
            at.now,
        )
        .await?;
        if sum <= 0 {
            // Nothing to pay: the movements stay open and count towards the next payout.
            store::discard(&mut tx, id).await?;
            continue;
        }
        let entry = ledger::payout(psp_id, sum).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        journal::post(&mut tx, &entry, &currency, id, at.now).await?;
        super::fee_invoices::issue(s, &mut tx, &psp, id, &currency, period_end, at).await?;
        let ev =
            PayoutEvent { payout_id: id, currency: currency.clone(), amount: sum, period_end, state: "pending".into() };
        events::append(&mut tx, psp_id, &Event::Payout(PayoutEventKind::Created, ev), at).await?;
        made += 1;
    }
    store::count_run(&mut tx, psp_id, period_end, made as i64).await?;
    tx.commit().await?;
    if made > 0 {
        tracing::info!(%psp_id, %period_end, payouts = made, "payouts made");
    }
    Ok(made)
}

/// Runs the payouts due now for every PSP, each on its own clock (what the background scan does
/// among its other work; `netterms payouts run`); the payouts it made.
pub async fn run_all(s: &Services) -> Result<usize, OrderError> {
    let mut made = 0;
    for (psp_id, at) in s.psp_times().await? {
        made += run_for(s, psp_id, at).await?;
    }
    Ok(made)
}

/// A payout as PSPs and operators read it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PayoutView {
    pub payout_id: uuid::Uuid,
    /// `pending` (made up), `sent` (the SEPA file went to the bank), `paid` (left the account),
    /// `rejected` (the bank refused the transfer: the amount is owed again and the next payout
    /// pays it, as a line of kind `payout_rejected`).
    pub state: String,
    pub currency: String,
    /// Minor units: the sum of the lines.
    pub amount: i64,
    pub line_count: i64,
    /// The cut-off day: everything booked before its start (on the PSP's clock) is in it.
    pub period_end: String,
    pub cutoff: DateTime<Utc>,
    /// Who is paid: the PSP's name, payout IBAN and (if given) BIC at the time.
    pub creditor_name: String,
    pub creditor_iban: String,
    pub creditor_bic: Option<String>,
    /// The end-to-end id of its credit transfer (the payout id without hyphens).
    pub end_to_end_id: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    /// Why the bank refused the transfer (its ISO 20022 reason code, e.g. `AC04`).
    pub reject_reason: Option<String>,
    pub rejected_at: Option<DateTime<Utc>>,
}

impl From<PayoutRow> for PayoutView {
    fn from(r: PayoutRow) -> PayoutView {
        PayoutView {
            payout_id: r.id,
            state: r.state,
            currency: r.currency,
            amount: r.amount,
            line_count: r.line_count,
            period_end: r.period_end,
            cutoff: r.cutoff,
            creditor_name: r.creditor_name,
            creditor_iban: r.creditor_iban,
            creditor_bic: r.creditor_bic,
            end_to_end_id: r.id.simple().to_string(),
            created_at: r.created_at,
            sent_at: r.sent_at,
            paid_at: r.paid_at,
            reject_reason: r.reject_reason,
            rejected_at: r.rejected_at,
        }
    }
}

/// One ledger movement of a payout.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PayoutLine {
    /// The ledger entry (lines are in booking order; page with `starting_after` = the last one).
    pub entry_id: uuid::Uuid,
    pub booked_at: DateTime<Utc>,
    /// `capture` (gross less netterms' fee), `refund`, `direct_payment` or `chargeback`
    /// (recovered, negative).
    pub kind: String,
    /// What it adds to the payout, minor units.
    pub amount: i64,
    pub currency: String,
    pub order_id: Option<uuid::Uuid>,
    pub capture_id: Option<uuid::Uuid>,
    pub refund_id: Option<uuid::Uuid>,
    pub direct_payment_id: Option<uuid::Uuid>,
    /// Set on a `chargeback` line.
    pub dispute_id: Option<uuid::Uuid>,
    pub external_order_id: Option<String>,
    pub external_invoice_number: Option<String>,
    pub external_credit_note_number: Option<String>,
    pub merchant_id: Option<uuid::Uuid>,
    pub merchant_external_id: Option<String>,
    /// The movement before netterms' fee: the capture's gross amount (`amount` + `fee`); for the
    /// other kinds, `amount` (a refund or a chargeback gives no fee back: netterms keeps it).
    pub gross: i64,
    /// netterms' fee withheld by this movement (captures only).
    pub fee: i64,
    /// What it adds to the payout: `amount`.
    pub net: i64,
}

impl From<LineRow> for PayoutLine {
    fn from(r: LineRow) -> PayoutLine {
        PayoutLine {
            entry_id: r.entry_id,
            booked_at: r.booked_at,
            kind: r.kind,
            amount: r.amount,
            currency: r.currency,
            order_id: r.order_id,
            capture_id: r.capture_id,
            refund_id: r.refund_id,
            direct_payment_id: r.direct_payment_id,
            dispute_id: r.dispute_id,
            external_order_id: r.external_order_id,
            external_invoice_number: r.external_invoice_number,
            external_credit_note_number: r.external_credit_note_number,
            merchant_id: r.merchant_id,
            merchant_external_id: r.merchant_external_id,
            gross: r.amount + r.fee,
            fee: r.fee,
            net: r.amount,
        }
    }
}

/// A payout with a page of its lines.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PayoutDetail {
    #[serde(flatten)]
    pub payout: PayoutView,
    pub lines: Vec<PayoutLine>,
    /// Whether more lines follow (`?starting_after=` the last `entry_id`).
    pub has_more: bool,
}

pub async fn list(
    s: &Services,
    psp_id: PspId,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> Result<Vec<PayoutView>, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(store::list(&mut conn, psp_id, starting_after, limit).await?.into_iter().map(Into::into).collect())
}

pub async fn get(
    s: &Services,
    psp_id: PspId,
    id: uuid::Uuid,
    after: Option<uuid::Uuid>,
    limit: i64,
) -> Result<PayoutDetail, OrderError> {
    let mut conn = s.db.conn().await?;
    let row = store::get(&mut conn, id, Some(psp_id), false).await?.ok_or(OrderError::NotFound("payout"))?;
    let mut lines = store::lines(&mut conn, id, after, limit + 1).await?;
    let has_more = lines.len() as i64 > limit;
    lines.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(PayoutDetail { payout: row.into(), lines: lines.into_iter().map(Into::into).collect(), has_more })
}

/// The PSP's payout (to check ownership before streaming its report).
pub async fn owned(s: &Services, psp_id: PspId, id: uuid::Uuid) -> Result<PayoutView, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(store::get(&mut conn, id, Some(psp_id), false).await?.ok_or(OrderError::NotFound("payout"))?.into())
}

/// The payout statement as PDF: the payout's parts by kind, adding up to its amount.
pub async fn statement_pdf(s: &Services, psp_id: PspId, id: uuid::Uuid) -> Result<(String, Vec<u8>), OrderError> {
    let mut conn = s.db.conn().await?;
    let row = store::get(&mut conn, id, Some(psp_id), false).await?.ok_or(OrderError::NotFound("payout"))?;
    let parts = store::summary(&mut conn, id).await?;
    let (n, fees, _) = crate::store::fee_invoices::fees_of_payout(&mut conn, id).await?;
    let net = parts.iter().find(|p| p.0 == "capture").map_or(0, |p| p.2);
    let fee_invoice = crate::store::fee_invoices::of_payout(&mut conn, psp_id, id)
        .await?
        .and_then(|d| serde_json::from_str::<crate::domain::einvoice::FeeInvoice>(&d).ok())
        .map(|f| f.number);
    let st = crate::documents::payout_statement::Statement {
        payout_id: row.id,
        psp_name: row.creditor_name.clone(),
        iban: row.creditor_iban.clone(),
        end_to_end_id: row.id.simple().to_string(),
        currency: row.currency.clone(),
        period_end: row.period_end.clone(),
        created: row.created_at.date_naive(),
        state: row.state.clone(),
        amount: row.amount,
        captures: (n, net + fees, fees),
        recoveries: parts.into_iter().filter(|p| p.0 != "capture").collect(),
        fee_invoice,
    };
    let imprint = super::imprint::lines(&s.config, super::messages::Locale::De);
    let bytes = crate::documents::payout_statement::render(&st, &imprint)
        .map_err(|e| OrderError::Store(StoreError::Corrupt(e.to_string())))?;
    Ok((format!("payout-{}.pdf", row.id.simple()), bytes))
}

/// The report's columns (RFC 4180, UTF-8, one line per ledger movement; the amounts sum to the payout).
pub const CSV_HEADER: &str = "payout_id,entry_id,booked_at,kind,amount,currency,order_id,external_order_id,capture_id,\
external_invoice_number,refund_id,external_credit_note_number,direct_payment_id,dispute_id,merchant_id,merchant_external_id,\
gross,fee,net\r\n";

/// A field of a CSV line, quoted when it must be (RFC 4180), and defused for spreadsheets (a
/// leading `=`, `+`, `-` or `@` of a text field is prefixed with `'`).
fn field(out: &mut String, v: &str, text: bool) {
    let v = if text && v.starts_with(['=', '+', '-', '@']) { format!("'{v}") } else { v.to_owned() };
    if v.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&v);
    }
}

pub fn csv_lines(payout_id: uuid::Uuid, lines: &[PayoutLine]) -> String {
    let mut out = String::with_capacity(lines.len() * 200);
    let id = payout_id.to_string();
    let opt = |u: &Option<uuid::Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    for l in lines {
        let cols: [(String, bool); 19] = [
            (id.clone(), false),
            (l.entry_id.to_string(), false),
            (l.booked_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), false),
            (l.kind.clone(), false),
            (l.amount.to_string(), false),
            (l.currency.clone(), false),
            (opt(&l.order_id), false),
            (l.external_order_id.clone().unwrap_or_default(), true),
            (opt(&l.capture_id), false),
            (l.external_invoice_number.clone().unwrap_or_default(), true),
            (opt(&l.refund_id), false),
            (l.external_credit_note_number.clone().unwrap_or_default(), true),
            (opt(&l.direct_payment_id), false),
            (opt(&l.dispute_id), false),
            (opt(&l.merchant_id), false),
            (l.merchant_external_id.clone().unwrap_or_default(), true),
            (l.gross.to_string(), false),
            (l.fee.to_string(), false),
            (l.net.to_string(), false),
        ];
        for (i, (v, text)) in cols.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, v, *text);
        }
        out.push_str("\r\n");
    }
    out
}

/// One page of the report: its CSV text and where the next begins (none: the end).
pub async fn csv_page(
    s: &Services,
    payout_id: uuid::Uuid,
    after: Option<uuid::Uuid>,
    size: i64,
) -> Result<(String, Option<uuid::Uuid>), OrderError> {
    let mut conn = s.db.conn().await?;
    let rows: Vec<PayoutLine> =
        store::lines(&mut conn, payout_id, after, size).await?.into_iter().map(Into::into).collect();
    let next = (rows.len() as i64 == size).then(|| rows.last().map(|l| l.entry_id)).flatten();
    Ok((csv_lines(payout_id, &rows), next))
}

/// The pain.001.001.09 of a euro payout (operator): netterms' account pays the PSP's, the
/// end-to-end id is the payout id. Fetching it marks a pending payout `sent`.
pub async fn pain001(s: &Services, id: uuid::Uuid) -> Result<String, OrderError> {
    let mut tx = s.db.begin().await?;
    let (_, xml) = pain001_in(s, &mut tx, id).await?;
    tx.commit().await?;
    Ok(xml)
}

/// Writes payout `id`'s pain.001 and marks it `sent` in `tx` (the caller commits once the file
/// is where it goes).
async fn pain001_in(
    s: &Services,
    tx: &mut crate::store::Tx,
    id: uuid::Uuid,
) -> Result<(PayoutRow, String), OrderError> {
    let row = store::get(tx, id, None, true).await?.ok_or(OrderError::NotFound("payout"))?;
    if row.currency != "EUR" {
        return Err(conflict("SEPA credit transfers are in euro; this payout is not"));
    }
    let at = s.now_for(tx, row.psp_id).await?;
    let c = &s.config;
    let debtor = crate::domain::sepa::Party {
        name: c.creditor_name.clone(),
        iban: c.bank_iban.clone(),
        bic: Some(c.bank_bic.clone()),
    };
    let transfer = crate::domain::sepa::Transfer {
        end_to_end_id: row.id.simple().to_string(),
        amount: row.amount,
        creditor: crate::domain::sepa::Party {
            name: row.creditor_name.clone(),
            iban: row.creditor_iban.clone(),
            bic: row.creditor_bic.clone(),
        },
        remittance: format!("netterms payout {} until {}", row.id.simple(), row.period_end),
    };
    let message_id = message_id(row.id);
    let xml = crate::domain::sepa::pain001(&message_id, row.created_at, &debtor, at.now.date_naive(), &[transfer]);
    store::transition(tx, id, &["pending"], "sent", at.now).await?;
    let row = store::get(tx, id, None, false).await?.ok_or(OrderError::NotFound("payout"))?;
    Ok((row, xml))
}

/// `netterms payouts export`: the pain.001 of every euro payout not yet sent, each handed to
/// `write` and marked `sent` only once `write` succeeded (a file that could not be written leaves
/// its payout pending for the next export).
pub async fn export_pending<E: From<OrderError>>(
    s: &Services,
    mut write: impl FnMut(&PayoutView, &str) -> Result<(), E>,
) -> Result<Vec<PayoutView>, E> {
    let ids = {
        let mut conn = s.db.conn().await.map_err(OrderError::from)?;
        store::pending_euro(&mut conn).await.map_err(OrderError::from)?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut tx = s.db.begin().await.map_err(OrderError::from)?;
        let (row, xml) = pain001_in(s, &mut tx, id).await?;
        let view = PayoutView::from(row);
        write(&view, &xml)?;
        tx.commit().await.map_err(OrderError::from)?;
        out.push(view);
    }
    Ok(out)
}

/// `POST /admin/v1/payouts/{id}/mark-paid`: the payout left the bank account (the operator
/// says so; a statement does it by itself).
pub async fn mark_paid(s: &Services, id: uuid::Uuid) -> Result<PayoutView, OrderError> {
    let mut tx = s.db.begin().await?;
    if !paid_in(s, &mut tx, id, None).await? {
        let exists = store::get(&mut tx, id, None, false).await?.is_some();
        return Err(if exists { conflict("the payout is paid already") } else { OrderError::NotFound("payout") });
    }
    let row = store::get(&mut tx, id, None, false).await?.ok_or(OrderError::NotFound("payout"))?;
    tx.commit().await?;
    Ok(row.into())
}

/// The bank refused payout `id`'s transfer with `reason` (a pain.002): the payout is `rejected`,
/// the PSP is owed the amount again — a ledger movement the next payout pays — and
/// `payout.rejected` goes out.
pub(crate) async fn rejected_in(
    s: &Services,
    tx: &mut Tx,
    id: uuid::Uuid,
    reason: &str,
) -> Result<Option<RejectOutcome>, OrderError> {
    let Some(row) = store::get(tx, id, None, true).await? else { return Ok(None) };
    match row.state.as_str() {
        "rejected" => return Ok(Some(RejectOutcome::Known)),
        "pending" | "sent" => {}
        other => return Ok(Some(RejectOutcome::Left(other.to_owned()))),
    }
    let at = s.now_for(tx, row.psp_id).await?;
    if !store::reject(tx, id, reason, at.now).await? {
        return Err(conflict("the payout changed meanwhile; import the report again"));
    }
    let entry = ledger::payout_rejected(row.psp_id, row.amount).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    journal::post(tx, &entry, &row.currency, id, at.now).await?;
    let period_end = row.period_end.parse().map_err(|_| StoreError::Corrupt("payouts.period_end".into()))?;
    let ev =
        PayoutEvent { payout_id: id, currency: row.currency, amount: row.amount, period_end, state: "rejected".into() };
    events::append(tx, row.psp_id, &Event::Payout(PayoutEventKind::Rejected, ev), at).await?;
    tracing::warn!(payout_id = %id, reason, "the bank rejected a payout's transfer; it is owed to the PSP again");
    Ok(Some(RejectOutcome::Rejected))
}

/// The `MsgId` of payout `id`'s pain.001.
pub fn message_id(id: uuid::Uuid) -> String {
    format!("NTPO{}", &id.simple().to_string()[..28])
}

/// Marks payout `id` paid in `tx` (if `amount` is given, only when it is the payout's): the
/// ledger moves it out of the bank, `payout.paid` goes out. `false` if it was paid or unknown.
pub(crate) async fn paid_in(
    s: &Services,
    tx: &mut Tx,
    id: uuid::Uuid,
    amount: Option<i64>,
) -> Result<bool, OrderError> {
    let Some(row) = store::get(tx, id, None, true).await? else { return Ok(false) };
    if amount.is_some_and(|a| a != row.amount) {
        tracing::warn!(payout_id = %id, "a statement debit names the payout with another amount: not marked paid");
        return Ok(false);
    }
    let at = s.now_for(tx, row.psp_id).await?;
    if !store::transition(tx, id, &["pending", "sent"], "paid", at.now).await? {
        return Ok(false);
    }
    let entry = ledger::payout_paid(row.amount).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    journal::post(tx, &entry, &row.currency, id, at.now).await?;
    let period_end = row.period_end.parse().map_err(|_| StoreError::Corrupt("payouts.period_end".into()))?;
    let ev =
        PayoutEvent { payout_id: id, currency: row.currency, amount: row.amount, period_end, state: "paid".into() };
    events::append(tx, row.psp_id, &Event::Payout(PayoutEventKind::Paid, ev), at).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)).unwrap_or_default()
    }

    #[test]
    fn cut_offs_by_frequency() {
        // 2026-12-02 is a Wednesday.
        let now = at("2026-12-02T13:00:00Z");
        assert_eq!(cutoff(PayoutFrequency::Daily, now).0.to_string(), "2026-12-02");
        assert_eq!(cutoff(PayoutFrequency::Weekly, now).0.to_string(), "2026-11-30");
        assert_eq!(cutoff(PayoutFrequency::Monthly, now).0.to_string(), "2026-12-01");
        assert_eq!(cutoff(PayoutFrequency::Weekly, at("2026-11-30T00:00:00Z")).0.to_string(), "2026-11-30");
        assert_eq!(cutoff(PayoutFrequency::Weekly, now).1, at("2026-11-30T00:00:00Z"));
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        let mut out = String::new();
        field(&mut out, "a,\"b\"", true);
        out.push('|');
        field(&mut out, "=HYPERLINK(1)", true);
        out.push('|');
        field(&mut out, "-100", false);
        assert_eq!(out, "\"a,\"\"b\"\"\"|'=HYPERLINK(1)|-100");
    }
}
