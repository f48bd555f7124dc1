//! Merchants: what a PSP sends to activate one, its validation, and the stored record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::{MerchantId, PspId};
use super::legal_forms::{self, RequiredInput};
use super::validate::{self, FieldError, Violations};

/// A postal address: street, house number, postal code (valid for the country), city and an
/// ISO 3166-1 alpha-2 country of the EEA, Switzerland or the United Kingdom.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AddressInput {
    #[schema(required = true, example = "Friedrichstraße")]
    pub street: Option<String>,
    #[schema(example = "123")]
    pub house_number: Option<String>,
    pub addition: Option<String>,
    #[schema(required = true, example = "10117")]
    pub postal_code: Option<String>,
    #[schema(required = true, example = "Berlin")]
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[schema(required = true, example = "DE")]
    pub country: Option<String>,
}

/// A validated postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Address {
    pub street: String,
    pub house_number: Option<String>,
    pub addition: Option<String>,
    pub postal_code: String,
    pub city: String,
    pub country: String,
}

impl AddressInput {
    /// Checks the address; violations carry paths relative to the address object.
    pub fn validate(self) -> Result<Address, Vec<FieldError>> {
        let mut v = Violations::new();
        let street = v.text("street", self.street, 255);
        let house_number = v.opt_text("house_number", self.house_number, 50);
        let addition = v.opt_text("addition", self.addition, 255);
        let postal_code = v.text("postal_code", self.postal_code, 20);
        let city = v.text("city", self.city, 255);
        let country = v.text("country", self.country, 2).map(|c| c.to_ascii_uppercase());
        if let Some(c) = &country {
            if !validate::COUNTRIES.contains(&c.as_str()) {
                v.add("country", "country must be an ISO 3166-1 alpha-2 code of a supported country");
            } else if let Some(p) = &postal_code
                && !validate::is_postal_code(c, p)
            {
                v.add("postal_code", format!("postal_code is not valid for {c}"));
            }
        }
        v.finish()?;
        match (street, postal_code, city, country) {
            (Some(street), Some(postal_code), Some(city), Some(country)) => {
                Ok(Address { street, house_number, addition, postal_code, city, country })
            }
            _ => Err(vec![FieldError { source: "street".into(), title: "address is incomplete".into() }]),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ContactInput {
    #[schema(required = true, example = "Erika Mustermann")]
    pub name: Option<String>,
    #[schema(required = true, example = "erika@shop.example")]
    pub email: Option<String>,
    #[schema(example = "+49 30 1234567")]
    pub phone: Option<String>,
}

/// The merchant's contact person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
}

/// Payment terms a merchant offers, in days (7–120).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
pub struct PaymentTermsInput {
    #[schema(example = 14)]
    pub min_duration: Option<i64>,
    #[schema(example = 60)]
    pub max_duration: Option<i64>,
    #[schema(example = 30)]
    pub default_duration: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentTerms {
    pub min_duration: i64,
    pub max_duration: i64,
    pub default_duration: i64,
}

pub const MIN_DURATION: i64 = 7;
pub const MAX_DURATION: i64 = 120;
pub const DEFAULT_DURATION: i64 = 30;

impl PaymentTermsInput {
    pub fn validate(self) -> Result<PaymentTerms, Vec<FieldError>> {
        let mut v = Violations::new();
        let min = self.min_duration.unwrap_or(MIN_DURATION);
        let max = self.max_duration.unwrap_or(MAX_DURATION);
        // (`clamp` needs min <= max; a reversed range is reported below.)
        let default = self.default_duration.unwrap_or_else(|| DEFAULT_DURATION.max(min).min(max.max(min)));
        for (name, d) in [("min_duration", min), ("max_duration", max), ("default_duration", default)] {
            if !(MIN_DURATION..=MAX_DURATION).contains(&d) {
                v.add(name, format!("{name} must be between {MIN_DURATION} and {MAX_DURATION} days"));
            }
        }
        if min > max {
            v.add("min_duration", "min_duration must not exceed max_duration");
        }
        // A derived default is only wrong because the range is; that is reported already.
        if (default < min || default > max) && (min <= max || self.default_duration.is_some()) {
            v.add("default_duration", "default_duration must lie between min_duration and max_duration");
        }
        v.finish()?;
        Ok(PaymentTerms { min_duration: min, max_duration: max, default_duration: default })
    }
}

/// The body of `POST /v1/merchants`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct MerchantActivation {
    /// The PSP's own reference for the merchant; unique per PSP.
    #[schema(required = true, example = "merchant-4711")]
    pub external_id: Option<String>,
    /// Legal name.
    #[schema(required = true, example = "Beispiel Handels GmbH")]
    pub name: Option<String>,
    /// A code from `GET /v1/legal-forms`.
    #[schema(required = true, example = "10001")]
    pub legal_form: Option<String>,
    #[schema(example = "HRB 12345")]
    pub registration_number: Option<String>,
    #[schema(example = "Amtsgericht Charlottenburg")]
    pub registration_court: Option<String>,
    /// VAT identification number.
    #[schema(example = "DE123456789")]
    pub tax_id: Option<String>,
    #[schema(required = true)]
    pub address: Option<AddressInput>,
    #[schema(example = "https://shop.example")]
    pub website: Option<String>,
    #[schema(example = "G")]
    pub industry_sector: Option<String>,
    #[schema(required = true)]
    pub contact: Option<ContactInput>,
    pub payment_terms: Option<PaymentTermsInput>,
}

/// A checked activation, ready to store.
#[derive(Debug, Clone)]
pub struct NewMerchant {
    pub external_id: String,
    pub name: String,
    pub legal_form: String,
    pub registration_number: Option<String>,
    pub registration_court: Option<String>,
    pub tax_id: Option<String>,
    pub address: Address,
    pub website: Option<String>,
    pub industry_sector: Option<String>,
    pub contact: Contact,
    pub payment_terms: PaymentTerms,
}

impl MerchantActivation {
    /// Checks every field, reporting each violation with its path.
    pub fn validate(self) -> Result<NewMerchant, Vec<FieldError>> {
        let mut v = Violations::new();
        let external_id = v.text("external_id", self.external_id, 255);
        let name = v.text("name", self.name, 255);
        let legal_form = v.text("legal_form", self.legal_form, 10);
        let registration_number = v.opt_text("registration_number", self.registration_number, 100);
        let registration_court = v.opt_text("registration_court", self.registration_court, 255);
        let tax_id = v.opt_text("tax_id", self.tax_id, 20).map(|t| t.to_ascii_uppercase().replace(' ', ""));
        if let Some(code) = &legal_form {
            match legal_forms::find(code) {
                None => v.add("legal_form", "legal_form is not a code from /v1/legal-forms"),
                Some(form) if form.required => match form.required_input {
                    RequiredInput::RegistrationNumber if registration_number.is_none() => {
                        v.add("registration_number", format!("registration_number is required for legal form {code}"))
                    }
                    RequiredInput::TaxId if tax_id.is_none() => {
                        v.add("tax_id", format!("tax_id is required for legal form {code}"))
                    }
                    _ => {}
                },
                Some(_) => {}
            }
        }
        if let Some(r) = &registration_number
            && !legal_forms::is_register_number(r)
        {
            v.add("registration_number", "registration_number must look like 'HRB 12345' (HRA, HRB, GnR, PR or VR)");
        }
        if let Some(t) = &tax_id
            && !legal_forms::is_vat_id(t)
        {
            v.add("tax_id", "tax_id must be a VAT ID such as DE123456789");
        }
        let address = match v.required("address", self.address).map(AddressInput::validate) {
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                v.extend_prefixed("address", e);
                None
            }
            None => None,
        };
        let website = v.opt_text("website", self.website, 2048);
        if let Some(w) = &website
            && !validate::is_http_url(w)
        {
            v.add("website", "website must be an absolute http(s) URL");
        }
        let industry_sector = v.opt_text("industry_sector", self.industry_sector, 255);
        let contact = match v.required("contact", self.contact) {
            Some(c) => {
                let cname = v.text("contact.name", c.name, 255);
                let email = v.text("contact.email", c.email, 254);
                if email.as_deref().is_some_and(|e| !validate::is_email(e)) {
                    v.add("contact.email", "contact.email must be an e-mail address");
                }
                let phone = v.opt_text("contact.phone", c.phone, 21);
                if phone.as_deref().is_some_and(|p| !validate::is_phone(p)) {
                    v.add("contact.phone", "contact.phone must be a phone number of 5 to 21 characters");
                }
                match (cname, email) {
                    (Some(name), Some(email)) => Some(Contact { name, email, phone }),
                    _ => None,
                }
            }
            None => None,
        };
        let payment_terms = match self.payment_terms.unwrap_or_default().validate() {
            Ok(t) => Some(t),
            Err(e) => {
                v.extend_prefixed("payment_terms", e);
                None
            }
        };
        v.finish()?;
        match (external_id, name, legal_form, address, contact, payment_terms) {
            (Some(external_id), Some(name), Some(legal_form), Some(address), Some(contact), Some(payment_terms)) => {
                Ok(NewMerchant {
                    external_id,
                    name,
                    legal_form,
                    registration_number,
                    registration_court,
                    tax_id,
                    address,
                    website,
                    industry_sector,
                    contact,
                    payment_terms,
                })
            }
            _ => Err(vec![FieldError { source: String::new(), title: "request is incomplete".into() }]),
        }
    }
}

/// Whether a merchant may start new checkouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MerchantStatus {
    Active,
    Inactive,
}

impl MerchantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MerchantStatus::Active => "active",
            MerchantStatus::Inactive => "inactive",
        }
    }

    pub fn parse(s: &str) -> Option<MerchantStatus> {
        match s {
            "active" => Some(MerchantStatus::Active),
            "inactive" => Some(MerchantStatus::Inactive),
            _ => None,
        }
    }
}

/// A stored merchant, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Merchant {
    pub merchant_id: MerchantId,
    #[serde(skip)]
    pub psp_id: PspId,
    pub external_id: String,
    pub name: String,
    pub legal_form: String,
    pub registration_number: Option<String>,
    pub registration_court: Option<String>,
    pub tax_id: Option<String>,
    pub address: Address,
    pub website: Option<String>,
    pub industry_sector: Option<String>,
    pub contact: Contact,
    pub payment_terms: PaymentTerms,
    pub status: MerchantStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> MerchantActivation {
        MerchantActivation {
            external_id: Some("m-1".into()),
            name: Some("Beispiel GmbH".into()),
            legal_form: Some("10001".into()),
            registration_number: Some("HRB 12345".into()),
            address: Some(AddressInput {
                street: Some("Hauptstr.".into()),
                postal_code: Some("10115".into()),
                city: Some("Berlin".into()),
                country: Some("DE".into()),
                ..Default::default()
            }),
            contact: Some(ContactInput { name: Some("E".into()), email: Some("e@x.de".into()), phone: None }),
            ..Default::default()
        }
    }

    #[test]
    fn valid_activation_gets_default_terms() {
        let m = good().validate().unwrap();
        assert_eq!(m.payment_terms, PaymentTerms { min_duration: 7, max_duration: 120, default_duration: 30 });
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let mut a = good();
        a.registration_number = None;
        a.address.as_mut().unwrap().postal_code = Some("1".into());
        a.contact.as_mut().unwrap().email = Some("nope".into());
        a.payment_terms = Some(PaymentTermsInput { min_duration: Some(3), ..Default::default() });
        let errs = a.validate().unwrap_err();
        let sources: Vec<_> = errs.iter().map(|e| e.source.as_str()).collect();
        assert!(sources.contains(&"registration_number"));
        assert!(sources.contains(&"address.postal_code"));
        assert!(sources.contains(&"contact.email"));
        assert!(sources.contains(&"payment_terms.min_duration"));
    }
}
