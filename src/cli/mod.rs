//! The `netterms` command line: serve, migrate, operator commands, the OpenAPI document.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::domain::ids::{CredentialId, PspId};
use crate::domain::psp::{PayoutFrequency, PspInput, PspPatch};
use crate::domain::text::counted;
use crate::service::{Services, psps};

mod operators;
pub use operators::{AuditCommand, OperatorCommand, run_audit, run_operator};

/// The audit action of a command that changes something (SPEC §14.2: the command line acts as
/// the actor `cli`); `None` for commands that only read or record their own.
pub fn audited_action(cmd: &Command) -> Option<&'static str> {
    match cmd {
        Command::Psp { command } => match command.as_ref() {
            PspCommand::Create { .. } => Some("psp.created"),
            PspCommand::Update { .. } => Some("psp.updated"),
            PspCommand::Credentials { command: CredentialCommand::Issue { .. } } => Some("psp.credential_issued"),
            PspCommand::Credentials { command: CredentialCommand::Revoke { .. } } => Some("psp.credential_revoked"),
            PspCommand::List { .. } => None,
        },
        Command::Statements { command: StatementCommand::Import { .. } } => Some("bank_statement.imported"),
        Command::StatusReports { command: StatusReportCommand::Import { .. } } => Some("status_report.imported"),
        Command::DirectDebit { command: DirectDebitCommand::Export { .. } } => Some("direct_debit_file.created"),
        Command::Payouts { command: PayoutCommand::Run { .. } } => Some("payout.run"),
        Command::Payouts { command: PayoutCommand::Export { .. } } => Some("payout.exported"),
        Command::Buyers { command: BuyerCommand::RefundCredit { .. } } => Some("buyer.credit_refunded"),
        _ => None,
    }
}

/// The pending audit record of a command (see [`crate::store::audit::scope`]).
pub fn audit_record(action: &str) -> crate::store::audit::NewAudit {
    let args: Vec<String> = std::env::args().skip(1).take(3).collect();
    crate::store::audit::NewAudit {
        actor_kind: "cli".into(),
        actor_label: "cli".into(),
        action: action.into(),
        // The command's name, not its arguments (they may hold account numbers).
        changes: serde_json::json!({"command": format!("netterms {}", args.iter().take_while(|a| !a.starts_with('-')).cloned().collect::<Vec<_>>().join(" "))}).to_string(),
        ..Default::default()
    }
}

#[derive(Debug, Parser)]
#[command(name = "netterms", version, about = "B2B buy now, pay later for payment service providers")]
pub struct Cli {
    /// Configuration file (TOML). Default: ./netterms.toml if it exists.
    #[arg(long, global = true, env = "NETTERMS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (a sandbox on ./netterms.db when nothing is configured).
    Serve,
    /// Apply database migrations.
    Migrate,
    /// Manage payment service providers.
    Psp {
        #[command(subcommand)]
        command: Box<PspCommand>,
    },
    /// Run a sandbox server and a demo shop (widget and hosted payment page) beside it.
    Demo {
        /// Where the demo shop listens.
        #[arg(long, default_value = "127.0.0.1:8090")]
        shop: std::net::SocketAddr,
    },
    /// Check the ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Import bank statements (camt.053, camt.054, camt.052).
    Statements {
        #[command(subcommand)]
        command: StatementCommand,
    },
    /// Banks' payment status reports (pain.002): their rejects of our collection and payout files.
    StatusReports {
        #[command(subcommand)]
        command: StatusReportCommand,
    },
    /// SEPA direct-debit collection files (pain.008).
    DirectDebit {
        #[command(subcommand)]
        command: DirectDebitCommand,
    },
    /// Payouts to PSPs: the SEPA credit transfer files (pain.001) for the bank.
    Payouts {
        #[command(subcommand)]
        command: PayoutCommand,
    },
    /// Buyers: their credit, and sending it back.
    Buyers {
        #[command(subcommand)]
        command: BuyerCommand,
    },
    /// Operators of the console and the admin API: accounts and their API tokens.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// The audit trail: check that no record was altered, removed or reordered.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the OpenAPI document, or check a committed copy against it.
    Openapi {
        /// Compare with this file and fail if it differs.
        #[arg(long)]
        check: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StatementCommand {
    /// Import each file in turn: every entry is booked once (importing a file again books nothing
    /// twice); prints what each import booked. A file that is refused books nothing.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List the latest imports: `complete`, `incomplete` (running, or interrupted — import the
    /// same file again to complete it) or `completed_later`.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StatusReportCommand {
    /// Import each pain.002 in turn: every collection or payout the bank rejected is marked so and
    /// reopened (importing a report again changes nothing twice); prints each rejected item, its
    /// reason and what was done. A file that is refused changes nothing.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DirectDebitCommand {
    /// Write collection files for every invoice due within `direct_debit_days_ahead` days and not
    /// collected yet; with `--out DIR` each file's pain.008 XML is written there too.
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PayoutCommand {
    /// Make the payouts due now for every PSP (each on its own clock), as the server's background
    /// scan does; a run already made makes nothing.
    Run {
        #[arg(long)]
        json: bool,
    },
    /// Write the pain.001 of every euro payout not yet sent (marking it `sent`); with `--out DIR`
    /// each file is written there as `<payout_id>.xml`.
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BuyerCommand {
    /// Send a buyer's credit (over-payments, refunds of paid invoices) back by SEPA credit
    /// transfer: writes the pain.001 (to `--out FILE`, else standard output) and books it.
    RefundCredit {
        /// The buyer's id.
        buyer_id: uuid::Uuid,
        /// Minor units; default: the whole credit.
        #[arg(long)]
        amount: Option<i64>,
        /// The buyer's IBAN; default: the account it last paid from.
        #[arg(long)]
        iban: Option<String>,
        /// The account holder; default: the name it last paid under, else the buyer's name.
        #[arg(long)]
        name: Option<String>,
        /// Write the pain.001 here (the transfer is booked only once the file is written).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// `netterms buyers refund-credit`.
pub async fn run_buyers(config: Config, cmd: BuyerCommand) -> anyhow::Result<()> {
    let s = Services::open(config, false).await?;
    let BuyerCommand::RefundCredit { buyer_id, amount, iban, name, out, json } = cmd;
    if let Some(parent) = out.as_deref().and_then(std::path::Path::parent).filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        anyhow::bail!("--out {}: no such directory (nothing was sent back)", parent.display());
    }
    let input = crate::service::payments::CreditRefundInput { amount, currency: None, iban, name };
    let buyer = crate::domain::ids::BuyerId(buyer_id);
    let view = crate::service::payments::refund_credit_written(&s, buyer, input, |_, xml| -> anyhow::Result<()> {
        match &out {
            Some(path) => std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?,
            None if !json => print!("{xml}"),
            None => {}
        }
        Ok(())
    })
    .await
    .map_err(|e| match e.downcast::<crate::service::orders::OrderError>() {
        Ok(crate::service::orders::OrderError::Invalid(errs)) => anyhow::anyhow!(
            "invalid input:\n{}",
            errs.iter().map(|e| format!("  - {}: {}", e.source, e.title)).collect::<Vec<_>>().join("\n")
        ),
        Ok(crate::service::orders::OrderError::NotFound(what)) => anyhow::anyhow!("{what} not found"),
        Ok(other) => anyhow::anyhow!("{other}"),
        Err(e) => e,
    })?;
    if json || out.is_some() {
        print(json, &view, || {
            format!("{}  {} {} cents to {}", view.credit_transfer_id, view.currency, view.amount, view.creditor_iban)
        })?;
    }
    s.db.close().await;
    Ok(())
}

/// `netterms payouts run` and `netterms payouts export`.
pub async fn run_payouts(config: Config, cmd: PayoutCommand) -> anyhow::Result<()> {
    let s = Services::open(config, false).await?;
    let (out, json) = match cmd {
        PayoutCommand::Run { json } => {
            let made = crate::service::payouts::run_all(&s).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            print(json, &serde_json::json!({"payouts": made}), || format!("{made} payouts made"))?;
            s.db.close().await;
            return Ok(());
        }
        PayoutCommand::Export { out, json } => (out, json),
    };
    if let Some(dir) = &out
        && !dir.is_dir()
    {
        anyhow::bail!("--out {}: no such directory (nothing was exported)", dir.display());
    }
    // Each file is written before its payout is marked sent.
    let views = crate::service::payouts::export_pending(&s, |p, xml| -> anyhow::Result<()> {
        if let Some(dir) = &out {
            let path = dir.join(format!("{}.xml", p.payout_id));
            std::fs::write(&path, xml).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    })
    .await?;
    print(json, &views, || {
        if views.is_empty() {
            return "no payout to send".into();
        }
        views
            .iter()
            .map(|p| format!("{}  {} {} cents to {}", p.payout_id, p.currency, p.amount, p.creditor_iban))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    s.db.close().await;
    Ok(())
}

/// `netterms statements import FILE…`.
pub async fn run_statements(config: Config, cmd: StatementCommand) -> anyhow::Result<()> {
    let s = Services::open(config, false).await?;
    let (files, json) = match cmd {
        StatementCommand::Import { files, json } => (files, json),
        StatementCommand::List { json } => {
            let (list, _) =
                crate::service::statements::list(&s, None, 100).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            print(json, &list, || {
                list.iter()
                    .map(|i| format!("{}  {}  {}  {}", i.statement_id, i.created_at, i.kind, i.state))
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            s.db.close().await;
            return Ok(());
        }
    };
    let mut failed = 0;
    for f in files {
        match crate::service::statements::import(&s, crate::service::statements::Document::File(f.clone()), "cli").await
        {
            Ok(sum) => print(json, &sum, || {
                format!(
                    "{}: {} {} — {}, {} ({} matched, {} unmatched), {} duplicates, {} returns, \
                     {} awaiting details, {} ignored, {} pending, {} payouts paid",
                    f.display(),
                    sum.kind,
                    sum.version,
                    counted(sum.entries, "entry", "entries"),
                    counted(sum.payments, "payment", "payments"),
                    sum.matched,
                    sum.unmatched,
                    sum.duplicates,
                    sum.returns,
                    sum.awaiting_details,
                    sum.ignored,
                    sum.pending,
                    sum.payouts_paid
                )
            })?,
            Err(e) => {
                failed += 1;
                eprintln!("{}: refused, nothing booked: {e}", f.display());
            }
        }
    }
    s.db.close().await;
    anyhow::ensure!(failed == 0, "{failed} file(s) refused");
    Ok(())
}

/// `netterms status-reports import FILE…`.
pub async fn run_status_reports(config: Config, cmd: StatusReportCommand) -> anyhow::Result<()> {
    let StatusReportCommand::Import { files, json } = cmd;
    let s = Services::open(config, false).await?;
    let mut failed = 0;
    for f in files {
        match crate::service::status_reports::import(&s, crate::service::statements::Document::File(f.clone())).await {
            Ok(sum) => print(json, &sum, || {
                let mut out = format!(
                    "{}: {} about {} {} — {} accepted, {} rejected",
                    f.display(),
                    sum.version,
                    sum.original.replace('_', " "),
                    sum.original_message_id,
                    sum.accepted,
                    sum.rejected.len()
                );
                for r in &sum.rejected {
                    out.push_str(&format!(
                        "\n  {} {} {}: {} ({}) — {}: {}",
                        r.kind,
                        r.id.map(|i| i.to_string()).unwrap_or_default(),
                        r.end_to_end_id,
                        r.reason_code,
                        r.reason_text,
                        r.outcome,
                        r.note
                    ));
                }
                out
            })?,
            Err(e) => {
                failed += 1;
                eprintln!("{}: refused, nothing changed: {e}", f.display());
            }
        }
    }
    s.db.close().await;
    anyhow::ensure!(failed == 0, "{failed} file(s) refused");
    Ok(())
}

/// `netterms direct-debit export`.
pub async fn run_direct_debit(config: Config, cmd: DirectDebitCommand) -> anyhow::Result<()> {
    let DirectDebitCommand::Export { out, json } = cmd;
    if let Some(dir) = &out
        && !dir.is_dir()
    {
        anyhow::bail!("--out {}: no such directory (nothing was exported)", dir.display());
    }
    let s = Services::open(config, false).await?;
    let files = crate::service::direct_debit::export_all(&s).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(dir) = &out {
        for f in &files {
            let xml =
                crate::service::direct_debit::file_xml(&s, f.file_id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let path = dir.join(format!("{}.xml", f.message_id));
            std::fs::write(&path, xml).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    print(json, &files, || {
        if files.is_empty() {
            return "nothing due for collection".into();
        }
        files
            .iter()
            .map(|f| {
                format!(
                    "{}  {}  {} collections, {} cents, from {}",
                    f.file_id, f.message_id, f.count, f.total, f.collection_date
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    s.db.close().await;
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every balance from the journal and from the business tables; exit non-zero,
    /// naming each difference, if they disagree.
    Verify,
}

/// `netterms ledger verify`.
pub async fn run_ledger(mut config: Config, cmd: LedgerCommand) -> anyhow::Result<()> {
    let LedgerCommand::Verify = cmd;
    // Reconciling a large database may take longer than a request may.
    config.db_statement_timeout_ms = Some(0);
    let s = Services::open(config, false).await?;
    let mut conn = s.db.conn().await?;
    let diffs = crate::store::ledger::verify(&mut conn).await?;
    drop(conn);
    s.db.close().await;
    if diffs.is_empty() {
        println!("ledger verified: every entry balances and every balance matches the business tables");
        return Ok(());
    }
    for (what, expected, found) in &diffs {
        println!("DIFFERENCE {what}: business tables say {expected}, ledger says {found}");
    }
    anyhow::bail!("{} difference(s) between ledger and business tables", diffs.len())
}

#[derive(Debug, Subcommand)]
pub enum PspCommand {
    /// Activate a PSP; prints its id, API username and the one-time password link.
    Create {
        #[arg(long)]
        name: String,
        /// Fee rate in basis points of the captured gross amount.
        #[arg(long)]
        fee_rate_bps: i64,
        /// Fixed fee per capture in minor units.
        #[arg(long)]
        fee_fixed: i64,
        /// Payout IBAN.
        #[arg(long)]
        iban: String,
        /// BIC of the payout bank (required for an IBAN outside the EEA, e.g. CH or GB).
        #[arg(long)]
        bic: Option<String>,
        #[arg(long, value_enum)]
        payout_frequency: PayoutFrequency,
        #[command(flatten)]
        billing: BillingArgs,
        #[arg(long)]
        json: bool,
    },
    /// List PSPs.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change a PSP's fees, payout account or frequency.
    Update {
        psp_id: PspId,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        fee_rate_bps: Option<i64>,
        #[arg(long)]
        fee_fixed: Option<i64>,
        #[arg(long)]
        iban: Option<String>,
        /// BIC of the payout bank; "" removes it.
        #[arg(long)]
        bic: Option<String>,
        #[arg(long, value_enum)]
        payout_frequency: Option<PayoutFrequency>,
        #[command(flatten)]
        billing: BillingArgs,
        #[arg(long)]
        json: bool,
    },
    /// Issue or revoke API credentials.
    Credentials {
        #[command(subcommand)]
        command: CredentialCommand,
    },
}

/// Where netterms' fee invoices to the PSP go (a fee invoice needs the address).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BillingArgs {
    /// Billing address: street and number.
    #[arg(long)]
    billing_street: Option<String>,
    #[arg(long)]
    billing_postal_code: Option<String>,
    #[arg(long)]
    billing_city: Option<String>,
    /// ISO 3166-1 alpha-2, e.g. DE.
    #[arg(long)]
    billing_country: Option<String>,
    /// The PSP's VAT identification number.
    #[arg(long)]
    vat_id: Option<String>,
    /// Where fee invoices are sent.
    #[arg(long)]
    billing_email: Option<String>,
}

impl BillingArgs {
    /// `current` with the details given here in place of its own; `None` if no flag was given.
    fn over(self, current: &crate::domain::psp::Billing) -> Option<crate::domain::psp::Billing> {
        let given = crate::domain::psp::Billing {
            street: self.billing_street,
            postal_code: self.billing_postal_code,
            city: self.billing_city,
            country: self.billing_country,
            vat_id: self.vat_id,
            email: self.billing_email,
        };
        (given != crate::domain::psp::Billing::default()).then(|| crate::domain::psp::Billing {
            street: given.street.or_else(|| current.street.clone()),
            postal_code: given.postal_code.or_else(|| current.postal_code.clone()),
            city: given.city.or_else(|| current.city.clone()),
            country: given.country.or_else(|| current.country.clone()),
            vat_id: given.vat_id.or_else(|| current.vat_id.clone()),
            email: given.email.or_else(|| current.email.clone()),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Issue an additional credential (rotation); prints the username and password link.
    Issue {
        psp_id: PspId,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a credential by its username (or `--psp-id` with `--credential-id`).
    Revoke {
        username: Option<String>,
        #[arg(long, requires = "credential_id")]
        psp_id: Option<PspId>,
        #[arg(long, requires = "psp_id")]
        credential_id: Option<CredentialId>,
        #[arg(long)]
        json: bool,
    },
}

fn print(json: bool, value: &impl serde::Serialize, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}

fn fail_invalid(e: psps::PspError) -> anyhow::Error {
    match e {
        psps::PspError::Invalid(errs) => anyhow::anyhow!(
            "invalid input:\n{}",
            errs.iter().map(|e| format!("  - {}: {}", e.source, e.title)).collect::<Vec<_>>().join("\n")
        ),
        other => anyhow::Error::new(other),
    }
}

/// Runs an operator command against the configured database.
pub async fn run_psp(config: Config, cmd: Box<PspCommand>) -> anyhow::Result<()> {
    let s = Services::open(config, false).await?;
    match *cmd {
        PspCommand::Create { name, fee_rate_bps, fee_fixed, iban, bic, payout_frequency, billing, json } => {
            let input = PspInput {
                name: Some(name),
                fee_rate_bps: Some(fee_rate_bps),
                fee_fixed: Some(fee_fixed),
                iban: Some(iban),
                bic,
                payout_frequency: Some(payout_frequency),
                fee_bands: None,
                billing: billing.over(&crate::domain::psp::Billing::default()),
            };
            let settings = input.validate().map_err(|e| fail_invalid(psps::PspError::Invalid(e)))?;
            let created = psps::create(&s, &settings).await.map_err(fail_invalid)?;
            print(json, &created, || {
                format!(
                    "psp_id:       {}\nusername:     {}\npassword_url: {}\n(the link reveals the password once and expires at {})",
                    created.psp_id, created.username, created.password_url, created.password_url_expires_at
                )
            })?;
        }
        PspCommand::List { json } => {
            let list = psps::list(&s, 100, None).await.map_err(fail_invalid)?;
            print(json, &list, || {
                list.iter()
                    .map(|p| {
                        format!(
                            "{}  {}  {} bps + {}  {}",
                            p.psp_id,
                            p.name,
                            p.fee_rate_bps,
                            p.fee_fixed,
                            p.payout_frequency.as_str()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        PspCommand::Update { psp_id, name, fee_rate_bps, fee_fixed, iban, bic, payout_frequency, billing, json } => {
            let current = psps::get(&s, psp_id).await.map_err(fail_invalid)?.billing;
            let billing = billing.over(&current);
            let patch =
                PspPatch { name, fee_rate_bps, fee_fixed, iban, bic, payout_frequency, fee_bands: None, billing };
            let psp = psps::update(&s, psp_id, patch).await.map_err(fail_invalid)?;
            print(json, &psp, || format!("updated {}", psp.psp_id))?;
        }
        PspCommand::Credentials { command: CredentialCommand::Issue { psp_id, json } } => {
            let cred = psps::issue_credential(&s, psp_id).await.map_err(fail_invalid)?;
            print(json, &cred, || format!("username:     {}\npassword_url: {}", cred.username, cred.password_url))?;
        }
        PspCommand::Credentials { command: CredentialCommand::Revoke { username, psp_id, credential_id, json } } => {
            let (psp_id, credential_id) = match (username, psp_id, credential_id) {
                (Some(u), _, _) => psps::credential_by_username(&s, &u).await.map_err(fail_invalid)?,
                (None, Some(p), Some(c)) => (p, c),
                _ => anyhow::bail!("name the credential by username, or by --psp-id and --credential-id"),
            };
            let info = psps::revoke_credential(&s, psp_id, credential_id).await.map_err(fail_invalid)?;
            print(json, &info, || format!("revoked {}", info.username))?;
        }
    }
    s.db.close().await;
    Ok(())
}

/// `netterms openapi [--check FILE]`.
pub fn openapi(check: Option<PathBuf>) -> anyhow::Result<()> {
    let generated = crate::web::openapi_pretty();
    match check {
        None => print!("{generated}"),
        Some(path) => {
            let committed = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            anyhow::ensure!(
                committed == generated,
                "{} differs from the OpenAPI document generated from the handlers; regenerate it with \
                 `cargo run -- openapi > {}`",
                path.display(),
                path.display()
            );
            eprintln!("{} is up to date", path.display());
        }
    }
    Ok(())
}
