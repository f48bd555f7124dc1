//! Operators (SPEC §14.1): their roles, the one permission table, the password rules and the
//! audit trail's hash chain (§14.2). Pure: no I/O.

use std::collections::HashSet;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// What an operator may be (one or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Risk,
    Collections,
    Finance,
    Support,
    ReadOnly,
}

impl Role {
    pub const ALL: [Role; 6] =
        [Role::Admin, Role::Risk, Role::Collections, Role::Finance, Role::Support, Role::ReadOnly];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Risk => "risk",
            Role::Collections => "collections",
            Role::Finance => "finance",
            Role::Support => "support",
            Role::ReadOnly => "read_only",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// What the role is for, in words (console and CLI help).
    pub fn describe(self, de: bool) -> &'static str {
        match (self, de) {
            (Role::Admin, false) => "operators, PSPs, credentials, policies — and everything else",
            (Role::Admin, true) => "Operatoren, PSPs, Zugangsdaten, Richtlinien — und alles andere",
            (Role::Risk, false) => "manual review, credit policy, buyer limits",
            (Role::Risk, true) => "manuelle Prüfung, Kreditrichtlinie, Käuferlimits",
            (Role::Collections, false) => "dunning pauses, \"I have paid\" claims, unmatched payments, disputes",
            (Role::Collections, true) => "Mahnpausen, „Ich habe bezahlt“, nicht zugeordnete Zahlungen, Beanstandungen",
            (Role::Finance, false) => "statements, direct-debit files, payouts, fee invoices, ledger, refunds",
            (Role::Finance, true) => {
                "Kontoauszüge, Lastschriftdateien, Auszahlungen, Gebührenrechnungen, Hauptbuch, Erstattungen"
            }
            (Role::Support, false) => "read buyers and invoices, answer support requests, pause dunning up to 14 days",
            (Role::Support, true) => {
                "Käufer und Rechnungen lesen, Anfragen beantworten, Mahnungen bis 14 Tage pausieren"
            }
            (Role::ReadOnly, false) => "read everything, change nothing",
            (Role::ReadOnly, true) => "alles lesen, nichts ändern",
        }
    }
}

/// A set of roles, stored as sorted, comma-separated names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles(Vec<Role>);

impl Roles {
    pub fn new(mut roles: Vec<Role>) -> Roles {
        roles.sort();
        roles.dedup();
        Roles(roles)
    }

    /// Parses the stored form; unknown names are an error (the store never writes them).
    pub fn parse(stored: &str) -> Result<Roles, String> {
        let roles = stored
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Role::parse(s).ok_or_else(|| format!("unknown role {s:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Roles::new(roles))
    }

    pub fn stored(&self) -> String {
        self.0.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
    }

    pub fn list(&self) -> &[Role] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, r: Role) -> bool {
        self.0.contains(&r)
    }

    /// Whether any of the roles grants `p`.
    pub fn allows(&self, p: Permission) -> bool {
        self.0.iter().any(|r| grants(*r, p))
    }
}

/// What an action needs. Every console action and every `/admin/v1` operation names one (the
/// tables in `web::permissions`); this is the one place that says which role has which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read anything the console and the admin API show (every role).
    Read,
    /// Create operators, change their roles, reset second factors, deactivate.
    ManageOperators,
    /// Create and change PSPs.
    ManagePsps,
    /// Issue and revoke PSP API credentials.
    ManageCredentials,
    /// Change the credit policy and buyers' limits.
    ManageCreditPolicy,
    /// Change the dunning policy and the base rates.
    ManagePolicies,
    /// Approve or decline orders in manual review.
    DecideReview,
    /// Pause and resume dunning (support: up to 14 days).
    PauseDunning,
    /// Assign unmatched payments, apply or dismiss unmatched returns, handle "I have paid" claims.
    MatchPayments,
    /// Open and close disputes.
    ManageDisputes,
    /// Answer and close support requests.
    AnswerSupport,
    /// Import bank statements and status reports, make direct-debit files.
    BankFiles,
    /// Payouts: their files, marking them paid.
    ManagePayouts,
    /// Refund unmatched payments and buyers' credit.
    RefundMoney,
    /// Retry failed jobs and re-enable webhook endpoints.
    RetryJobs,
    /// Export personal data (CSV of lists, the audit trail).
    Export,
}

impl Permission {
    pub const ALL: [Permission; 16] = [
        Permission::Read,
        Permission::ManageOperators,
        Permission::ManagePsps,
        Permission::ManageCredentials,
        Permission::ManageCreditPolicy,
        Permission::ManagePolicies,
        Permission::DecideReview,
        Permission::PauseDunning,
        Permission::MatchPayments,
        Permission::ManageDisputes,
        Permission::AnswerSupport,
        Permission::BankFiles,
        Permission::ManagePayouts,
        Permission::RefundMoney,
        Permission::RetryJobs,
        Permission::Export,
    ];
}

/// The permission table: which role grants which permission. `admin` grants everything (the
/// first operator must be able to do all the others can); every other role grants what SPEC
/// §14.1 names for it and reading.
pub fn grants(role: Role, p: Permission) -> bool {
    use Permission as P;
    match role {
        Role::Admin => true,
        Role::Risk => matches!(p, P::Read | P::DecideReview | P::ManageCreditPolicy | P::Export),
        Role::Collections => {
            matches!(p, P::Read | P::PauseDunning | P::MatchPayments | P::ManageDisputes | P::AnswerSupport | P::Export)
        }
        Role::Finance => matches!(
            p,
            P::Read | P::BankFiles | P::ManagePayouts | P::RefundMoney | P::MatchPayments | P::RetryJobs | P::Export
        ),
        Role::Support => matches!(p, P::Read | P::AnswerSupport | P::PauseDunning),
        Role::ReadOnly => matches!(p, P::Read),
    }
}

/// The longest pause of dunning a support operator may set (SPEC §14.1).
pub const SUPPORT_PAUSE_DAYS: i64 = 14;

impl Roles {
    /// How far ahead these roles may pause dunning: a year with `admin` or `collections`,
    /// [`SUPPORT_PAUSE_DAYS`] with `support` alone.
    pub fn pause_limit_days(&self) -> i64 {
        if self.contains(Role::Admin) || self.contains(Role::Collections) { 366 } else { SUPPORT_PAUSE_DAYS }
    }
}

// ---------------------------------------------------------------------------------------------
// Passwords

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 256;

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("../../assets/security/common-passwords.txt").lines().collect());

/// Why a password is refused, in words (English; the console translates by the variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeakPassword {
    TooShort,
    TooLong,
    Common,
    ContainsEmail,
}

impl WeakPassword {
    pub fn describe(self, de: bool) -> &'static str {
        match (self, de) {
            (WeakPassword::TooShort, false) => "must have at least 12 characters",
            (WeakPassword::TooShort, true) => "muss mindestens 12 Zeichen haben",
            (WeakPassword::TooLong, false) => "must have at most 256 characters",
            (WeakPassword::TooLong, true) => "darf höchstens 256 Zeichen haben",
            (WeakPassword::Common, false) => "is one of the most common passwords; choose another",
            (WeakPassword::Common, true) => "gehört zu den häufigsten Passwörtern; bitte ein anderes wählen",
            (WeakPassword::ContainsEmail, false) => "must not contain your e-mail address",
            (WeakPassword::ContainsEmail, true) => "darf die eigene E-Mail-Adresse nicht enthalten",
        }
    }
}

/// Checks a new password: 12 to 256 characters, not a common password (also not one with digits
/// or punctuation around it, as in "password123456"), not the e-mail address or its name part.
pub fn check_password(password: &str, email: &str) -> Result<(), WeakPassword> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(WeakPassword::TooLong);
    }
    let lower = password.to_lowercase();
    let core = lower.trim_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation() || c.is_whitespace());
    if COMMON.contains(lower.as_str()) || (core.chars().count() >= 4 && COMMON.contains(core)) {
        return Err(WeakPassword::Common);
    }
    let email = email.to_lowercase();
    let local = email.split('@').next().unwrap_or("");
    if (!email.is_empty() && lower.contains(&email)) || (local.chars().count() >= 4 && core == local) {
        return Err(WeakPassword::ContainsEmail);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The audit trail's hash chain

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The content of an audit record that its hash covers (everything but the hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContent<'a> {
    pub seq: i64,
    pub id: uuid::Uuid,
    /// RFC 3339 with microseconds, UTC (as both databases store it).
    pub at: &'a str,
    pub actor_kind: &'a str,
    pub actor_id: Option<&'a str>,
    pub actor_label: &'a str,
    pub action: &'a str,
    pub object_kind: Option<&'a str>,
    pub object_id: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub changes: &'a str,
    pub request_id: Option<&'a str>,
    pub client_ip: Option<&'a str>,
}

/// SHA-256 over the previous record's hash and every field, each length-prefixed (so no two
/// different records can share an encoding).
pub fn audit_hash(prev: &[u8], c: &AuditContent<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"netterms/audit/v1");
    h.update(prev);
    let seq = c.seq.to_string();
    let id = c.id.to_string();
    let fields: [Option<&str>; 13] = [
        Some(&seq),
        Some(&id),
        Some(c.at),
        Some(c.actor_kind),
        c.actor_id,
        Some(c.actor_label),
        Some(c.action),
        c.object_kind,
        c.object_id,
        c.reason,
        Some(c.changes),
        c.request_id,
        c.client_ip,
    ];
    for f in fields {
        match f {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    h.finalize().into()
}

/// Masks personal data that a change record does not need in clear: `anna.schmidt@firma.de` →
/// `a***@firma.de`, other text → its first character and `***`.
pub fn mask(value: &str) -> String {
    match value.split_once('@') {
        Some((local, domain)) => {
            format!("{}***@{domain}", local.chars().next().map(String::from).unwrap_or_default())
        }
        None => format!("{}***", value.chars().next().map(String::from).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_grant_what_the_spec_says() {
        let r = Roles::parse("risk,admin,risk").unwrap();
        assert_eq!(r.stored(), "admin,risk");
        assert!(Roles::parse("admin,root").is_err());
        assert!(Permission::ALL.iter().all(|p| grants(Role::Admin, *p)));
        assert!(Role::ALL.iter().all(|r| grants(*r, Permission::Read)));
        assert!(Permission::ALL.iter().filter(|p| **p != Permission::Read).all(|p| !grants(Role::ReadOnly, *p)));
        assert!(grants(Role::Risk, Permission::DecideReview) && !grants(Role::Risk, Permission::RefundMoney));
        assert!(grants(Role::Finance, Permission::RefundMoney) && !grants(Role::Finance, Permission::DecideReview));
        assert!(grants(Role::Support, Permission::AnswerSupport) && !grants(Role::Support, Permission::MatchPayments));
        assert!(!Roles::new(vec![Role::Support, Role::ReadOnly]).allows(Permission::ManageOperators));
        assert_eq!(Roles::new(vec![Role::Support]).pause_limit_days(), 14);
        assert_eq!(Roles::new(vec![Role::Support, Role::Collections]).pause_limit_days(), 366);
    }

    #[test]
    fn passwords_must_be_long_and_uncommon() {
        assert_eq!(check_password("short", "a@b.de"), Err(WeakPassword::TooShort));
        assert_eq!(check_password(&"x".repeat(257), "a@b.de"), Err(WeakPassword::TooLong));
        assert_eq!(check_password("qwertyuiop123", "a@b.de"), Err(WeakPassword::Common));
        assert_eq!(check_password("Password123456!", "a@b.de"), Err(WeakPassword::Common));
        assert_eq!(check_password("anna.schmidt2026", "anna.schmidt@firma.de"), Err(WeakPassword::ContainsEmail));
        assert_eq!(check_password("x anna@firma.de y", "Anna@Firma.de"), Err(WeakPassword::ContainsEmail));
        assert_eq!(check_password("correct horse battery staple", "a@b.de"), Ok(()));
        // Characters, not bytes: twelve umlauts are twelve characters.
        assert_eq!(check_password("ääääöööüüüßß", "a@b.de"), Ok(()));
    }

    #[test]
    fn the_hash_covers_every_field_and_the_previous_record() {
        let base = AuditContent {
            seq: 1,
            id: uuid::Uuid::nil(),
            at: "2026-12-08T10:00:00.000000Z",
            actor_kind: "operator",
            actor_id: Some("x"),
            actor_label: "Anna",
            action: "operator.created",
            object_kind: Some("operator"),
            object_id: Some("y"),
            reason: None,
            changes: "{}",
            request_id: None,
            client_ip: None,
        };
        let h = audit_hash(&GENESIS, &base);
        assert_ne!(h, audit_hash(&[1u8; 32], &base));
        let variants = [
            AuditContent { seq: 2, ..base.clone() },
            AuditContent { actor_label: "Anne", ..base.clone() },
            AuditContent { reason: Some(""), ..base.clone() },
            AuditContent { changes: "{\"a\":1}", ..base.clone() },
            AuditContent { actor_id: None, actor_label: "xAnna", ..base.clone() },
            AuditContent { client_ip: Some("127.0.0.1"), ..base.clone() },
        ];
        for v in variants {
            assert_ne!(audit_hash(&GENESIS, &v), h, "{v:?}");
        }
        assert_eq!(audit_hash(&GENESIS, &base), h);
    }

    #[test]
    fn masking_keeps_the_domain_and_the_first_character() {
        assert_eq!(mask("anna.schmidt@firma.de"), "a***@firma.de");
        assert_eq!(mask("Kunde GmbH"), "K***");
        assert_eq!(mask(""), "***");
    }
}
