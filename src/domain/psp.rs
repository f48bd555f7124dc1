//! Payment service providers: their activation by the operator, fees and payout settings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::iban;
use super::ids::PspId;
use super::validate::{FieldError, Violations};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PayoutFrequency {
    Daily,
    Weekly,
    Monthly,
}

impl PayoutFrequency {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutFrequency::Daily => "daily",
            PayoutFrequency::Weekly => "weekly",
            PayoutFrequency::Monthly => "monthly",
        }
    }

    pub fn parse(s: &str) -> Option<PayoutFrequency> {
        match s {
            "daily" => Some(PayoutFrequency::Daily),
            "weekly" => Some(PayoutFrequency::Weekly),
            "monthly" => Some(PayoutFrequency::Monthly),
            _ => None,
        }
    }
}

/// A fee rate that applies to captures whose payment term is at most `max_duration` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeeBand {
    pub max_duration: i64,
    pub fee_rate_bps: i64,
}

/// The PSP as the recipient of netterms' fee invoices (EN 16931 buyer): its address and VAT id.
/// Without a country, the payout IBAN's country counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Billing {
    #[schema(example = "Zahlweg 5")]
    pub street: Option<String>,
    #[schema(example = "60311")]
    pub postal_code: Option<String>,
    #[schema(example = "Frankfurt am Main")]
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[schema(example = "DE")]
    pub country: Option<String>,
    /// VAT identification number; a PSP elsewhere in the EU with one is invoiced reverse charge.
    #[schema(example = "DE987654321")]
    pub vat_id: Option<String>,
    /// Where fee invoices are addressed (BT-49).
    #[schema(example = "buchhaltung@psp.example")]
    pub email: Option<String>,
}

fn check_billing(v: &mut Violations, b: Billing) -> Billing {
    let mut field = |name: &str, val: Option<String>, max: usize| {
        let val = val.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        if val.as_ref().is_some_and(|s| s.chars().count() > max || s.chars().any(char::is_control)) {
            v.add(format!("billing.{name}"), format!("billing.{name} must be at most {max} characters of text"));
        }
        val
    };
    let street = field("street", b.street, 200);
    let postal_code = field("postal_code", b.postal_code, 20);
    let city = field("city", b.city, 100);
    let country = field("country", b.country, 2).map(|c| c.to_ascii_uppercase());
    let vat_id = field("vat_id", b.vat_id, 32);
    // An e-mail given as blank text is no e-mail address (leave it out, or null, for none).
    let blank_email = b.email.as_deref().is_some_and(|e| e.trim().is_empty());
    let email = field("email", b.email, 254);
    if blank_email {
        v.add("billing.email", "billing.email must be an e-mail address (leave it out for none)");
    }
    if country.as_deref().is_some_and(|c| !super::einvoice::is_country(c)) {
        v.add("billing.country", "billing.country must be an ISO 3166 alpha-2 code such as DE");
    }
    if email.as_deref().is_some_and(|e| !super::validate::is_email(e)) {
        v.add("billing.email", "billing.email must be an e-mail address");
    }
    Billing { street, postal_code, city, country, vat_id, email }
}

/// The body of `POST /admin/v1/psps` (and the CLI's `psp create`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PspInput {
    #[schema(required = true, example = "Example Payments GmbH")]
    pub name: Option<String>,
    /// Fee in basis points of the captured gross amount (0–10000).
    #[schema(required = true, example = 150)]
    pub fee_rate_bps: Option<i64>,
    /// Fixed fee per capture, in minor units of the capture's currency.
    #[schema(required = true, example = 25)]
    pub fee_fixed: Option<i64>,
    /// Payout account (IBAN, mod-97 checked).
    #[schema(required = true, example = "DE89370400440532013000")]
    pub iban: Option<String>,
    /// BIC of the payout account's bank (ISO 9362, 8 or 11 characters); required for an account
    /// outside the EEA (e.g. CH, GB), where SEPA transfers must name the bank.
    #[schema(example = "COBADEFFXXX")]
    pub bic: Option<String>,
    #[schema(required = true)]
    pub payout_frequency: Option<PayoutFrequency>,
    /// Optional rates per payment-term band, overriding `fee_rate_bps` for terms up to `max_duration`.
    pub fee_bands: Option<Vec<FeeBand>>,
    /// Address and VAT id for netterms' fee invoices.
    pub billing: Option<Billing>,
}

/// The body of `PATCH /admin/v1/psps/{id}`: every field optional.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PspPatch {
    pub name: Option<String>,
    pub fee_rate_bps: Option<i64>,
    pub fee_fixed: Option<i64>,
    pub iban: Option<String>,
    /// The payout bank's BIC; `""` removes it (allowed for an account in the EEA).
    pub bic: Option<String>,
    pub payout_frequency: Option<PayoutFrequency>,
    pub fee_bands: Option<Vec<FeeBand>>,
    /// Replaces the billing details as a whole.
    pub billing: Option<Billing>,
}

/// A PSP's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspSettings {
    pub name: String,
    pub fee_rate_bps: i64,
    pub fee_fixed_minor: i64,
    pub payout_iban: String,
    pub payout_bic: Option<String>,
    pub payout_frequency: PayoutFrequency,
    pub fee_bands: Vec<FeeBand>,
    pub billing: Billing,
}

fn check_rate(v: &mut Violations, source: &str, bps: i64) {
    if !(0..=10_000).contains(&bps) {
        v.add(source, format!("{source} must be between 0 and 10000 basis points"));
    }
}

fn check_bands(v: &mut Violations, bands: &mut [FeeBand]) {
    bands.sort_by_key(|b| b.max_duration);
    for (i, b) in bands.iter().enumerate() {
        let src = format!("fee_bands[{i}]");
        if !(1..=120).contains(&b.max_duration) {
            v.add(format!("{src}.max_duration"), "max_duration must be between 1 and 120 days");
        }
        check_rate(v, &format!("{src}.fee_rate_bps"), b.fee_rate_bps);
        if i > 0 && bands[i - 1].max_duration == b.max_duration {
            v.add(format!("{src}.max_duration"), "fee bands must have distinct max_duration values");
        }
    }
}

fn check_bic(v: &mut Violations, raw: &str) -> Option<String> {
    match iban::validate_bic(raw) {
        Ok(b) => Some(b),
        Err(e) => {
            v.add("bic", format!("bic is not valid: {e}"));
            None
        }
    }
}

/// Outside the EEA a SEPA transfer names the payee's bank.
fn check_bic_needed(v: &mut Violations, payout_iban: &str, bic: &Option<String>) {
    if bic.is_none() && !iban::in_eea(payout_iban) {
        v.add(
            "bic",
            format!(
                "bic is required: the payout account is held outside the EEA ({}), where a SEPA transfer must name \
                 the bank",
                payout_iban.get(..2).unwrap_or("")
            ),
        );
    }
}

fn check_iban(v: &mut Violations, raw: String) -> Option<String> {
    match iban::validate(&raw) {
        Ok(i) => Some(i),
        Err(e) => {
            v.add("iban", format!("iban is not valid: {e}"));
            None
        }
    }
}

impl PspInput {
    pub fn validate(self) -> Result<PspSettings, Vec<FieldError>> {
        let mut v = Violations::new();
        let name = v.text("name", self.name, 255);
        let rate = v.required("fee_rate_bps", self.fee_rate_bps);
        if let Some(r) = rate {
            check_rate(&mut v, "fee_rate_bps", r);
        }
        let fixed = v.required("fee_fixed", self.fee_fixed);
        if fixed.is_some_and(|f| f < 0) {
            v.add("fee_fixed", "fee_fixed must not be negative");
        }
        let iban = v.text("iban", self.iban, 64).and_then(|raw| check_iban(&mut v, raw));
        let bic = self.bic.as_deref().and_then(|raw| check_bic(&mut v, raw));
        if let Some(i) = &iban
            && self.bic.is_none()
        {
            check_bic_needed(&mut v, i, &bic);
        }
        let freq = v.required("payout_frequency", self.payout_frequency);
        let mut bands = self.fee_bands.unwrap_or_default();
        check_bands(&mut v, &mut bands);
        let billing = check_billing(&mut v, self.billing.unwrap_or_default());
        v.finish()?;
        match (name, rate, fixed, iban, freq) {
            (Some(name), Some(fee_rate_bps), Some(fee_fixed_minor), Some(payout_iban), Some(payout_frequency)) => {
                Ok(PspSettings {
                    name,
                    fee_rate_bps,
                    fee_fixed_minor,
                    payout_iban,
                    payout_bic: bic,
                    payout_frequency,
                    fee_bands: bands,
                    billing,
                })
            }
            _ => Err(vec![FieldError { source: String::new(), title: "request is incomplete".into() }]),
        }
    }
}

impl PspPatch {
    /// Applies the patch to `current`, checking what it changes.
    pub fn apply(self, current: &PspSettings) -> Result<PspSettings, Vec<FieldError>> {
        let mut v = Violations::new();
        let mut next = current.clone();
        if self.name.is_some()
            && let Some(n) = v.text("name", self.name, 255)
        {
            next.name = n;
        }
        if let Some(r) = self.fee_rate_bps {
            check_rate(&mut v, "fee_rate_bps", r);
            next.fee_rate_bps = r;
        }
        if let Some(f) = self.fee_fixed {
            if f < 0 {
                v.add("fee_fixed", "fee_fixed must not be negative");
            }
            next.fee_fixed_minor = f;
        }
        if let Some(raw) = self.iban
            && let Some(i) = check_iban(&mut v, raw)
        {
            next.payout_iban = i;
        }
        match self.bic.as_deref() {
            Some("") => next.payout_bic = None,
            Some(raw) => next.payout_bic = check_bic(&mut v, raw).or(next.payout_bic),
            None => {}
        }
        if self.bic.as_deref().is_none_or(|b| b.is_empty()) {
            check_bic_needed(&mut v, &next.payout_iban, &next.payout_bic);
        }
        if let Some(f) = self.payout_frequency {
            next.payout_frequency = f;
        }
        if let Some(mut bands) = self.fee_bands {
            check_bands(&mut v, &mut bands);
            next.fee_bands = bands;
        }
        if let Some(b) = self.billing {
            next.billing = check_billing(&mut v, b);
        }
        v.finish()?;
        Ok(next)
    }
}

/// A PSP as the operator sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Psp {
    pub psp_id: PspId,
    pub name: String,
    pub fee_rate_bps: i64,
    /// Fixed fee per capture in minor units.
    pub fee_fixed: i64,
    pub fee_bands: Vec<FeeBand>,
    pub iban: String,
    /// The payout bank's BIC, when given.
    pub bic: Option<String>,
    pub payout_frequency: PayoutFrequency,
    /// Address and VAT id for netterms' fee invoices.
    pub billing: Billing,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Psp {
    pub fn settings(&self) -> PspSettings {
        PspSettings {
            name: self.name.clone(),
            fee_rate_bps: self.fee_rate_bps,
            fee_fixed_minor: self.fee_fixed,
            payout_iban: self.iban.clone(),
            payout_bic: self.bic.clone(),
            payout_frequency: self.payout_frequency,
            fee_bands: self.fee_bands.clone(),
            billing: self.billing.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payout_account_outside_the_eea_needs_a_bic() {
        let input = |iban: &str, bic: Option<&str>| PspInput {
            name: Some("P".into()),
            fee_rate_bps: Some(100),
            fee_fixed: Some(0),
            iban: Some(iban.into()),
            bic: bic.map(str::to_owned),
            payout_frequency: Some(PayoutFrequency::Weekly),
            ..PspInput::default()
        };
        let ch = "CH9300762011623852957";
        let errs = input(ch, None).validate().unwrap_err();
        assert_eq!(errs[0].source, "bic", "{errs:?}");
        assert!(errs[0].title.contains("outside the EEA (CH)"), "{errs:?}");
        let ok = input(ch, Some("poficHBE xxx")).validate().unwrap();
        assert_eq!(ok.payout_bic.as_deref(), Some("POFICHBEXXX"));
        assert_eq!(input("DE89370400440532013000", None).validate().unwrap().payout_bic, None);
        // Moving the account to Switzerland without a BIC, or removing the BIC of a Swiss account, is refused.
        let de = input("DE89370400440532013000", None).validate().unwrap();
        let to_ch = PspPatch { iban: Some(ch.into()), ..PspPatch::default() };
        assert_eq!(to_ch.apply(&de).unwrap_err()[0].source, "bic");
        let swiss = PspPatch { iban: Some(ch.into()), bic: Some("POFICHBEXXX".into()), ..PspPatch::default() };
        let swiss = swiss.apply(&de).unwrap();
        let drop_bic = PspPatch { bic: Some(String::new()), ..PspPatch::default() };
        assert_eq!(drop_bic.apply(&swiss).unwrap_err()[0].source, "bic");
        assert!(PspPatch { name: Some("Q".into()), ..PspPatch::default() }.apply(&swiss).is_ok());
    }

    #[test]
    fn psp_input_checks_iban_and_rates() {
        let input = PspInput {
            name: Some("P".into()),
            fee_rate_bps: Some(20_000),
            fee_fixed: Some(-1),
            iban: Some("DE00370400440532013000".into()),
            bic: Some("COBADEF".into()),
            payout_frequency: None,
            fee_bands: Some(vec![
                FeeBand { max_duration: 30, fee_rate_bps: 100 },
                FeeBand { max_duration: 30, fee_rate_bps: 200 },
            ]),
            billing: Some(Billing { country: Some("Deutschland".into()), ..Billing::default() }),
        };
        let errs = input.validate().unwrap_err();
        let sources: Vec<_> = errs.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(
            sources,
            [
                "fee_rate_bps",
                "fee_fixed",
                "iban",
                "bic",
                "payout_frequency",
                "fee_bands[1].max_duration",
                "billing.country",
                "billing.country"
            ]
        );
    }
}
