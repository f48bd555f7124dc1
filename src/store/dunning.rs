//! Dunning rows: which invoices have a step due, the steps taken (one row per invoice and step),
//! the policy setting and the base-rate table.

use chrono::{DateTime, NaiveDate, Utc};

use super::{AsExec, StoreError, StoreResult, Tx};
use crate::domain::dunning::BaseRate;
use crate::domain::ids::{BuyerId, CaptureId, PspId};
use crate::with_conn;

/// `psp_id`'s unpaid invoices whose next dunning step is due by `today`, or whose pause ran out
/// by `now`, oldest first.
pub async fn due(
    conn: &mut impl AsExec,
    psp_id: PspId,
    today: NaiveDate,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<CaptureId>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar(
            "SELECT id FROM captures WHERE psp_id = $1 AND next_dunning_on <= $2 AND state IN ('open', 'late') \
             AND disputes_open = 0 AND (dunning_paused_until IS NULL OR dunning_paused_until <= $3) ORDER BY next_dunning_on, id LIMIT $4",
        )
        .bind(psp_id).bind(today.to_string()).bind(now).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// A step taken, to record.
pub struct StepRow<'a> {
    pub capture_id: CaptureId,
    pub psp_id: PspId,
    pub step: &'a str,
    pub level: i64,
    pub fee: i64,
    pub interest: i64,
    pub deadline: Option<NaiveDate>,
    pub taken_at: DateTime<Utc>,
}

/// Records a step with the transaction's other writes (deferred). The key (invoice, step) is
/// unique: the same step a second time fails the transaction, so nothing of it is written twice.
pub fn record_step(tx: &mut Tx, r: &StepRow<'_>) {
    tx.defer(
        "INSERT INTO dunning_steps (capture_id, step, psp_id, level, fee, interest, deadline, taken_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            r.capture_id.0.into(),
            r.step.into(),
            r.psp_id.0.into(),
            r.level.into(),
            r.fee.into(),
            r.interest.into(),
            r.deadline.map(|d| d.to_string()).into(),
            r.taken_at.into(),
        ],
    );
}

/// The pay-by date of the newest dunning notice sent for invoice `id`, if any.
pub async fn latest_deadline(conn: &mut impl AsExec, id: CaptureId) -> StoreResult<Option<NaiveDate>> {
    let d: Option<Option<String>> = with_conn!(conn, c => {
        sqlx::query_scalar("SELECT MAX(deadline) FROM dunning_steps WHERE capture_id = $1")
            .bind(id).fetch_optional(&mut *c).await?
    });
    d.flatten().map(|d| d.parse().map_err(|_| StoreError::Corrupt("dunning_steps.deadline".into()))).transpose()
}

/// An invoice's dunning after a step or a change, written if its stage is still `expected_stage`.
pub struct Progress {
    pub stage: i64,
    pub level: i64,
    pub next_on: Option<NaiveDate>,
    pub last_on: Option<NaiveDate>,
    pub fees: i64,
    pub interest: i64,
    pub waived: i64,
    pub interest_through: Option<NaiveDate>,
    pub collection_at: Option<DateTime<Utc>>,
    pub paused_until: Option<DateTime<Utc>>,
    pub pause_reason: Option<String>,
}

const PROGRESS_UPDATE: &str = "UPDATE captures SET dunning_stage = $3, dunning_level = $4, next_dunning_on = $5, \
     dunning_fees = $6, dunning_interest = $7, dunning_waived = $8, interest_through = $9, collection_at = $10, \
     dunning_paused_until = $11, dunning_pause_reason = $12, updated_at = $13, last_dunning_on = $14 \
     WHERE id = $1 AND dunning_stage = $2";

fn progress_args(id: CaptureId, expected_stage: i64, p: &Progress, now: DateTime<Utc>) -> Vec<super::Arg> {
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string());
    vec![
        id.0.into(),
        expected_stage.into(),
        p.stage.into(),
        p.level.into(),
        date(p.next_on).into(),
        p.fees.into(),
        p.interest.into(),
        p.waived.into(),
        date(p.interest_through).into(),
        p.collection_at.into(),
        p.paused_until.into(),
        p.pause_reason.clone().into(),
        now.into(),
        date(p.last_on).into(),
    ]
}

/// Writes an invoice's progress with the transaction's other writes (deferred); for callers that
/// hold the invoice's lock and read its stage under it.
pub fn defer_progress(tx: &mut Tx, id: CaptureId, expected_stage: i64, p: &Progress, now: DateTime<Utc>) {
    tx.defer(PROGRESS_UPDATE, progress_args(id, expected_stage, p, now));
}

pub async fn set_progress(
    tx: &mut impl AsExec,
    id: CaptureId,
    expected_stage: i64,
    p: &Progress,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(PROGRESS_UPDATE)
        .bind(id).bind(expected_stage).bind(p.stage).bind(p.level).bind(p.next_on.map(|d| d.to_string()))
        .bind(p.fees).bind(p.interest).bind(p.waived).bind(p.interest_through.map(|d| d.to_string()))
        .bind(p.collection_at).bind(p.paused_until).bind(p.pause_reason.as_deref()).bind(now)
        .bind(p.last_on.map(|d| d.to_string()))
        .execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// The highest dunning level among a buyer's unpaid invoices (0: none in dunning).
pub async fn buyer_level(conn: &mut impl AsExec, buyer_id: BuyerId) -> StoreResult<i64> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT CAST(MAX(dunning_level) AS BIGINT) FROM captures WHERE buyer_id = $1 AND state IN ('open', 'late')",
        )
        .bind(buyer_id).fetch_one(&mut *c).await?
    })
    .unwrap_or(0))
}

/// The base-rate table, oldest first.
pub async fn base_rates(conn: &mut impl AsExec) -> StoreResult<Vec<BaseRate>> {
    let rows: Vec<(String, i64)> = with_conn!(conn, c => {
        sqlx::query_as("SELECT valid_from, CAST(rate_bps AS BIGINT) FROM base_rates ORDER BY valid_from").fetch_all(&mut *c).await?
    });
    rows.into_iter()
        .map(|(d, rate_bps)| {
            let valid_from = d.parse().map_err(|_| StoreError::Corrupt(format!("base_rates.valid_from {d:?}")))?;
            Ok(BaseRate { valid_from, rate_bps })
        })
        .collect()
}

/// Adds or replaces a base-rate row.
pub async fn put_base_rate(tx: &mut impl AsExec, r: &BaseRate, source: &str) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO base_rates (valid_from, rate_bps, source) VALUES ($1, $2, $3) \
             ON CONFLICT (valid_from) DO UPDATE SET rate_bps = excluded.rate_bps, source = excluded.source",
        )
        .bind(r.valid_from.to_string()).bind(r.rate_bps).bind(source).execute(&mut *c).await?;
    });
    Ok(())
}
