//! Time passing for a PSP (SPEC §9, §11): the work that becomes due on a PSP's clock, and the
//! sandbox clock a PSP moves forward to see it happen.
//!
//! Everything that time makes happen to a PSP's objects runs through [`run_due`] at one moment
//! of that PSP's clock: the periodic background scan calls it for every PSP at its current time;
//! an advance calls it day by day up to the new time, so reminders come before dunning levels and
//! every event and message is dated at its own moment. Each step is idempotent (conditional
//! updates and unique keys), so scans that overlap, repeat or resume after a crash do each
//! thing once.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use super::checkout::CheckoutError;
use super::orders::OrderError;
use crate::clock::PspTime;
use crate::domain::ids::PspId;
use crate::domain::validate::Violations;
use crate::store::{StoreError, psps};

/// The most days one advance may cover.
pub const MAX_ADVANCE_DAYS: i64 = 366;
const DAY_US: i64 = 86_400_000_000;

/// What became due and ran at one moment of a PSP's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct DueWork {
    /// Unconfirmed authorizations that expired.
    pub expired_authorizations: usize,
    /// Invoices that became late.
    pub late_invoices: usize,
    /// Reminders, dunning levels, hand-overs to collection, and pauses that ran out.
    pub dunning: super::dunning::DunningRun,
    /// Direct-debit collection files written (pain.008).
    pub direct_debit_files: usize,
    /// Sandbox: collections the simulated bank booked on their collection date.
    pub collections_booked: usize,
    /// Payouts made at the PSP's cut-off.
    pub payouts: usize,
    /// Disputes left undefended past their deadline, closed as chargebacks.
    pub disputes_charged_back: usize,
}

impl DueWork {
    fn add(&mut self, o: DueWork) {
        self.expired_authorizations += o.expired_authorizations;
        self.late_invoices += o.late_invoices;
        self.dunning.add(o.dunning);
        self.direct_debit_files += o.direct_debit_files;
        self.collections_booked += o.collections_booked;
        self.payouts += o.payouts;
        self.disputes_charged_back += o.disputes_charged_back;
    }
}

fn checkout_error(e: CheckoutError) -> OrderError {
    match e {
        CheckoutError::Store(s) => OrderError::Store(s),
        other => OrderError::Store(StoreError::Corrupt(other.to_string())),
    }
}

/// Runs everything due for `psp_id` up to `at` on its clock, in order.
pub async fn run_due(s: &Services, psp_id: PspId, at: PspTime) -> Result<DueWork, OrderError> {
    let expired_authorizations = super::authorizations::expire_due(s, psp_id, at).await.map_err(checkout_error)?;
    // Collections before lateness: an invoice collected on its due date is never late.
    let direct_debit_files = usize::from(super::direct_debit::export_for(s, psp_id, at).await?.is_some());
    let collections_booked =
        if s.config.is_sandbox() { super::direct_debit::sandbox_book_collections(s, psp_id, at).await? } else { 0 };
    // Chargebacks before lateness and dunning: an invoice they settle is not dunned.
    let disputes_charged_back = super::disputes::expire(s, psp_id, at).await?;
    let late_invoices = super::captures::mark_overdue(s, psp_id, at).await?;
    let dunning = super::dunning::run_due(s, psp_id, at).await?;
    let payouts = super::payouts::run_for(s, psp_id, at).await?;
    Ok(DueWork {
        expired_authorizations,
        late_invoices,
        dunning,
        direct_debit_files,
        collections_booked,
        payouts,
        disputes_charged_back,
    })
}

/// Runs what is due for every PSP at its own current time (the periodic background scan).
pub async fn run_due_for_all(s: &Services) -> Result<DueWork, OrderError> {
    let mut total = DueWork::default();
    for (psp_id, at) in s.psp_times().await? {
        total.add(run_due(s, psp_id, at).await?);
    }
    Ok(total)
}

/// A PSP's clock.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClockView {
    /// The PSP's current time.
    pub now: DateTime<Utc>,
    /// Its current date (UTC), the day by which due dates and dunning are counted.
    pub today: NaiveDate,
}

impl ClockView {
    fn of(now: DateTime<Utc>) -> ClockView {
        ClockView { now, today: now.date_naive() }
    }
}

/// `POST /v1/sandbox/clock/advance`: exactly one of `days` or `to`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceInput {
    /// Days to move forward, 1 to 366.
    pub days: Option<i64>,
    /// The date to move to (`YYYY-MM-DD`), after today and at most 366 days ahead; the time of day
    /// stays.
    pub to: Option<String>,
}

/// What an advance did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Advanced {
    /// The PSP's time after the advance.
    pub now: DateTime<Utc>,
    pub today: NaiveDate,
    /// How many days the clock moved.
    pub days: i64,
    /// What became due on the way and ran.
    pub ran: DueWork,
}

pub async fn get(s: &Services, psp_id: PspId) -> Result<ClockView, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(ClockView::of(s.now_for(&mut conn, psp_id).await?.now))
}

/// How many days `input` asks to move a clock that reads `today`; a 422 with the field otherwise.
pub fn days_to_advance(today: NaiveDate, input: &AdvanceInput) -> Result<i64, OrderError> {
    let mut v = Violations::new();
    let days = match (input.days, input.to.as_deref()) {
        (Some(d), None) => {
            if d < 1 {
                v.add("days", "the clock only moves forward: days must be at least 1");
            } else if d > MAX_ADVANCE_DAYS {
                v.add("days", format!("days must be at most {MAX_ADVANCE_DAYS}"));
            }
            d
        }
        (None, Some(to)) => match NaiveDate::parse_from_str(to, "%Y-%m-%d") {
            Ok(date) => {
                let d = (date - today).num_days();
                if d < 1 {
                    v.add("to", format!("the clock only moves forward: to must be after today ({today})"));
                } else if d > MAX_ADVANCE_DAYS {
                    v.add("to", format!("to must be at most {MAX_ADVANCE_DAYS} days after today ({today})"));
                }
                d
            }
            Err(_) => {
                v.add("to", "to must be a date, YYYY-MM-DD");
                0
            }
        },
        (Some(_), Some(_)) => {
            v.add("", "give either days or to, not both");
            0
        }
        (None, None) => {
            v.add("", "give days or to");
            0
        }
    };
    v.finish().map_err(OrderError::Invalid)?;
    Ok(days)
}

/// Moves `psp_id`'s sandbox clock forward day by day, running at each day what became due, and
/// answers when all of it has run. One advance per PSP at a time (409 otherwise). If the process
/// dies midway, the clock stays at the last day completed and a later advance or scan does the
/// rest: nothing runs twice, nothing is skipped.
pub async fn advance(s: &Services, psp_id: PspId, input: &AdvanceInput) -> Result<Advanced, OrderError> {
    let mut conn = s.db.conn().await?;
    let start = s.now_for(&mut conn, psp_id).await?;
    drop(conn);
    let days = days_to_advance(start.now.date_naive(), input)?;
    advance_days(s, psp_id, start, days).await
}

/// The date `input` asks `psp_id`'s clock to move to, from where it stands now.
pub async fn target_of(s: &Services, psp_id: PspId, input: &AdvanceInput) -> Result<NaiveDate, OrderError> {
    let today = get(s, psp_id).await?.today;
    Ok(today + Duration::days(days_to_advance(today, input)?))
}

/// Moves `psp_id`'s clock on to `target` as [`advance`] does; nothing if it is there already (a
/// retry of an advance that got there before its answer was lost).
pub async fn advance_until(s: &Services, psp_id: PspId, target: NaiveDate) -> Result<Advanced, OrderError> {
    let mut conn = s.db.conn().await?;
    let start = s.now_for(&mut conn, psp_id).await?;
    drop(conn);
    let days = (target - start.now.date_naive()).num_days().max(0);
    advance_days(s, psp_id, start, days).await
}

async fn advance_days(s: &Services, psp_id: PspId, start: PspTime, days: i64) -> Result<Advanced, OrderError> {
    let mut tx = s.db.begin().await?;
    let wall = s.clock.now();
    if !psps::lease_clock(&mut tx, psp_id, wall, wall + lease(s)).await? {
        return Err(OrderError::Conflict(
            "an advance of this clock is already running; try again when it has finished".into(),
        ));
    }
    tx.commit().await?;
    let result = step_days(s, psp_id, start.offset_us(), days).await;
    let mut tx = s.db.begin().await?;
    psps::release_clock(&mut tx, psp_id).await?;
    tx.commit().await?;
    let ran = result?;
    let mut conn = s.db.conn().await?;
    let now = s.now_for(&mut conn, psp_id).await?.now;
    Ok(Advanced { now, today: now.date_naive(), days, ran })
}

/// How long an advance holds its clock without progress (renewed every day it steps). Work is
/// idempotent, so an overlap after a lease ran out repeats nothing; the lease only keeps two
/// advances from doing the same work at once.
fn lease(s: &Services) -> Duration {
    Duration::seconds(s.config.sandbox_clock_lease_secs)
}

async fn step_days(s: &Services, psp_id: PspId, start_offset: i64, days: i64) -> Result<DueWork, OrderError> {
    let mut ran = DueWork::default();
    for day in 1..=days {
        let offset = start_offset + day * DAY_US;
        let at = PspTime::ahead(s.clock.now(), offset);
        ran.add(run_due(s, psp_id, at).await?);
        // The clock moves only once the day's work is done.
        let mut tx = s.db.begin().await?;
        psps::set_clock_offset(&mut tx, psp_id, offset).await?;
        let wall = s.clock.now();
        psps::renew_clock_lease(&mut tx, psp_id, wall + lease(s)).await?;
        tx.commit().await?;
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn advances_only_forward_and_at_most_a_year() {
        let today = d("2026-11-27");
        let days = |n| days_to_advance(today, &AdvanceInput { days: Some(n), to: None });
        let to = |t: &str| days_to_advance(today, &AdvanceInput { days: None, to: Some(t.into()) });
        assert_eq!(days(1).unwrap(), 1);
        assert_eq!(days(366).unwrap(), 366);
        assert!(days(0).is_err());
        assert!(days(-3).is_err());
        assert!(days(367).is_err());
        assert_eq!(to("2026-12-27").unwrap(), 30);
        assert!(to("2026-11-27").is_err(), "today is not forward");
        assert!(to("2025-01-01").is_err());
        assert!(to("2027-11-29").is_err(), "367 days");
        assert!(to("27.11.2026").is_err());
        assert!(days_to_advance(today, &AdvanceInput::default()).is_err());
        assert!(days_to_advance(today, &AdvanceInput { days: Some(1), to: Some("2026-12-01".into()) }).is_err());
    }
}
