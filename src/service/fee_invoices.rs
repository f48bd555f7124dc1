//! netterms' fee invoice to the PSP with each payout (SPEC §10): the fees of the payout's
//! captures, numbered without gaps per year, VAT by where the PSP is, issued in the payout's
//! transaction and frozen as issued; delivered as Factur-X PDF and XRechnung CII XML.

use chrono::Datelike;

use super::Services;
use super::orders::OrderError;
use crate::clock::PspTime;
use crate::domain::einvoice::{self, FeeInvoice, Guideline, Party};
use crate::domain::ids::PspId;
use crate::domain::ledger;
use crate::domain::psp::Psp;
use crate::store::fee_invoices::{self as store, NewFeeInvoice};
use crate::store::{StoreError, Tx, ledger as journal};

fn corrupt(e: impl std::fmt::Display) -> OrderError {
    OrderError::Store(StoreError::Corrupt(e.to_string()))
}

/// netterms as the seller, from the configuration.
fn seller(s: &Services) -> Party {
    let c = &s.config;
    Party {
        name: c.issuer_name.clone(),
        street: Some(c.issuer_street.clone()),
        postal_code: Some(c.issuer_postal_code.clone()),
        city: Some(c.issuer_city.clone()),
        country: c.issuer_country.clone(),
        vat_id: Some(c.issuer_vat_id.clone()),
        email: Some(c.issuer_email.clone()),
        phone: Some(c.issuer_phone.clone()),
        registration: Some(c.issuer_register_number.clone()),
        legal_info: Some(legal_info(s)),
    }
}

/// The issuer's register entry and managing directors, as one line (§ 35a GmbHG).
pub fn legal_info(s: &Services) -> String {
    let c = &s.config;
    format!(
        "Registergericht: {}, {} · Geschäftsführung: {}",
        c.issuer_register_court, c.issuer_register_number, c.issuer_managing_directors
    )
}

/// The PSP as the buyer: its billing details; without a country, its payout IBAN's.
fn buyer(psp: &Psp) -> Party {
    let b = &psp.billing;
    Party {
        name: psp.name.clone(),
        street: b.street.clone(),
        postal_code: b.postal_code.clone(),
        city: b.city.clone(),
        country: b.country.clone().unwrap_or_else(|| psp.iban.chars().take(2).collect()),
        vat_id: b.vat_id.clone(),
        email: b.email.clone(),
        phone: None,
        registration: None,
        legal_info: None,
    }
}

/// Whether `psp`'s billing details name the address a fee invoice must carry.
pub fn billable(psp: &Psp) -> bool {
    let b = &psp.billing;
    [&b.street, &b.postal_code, &b.city, &b.country].iter().all(|f| f.as_deref().is_some_and(|v| !v.trim().is_empty()))
}

/// Issues, in `tx`, the invoices held for want of `psp`'s billing address (it has one now): one
/// for each of its payouts that withheld fees and has none, dated today on its clock.
pub async fn issue_held(s: &Services, tx: &mut Tx, psp: &Psp) -> Result<usize, OrderError> {
    if !billable(psp) {
        return Ok(0);
    }
    let at = s.now_for(tx, psp.psp_id).await?;
    let mut n = 0;
    for (payout_id, currency, period_end) in store::payouts_without_invoice(tx, psp.psp_id).await? {
        let period_end = period_end.parse().map_err(corrupt)?;
        n += usize::from(issue(s, tx, psp, payout_id, &currency, period_end, at).await?.is_some());
    }
    Ok(n)
}

/// Issues the invoice for the fees payout `payout_id` withheld, in the payout's transaction;
/// none when it withheld none.
pub async fn issue(
    s: &Services,
    tx: &mut Tx,
    psp: &Psp,
    payout_id: uuid::Uuid,
    currency: &str,
    period_end: chrono::NaiveDate,
    at: PspTime,
) -> Result<Option<FeeInvoice>, OrderError> {
    let (captures, fees, first) = store::fees_of_payout(tx, payout_id).await?;
    if fees <= 0 {
        return Ok(None);
    }
    if !billable(psp) {
        // An invoice must name the buyer's address (EN 16931 BG-8; XRechnung BR-DE-8/9 want
        // city and post code): held until the operator gives it, then issued (`issue_held`).
        tracing::warn!(
            alert = "operator",
            psp_id = %psp.psp_id,
            %payout_id,
            "fee invoice held: the PSP has no billing address (street, postal code, city, country); it is issued \
             once one is given"
        );
        return Ok(None);
    }
    let issue_date = at.now.date_naive();
    let year = i64::from(issue_date.year());
    let seq = store::next_seq(tx, year).await?;
    let number = format!("NT-{year}-{seq:06}");
    let seller = seller(s);
    let buyer = buyer(psp);
    let category = einvoice::vat_category(&seller.country, &buyer.country, buyer.vat_id.as_deref());
    let rate = if category == einvoice::VatCategory::Standard { s.config.fee_vat_rate_bps } else { 0 };
    let (net, vat) = einvoice::split_vat(fees, rate);
    let inv = FeeInvoice {
        number,
        issue_date,
        payout_id,
        period_start: first.map_or(issue_date, |f| f.date_naive()).min(period_end),
        period_end,
        currency: currency.to_owned(),
        captures,
        net,
        vat,
        gross: fees,
        vat_rate_bps: rate,
        category,
        seller,
        buyer,
        buyer_reference: psp.psp_id.to_string(),
    };
    let document = serde_json::to_string(&inv).map_err(corrupt)?;
    let id = uuid::Uuid::now_v7();
    store::insert(
        tx,
        &NewFeeInvoice {
            id,
            payout_id,
            psp_id: psp.psp_id,
            year,
            seq,
            number: &inv.number,
            currency,
            net,
            vat,
            gross: fees,
            document: &document,
            now: at.now,
        },
    )
    .await?;
    if vat > 0 {
        let entry = ledger::fee_vat(vat).map_err(corrupt)?;
        journal::post(tx, &entry, currency, id, at.now).await?;
    }
    Ok(Some(inv))
}

/// The fee invoice of a payout of `psp` (404 for another PSP's payout or one without fees).
pub async fn get(s: &Services, psp: PspId, payout_id: uuid::Uuid) -> Result<FeeInvoice, OrderError> {
    let mut conn = s.db.conn().await?;
    let doc = store::of_payout(&mut conn, psp, payout_id).await?.ok_or(OrderError::NotFound("fee invoice"))?;
    serde_json::from_str(&doc).map_err(corrupt)
}

/// As XRechnung 3.0 CII XML.
pub async fn xml(s: &Services, psp: PspId, payout_id: uuid::Uuid) -> Result<(String, String), OrderError> {
    let inv = get(s, psp, payout_id).await?;
    Ok((format!("{}.xml", inv.number), einvoice::cii(&inv, Guideline::XRechnung)))
}

/// As Factur-X / ZUGFeRD PDF (EN 16931).
pub async fn pdf(s: &Services, psp: PspId, payout_id: uuid::Uuid) -> Result<(String, Vec<u8>), OrderError> {
    let inv = get(s, psp, payout_id).await?;
    let bytes = crate::documents::fee_invoice::render(&inv).map_err(corrupt)?;
    Ok((format!("{}.pdf", inv.number), bytes))
}
