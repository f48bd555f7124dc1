//! Reminders, dunning levels and collection (SPEC §9.3), run by the scan of what is due on a
//! PSP's clock, and the operator's policy, base rates and pauses.
//!
//! A step runs once per invoice and step: the invoice row is locked, its stage re-read, the step
//! recorded under a unique key (invoice, step) and the stage moved in the same transaction, so
//! two scans at the same moment or a scan resumed after a crash take each step once.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use super::messages::{DunningFacts, Locale};
use super::orders::{OrderError, conflict};
use crate::clock::PspTime;
use crate::domain::dunning::{self as rules, BaseRate, MIN_DAYS_BETWEEN_STEPS, Policy, Step};
use crate::domain::events::{DunningEvent, DunningEventKind, DunningPauseEvent, Event};
use crate::domain::ids::{CaptureId, PspId};
use crate::domain::ledger;
use crate::domain::validate::Violations;
use crate::store::captures::{self as captures_store, CaptureRow};
use crate::store::dunning::{self as store, Progress, StepRow};
use crate::store::{AsExec, StoreError, Tx, events, ledger as journal};

const POLICY_SETTING: &str = "dunning_policy";
const BATCH: i64 = 200;

/// The dunning policy in force: the operator's stored one, else the configuration's.
pub async fn policy(s: &Services, conn: &mut impl AsExec) -> Result<Policy, OrderError> {
    policy_of(s, crate::store::checkout::get_setting(conn, POLICY_SETTING).await?.as_deref())
}

/// The dunning policy from its stored setting (`settings.dunning_policy`), if any, else the
/// configured one. (A capture reads the setting with its order, in the same statement.)
pub fn policy_of(s: &Services, stored: Option<&str>) -> Result<Policy, OrderError> {
    match stored {
        Some(v) => serde_json::from_str(v)
            .map_err(|e| OrderError::Store(StoreError::Corrupt(format!("settings.dunning_policy: {e}")))),
        None => Ok(s.config.dunning.clone()),
    }
}

/// Replaces the dunning policy (operator). Invoices keep the steps they have taken; their next
/// step is worked out by the new policy.
pub async fn set_policy(s: &Services, p: Policy) -> Result<Policy, OrderError> {
    let v = p.violations();
    if !v.is_empty() {
        return Err(OrderError::Invalid(v));
    }
    let value = serde_json::to_string(&p).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut tx = s.db.begin().await?;
    crate::store::checkout::put_setting(&mut tx, POLICY_SETTING, &value, s.clock.now()).await?;
    tx.commit().await?;
    tracing::info!("dunning policy replaced");
    Ok(p)
}

pub async fn base_rates(s: &Services) -> Result<Vec<BaseRate>, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(store::base_rates(&mut conn).await?)
}

/// `PUT /admin/v1/base-rates/{valid_from}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BaseRateInput {
    /// The base rate in basis points (1.27 % = 127; may be negative).
    #[schema(required = true)]
    pub rate_bps: Option<i64>,
    /// Where the rate comes from, e.g. "Deutsche Bundesbank, press release of 2026-06-30".
    #[schema(required = true)]
    pub source: Option<String>,
}

/// Adds or corrects the base rate in force from `valid_from` (1 January or 1 July).
pub async fn put_base_rate(s: &Services, valid_from: &str, input: BaseRateInput) -> Result<BaseRate, OrderError> {
    use chrono::Datelike;
    let mut v = Violations::new();
    let date = NaiveDate::parse_from_str(valid_from, "%Y-%m-%d").ok();
    match date {
        None => v.add("valid_from", "valid_from must be a date, YYYY-MM-DD"),
        Some(d) if d.day() != 1 || !matches!(d.month(), 1 | 7) => {
            v.add("valid_from", "the base rate changes on 1 January and 1 July only")
        }
        Some(_) => {}
    }
    let rate = v.required("rate_bps", input.rate_bps);
    if rate.is_some_and(|r| !(-1_000..=2_000).contains(&r)) {
        v.add("rate_bps", "rate_bps must be -1000 to 2000");
    }
    let source = v.text("source", input.source, 300);
    v.finish().map_err(OrderError::Invalid)?;
    let (Some(valid_from), Some(rate_bps), Some(source)) = (date, rate, source) else {
        return Err(OrderError::Invalid(Vec::new()));
    };
    let row = BaseRate { valid_from, rate_bps };
    let mut tx = s.db.begin().await?;
    store::put_base_rate(&mut tx, &row, &source).await?;
    tx.commit().await?;
    Ok(row)
}

/// Logs a warning when the base-rate table has no row for the half-year holding `today`.
pub async fn warn_if_base_rate_missing(s: &Services, today: NaiveDate) -> Result<bool, OrderError> {
    let rates = base_rates(s).await?;
    let ok = rules::has_rate_for_half_year(&rates, today);
    if !ok {
        let half_year = if today.month() >= 7 { 7 } else { 1 };
        let valid_from = NaiveDate::from_ymd_opt(today.year(), half_year, 1).unwrap_or(today);
        tracing::warn!(
            %today,
            %valid_from,
            "the base-rate table has no row for the current half-year; default interest uses the latest rate \
             entered. Add the Bundesbank's rate: PUT /admin/v1/base-rates/{valid_from}"
        );
    }
    Ok(ok)
}

/// What a scan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct DunningRun {
    pub reminders: usize,
    pub levels: usize,
    pub collections: usize,
    /// Pauses that ran out.
    pub resumed: usize,
}

impl DunningRun {
    pub fn add(&mut self, o: DunningRun) {
        self.reminders += o.reminders;
        self.levels += o.levels;
        self.collections += o.collections;
        self.resumed += o.resumed;
    }
}

/// Invoices whose steps run in one transaction: fewer commits, yet short write locks.
const PER_TRANSACTION: usize = 50;

/// Takes every dunning step of `psp_id`'s invoices due by `at` on its clock.
pub async fn run_due(s: &Services, psp_id: PspId, at: PspTime) -> Result<DunningRun, OrderError> {
    let mut conn = s.db.conn().await?;
    let today = at.now.date_naive();
    let mut ids = store::due(&mut conn, psp_id, today, at.now, BATCH).await?;
    if ids.is_empty() {
        return Ok(DunningRun::default());
    }
    let policy = policy(s, &mut conn).await?;
    let rates = store::base_rates(&mut conn).await?;
    drop(conn);
    let mut run = DunningRun::default();
    loop {
        let mut changed = 0;
        for chunk in ids.chunks(PER_TRANSACTION) {
            let mut tx = s.db.begin().await?;
            for id in chunk {
                if let Some(r) = process(s, &mut tx, &policy, &rates, psp_id, *id, at).await? {
                    run.add(r);
                    changed += 1;
                }
            }
            tx.commit().await?;
        }
        if ids.len() < usize::try_from(BATCH).unwrap_or(usize::MAX) || changed == 0 {
            return Ok(run);
        }
        let mut conn = s.db.conn().await?;
        ids = store::due(&mut conn, psp_id, today, at.now, BATCH).await?;
    }
}

fn progress_of(c: &CaptureRow) -> Result<Progress, StoreError> {
    let date = |d: &Option<String>, what: &str| {
        d.as_deref()
            .map(|d| d.parse::<NaiveDate>().map_err(|_| StoreError::Corrupt(format!("captures.{what}"))))
            .transpose()
    };
    Ok(Progress {
        stage: c.dunning_stage,
        level: c.dunning_level,
        next_on: date(&c.next_dunning_on, "next_dunning_on")?,
        last_on: date(&c.last_dunning_on, "last_dunning_on")?,
        fees: c.dunning_fees,
        interest: c.dunning_interest,
        waived: c.dunning_waived,
        interest_through: date(&c.interest_through, "interest_through")?,
        collection_at: c.collection_at,
        paused_until: c.dunning_paused_until,
        pause_reason: c.dunning_pause_reason.clone(),
    })
}

/// Default interest owed on `c` from the last day charged (or, when it starts now, the due date)
/// through `today`, and the new last day charged.
fn interest_due(
    c: &CaptureRow,
    p: &Progress,
    rates: &[BaseRate],
    points_bps: i64,
    today: NaiveDate,
) -> (i64, Option<NaiveDate>) {
    match p.interest_through {
        Some(from) if c.currency == "EUR" && today > from => {
            (rules::interest(c.outstanding(), from, today, rates, points_bps), Some(today))
        }
        other => (0, other),
    }
}

/// Posts a dunning charge of `kind` on `c`'s buyer.
async fn charge(
    tx: &mut Tx,
    c: &CaptureRow,
    kind: &'static str,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<(), OrderError> {
    if amount > 0 {
        let entry = ledger::dunning_charge(c.buyer_id, kind, amount).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        journal::post(tx, &entry, &c.currency, c.id.0, now).await?;
    }
    Ok(())
}

/// Takes the invoice's due step, if it still has one due; `None` if there was nothing to do (the
/// transaction is then dropped).
async fn process(
    s: &Services,
    tx: &mut Tx,
    policy: &Policy,
    rates: &[BaseRate],
    psp_id: PspId,
    id: CaptureId,
    at: PspTime,
) -> Result<Option<DunningRun>, OrderError> {
    // Everything is read and worked out first; the writes come after the step is recorded, so an
    // invoice with nothing to do leaves the shared transaction untouched.
    let Some(row) = captures_store::get_capture_with_contact(tx, psp_id, id).await? else { return Ok(None) };
    let c = row.capture;
    let today = at.now.date_naive();
    let mut p = progress_of(&c)?;
    if !c.is_unpaid() || c.disputes_open > 0 || p.next_on.is_none_or(|d| d > today) {
        return Ok(None);
    }
    let mut run = DunningRun::default();
    let mut resumed = None;
    if let Some(until) = p.paused_until {
        if until > at.now {
            return Ok(None);
        }
        p.paused_until = None;
        let reason = p.pause_reason.take().unwrap_or_default();
        resumed =
            Some(DunningPauseEvent { capture_id: id, reason: format!("the pause ran out ({reason})"), until: None });
        run.resumed = 1;
    }
    let due: NaiveDate = c.due_date.parse().map_err(|_| StoreError::Corrupt("captures.due_date".into()))?;
    // An invoice paid by direct debit is collected, not reminded to be paid by transfer; it is
    // dunned only once its collection came back or the bank refused it.
    let collecting = row.contact.payment_method == "direct_debit"
        && row.contact.mandate_reference.is_some()
        && crate::store::direct_debits::latest_of_capture(tx, id)
            .await?
            .is_none_or(|d| !matches!(d.state.as_str(), "returned" | "rejected"));
    let created = c.created_at.date_naive();
    let mut earliest = p.last_on.map_or(created, |l| created.max(l + Duration::days(MIN_DAYS_BETWEEN_STEPS)));
    let step = loop {
        match policy.next_step(due, p.stage, earliest) {
            None => break None,
            // Too late to help before the due date, or not needed (the pre-notification said when
            // the amount is debited): passed over, not sent.
            Some((Step::Reminder, _)) if today >= due || collecting => {
                p.stage = Step::Reminder.rank();
                earliest = earliest.max(today);
            }
            Some(next) => break Some(next),
        }
    };
    let due_step = match step {
        Some((step, on)) if on <= today => Some(step),
        other => {
            // Nothing due today: the next step's date (or none) is kept.
            p.next_on = other.map(|(_, on)| on);
            None
        }
    };
    let due_step = match due_step {
        Some(Step::Level(_) | Step::Collection) if collecting => {
            // Still on its way (a collection day after the due date, a statement not yet read):
            // looked at again tomorrow.
            p.next_on = Some(today + Duration::days(1));
            None
        }
        other => other,
    };
    let Some(step) = due_step else {
        if let Some(ev) = resumed {
            events::append(tx, psp_id, &Event::DunningResumed(ev), at).await?;
        }
        return save(tx, &c, &p, at.now).await.map(|()| Some(run));
    };

    // The step is due today.
    let (mut fee, mut interest, mut deadline) = (0, 0, None);
    let kind = match step {
        Step::Reminder => {
            run.reminders = 1;
            DunningEventKind::Reminder
        }
        Step::Level(n) => {
            let level = policy.level(n).ok_or_else(|| StoreError::Corrupt(format!("dunning level {n}")))?;
            if level.interest && p.interest_through.is_none() {
                // Interest runs from the day after the due date.
                p.interest_through = Some(due);
            }
            (interest, p.interest_through) = interest_due(&c, &p, rates, policy.interest_points_bps, today);
            // The flat fee once per invoice, on a euro claim (§288(5) BGB).
            if level.flat_fee && p.fees == 0 && c.currency == "EUR" && policy.flat_fee > 0 {
                fee = policy.flat_fee;
            }
            p.level = i64::from(n);
            deadline = Some(today + Duration::days(policy.payment_deadline_days));
            run.levels = 1;
            DunningEventKind::LevelChanged
        }
        Step::Collection => {
            (interest, p.interest_through) = interest_due(&c, &p, rates, policy.interest_points_bps, today);
            p.collection_at = Some(at.now);
            run.collections = 1;
            DunningEventKind::Collection
        }
    };
    // Whom the step's message goes to (read before the writes, which are all deferred: they reach
    // the database in one round trip with the next invoice's read, or at the commit).
    let f = super::messages::InvoiceFacts::of(s, &super::messages::buyer_of(row.contact)?, &c)?;
    // The invoice is locked and its stage read under the lock, so no one else takes this step; the
    // step's unique key would fail the transaction if anything had.
    let key = step.key();
    let row = StepRow { capture_id: id, psp_id, step: &key, level: p.level, fee, interest, deadline, taken_at: at.now };
    store::record_step(tx, &row);
    if let Some(ev) = resumed {
        events::append(tx, psp_id, &Event::DunningResumed(ev), at).await?;
    }
    charge(tx, &c, "default_interest", interest, at.now).await?;
    charge(tx, &c, "dunning_fee", fee, at.now).await?;
    p.interest += interest;
    p.fees += fee;
    p.stage = step.rank();
    p.last_on = Some(today);
    p.next_on =
        policy.next_step(due, p.stage, created.max(today + Duration::days(MIN_DAYS_BETWEEN_STEPS))).map(|(_, on)| on);
    let data = DunningEvent {
        capture_id: id,
        order_id: c.order_id,
        step: key,
        level: p.level,
        currency: c.currency.clone(),
        outstanding: c.outstanding(),
        fee_charged: fee,
        interest_charged: interest,
        total_due: c.outstanding() + p.fees + p.interest - p.waived,
        deadline,
        total_by_deadline: None,
    };
    // The notice states interest up to its pay-by date: what it asks settles the invoice if paid
    // by then (see `interest_through_for_payment`).
    let until_deadline = match (deadline, p.interest_through) {
        (Some(d), Some(from)) if c.currency == "EUR" => {
            rules::interest(c.outstanding(), from, d, rates, policy.interest_points_bps)
        }
        _ => 0,
    };
    let data = DunningEvent { total_by_deadline: deadline.map(|_| data.total_due + until_deadline), ..data };
    let total = data.total_due;
    events::append(tx, psp_id, &Event::Dunning(kind, data), at).await?;
    store::defer_progress(tx, c.id, c.dunning_stage, &p, at.now);
    match step {
        Step::Reminder => super::messages::queue_reminder(s, tx, &f, at),
        Step::Level(n) => {
            let title = policy.level(n).map(|l| if f.buyer.locale == Locale::En { &l.title.en } else { &l.title.de });
            let levels = policy.levels.len();
            let stage = if usize::from(n) >= levels {
                super::messages::NoticeStage::Last
            } else if n == 1 {
                super::messages::NoticeStage::First
            } else {
                super::messages::NoticeStage::Between
            };
            let interest_rate = p.interest_through.filter(|_| c.currency == "EUR").and_then(|_| {
                let base = crate::domain::dunning::base_rate_on(rates, today)?;
                Some((base + policy.interest_points_bps, base, due + Duration::days(1)))
            });
            let d = DunningFacts {
                level: p.level,
                stage,
                title: title.cloned().unwrap_or_default(),
                interest_rate,
                collection_on: policy.collection_days_after_due.map(|days| due + Duration::days(days)),
                fees: p.fees,
                interest: p.interest + until_deadline,
                total: total + until_deadline,
                deadline: deadline.unwrap_or(today),
            };
            super::messages::queue_dunning(s, tx, &f, &d, at);
        }
        Step::Collection => super::messages::queue_collection(s, tx, &f, total, &policy.collection_contact, at),
    }
    Ok(Some(run))
}

async fn save(tx: &mut Tx, c: &CaptureRow, p: &Progress, now: DateTime<Utc>) -> Result<(), OrderError> {
    if !store::set_progress(tx, c.id, c.dunning_stage, p, now).await? {
        return Err(conflict("the invoice's dunning changed meanwhile"));
    }
    Ok(())
}

/// Called when a refund or a direct payment changes what is open on `c` (read, locked, before
/// the change) to `new_state`: interest that runs is charged up to today on the amount open until
/// now, and an invoice that is settled stops dunning at once, its fees and interest waived (the
/// claim they grew from is gone). Nothing to do, and nothing read, for an invoice not in dunning.
pub async fn on_settlement_change(
    s: &Services,
    tx: &mut Tx,
    c: &CaptureRow,
    new_state: &str,
    at: PspTime,
) -> Result<(), OrderError> {
    on_settlement_change_through(s, tx, c, new_state, at, at.now.date_naive()).await
}

/// [`on_settlement_change`] with interest charged up to `through` (today, or the pay-by date of
/// a notice whose total a payment pays).
pub async fn on_settlement_change_through(
    s: &Services,
    tx: &mut Tx,
    c: &CaptureRow,
    new_state: &str,
    at: PspTime,
    through: NaiveDate,
) -> Result<(), OrderError> {
    if c.interest_through.is_none() && c.dunning_charges() == 0 {
        return Ok(());
    }
    let mut p = progress_of(c)?;
    if c.is_unpaid() && p.interest_through.is_some() {
        let points = policy(s, tx).await?.interest_points_bps;
        let rates = store::base_rates(tx).await?;
        let (interest, through) = interest_due(c, &p, &rates, points, through);
        charge(tx, c, "default_interest", interest, at.now).await?;
        p.interest += interest;
        p.interest_through = through;
    }
    if !matches!(new_state, "open" | "late") {
        // What is still claimed: charged, not waived, not paid by the buyer.
        let open = p.fees + p.interest - p.waived - c.dunning_paid;
        if open > 0 {
            let entry = ledger::dunning_waiver(c.buyer_id, open).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            journal::post(tx, &entry, &c.currency, c.id.0, at.now).await?;
            p.waived += open;
        }
        p.interest_through = None;
        p.next_on = None;
    }
    save(tx, c, &p, at.now).await
}

/// Up to which day a payment of `amount` charges the interest running on `rows` (the invoices
/// it pays, in order): the pay-by date of each invoice's newest notice not yet past, if the
/// payment pays everything those notices asked (interest up to their dates, as they stated it);
/// today otherwise. `None` for an invoice on which no interest runs.
pub async fn interest_through_for_payment(
    s: &Services,
    tx: &mut Tx,
    rows: &[CaptureRow],
    amount: i64,
) -> Result<Vec<Option<NaiveDate>>, OrderError> {
    if rows.iter().all(|c| c.interest_through.is_none()) {
        return Ok(vec![None; rows.len()]);
    }
    let points = policy(s, tx).await?.interest_points_bps;
    let rates = store::base_rates(tx).await?;
    let mut today = Vec::with_capacity(rows.len());
    let mut by_deadline = Vec::with_capacity(rows.len());
    let mut asked: i64 = 0;
    for c in rows {
        let now = s.now_for(tx, c.psp_id).await?.now.date_naive();
        let deadline = match c.interest_through {
            Some(_) => store::latest_deadline(tx, c.id).await?.filter(|d| *d >= now),
            None => None,
        };
        let p = progress_of(c)?;
        let until = deadline.unwrap_or(now);
        let (interest, _) = interest_due(c, &p, &rates, points, until);
        asked = asked.saturating_add(c.outstanding() + c.dunning_charges() + interest);
        today.push(c.interest_through.as_ref().map(|_| now));
        by_deadline.push(c.interest_through.as_ref().map(|_| until));
    }
    Ok(if amount >= asked { by_deadline } else { today })
}

/// `POST /admin/v1/captures/{id}/dunning/pause`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseInput {
    /// Why (shown to the PSP in the webhook and to operators).
    #[schema(required = true)]
    pub reason: Option<String>,
    /// Until when (on the PSP's clock; at most a year ahead). Dunning resumes by itself then.
    #[schema(required = true)]
    pub until: Option<DateTime<Utc>>,
}

/// `POST /admin/v1/captures/{id}/dunning/resume`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeInput {
    #[schema(required = true)]
    pub reason: Option<String>,
}

async fn locked_unpaid(tx: &mut Tx, id: CaptureId) -> Result<(CaptureRow, PspId), OrderError> {
    let psp_id = captures_store::psp_of(tx, id).await?.ok_or(OrderError::NotFound("capture"))?;
    let c = captures_store::get_capture(tx, psp_id, id, true).await?.ok_or(OrderError::NotFound("capture"))?;
    if !c.is_unpaid() {
        return Err(conflict(format!("the invoice is {} and not in dunning", c.state)));
    }
    if c.collection_at.is_some() {
        return Err(conflict("the claim is in collection"));
    }
    Ok((c, psp_id))
}

/// Pauses an unpaid invoice's dunning until a moment (operator). Pausing again replaces the pause.
/// Pauses an invoice's dunning until `until`, at most `max_days` ahead (a year; an operator
/// whose only role allowing it is `support`: 14 days, SPEC §14.1).
pub async fn pause(s: &Services, id: CaptureId, input: PauseInput, max_days: i64) -> Result<PspId, OrderError> {
    let mut tx = s.db.begin().await?;
    let (c, psp_id) = locked_unpaid(&mut tx, id).await?;
    let at = s.now_for(&mut tx, psp_id).await?;
    let mut v = Violations::new();
    let reason = v.text("reason", input.reason, 500);
    let until = v.required("until", input.until);
    if until.is_some_and(|u| u <= at.now || u > at.now + Duration::days(max_days.min(366))) {
        if max_days < 366 {
            v.add("until", format!("until must be in the future, at most {max_days} days ahead for your roles"));
        } else {
            v.add("until", "until must be in the future, at most a year ahead");
        }
    }
    v.finish().map_err(OrderError::Invalid)?;
    let (Some(reason), Some(until)) = (reason, until) else { return Err(OrderError::Invalid(Vec::new())) };
    let until = chrono::SubsecRound::trunc_subsecs(until, 6);
    pause_locked(&mut tx, &c, reason, Some(until), true, at).await?;
    tx.commit().await?;
    Ok(psp_id)
}

/// Pauses the dunning of `c` (locked by the caller) until `until` (`None`: while a dispute is
/// open, counted on the invoice) and says so in a `dunning.paused` event. Unless `replace`, a
/// longer pause already running stays.
pub(crate) async fn pause_locked(
    tx: &mut Tx,
    c: &CaptureRow,
    reason: String,
    until: Option<DateTime<Utc>>,
    replace: bool,
    at: PspTime,
) -> Result<(), OrderError> {
    if let Some(until) = until {
        let mut p = progress_of(c)?;
        if replace || p.paused_until.is_none_or(|u| u < until) {
            p.paused_until = Some(until);
            p.pause_reason = Some(reason.clone());
            save(tx, c, &p, at.now).await?;
        }
    }
    let ev = DunningPauseEvent { capture_id: c.id, reason, until };
    events::append(tx, c.psp_id, &Event::DunningPaused(ev), at).await?;
    Ok(())
}

/// Resumes a paused invoice's dunning now (operator); a step that fell due meanwhile is taken by
/// the next scan, not before the pause's end had it run out.
pub async fn resume(s: &Services, id: CaptureId, input: ResumeInput) -> Result<PspId, OrderError> {
    let mut tx = s.db.begin().await?;
    let (c, psp_id) = locked_unpaid(&mut tx, id).await?;
    let at = s.now_for(&mut tx, psp_id).await?;
    let mut v = Violations::new();
    let reason = v.text("reason", input.reason, 500);
    v.finish().map_err(OrderError::Invalid)?;
    let Some(reason) = reason else { return Err(OrderError::Invalid(Vec::new())) };
    if c.dunning_paused_until.is_none_or(|u| u <= at.now) {
        return Err(conflict("dunning of this invoice is not paused"));
    }
    let mut p = progress_of(&c)?;
    p.paused_until = None;
    p.pause_reason = None;
    let today = at.now.date_naive();
    p.next_on = Some(p.next_on.map_or(today, |d| d.min(today)));
    save(&mut tx, &c, &p, at.now).await?;
    let ev = DunningPauseEvent { capture_id: id, reason, until: None };
    events::append(&mut tx, psp_id, &Event::DunningResumed(ev), at).await?;
    tx.commit().await?;
    Ok(psp_id)
}
