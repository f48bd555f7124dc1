//! Reminders, dunning and collection as data (SPEC §9.3): the policy, the schedule it gives an
//! invoice, and default interest (§288 BGB) computed from a dated base-rate table.
//!
//! The steps of an invoice, in order: a friendly reminder before the due date, the dunning levels
//! at their days after it, and the hand-over to collection. Each step has a rank; an invoice
//! records the rank of the last step taken, so the next one is the first of the schedule with a
//! higher rank, whatever happened meanwhile (a pause, a changed policy).

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::validate::{FieldError, Violations};

/// The most dunning levels a policy may have.
pub const MAX_LEVELS: usize = 9;
/// The least days between two dunning steps, whatever the schedule says after a pause.
pub const MIN_DAYS_BETWEEN_STEPS: i64 = 7;

/// A text in both languages of the buyer's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DunningTitles)]
pub struct Titles {
    pub de: String,
    pub en: String,
}

/// One dunning level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DunningLevel)]
pub struct Level {
    /// Days after the due date on which this level is reached.
    pub days_after_due: i64,
    /// Whether reaching it charges the flat fee (§288(5) BGB); charged once per invoice.
    #[serde(default)]
    pub flat_fee: bool,
    /// Whether default interest runs from this level on (from the day after the due date).
    #[serde(default)]
    pub interest: bool,
    /// The notice's title, e.g. "1. Mahnung" / "First dunning notice".
    pub title: Titles,
}

/// The dunning policy. Fields left out take their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = DunningPolicy)]
pub struct Policy {
    /// Days before the due date on which the friendly reminder goes out (none: no reminder).
    pub reminder_days_before_due: Option<i64>,
    /// The levels, in order of their days after the due date.
    pub levels: Vec<Level>,
    /// Days after the due date on which the claim goes to collection (none: never).
    pub collection_days_after_due: Option<i64>,
    /// The flat fee in euro cents (§288(5) BGB: 4000). Charged only on EUR invoices.
    pub flat_fee: i64,
    /// Default interest in basis points over the base rate (§288(2) BGB, no consumer: 900).
    pub interest_points_bps: i64,
    /// Days the buyer is given in a dunning notice to pay (the new deadline).
    pub payment_deadline_days: i64,
    /// Who to contact about a claim in collection (named in the collection notice).
    pub collection_contact: String,
}

impl Default for Policy {
    fn default() -> Policy {
        let level = |days, flat_fee, interest, de: &str, en: &str| Level {
            days_after_due: days,
            flat_fee,
            interest,
            title: Titles { de: de.into(), en: en.into() },
        };
        Policy {
            reminder_days_before_due: Some(3),
            levels: vec![
                level(7, false, false, "Zahlungserinnerung", "Payment reminder"),
                level(21, true, true, "1. Mahnung", "First dunning notice"),
                level(35, false, true, "Letzte Mahnung", "Final dunning notice"),
            ],
            collection_days_after_due: Some(49),
            flat_fee: 4000,
            interest_points_bps: 900,
            payment_deadline_days: 10,
            collection_contact: "netterms Forderungsmanagement, collections@netterms.example".into(),
        }
    }
}

/// A step of an invoice's dunning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    Reminder,
    /// Level 1, 2, … (1-based).
    Level(u8),
    Collection,
}

impl Step {
    /// The order of steps; an invoice stores the rank of the last one taken (0: none).
    pub fn rank(self) -> i64 {
        match self {
            Step::Reminder => 1,
            Step::Level(n) => 1 + i64::from(n),
            Step::Collection => 100,
        }
    }

    /// The stored name, e.g. `level_2`.
    pub fn key(self) -> String {
        match self {
            Step::Reminder => "reminder".into(),
            Step::Level(n) => format!("level_{n}"),
            Step::Collection => "collection".into(),
        }
    }
}

impl Policy {
    /// What is wrong with this policy, with field paths.
    pub fn violations(&self) -> Vec<FieldError> {
        let mut v = Violations::new();
        if let Some(d) = self.reminder_days_before_due
            && !(0..=60).contains(&d)
        {
            v.add("reminder_days_before_due", "reminder_days_before_due must be 0 to 60");
        }
        if self.levels.len() > MAX_LEVELS {
            v.add("levels", format!("at most {MAX_LEVELS} levels"));
        }
        let mut last = 0;
        for (i, l) in self.levels.iter().enumerate() {
            let p = format!("levels[{i}]");
            if !(1..=365).contains(&l.days_after_due) {
                v.add(format!("{p}.days_after_due"), "days_after_due must be 1 to 365");
            } else if l.days_after_due <= last {
                v.add(format!("{p}.days_after_due"), "levels must be in increasing order of days_after_due");
            }
            last = last.max(l.days_after_due);
            for (lang, t) in [("de", &l.title.de), ("en", &l.title.en)] {
                if t.trim().is_empty() || t.chars().count() > 100 {
                    v.add(format!("{p}.title.{lang}"), "a title of 1 to 100 characters");
                }
            }
        }
        if let Some(d) = self.collection_days_after_due {
            if !(1..=730).contains(&d) {
                v.add("collection_days_after_due", "collection_days_after_due must be 1 to 730");
            } else if d <= last {
                v.add("collection_days_after_due", "collection must come after the last level");
            }
        }
        if !(0..=100_000).contains(&self.flat_fee) {
            v.add("flat_fee", "flat_fee must be 0 to 100000 cents");
        }
        if !(0..=2_000).contains(&self.interest_points_bps) {
            v.add("interest_points_bps", "interest_points_bps must be 0 to 2000");
        }
        if !(1..=60).contains(&self.payment_deadline_days) {
            v.add("payment_deadline_days", "payment_deadline_days must be 1 to 60");
        }
        if self.collection_contact.trim().is_empty() || self.collection_contact.chars().count() > 300 {
            v.add("collection_contact", "a contact of 1 to 300 characters");
        }
        v.finish().err().unwrap_or_default()
    }

    /// The level `n` (1-based).
    pub fn level(&self, n: u8) -> Option<&Level> {
        self.levels.get(usize::from(n).checked_sub(1)?)
    }

    /// Every step of an invoice due on `due`, in order, with the date it is scheduled for.
    pub fn schedule(&self, due: NaiveDate) -> Vec<(Step, NaiveDate)> {
        let mut steps = Vec::new();
        if let Some(d) = self.reminder_days_before_due {
            steps.push((Step::Reminder, due - Duration::days(d)));
        }
        for (i, l) in self.levels.iter().enumerate() {
            let n = u8::try_from(i + 1).unwrap_or(u8::MAX);
            steps.push((Step::Level(n), due + Duration::days(l.days_after_due)));
        }
        if let Some(d) = self.collection_days_after_due {
            steps.push((Step::Collection, due + Duration::days(d)));
        }
        steps
    }

    /// The next step after the one of rank `done` for an invoice due on `due`, and the date it
    /// becomes due: never before `earliest` (the day the previous step was taken plus the least
    /// gap, or the day the invoice was created). A reminder is skipped once the due date has
    /// come (it would arrive too late to help).
    pub fn next_step(&self, due: NaiveDate, done: i64, earliest: NaiveDate) -> Option<(Step, NaiveDate)> {
        self.schedule(due)
            .into_iter()
            .filter(|(s, _)| s.rank() > done)
            .find(|(s, on)| !(*s == Step::Reminder && (*on <= earliest || earliest >= due)))
            .map(|(s, on)| (s, on.max(earliest)))
    }
}

/// A row of the base-rate table (§247 BGB): the rate in basis points from a date on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BaseRate {
    pub valid_from: NaiveDate,
    /// May be negative (it was −88 from 2016-07-01 to 2022-12-31).
    pub rate_bps: i64,
}

/// The base rate in force on `day` (basis points), if any row is in force.
pub fn base_rate_on(rates: &[BaseRate], day: NaiveDate) -> Option<i64> {
    rate_on(rates, day)
}

/// The base rate in force on `day`: the row with the latest `valid_from` not after it.
fn rate_on(rates: &[BaseRate], day: NaiveDate) -> Option<i64> {
    rates.iter().filter(|r| r.valid_from <= day).max_by_key(|r| r.valid_from).map(|r| r.rate_bps)
}

/// Default interest in minor units on `open` for the days after `from` up to and including
/// `through`: per calendar day at (base rate of that day + `points_bps`), actual/365, summed
/// exactly and rounded half up once at the end. A negative yearly rate counts as zero; days
/// before the first row of the table have no base rate and are charged `points_bps` alone.
pub fn interest(open: i64, from: NaiveDate, through: NaiveDate, rates: &[BaseRate], points_bps: i64) -> i64 {
    if open <= 0 || through <= from {
        return 0;
    }
    let mut sum: i128 = 0;
    let mut day = from + Duration::days(1);
    while day <= through {
        let yearly = (rate_on(rates, day).unwrap_or(0) + points_bps).max(0);
        sum += i128::from(open) * i128::from(yearly);
        day += Duration::days(1);
    }
    // sum is in minor units × basis points × days; a year of 365 days of 10,000 bps.
    let denom: i128 = 10_000 * 365;
    i64::try_from((sum + denom / 2) / denom).unwrap_or(i64::MAX)
}

/// Whether the table has a row for the half-year holding `day` (the base rate changes on
/// 1 January and 1 July; a missing row means the operator has not entered the new rate).
pub fn has_rate_for_half_year(rates: &[BaseRate], day: NaiveDate) -> bool {
    use chrono::Datelike;
    let start = NaiveDate::from_ymd_opt(day.year(), if day.month() >= 7 { 7 } else { 1 }, 1);
    start.is_some_and(|s| rates.iter().any(|r| r.valid_from == s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn rates() -> Vec<BaseRate> {
        [("2024-07-01", 337), ("2025-01-01", 227), ("2025-07-01", 127), ("2026-01-01", 127)]
            .iter()
            .map(|(f, r)| BaseRate { valid_from: d(f), rate_bps: *r })
            .collect()
    }

    #[test]
    fn the_default_policy_is_valid_and_schedules_the_spec_days() {
        let p = Policy::default();
        assert!(p.violations().is_empty());
        let due = d("2026-03-31");
        let s = p.schedule(due);
        assert_eq!(
            s,
            vec![
                (Step::Reminder, d("2026-03-28")),
                (Step::Level(1), d("2026-04-07")),
                (Step::Level(2), d("2026-04-21")),
                (Step::Level(3), d("2026-05-05")),
                (Step::Collection, d("2026-05-19")),
            ]
        );
    }

    #[test]
    fn next_steps_follow_ranks_and_skip_a_reminder_too_late_to_help() {
        let p = Policy::default();
        let due = d("2026-03-31");
        assert_eq!(p.next_step(due, 0, d("2026-03-01")), Some((Step::Reminder, d("2026-03-28"))));
        // Created two days before the due date: no reminder, level 1 next.
        assert_eq!(p.next_step(due, 0, d("2026-03-29")), Some((Step::Level(1), d("2026-04-07"))));
        assert_eq!(p.next_step(due, Step::Reminder.rank(), d("2026-03-28")), Some((Step::Level(1), d("2026-04-07"))));
        // Resumed after a pause on day +30: level 2 is due at once, not before.
        assert_eq!(p.next_step(due, Step::Level(1).rank(), d("2026-04-30")), Some((Step::Level(2), d("2026-04-30"))));
        assert_eq!(p.next_step(due, Step::Collection.rank(), d("2026-06-01")), None);
    }

    #[test]
    fn bad_policies_are_refused_with_field_paths() {
        let mut p = Policy::default();
        p.levels[1].days_after_due = 5;
        p.levels[2].title.en = String::new();
        p.collection_days_after_due = Some(10);
        p.interest_points_bps = -1;
        let fields: Vec<String> = p.violations().into_iter().map(|e| e.source).collect();
        assert_eq!(
            fields,
            ["levels[1].days_after_due", "levels[2].title.en", "collection_days_after_due", "interest_points_bps"]
        );
    }

    #[test]
    fn interest_matches_a_hand_computation_across_a_rate_change() {
        // 10,000.00 EUR, due 2025-06-20: interest from 2025-06-21 through 2025-07-10. The base
        // rate is 2.27 % until 2025-06-30 (11.27 % with the 9 points) and 1.27 % from 2025-07-01
        // (10.27 %).
        // June 21–30: 10 days × 1,000,000 × 1127 bps = 11,270,000,000
        // July 1–10:  10 days × 1,000,000 × 1027 bps = 10,270,000,000
        // sum 21,540,000,000 / (10,000 × 365) = 5,901.37 → 5,901 cents.
        let i = interest(1_000_000, d("2025-06-20"), d("2025-07-10"), &rates(), 900);
        assert_eq!(i, 5_901);
        // One day at 10.27 % on 119.00 EUR: 11900 × 1027 / 3,650,000 = 3.348… → 3 cents.
        assert_eq!(interest(11_900, d("2026-02-01"), d("2026-02-02"), &rates(), 900), 3);
        assert_eq!(interest(11_900, d("2026-02-02"), d("2026-02-02"), &rates(), 900), 0);
        assert_eq!(interest(0, d("2026-02-01"), d("2026-03-02"), &rates(), 900), 0);
    }

    #[test]
    fn interest_is_additive_over_split_periods_up_to_rounding() {
        let whole = interest(500_000, d("2025-05-01"), d("2026-02-01"), &rates(), 900);
        let a = interest(500_000, d("2025-05-01"), d("2025-09-30"), &rates(), 900);
        let b = interest(500_000, d("2025-09-30"), d("2026-02-01"), &rates(), 900);
        assert!((whole - a - b).abs() <= 1, "{whole} vs {a} + {b}");
    }

    #[test]
    fn a_missing_half_year_row_is_noticed() {
        assert!(has_rate_for_half_year(&rates(), d("2026-03-15")));
        assert!(!has_rate_for_half_year(&rates(), d("2026-11-27")));
        assert!(has_rate_for_half_year(&rates(), d("2025-07-01")));
    }
}
