//! Deciding what a buyer's payment pays (SPEC §9.5), without I/O: ISO 11649 creditor references
//! found in structured or free remittance text, names compared loosely, and how one amount is
//! spread over a buyer's open invoices — dunning fees and interest of an invoice before its
//! principal (§367 BGB), the oldest due invoice first, what is left over as the buyer's credit.

use chrono::NaiveDate;

/// Whether `s` (upper-case, no spaces) is a valid ISO 11649 reference: `RF`, two check digits,
/// 1–21 letters or digits, and the mod-97 check.
pub fn is_rf(s: &str) -> bool {
    let b = s.as_bytes();
    if !(5..=25).contains(&b.len()) || &b[..2] != b"RF" || !b[2].is_ascii_digit() || !b[3].is_ascii_digit() {
        return false;
    }
    if !b[4..].iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in b[4..].iter().chain(&b[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v < 10 { (rem * 10 + v) % 97 } else { (rem * 100 + v) % 97 };
    }
    rem == 1
}

/// Candidate RF references in `text`, most likely first: wherever `RF` and two digits start a
/// run of letters and digits, possibly in groups split by single spaces ("RF18 5390 0754"), in
/// any case. Each candidate ends where a group ends, so words after the reference are tried as
/// part of it only when glued on; longer valid candidates come first. The caller picks the first
/// that names an invoice.
pub fn rf_candidates(text: &str) -> Vec<String> {
    let up: Vec<char> = text.chars().map(|c| c.to_ascii_uppercase()).collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i + 4 <= up.len() {
        let starts = up[i] == 'R'
            && up[i + 1] == 'F'
            && (i == 0 || !up[i - 1].is_ascii_alphanumeric())
            && up[i + 2].is_ascii_digit()
            && up[i + 3].is_ascii_digit();
        if !starts {
            i += 1;
            continue;
        }
        // Gather groups: alphanumeric runs separated by one space (or none), up to 25 characters.
        let mut run = String::new();
        let mut ends: Vec<usize> = Vec::new();
        let mut j = i;
        while j < up.len() && run.len() < 25 {
            let c = up[j];
            if c.is_ascii_alphanumeric() {
                run.push(c);
                j += 1;
            } else if c == ' ' && j + 1 < up.len() && up[j + 1].is_ascii_alphanumeric() {
                ends.push(run.len());
                j += 1;
            } else {
                break;
            }
        }
        ends.push(run.len());
        // A group glued on past 25 characters still ends a candidate at 25.
        let mut found: Vec<String> = ends.iter().map(|&e| run[..e.min(25)].to_owned()).filter(|c| is_rf(c)).collect();
        found.sort_by_key(|c| std::cmp::Reverse(c.len()));
        for c in found {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        i += 2;
    }
    out
}

/// A name reduced for comparison: lower case, letters and digits only, common legal-form words
/// and punctuation dropped ("Kunde GmbH & Co. KG" and "KUNDE GMBH" compare equal).
pub fn name_key(name: &str) -> String {
    const FORMS: [&str; 12] =
        ["gmbh", "co", "kg", "ag", "ug", "ohg", "mbh", "ltd", "limited", "se", "ev", "haftungsbeschrankt"];
    let folded: String = name
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'ä' => 'a',
            'ö' => 'o',
            'ü' => 'u',
            'ß' => 's',
            c if c.is_alphanumeric() => c,
            _ => ' ',
        })
        .collect();
    folded.split_whitespace().filter(|w| !FORMS.contains(w)).collect::<Vec<_>>().join("")
}

/// An open invoice as matching sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInvoice {
    pub id: uuid::Uuid,
    pub due: NaiveDate,
    /// Dunning fees and default interest still owed on it.
    pub charges: i64,
    /// Principal still owed.
    pub principal: i64,
}

impl OpenInvoice {
    pub fn total(&self) -> i64 {
        self.charges + self.principal
    }
}

/// What part of a payment goes to one invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub invoice: uuid::Uuid,
    /// Towards dunning fees and interest.
    pub charges: i64,
    /// Towards the principal.
    pub principal: i64,
}

/// Spreads `amount` over `invoices`: each invoice's charges, then its principal, the oldest due
/// first (ties by id). Returns the allocations and what is left (the buyer's credit).
pub fn allocate(amount: i64, invoices: &[OpenInvoice]) -> (Vec<Allocation>, i64) {
    let mut order: Vec<&OpenInvoice> = invoices.iter().collect();
    order.sort_by_key(|i| (i.due, i.id));
    let mut left = amount.max(0);
    let mut out = Vec::new();
    for inv in order {
        if left == 0 {
            break;
        }
        let charges = left.min(inv.charges.max(0));
        left -= charges;
        let principal = left.min(inv.principal.max(0));
        left -= principal;
        if charges + principal > 0 {
            out.push(Allocation { invoice: inv.id, charges, principal });
        }
    }
    (out, left)
}

/// How a payment was matched (stored with the booking and shown to operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The RF reference in structured remittance (`CdtrRefInf/Ref`).
    StructuredReference,
    /// An RF reference found in the free remittance text.
    TextReference,
    /// The buyer's virtual IBAN as the creditor account, and the amount.
    VirtualIban,
    /// Our own end-to-end id or mandate reference of a direct debit.
    DirectDebit,
    /// The amount of exactly one open invoice of exactly one buyer of that name.
    AmountAndName,
    /// Assigned by an operator from the unmatched queue.
    Operator,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::StructuredReference => "structured_reference",
            Rule::TextReference => "text_reference",
            Rule::VirtualIban => "virtual_iban",
            Rule::DirectDebit => "direct_debit",
            Rule::AmountAndName => "amount_and_name",
            Rule::Operator => "operator",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rf_of(body: &str) -> String {
        crate::domain::iban::with_check_digits("RF", body).unwrap()
    }

    #[test]
    fn rf_references_are_checked() {
        assert!(is_rf("RF18539007547034"));
        assert!(is_rf("RF712348231"));
        assert!(!is_rf("RF19539007547034"));
        assert!(!is_rf("RF123456"), "the fixture's RF123456 has wrong check digits");
        assert!(!is_rf("RF18"));
    }

    #[test]
    fn rf_references_are_found_in_free_text_whatever_the_spacing_and_case() {
        let r = rf_of("0A1B2C3D4E5F6A7B8C9D0");
        assert_eq!(r.len(), 25);
        let spaced: String =
            r.chars().collect::<Vec<_>>().chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ");
        for text in [
            format!("Rechnung 4711 {r} danke"),
            format!("ref:{}", r.to_lowercase()),
            format!("Zahlung {spaced} Rechnung 4711"),
            format!("EREF+{r} SVWZ+Rechnung"),
        ] {
            assert_eq!(rf_candidates(&text).first(), Some(&r), "{text}");
        }
        assert!(rf_candidates("no reference here, PERF12 either").is_empty());
        // Two references in one text: both are found.
        let r2 = rf_of("99");
        let both = rf_candidates(&format!("{r} und {r2}"));
        assert!(both.contains(&r) && both.contains(&r2), "{both:?}");
    }

    #[test]
    fn names_compare_without_legal_forms_case_or_punctuation() {
        assert_eq!(name_key("Kunde GmbH & Co. KG"), name_key("KUNDE GMBH"));
        assert_eq!(name_key("Müller Bau AG"), "mullerbau");
        assert_ne!(name_key("Kunde GmbH"), name_key("Kunden GmbH"));
    }

    fn inv(n: u128, due: u32, charges: i64, principal: i64) -> OpenInvoice {
        OpenInvoice {
            id: uuid::Uuid::from_u128(n),
            due: NaiveDate::from_ymd_opt(2026, 1, due).unwrap(),
            charges,
            principal,
        }
    }

    #[test]
    fn charges_first_then_principal_oldest_due_first() {
        let invoices = [inv(2, 20, 0, 5000), inv(1, 10, 4075, 11900)];
        let (a, left) = allocate(17000, &invoices);
        assert_eq!(
            a,
            vec![
                Allocation { invoice: uuid::Uuid::from_u128(1), charges: 4075, principal: 11900 },
                Allocation { invoice: uuid::Uuid::from_u128(2), charges: 0, principal: 1025 },
            ]
        );
        assert_eq!(left, 0);
        let (_, over) = allocate(30000, &invoices);
        assert_eq!(over, 30000 - 4075 - 11900 - 5000);
    }

    proptest! {
        /// Nothing is created or lost: allocations plus the rest equal the payment, and no invoice
        /// gets more than it owes, in either part.
        #[test]
        fn allocation_conserves_the_amount(amount in 0i64..10_000_000,
                                           parts in proptest::collection::vec((0i64..100_000, 0i64..1_000_000, 1u32..28), 0..8)) {
            let invoices: Vec<OpenInvoice> = parts.iter().enumerate()
                .map(|(i, (c, p, d))| inv(i as u128, *d, *c, *p)).collect();
            let (a, left) = allocate(amount, &invoices);
            let sum: i64 = a.iter().map(|x| x.charges + x.principal).sum();
            prop_assert_eq!(sum + left, amount);
            for x in &a {
                let i = invoices.iter().find(|i| i.id == x.invoice).unwrap();
                prop_assert!(x.charges <= i.charges && x.principal <= i.principal);
                // Principal only once the charges are paid.
                prop_assert!(x.principal == 0 || x.charges == i.charges);
            }
            let owed: i64 = invoices.iter().map(OpenInvoice::total).sum();
            prop_assert_eq!(left, (amount - owed).max(0));
        }
    }
}
