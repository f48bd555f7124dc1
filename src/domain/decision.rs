//! The credit decision: an ordered list of rules, each recorded with its result, so that every
//! decision explains itself. Pure: the caller supplies exposure and limits.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::legal_forms::{self, RequiredInput};
use super::order::{Amount, DebtorCompany, DeclineReason};
use super::validate;

/// The operator's credit policy (amounts in minor units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Credit limit of a buyer without an individual one.
    pub default_buyer_limit: i64,
    /// Orders above this gross amount go to manual review.
    pub review_above: i64,
    pub min_order_amount: i64,
    pub max_order_amount: i64,
    /// Countries whose buyers are served.
    pub countries: Vec<String>,
    /// Total exposure allowed per merchant and per PSP (none: unlimited).
    pub merchant_limit: Option<i64>,
    pub psp_limit: Option<i64>,
    /// Decline a buyer with an unpaid invoice at this dunning level or beyond (none: never).
    pub decline_at_dunning_level: Option<i64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            default_buyer_limit: 5_000_000,
            review_above: 2_500_000,
            min_order_amount: 100,
            max_order_amount: 5_000_000,
            countries: ["DE", "AT", "CH", "NL", "BE", "LU", "FR"].iter().map(|s| (*s).to_owned()).collect(),
            merchant_limit: None,
            psp_limit: None,
            decline_at_dunning_level: Some(2),
        }
    }
}

impl Policy {
    /// What is wrong with this policy, field by field.
    pub fn violations(&self) -> Vec<super::validate::FieldError> {
        let mut v = super::validate::Violations::new();
        for (name, x) in [
            ("default_buyer_limit", Some(self.default_buyer_limit)),
            ("review_above", Some(self.review_above)),
            ("merchant_limit", self.merchant_limit),
            ("psp_limit", self.psp_limit),
        ] {
            if x.is_some_and(|x| x < 0) {
                v.add(name, format!("{name} must not be negative"));
            }
        }
        if self.decline_at_dunning_level.is_some_and(|l| !(1..=9).contains(&l)) {
            v.add("decline_at_dunning_level", "decline_at_dunning_level must be 1 to 9");
        }
        if self.min_order_amount < 1 {
            v.add("min_order_amount", "min_order_amount must be at least 1");
        }
        if self.max_order_amount < self.min_order_amount {
            v.add("max_order_amount", "max_order_amount must not be below min_order_amount");
        }
        if self.countries.is_empty() || self.countries.iter().any(|c| !validate::COUNTRIES.contains(&c.as_str())) {
            v.add("countries", "countries must be supported ISO 3166-1 alpha-2 codes");
        }
        v.finish().err().unwrap_or_default()
    }
}

/// What the decision looks at.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub company: &'a DebtorCompany,
    pub person_email: Option<&'a str>,
    pub amount: Amount,
    /// The buyer's own limit, if the operator set one.
    pub buyer_limit: Option<i64>,
    /// Gross of the buyer's other orders that hold exposure, in this currency.
    pub buyer_exposure: i64,
    pub buyer_blocked: bool,
    /// The highest dunning level among the buyer's unpaid invoices (0: none).
    pub buyer_dunning_level: i64,
    pub merchant_exposure: i64,
    pub psp_exposure: i64,
    pub sandbox: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Approved,
    Review,
    Declined,
}

/// One rule's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleResult {
    pub rule: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub decline_reason: Option<DeclineReason>,
    pub rules: Vec<RuleResult>,
}

struct Trace(Vec<RuleResult>);

impl Trace {
    fn check(&mut self, rule: &str, passed: bool, detail: impl Into<String>) -> bool {
        self.0.push(RuleResult { rule: rule.to_owned(), passed, detail: detail.into() });
        passed
    }
}

/// The sandbox's documented magic values: a `+decline`, `+review`, `+limit`, `+address` or
/// `+unidentified` tag in the buyer's e-mail forces that outcome.
fn sandbox_forced(email: &str) -> Option<(Outcome, Option<DeclineReason>)> {
    let local = email.split('@').next().unwrap_or("");
    let tags: Vec<&str> = local.split('+').skip(1).collect();
    let has = |t: &str| tags.contains(&t);
    if has("decline") {
        Some((Outcome::Declined, Some(DeclineReason::RiskPolicy)))
    } else if has("limit") {
        Some((Outcome::Declined, Some(DeclineReason::DebtorLimitExceeded)))
    } else if has("address") {
        Some((Outcome::Declined, Some(DeclineReason::DebtorAddress)))
    } else if has("unidentified") {
        Some((Outcome::Declined, Some(DeclineReason::DebtorNotIdentified)))
    } else if has("review") {
        Some((Outcome::Review, None))
    } else {
        None
    }
}

fn declined(t: Trace, reason: DeclineReason) -> Decision {
    Decision { outcome: Outcome::Declined, decline_reason: Some(reason), rules: t.0 }
}

/// Decides. Rules run in order; the first that fails declines.
pub fn decide(f: &Facts<'_>, p: &Policy) -> Decision {
    let mut t = Trace(Vec::new());
    if f.sandbox
        && let Some((outcome, reason)) = f.person_email.and_then(sandbox_forced)
    {
        t.check("sandbox_magic_value", false, format!("forced {outcome:?} by the buyer's e-mail tag"));
        return Decision { outcome, decline_reason: reason, rules: t.0 };
    }

    let c = f.company;
    let form = legal_forms::find(&c.legal_form);
    let identified = match form {
        None => t.check("identification", false, "unknown legal form"),
        Some(form) => {
            let reg_ok = c.registration_number.as_deref().is_none_or(legal_forms::is_register_number);
            let vat_ok = c.tax_id.as_deref().is_none_or(legal_forms::is_vat_id);
            let present = match form.required_input {
                RequiredInput::RegistrationNumber => c.registration_number.is_some(),
                RequiredInput::TaxId => c.tax_id.is_some(),
            };
            let ok = reg_ok && vat_ok && (present || !form.required);
            t.check(
                "identification",
                ok,
                if ok { "identifier present and well-formed" } else { "required identifier missing or malformed" },
            )
        }
    };
    if !identified {
        return declined(t, DeclineReason::DebtorNotIdentified);
    }

    let a = &c.address;
    let address_ok = p.countries.contains(&a.country) && validate::is_postal_code(&a.country, &a.postal_code);
    if !t.check("address", address_ok, format!("country {} and postal code", a.country)) {
        return declined(t, DeclineReason::DebtorAddress);
    }

    let g = f.amount.gross;
    if !t.check(
        "risk_order_amount",
        (p.min_order_amount..=p.max_order_amount).contains(&g),
        "order amount within policy bounds",
    ) {
        return declined(t, DeclineReason::RiskPolicy);
    }
    if !t.check("risk_blocked_buyer", !f.buyer_blocked, "buyer not blocked") {
        return declined(t, DeclineReason::RiskPolicy);
    }
    if let Some(level) = p.decline_at_dunning_level {
        let l = f.buyer_dunning_level;
        if !t.check("risk_dunning", l < level, format!("highest dunning level {l}, declined from {level}")) {
            return declined(t, DeclineReason::RiskPolicy);
        }
    }

    let limit = f.buyer_limit.unwrap_or(p.default_buyer_limit);
    let exposure = f.buyer_exposure.saturating_add(g);
    if !t.check("limit_buyer", exposure <= limit, format!("exposure {exposure} of limit {limit}")) {
        return declined(t, DeclineReason::DebtorLimitExceeded);
    }
    if let Some(m) = p.merchant_limit {
        let e = f.merchant_exposure.saturating_add(g);
        if !t.check("limit_merchant", e <= m, format!("merchant exposure {e} of limit {m}")) {
            return declined(t, DeclineReason::DebtorLimitExceeded);
        }
    }
    if let Some(m) = p.psp_limit {
        let e = f.psp_exposure.saturating_add(g);
        if !t.check("limit_psp", e <= m, format!("psp exposure {e} of limit {m}")) {
            return declined(t, DeclineReason::DebtorLimitExceeded);
        }
    }

    if !t.check("manual_review", g <= p.review_above, format!("review above {}", p.review_above)) {
        return Decision { outcome: Outcome::Review, decline_reason: None, rules: t.0 };
    }
    Decision { outcome: Outcome::Approved, decline_reason: None, rules: t.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::merchant::Address;
    use crate::domain::money::Currency;

    fn company() -> DebtorCompany {
        DebtorCompany {
            name: "Kunde GmbH".into(),
            legal_form: "10001".into(),
            registration_number: Some("HRB 12345".into()),
            registration_court: Some("AG München".into()),
            tax_id: None,
            address: Address {
                street: "A".into(),
                house_number: None,
                addition: None,
                postal_code: "80331".into(),
                city: "München".into(),
                country: "DE".into(),
            },
            merchant_customer_id: None,
        }
    }

    fn facts(c: &DebtorCompany, gross: i64) -> Facts<'_> {
        Facts {
            company: c,
            person_email: Some("buyer@kunde.example"),
            amount: Amount { currency: Currency::EUR, gross, net: gross, tax: 0 },
            buyer_limit: None,
            buyer_exposure: 0,
            buyer_blocked: false,
            buyer_dunning_level: 0,
            merchant_exposure: 0,
            psp_exposure: 0,
            sandbox: true,
        }
    }

    #[test]
    fn a_buyer_in_dunning_at_the_configured_level_is_declined() {
        let c = company();
        let mut f = facts(&c, 10_000);
        f.buyer_dunning_level = 1;
        assert_eq!(decide(&f, &Policy::default()).outcome, Outcome::Approved);
        f.buyer_dunning_level = 2;
        let d = decide(&f, &Policy::default());
        assert_eq!((d.outcome, d.decline_reason), (Outcome::Declined, Some(DeclineReason::RiskPolicy)));
        assert!(d.rules.iter().any(|r| r.rule == "risk_dunning" && !r.passed));
        let off = Policy { decline_at_dunning_level: None, ..Policy::default() };
        assert_eq!(decide(&f, &off).outcome, Outcome::Approved);
    }

    #[test]
    fn approves_within_limits_and_explains() {
        let c = company();
        let d = decide(&facts(&c, 10_000), &Policy::default());
        assert_eq!(d.outcome, Outcome::Approved);
        assert!(d.rules.iter().all(|r| r.passed));
        assert_eq!(d.rules.first().map(|r| r.rule.as_str()), Some("identification"));
    }

    #[test]
    fn each_rule_declines_with_its_reason() {
        let p = Policy::default();
        let mut c = company();
        c.registration_number = None;
        assert_eq!(decide(&facts(&c, 10_000), &p).decline_reason, Some(DeclineReason::DebtorNotIdentified));
        let mut c = company();
        c.address.country = "PL".into();
        c.address.postal_code = "00-001".into();
        assert_eq!(decide(&facts(&c, 10_000), &p).decline_reason, Some(DeclineReason::DebtorAddress));
        let c = company();
        assert_eq!(decide(&facts(&c, 50), &p).decline_reason, Some(DeclineReason::RiskPolicy));
        let mut f = facts(&c, 10_000);
        f.buyer_blocked = true;
        assert_eq!(decide(&f, &p).decline_reason, Some(DeclineReason::RiskPolicy));
        let mut f = facts(&c, 10_000);
        f.buyer_exposure = p.default_buyer_limit - 9_999;
        assert_eq!(decide(&f, &p).decline_reason, Some(DeclineReason::DebtorLimitExceeded));
        f.buyer_exposure = p.default_buyer_limit - 10_000;
        assert_eq!(decide(&f, &p).outcome, Outcome::Approved);
        assert_eq!(decide(&facts(&c, p.review_above + 1), &p).outcome, Outcome::Review);
    }

    #[test]
    fn sandbox_magic_values() {
        let c = company();
        let p = Policy::default();
        let mut f = facts(&c, 10_000);
        f.person_email = Some("anna+review@kunde.example");
        assert_eq!(decide(&f, &p).outcome, Outcome::Review);
        f.person_email = Some("anna+decline@kunde.example");
        assert_eq!(decide(&f, &p).decline_reason, Some(DeclineReason::RiskPolicy));
        f.person_email = Some("anna+limit@kunde.example");
        assert_eq!(decide(&f, &p).decline_reason, Some(DeclineReason::DebtorLimitExceeded));
        f.sandbox = false;
        assert_eq!(decide(&f, &p).outcome, Outcome::Approved);
    }
}
