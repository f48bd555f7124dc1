//! Merchants, always read and written within their PSP's scope.

use chrono::{DateTime, Utc};

use super::{AsExec, StoreError, StoreResult};
use crate::domain::ids::{MerchantId, PspId};
use crate::domain::merchant::{Merchant, MerchantStatus, NewMerchant, PaymentTerms};
use crate::with_conn;

#[derive(sqlx::FromRow)]
struct Row {
    id: MerchantId,
    psp_id: PspId,
    external_id: String,
    name: String,
    legal_form: String,
    registration_number: Option<String>,
    registration_court: Option<String>,
    tax_id: Option<String>,
    address: String,
    website: Option<String>,
    industry_sector: Option<String>,
    contact: String,
    min_duration: i64,
    max_duration: i64,
    default_duration: i64,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, psp_id, external_id, name, legal_form, registration_number, registration_court, tax_id, \
     address, website, industry_sector, contact, min_duration, max_duration, default_duration, status, created_at, updated_at";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("merchants.{what}: {e}"))
}

impl TryFrom<Row> for Merchant {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Merchant, StoreError> {
        Ok(Merchant {
            merchant_id: r.id,
            psp_id: r.psp_id,
            external_id: r.external_id,
            name: r.name,
            legal_form: r.legal_form,
            registration_number: r.registration_number,
            registration_court: r.registration_court,
            tax_id: r.tax_id,
            address: serde_json::from_str(&r.address).map_err(|e| corrupt("address", e))?,
            website: r.website,
            industry_sector: r.industry_sector,
            contact: serde_json::from_str(&r.contact).map_err(|e| corrupt("contact", e))?,
            payment_terms: PaymentTerms {
                min_duration: r.min_duration,
                max_duration: r.max_duration,
                default_duration: r.default_duration,
            },
            status: MerchantStatus::parse(&r.status).ok_or_else(|| corrupt("status", &r.status))?,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Inserts a merchant; `None` when the PSP already has one with this `external_id` (the unique
/// key decides, so concurrent activations cannot both succeed, and the transaction stays usable).
pub async fn insert(
    tx: &mut impl AsExec,
    psp_id: PspId,
    m: &NewMerchant,
    now: DateTime<Utc>,
) -> StoreResult<Option<Merchant>> {
    let id = MerchantId::new();
    let address = serde_json::to_string(&m.address).map_err(|e| corrupt("address", e))?;
    let contact = serde_json::to_string(&m.contact).map_err(|e| corrupt("contact", e))?;
    let row: Option<Row> = with_conn!(tx, c => {
        sqlx::query_as(&format!(
            "INSERT INTO merchants ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) \
             ON CONFLICT (psp_id, external_id) DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(id).bind(psp_id).bind(&m.external_id).bind(&m.name).bind(&m.legal_form)
        .bind(&m.registration_number).bind(&m.registration_court).bind(&m.tax_id)
        .bind(&address).bind(&m.website).bind(&m.industry_sector).bind(&contact)
        .bind(m.payment_terms.min_duration).bind(m.payment_terms.max_duration).bind(m.payment_terms.default_duration)
        .bind(MerchantStatus::Active.as_str()).bind(now)
        .fetch_optional(&mut *c).await?
    });
    row.map(Merchant::try_from).transpose()
}

/// A merchant of `psp_id`; another PSP's merchant is `None`, as if it did not exist.
pub async fn get(conn: &mut impl AsExec, psp_id: PspId, id: MerchantId) -> StoreResult<Option<Merchant>> {
    let row: Option<Row> = with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM merchants WHERE id = $1 AND psp_id = $2"))
            .bind(id).bind(psp_id).fetch_optional(&mut *c).await?
    });
    row.map(Merchant::try_from).transpose()
}

/// The PSP's merchants, newest first, after `starting_after` if given.
pub async fn list(
    conn: &mut impl AsExec,
    psp_id: PspId,
    limit: i64,
    starting_after: Option<MerchantId>,
) -> StoreResult<Vec<Merchant>> {
    let rows: Vec<Row> = with_conn!(conn, c => {
        match starting_after {
            Some(after) => sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM merchants WHERE psp_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            ))
            .bind(psp_id).bind(after).bind(limit).fetch_all(&mut *c).await?,
            None => sqlx::query_as(&format!("SELECT {COLUMNS} FROM merchants WHERE psp_id = $1 ORDER BY id DESC LIMIT $2"))
                .bind(psp_id).bind(limit).fetch_all(&mut *c).await?,
        }
    });
    rows.into_iter().map(Merchant::try_from).collect()
}

/// Moves a merchant from `from` to `to`. `Ok(None)`: no such merchant for this PSP;
/// `Ok(Some((m, false)))`: it was not in `from` (nothing changed).
pub async fn transition(
    tx: &mut impl AsExec,
    psp_id: PspId,
    id: MerchantId,
    from: MerchantStatus,
    to: MerchantStatus,
    now: DateTime<Utc>,
) -> StoreResult<Option<(Merchant, bool)>> {
    let changed = with_conn!(tx, c => {
        sqlx::query("UPDATE merchants SET status = $4, updated_at = $5 WHERE id = $1 AND psp_id = $2 AND status = $3")
            .bind(id).bind(psp_id).bind(from.as_str()).bind(to.as_str()).bind(now)
            .execute(&mut *c).await?.rows_affected() == 1
    });
    Ok(get(tx, psp_id, id).await?.map(|m| (m, changed)))
}
