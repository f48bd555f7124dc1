//! Typed configuration, layered: built-in defaults → optional TOML file → environment
//! (`DATABASE_URL`, then `NETTERMS_*`). Validated once at start with clear messages.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::secrets::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Sandbox,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sandbox` (test helpers, deterministic decisions) or `production`.
    pub environment: Environment,
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// The base URL under which clients reach this deployment (links in responses use it).
    /// Default: `http://<listen>`.
    pub public_url: Option<String>,
    /// `sqlite://netterms.db` (default; created if missing) or `postgres://…`.
    pub database_url: String,
    pub db_max_connections: u32,
    /// Bearer token for `/admin/v1`; without one the admin API is disabled.
    pub admin_token: Option<Secret>,
    /// Bearer token that `/metrics` requires; without one it is open (bind it to a private network).
    pub metrics_token: Option<Secret>,
    /// Key for keyed digests of secrets. Required in production; a sandbox without one generates
    /// one and keeps it in its database.
    pub secret_key: Option<Secret>,
    pub log_format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `netterms=debug,info`.
    pub log_level: String,
    /// Lifetime of one-time password links.
    pub password_link_ttl_hours: i64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a connection may take to send a request's head (line and headers), and how long
    /// a kept-alive connection may sit idle between requests, before it is closed.
    pub header_read_timeout_secs: u64,
    /// How long a request's body may take to arrive after its head before the request is
    /// answered 408 and the connection closed.
    pub body_read_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Failed authentications per client address and username within the window before further
    /// failures are slowed down (growing delays, then 429); a valid credential always gets in.
    pub auth_failure_limit: u32,
    pub auth_failure_window_secs: u64,
    /// Failed authentications per client address across all usernames (spraying) within the
    /// window before further failures are slowed down the same way.
    pub auth_failures_per_address: u32,
    /// Proxies in front of netterms (CIDRs or addresses, e.g. `["10.0.0.0/8"]`): a request whose
    /// connection comes from one is from the right-most address of `X-Forwarded-For` that is not
    /// a trusted proxy. Empty (default): the connection's address is the client's.
    pub trusted_proxies: Vec<String>,
    /// Checkout API calls (unauthenticated) per client address and minute before 429.
    pub checkout_requests_per_minute_per_address: u32,
    /// Checkout API calls per checkout session and minute before 429.
    pub checkout_requests_per_minute_per_session: u32,
    /// How many times a buyer may submit one checkout session (a declined one may be retried).
    pub checkout_max_attempts: u32,
    /// ISO 4217 currencies accepted for amounts.
    pub currencies: Vec<String>,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    /// Whether webhooks may go to private, loopback and link-local addresses. Default: allowed in
    /// sandbox, refused in production.
    pub webhook_allow_private: Option<bool>,
    /// Whether this process runs the webhook delivery worker.
    pub webhook_worker: bool,
    /// Whether this process runs the job worker (background work: expiries, overdue invoices, purges).
    pub job_worker: bool,
    /// How often an idle job worker looks for due jobs.
    pub job_poll_ms: u64,
    /// How long a claimed job belongs to its worker; a job of a worker that died is taken over
    /// after this. Longer than any job runs (an e-mail's `smtp_timeout_secs`, a scan).
    pub job_lease_secs: i64,
    /// SMTP server for the buyer's e-mails: `smtp://host:port` (plain, or STARTTLS when offered
    /// with `?tls=opportunistic`, required with `?tls=required`), `smtps://user:pass@host:465`
    /// (implicit TLS). None: messages are stored and shown, not sent.
    pub smtp_url: Option<Secret>,
    /// The From of the buyer's e-mails, e.g. `netterms <rechnung@netterms.example>`.
    pub mail_from: String,
    /// How long one SMTP delivery may take before it counts as failed (and is retried).
    pub smtp_timeout_secs: u64,
    /// netterms' SEPA creditor identifier, named in direct-debit pre-notifications.
    #[serde(alias = "creditor_id")]
    pub sepa_creditor_id: String,
    /// netterms' own account: where buyers pay and direct debits are collected to, and what
    /// transfers are sent from (named in every SEPA file).
    pub bank_iban: String,
    pub bank_bic: String,
    /// The name of the bank holding that account (shown to operators).
    pub bank_name: String,
    /// The account holder's name in SEPA files (creditor of collections, debtor of transfers).
    pub creditor_name: String,
    /// netterms as the issuer of its fee invoices to PSPs (EN 16931 seller): legal name, address,
    /// VAT id and contact.
    pub issuer_name: String,
    pub issuer_street: String,
    pub issuer_postal_code: String,
    pub issuer_city: String,
    /// ISO 3166-1 alpha-2.
    pub issuer_country: String,
    pub issuer_vat_id: String,
    pub issuer_email: String,
    pub issuer_phone: String,
    /// The issuer's commercial register entry (§ 35a GmbHG): court and number, and its managing
    /// directors; printed on fee invoices and in their XML (legal registration id, BT-30, and
    /// additional legal information, BT-33).
    pub issuer_register_court: String,
    pub issuer_register_number: String,
    pub issuer_managing_directors: String,
    /// The VAT rate on netterms' fees to PSPs in the issuer's own country, in basis points
    /// (1900 = 19 %). Fees are quoted including it; PSPs elsewhere in the EU with a VAT id get a
    /// reverse-charge invoice, PSPs outside the EU one outside the scope of VAT here.
    pub fee_vat_rate_bps: i64,
    /// Direct debit: invoices due within this many days go into the next collection file
    /// (collected on their due date, never before the next day).
    pub direct_debit_days_ahead: i64,
    /// How long a sandbox clock advance holds its PSP's clock without progress (renewed each
    /// day it steps); after a crash another advance may take over once it ran out.
    pub sandbox_clock_lease_secs: i64,
    /// Timeout of one webhook attempt.
    pub webhook_timeout_secs: u64,
    /// How often the delivery worker looks for due deliveries.
    pub webhook_poll_ms: u64,
    /// The credit policy (`[credit]` in the configuration file).
    pub credit: crate::domain::decision::Policy,
    /// The dunning policy (`[dunning]` in the configuration file); an operator's stored policy
    /// (`PUT /admin/v1/dunning-policy`) takes its place.
    pub dunning: crate::domain::dunning::Policy,
    /// German bank code (8 digits) of the account that holds buyers' virtual IBANs.
    pub virtual_iban_bank_code: String,
    /// How long an unconfirmed widget authorization stays valid.
    pub authorization_ttl_hours: i64,
    /// How long a request's `Idempotency-Key` counts as in flight; after a crash, a retry with the
    /// same key waits this long (409 `idempotency_in_progress`) before it runs again.
    pub idempotency_lock_secs: u64,
    /// Buyer portal: how long a sign-in link is valid.
    pub portal_link_ttl_secs: i64,
    /// Buyer portal: a session ends after this long without a request …
    pub portal_session_idle_secs: i64,
    /// … and this long after sign-in in any case.
    pub portal_session_max_secs: i64,
    /// Buyer portal: sign-in links asked for per address, and per client address, in 15 minutes.
    pub portal_links_per_address: u32,
    pub portal_links_per_client: u32,
    /// Operator console: a session ends after this long without a request …
    pub console_session_idle_secs: i64,
    /// … and this long after sign-in in any case.
    pub console_session_max_secs: i64,
    /// Console sign-in: failed attempts per account within `console_failure_window_secs` before
    /// the account is locked for the rest of that window (per client address:
    /// `auth_failures_per_address`). Counted in the database, so every node shares them.
    pub console_failure_limit: u32,
    pub console_failure_window_secs: i64,
    /// The actions that take effect only when a second operator approves them (SPEC §14.2;
    /// default: all of `service::approvals::ACTIONS`). The command line is never held back.
    pub four_eyes: Vec<String>,
    /// Manual-review orders above this gross amount (minor units, any currency) need four eyes.
    pub four_eyes_amount: i64,
    /// PostgreSQL: the longest one statement may run or wait for a lock, in milliseconds (`0`:
    /// unbounded). Default: half of `idempotency_lock_secs`, so a request stuck behind a lock
    /// fails (409, retry) before its Idempotency-Key could be taken over.
    pub db_statement_timeout_ms: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            environment: Environment::Sandbox,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database_url: "sqlite://netterms.db".into(),
            db_max_connections: 16,
            admin_token: None,
            metrics_token: None,
            secret_key: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            password_link_ttl_hours: 72,
            max_body_bytes: 1024 * 1024,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 60,
            max_connections: 2048,
            auth_failure_limit: 10,
            auth_failure_window_secs: 60,
            auth_failures_per_address: 50,
            trusted_proxies: Vec::new(),
            checkout_requests_per_minute_per_address: 600,
            checkout_requests_per_minute_per_session: 60,
            checkout_max_attempts: 5,
            currencies: vec!["EUR".into()],
            shutdown_grace_secs: 30,
            webhook_allow_private: None,
            webhook_worker: true,
            job_worker: true,
            job_poll_ms: 1000,
            job_lease_secs: 300,
            smtp_url: None,
            mail_from: "netterms <rechnung@netterms.example>".into(),
            smtp_timeout_secs: 15,
            sepa_creditor_id: "DE98ZZZ09999999999".into(),
            bank_iban: "DE02120300000000202051".into(),
            bank_bic: "NTRMDEB1XXX".into(),
            bank_name: "netterms sandbox bank".into(),
            creditor_name: "netterms".into(),
            issuer_name: "netterms GmbH".into(),
            issuer_street: "Musterstraße 1".into(),
            issuer_postal_code: "10115".into(),
            issuer_city: "Berlin".into(),
            issuer_country: "DE".into(),
            issuer_vat_id: "DE123456789".into(),
            issuer_email: "rechnung@netterms.example".into(),
            issuer_phone: "+49 30 1234567".into(),
            issuer_register_court: "Amtsgericht Berlin-Charlottenburg".into(),
            issuer_register_number: "HRB 000000 B".into(),
            issuer_managing_directors: "Erika Mustermann".into(),
            fee_vat_rate_bps: 1900,
            direct_debit_days_ahead: 5,
            sandbox_clock_lease_secs: 30,
            webhook_timeout_secs: 15,
            webhook_poll_ms: 250,
            credit: crate::domain::decision::Policy::default(),
            dunning: crate::domain::dunning::Policy::default(),
            virtual_iban_bank_code: "10010010".into(),
            authorization_ttl_hours: 72,
            idempotency_lock_secs: 60,
            db_statement_timeout_ms: None,
            portal_link_ttl_secs: 15 * 60,
            portal_session_idle_secs: 30 * 60,
            portal_session_max_secs: 12 * 3600,
            portal_links_per_address: 5,
            portal_links_per_client: 30,
            console_session_idle_secs: 30 * 60,
            console_session_max_secs: 12 * 3600,
            console_failure_limit: 5,
            console_failure_window_secs: 15 * 60,
            four_eyes: crate::service::approvals::ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
            four_eyes_amount: 1_000_000,
        }
    }
}

/// A SEPA creditor identifier: country, check digits (mod 97 over the national part, as for
/// IBANs, skipping the business code), a three-character business code, the national id.
pub fn is_creditor_id(s: &str) -> bool {
    let b = s.as_bytes();
    if !(9..=35).contains(&b.len())
        || !b.iter().all(u8::is_ascii_alphanumeric)
        || !b[..2].iter().all(u8::is_ascii_uppercase)
    {
        return false;
    }
    let national = &s[7..];
    crate::domain::iban::with_check_digits(&s[..2], &national.to_ascii_uppercase()).is_some_and(|x| x[2..4] == s[2..4])
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// The keys `NETTERMS_*` environment variables may set (other `NETTERMS_` variables, such as the
/// test suite's, are not configuration).
const FIELDS: &[&str] = &[
    "environment",
    "listen",
    "public_url",
    "database_url",
    "db_max_connections",
    "admin_token",
    "metrics_token",
    "secret_key",
    "log_format",
    "log_level",
    "password_link_ttl_hours",
    "max_body_bytes",
    "header_read_timeout_secs",
    "body_read_timeout_secs",
    "max_connections",
    "auth_failure_limit",
    "auth_failure_window_secs",
    "auth_failures_per_address",
    "trusted_proxies",
    "checkout_requests_per_minute_per_address",
    "checkout_requests_per_minute_per_session",
    "checkout_max_attempts",
    "currencies",
    "shutdown_grace_secs",
    "webhook_allow_private",
    "webhook_worker",
    "job_worker",
    "job_poll_ms",
    "job_lease_secs",
    "smtp_url",
    "mail_from",
    "smtp_timeout_secs",
    "sepa_creditor_id",
    "creditor_id",
    "bank_iban",
    "bank_bic",
    "bank_name",
    "creditor_name",
    "issuer_name",
    "issuer_street",
    "issuer_postal_code",
    "issuer_city",
    "issuer_country",
    "issuer_vat_id",
    "issuer_email",
    "issuer_phone",
    "issuer_register_court",
    "issuer_register_number",
    "issuer_managing_directors",
    "fee_vat_rate_bps",
    "direct_debit_days_ahead",
    "sandbox_clock_lease_secs",
    "webhook_timeout_secs",
    "webhook_poll_ms",
    "virtual_iban_bank_code",
    "authorization_ttl_hours",
    "idempotency_lock_secs",
    "db_statement_timeout_ms",
    "portal_link_ttl_secs",
    "portal_session_idle_secs",
    "portal_session_max_secs",
    "portal_links_per_address",
    "portal_links_per_client",
    "console_session_idle_secs",
    "console_session_max_secs",
    "console_failure_limit",
    "console_failure_window_secs",
    "four_eyes",
    "four_eyes_amount",
];

/// An address or CIDR of `trusted_proxies`.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

impl Config {
    /// The parsed `trusted_proxies` (validated at load).
    pub fn trusted_networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies.iter().filter_map(|p| parse_net(p)).collect()
    }

    /// A sandbox deployment: test helpers and per-PSP clocks.
    pub fn is_sandbox(&self) -> bool {
        self.environment == Environment::Sandbox
    }

    /// Loads defaults, then `file` (or `netterms.toml` in the working directory if it exists), then
    /// the environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::new();
        match file {
            Some(f) => fig = fig.merge(Toml::file_exact(f)),
            None if Path::new("netterms.toml").exists() => fig = fig.merge(Toml::file_exact("netterms.toml")),
            None => {}
        }
        fig = fig.merge(Env::raw().only(&["DATABASE_URL"])).merge(Env::prefixed("NETTERMS_").only(FIELDS));
        let config: Config = fig.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values together; every problem is reported at once.
    /// The bound on statements and lock waits (PostgreSQL), if any.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        match self.db_statement_timeout_ms {
            Some(0) => None,
            Some(ms) => Some(std::time::Duration::from_millis(ms)),
            None => Some(std::time::Duration::from_millis(self.idempotency_lock_secs.saturating_mul(500).max(1))),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            errs.push("database_url must start with sqlite:, postgres:// or postgresql://".to_owned());
        }
        if let Some(url) = &self.public_url
            && !crate::domain::validate::is_http_url(url)
        {
            errs.push("public_url must be an absolute http(s) URL".to_owned());
        }
        if let Some(t) = &self.admin_token
            && t.expose().len() < 16
        {
            errs.push("admin_token must be at least 16 characters".to_owned());
        }
        if self.metrics_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            errs.push("metrics_token must be at least 16 characters".to_owned());
        }
        if let Some(k) = &self.secret_key
            && k.expose().len() < 32
        {
            errs.push("secret_key must be at least 32 characters".to_owned());
        }
        if self.environment == Environment::Production {
            if self.secret_key.is_none() {
                errs.push(
                    "production needs secret_key (NETTERMS_SECRET_KEY), at least 32 random characters".to_owned(),
                );
            }
            if !self.public_url.as_deref().is_some_and(|u| u.starts_with("https://")) {
                errs.push("production needs an https public_url".to_owned());
            }
        }
        if !(1..=24 * 3600).contains(&self.portal_link_ttl_secs) {
            errs.push("portal_link_ttl_secs must be between 1 and 86400".to_owned());
        }
        if self.portal_session_idle_secs < 1 || self.portal_session_max_secs < self.portal_session_idle_secs {
            errs.push(
                "portal_session_idle_secs must be at least 1 and portal_session_max_secs at least that".to_owned(),
            );
        }
        if self.console_session_idle_secs < 1 || self.console_session_max_secs < self.console_session_idle_secs {
            errs.push(
                "console_session_idle_secs must be at least 1 and console_session_max_secs at least that".to_owned(),
            );
        }
        for a in &self.four_eyes {
            if !crate::service::approvals::ACTIONS.contains(&a.as_str()) {
                errs.push(format!(
                    "four_eyes: unknown action {a:?} (known: {})",
                    crate::service::approvals::ACTIONS.join(", ")
                ));
            }
        }
        if self.four_eyes_amount < 0 {
            errs.push("four_eyes_amount must not be negative".to_owned());
        }
        if self.console_failure_limit == 0 || self.console_failure_window_secs < 1 {
            errs.push("console_failure_limit and console_failure_window_secs must be at least 1".to_owned());
        }
        if self.portal_links_per_address == 0 || self.portal_links_per_client == 0 {
            errs.push("portal_links_per_address and portal_links_per_client must be at least 1".to_owned());
        }
        if !(1..=24 * 30).contains(&self.password_link_ttl_hours) {
            errs.push("password_link_ttl_hours must be between 1 and 720".to_owned());
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            errs.push("max_body_bytes must be between 1024 and 67108864".to_owned());
        }
        if !(1..=300).contains(&self.header_read_timeout_secs) || !(1..=3600).contains(&self.body_read_timeout_secs) {
            errs.push(
                "header_read_timeout_secs must be between 1 and 300, body_read_timeout_secs between 1 and 3600"
                    .to_owned(),
            );
        }
        for p in &self.trusted_proxies {
            if parse_net(p).is_none() {
                errs.push(format!("trusted_proxies: {p:?} is not an address or CIDR such as 10.0.0.0/8"));
            }
        }
        if self.auth_failures_per_address == 0 {
            errs.push("auth_failures_per_address must be positive".to_owned());
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            errs.push("max_connections must be between 1 and 1000000".to_owned());
        }
        if self.checkout_requests_per_minute_per_address == 0
            || self.checkout_requests_per_minute_per_session == 0
            || !(1..=100).contains(&self.checkout_max_attempts)
        {
            errs.push(
                "checkout_requests_per_minute_per_address and …_per_session must be positive, \
                 checkout_max_attempts between 1 and 100"
                    .to_owned(),
            );
        }
        if self.auth_failure_limit == 0 || self.auth_failure_window_secs == 0 {
            errs.push("auth_failure_limit and auth_failure_window_secs must be positive".to_owned());
        }
        if self.db_max_connections == 0 {
            errs.push("db_max_connections must be positive".to_owned());
        }
        if self.currencies.is_empty() {
            errs.push("currencies must name at least one currency".to_owned());
        }
        for c in &self.currencies {
            if crate::domain::money::Currency::parse(c).is_err() {
                errs.push(format!("currencies: {c:?} is not an ISO 4217 code"));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            errs.push(format!("log_level {:?} is not a valid filter", self.log_level));
        }
        if !(1..=60).contains(&self.webhook_timeout_secs) {
            errs.push("webhook_timeout_secs must be between 1 and 60".to_owned());
        }
        if !(10..=60_000).contains(&self.webhook_poll_ms) {
            errs.push("webhook_poll_ms must be between 10 and 60000".to_owned());
        }
        if self.virtual_iban_bank_code.len() != 8 || !self.virtual_iban_bank_code.chars().all(|c| c.is_ascii_digit()) {
            errs.push("virtual_iban_bank_code must be 8 digits".to_owned());
        }
        if crate::domain::iban::validate(&self.bank_iban).is_err() {
            errs.push("bank_iban must be a valid IBAN".to_owned());
        }
        if !(8..=11).contains(&self.bank_bic.len()) || !self.bank_bic.chars().all(|c| c.is_ascii_alphanumeric()) {
            errs.push("bank_bic must be a BIC (8 or 11 letters and digits)".to_owned());
        }
        if !is_creditor_id(&self.sepa_creditor_id) {
            errs.push("creditor_id must be a SEPA creditor identifier such as DE98ZZZ09999999999".to_owned());
        }
        if self.creditor_name.trim().is_empty() || self.creditor_name.chars().count() > 70 {
            errs.push("creditor_name must be 1 to 70 characters".to_owned());
        }
        for (name, v) in [
            ("issuer_name", &self.issuer_name),
            ("issuer_street", &self.issuer_street),
            ("issuer_postal_code", &self.issuer_postal_code),
            ("issuer_city", &self.issuer_city),
            ("issuer_vat_id", &self.issuer_vat_id),
            ("issuer_email", &self.issuer_email),
            ("issuer_phone", &self.issuer_phone),
            ("issuer_register_court", &self.issuer_register_court),
            ("issuer_register_number", &self.issuer_register_number),
            ("issuer_managing_directors", &self.issuer_managing_directors),
        ] {
            if v.trim().is_empty() || v.chars().count() > 200 {
                errs.push(format!("{name} must be 1 to 200 characters"));
            }
        }
        if !crate::domain::einvoice::is_country(&self.issuer_country) {
            errs.push("issuer_country must be an ISO 3166 alpha-2 code such as DE".to_owned());
        }
        if !(0..=10_000).contains(&self.fee_vat_rate_bps) {
            errs.push("fee_vat_rate_bps must be between 0 and 10000".to_owned());
        }
        if !(1..=30).contains(&self.direct_debit_days_ahead) {
            errs.push("direct_debit_days_ahead must be between 1 and 30".to_owned());
        }
        if !(1..=24 * 30).contains(&self.authorization_ttl_hours) {
            errs.push("authorization_ttl_hours must be between 1 and 720".to_owned());
        }
        let c = &self.credit;
        if c.default_buyer_limit < 0
            || c.review_above < 0
            || c.min_order_amount < 1
            || c.max_order_amount < c.min_order_amount
        {
            errs.push("credit: limits must be positive and min_order_amount <= max_order_amount".to_owned());
        }
        if let Some(u) = &self.smtp_url {
            // The URL may hold a password: the message does not quote it.
            if lettre::transport::smtp::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(u.expose()).is_err() {
                errs.push(
                    "smtp_url is not a usable SMTP URL (smtp://host:port or smtps://user:pass@host:port)".to_owned(),
                );
            }
        }
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            errs.push("mail_from must be an address, e.g. netterms <rechnung@netterms.example>".to_owned());
        }
        if !(2..=86_400).contains(&self.job_lease_secs)
            || self.job_lease_secs <= i64::try_from(self.smtp_timeout_secs).unwrap_or(0)
        {
            errs.push("job_lease_secs must be between 2 and 86400 and longer than smtp_timeout_secs".to_owned());
        }
        if !(1..=3600).contains(&self.sandbox_clock_lease_secs) {
            errs.push("sandbox_clock_lease_secs must be between 1 and 3600".to_owned());
        }
        if !(1..=300).contains(&self.smtp_timeout_secs) {
            errs.push("smtp_timeout_secs must be between 1 and 300".to_owned());
        }
        for e in self.dunning.violations() {
            errs.push(format!("dunning.{}: {}", e.source, e.title));
        }
        if self.db_statement_timeout_ms.is_some_and(|t| t > 3_600_000) {
            errs.push("db_statement_timeout_ms must be at most 3600000 (0: unbounded)".to_owned());
        }
        if !(1..=3600).contains(&self.idempotency_lock_secs) {
            errs.push("idempotency_lock_secs must be between 1 and 3600".to_owned());
        }
        if errs.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(errs)) }
    }

    /// Whether outbound webhooks may reach private addresses.
    pub fn webhooks_may_reach_private(&self) -> bool {
        self.webhook_allow_private.unwrap_or(self.environment == Environment::Sandbox)
    }

    /// The base URL for links this deployment hands out, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_and_server_limits_are_checked() {
        let mut c = Config { trusted_proxies: vec!["10.0.0.0/8".into(), "::1".into()], ..Config::default() };
        assert!(c.validate().is_ok());
        assert_eq!(c.trusted_networks().len(), 2);
        c.trusted_proxies.push("10.0.0.0/33".into());
        c.header_read_timeout_secs = 0;
        c.max_connections = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("trusted_proxies") && err.contains("header_read_timeout_secs"), "{err}");
        assert!(err.contains("max_connections"), "{err}");
    }

    #[test]
    fn defaults_are_a_valid_sandbox() {
        let c = Config::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn production_requires_key_and_https() {
        let c = Config { environment: Environment::Production, ..Config::default() };
        let Err(ConfigError::Invalid(errs)) = c.validate() else { panic!("expected errors") };
        assert_eq!(errs.len(), 2);
    }

    #[tokio::test]
    async fn smtp_urls_of_every_mode_are_accepted_and_a_bad_one_is_named_without_its_password() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://mail.example:587?tls=required",
            "smtp://user:pass@mail.example:587?tls=opportunistic",
            "smtps://user:s3cret@mail.example:465",
        ] {
            let c = Config { smtp_url: Some(Secret::new(url)), ..Config::default() };
            assert!(c.validate().is_ok(), "{url}");
            assert!(crate::service::messages::Mailer::from_config(&c).is_ok_and(|m| m.is_some()), "{url}");
        }
        let c = Config { smtp_url: Some(Secret::new("imap://user:hunter2@mail.example")), ..Config::default() };
        let Err(ConfigError::Invalid(errs)) = c.validate() else { panic!("expected errors") };
        assert!(
            errs.iter().any(|e| e.starts_with("smtp_url")) && !errs.iter().any(|e| e.contains("hunter2")),
            "{errs:?}"
        );
        let c = Config { mail_from: "not an address".into(), ..Config::default() };
        assert!(c.validate().is_err());
    }
}
