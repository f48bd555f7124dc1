//! Dunning rows: which invoices have a step due, the steps taken (one row per invoice and step),
//! the policy setting and the base-rate table.

use chrono::{DateTime, NaiveDate, Utc};

use super::{AsExec, StoreError, StoreResult};
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
             AND (dunning_paused_until IS NULL OR dunning_paused_until <= $3) ORDER BY next_dunning_on, id LIMIT $4",
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

/// Records a step; `false` if it was taken before (by this scan or another).
pub async fn record_step(tx: &mut impl AsExec, r: &StepRow<'_>) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO dunning_steps (capture_id, step, psp_id, level, fee, interest, deadline, taken_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (capture_id, step) DO NOTHING",
        )
        .bind(r.capture_id).bind(r.step).bind(r.psp_id).bind(r.level).bind(r.fee).bind(r.interest)
        .bind(r.deadline.map(|d| d.to_string())).bind(r.taken_at)
        .execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// When the last step of an invoice was taken.
pub async fn last_step_at(conn: &mut impl AsExec, capture_id: CaptureId) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT MAX(taken_at) FROM dunning_steps WHERE capture_id = $1")
            .bind(capture_id).fetch_one(&mut *c).await?
    }))
}

/// The steps of an invoice, in order: (step, level, fee, interest, deadline, taken_at).
pub type StepView = (String, i64, i64, i64, Option<String>, DateTime<Utc>);

pub async fn steps(conn: &mut impl AsExec, capture_id: CaptureId) -> StoreResult<Vec<StepView>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT step, level, fee, interest, deadline, taken_at FROM dunning_steps WHERE capture_id = $1 ORDER BY taken_at, level",
        )
        .bind(capture_id).fetch_all(&mut *c).await?
    }))
}

/// An invoice's dunning after a step or a change, written if its stage is still `expected_stage`.
pub struct Progress {
    pub stage: i64,
    pub level: i64,
    pub next_on: Option<NaiveDate>,
    pub fees: i64,
    pub interest: i64,
    pub waived: i64,
    pub interest_through: Option<NaiveDate>,
    pub collection_at: Option<DateTime<Utc>>,
    pub paused_until: Option<DateTime<Utc>>,
    pub pause_reason: Option<String>,
}

pub async fn set_progress(
    tx: &mut impl AsExec,
    id: CaptureId,
    expected_stage: i64,
    p: &Progress,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE captures SET dunning_stage = $3, dunning_level = $4, next_dunning_on = $5, dunning_fees = $6, \
             dunning_interest = $7, dunning_waived = $8, interest_through = $9, collection_at = $10, \
             dunning_paused_until = $11, dunning_pause_reason = $12, updated_at = $13 \
             WHERE id = $1 AND dunning_stage = $2",
        )
        .bind(id).bind(expected_stage).bind(p.stage).bind(p.level).bind(p.next_on.map(|d| d.to_string()))
        .bind(p.fees).bind(p.interest).bind(p.waived).bind(p.interest_through.map(|d| d.to_string()))
        .bind(p.collection_at).bind(p.paused_until).bind(p.pause_reason.as_deref()).bind(now)
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
