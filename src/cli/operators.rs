//! `netterms operator …` and `netterms audit verify` (SPEC §14.1): the first admin is created
//! on the server; the command line acts as the actor `cli`, audited, not subject to four eyes.

use clap::Subcommand;

use super::print;
use crate::config::Config;
use crate::domain::operators::Role;
use crate::service::Services;
use crate::service::audit::{self, Actor};
use crate::service::operators::{self, NewOperator, OperatorError};

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Create an operator; prints its id and the one-time set-password link.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// A role (repeat for more): admin, risk, collections, finance, support, read_only.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        #[arg(long)]
        json: bool,
    },
    /// Admin API tokens of an operator.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// A new set-password link for an operator (the old ones end).
    PasswordLink {
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// List the operators.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an admin API token (`ntop_…`) acting with the operator's roles; shown once.
    Create {
        #[arg(long)]
        email: String,
        /// What the token is for (shown in the console).
        #[arg(long, default_value = "created on the command line")]
        name: String,
        #[arg(long)]
        expires_in_days: Option<i64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; exit non-zero, naming the first problem, if a record was altered,
    /// removed, inserted or reordered.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s)
        .ok_or_else(|| format!("unknown role {s:?}: one of admin, risk, collections, finance, support, read_only"))
}

fn fail(e: OperatorError) -> anyhow::Error {
    match e {
        OperatorError::Invalid(errs) => anyhow::anyhow!(
            "invalid input:\n{}",
            errs.iter().map(|e| format!("  - {}: {}", e.source, e.title)).collect::<Vec<_>>().join("\n")
        ),
        other => anyhow::Error::new(other),
    }
}

/// Runs an operator command against the configured database.
pub async fn run_operator(config: Config, cmd: OperatorCommand) -> anyhow::Result<()> {
    let s = Services::open(config, false).await?;
    let actor = Actor::cli();
    let result = match cmd {
        OperatorCommand::Create { email, name, roles, json } => {
            let input = NewOperator {
                email: Some(email),
                name: Some(name),
                roles: Some(roles.iter().map(|r| r.as_str().to_owned()).collect()),
            };
            let c = operators::create(&s, &actor, input).await.map_err(fail)?;
            print(
                json,
                &serde_json::json!({"operator_id": c.operator_id, "set_password_url": c.set_password_url}),
                || {
                    format!(
                        "operator {}\nset the password (one-time link, valid until {}):\n{}",
                        c.operator_id, c.set_password_expires_at, c.set_password_url
                    )
                },
            )
        }
        OperatorCommand::PasswordLink { email, json } => {
            let op = operators::by_email(&s, &email).await.map_err(fail)?;
            let c = operators::reset_link(&s, &actor, op.operator_id).await.map_err(fail)?;
            print(
                json,
                &serde_json::json!({"operator_id": c.operator_id, "set_password_url": c.set_password_url}),
                || {
                    format!(
                        "set-password link for {} (one-time, valid until {}):\n{}",
                        op.email, c.set_password_expires_at, c.set_password_url
                    )
                },
            )
        }
        OperatorCommand::List { json } => {
            let list = operators::list(&s).await.map_err(fail)?;
            print(json, &serde_json::json!({"data": list}), || {
                list.iter()
                    .map(|o| {
                        let roles = o.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
                        format!(
                            "{}  {}  {}  [{roles}]{}",
                            o.operator_id,
                            o.email,
                            o.name,
                            if o.active { "" } else { " deactivated" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        OperatorCommand::Token { command: TokenCommand::Create { email, name, expires_in_days, json } } => {
            let op = operators::by_email(&s, &email).await.map_err(fail)?;
            let t = operators::create_token(&s, &actor, op.operator_id, &name, expires_in_days).await.map_err(fail)?;
            print(
                json,
                &serde_json::json!({"token": t.token, "token_id": t.token_id, "expires_at": t.expires_at}),
                || format!("admin API token for {} (shown once):\n{}", op.email, t.token),
            )
        }
    };
    s.db.close().await;
    result
}

/// `netterms audit verify`.
pub async fn run_audit(config: Config, cmd: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { json } = cmd;
    let s = Services::open(config, false).await?;
    let v = audit::verify(&s).await;
    s.db.close().await;
    let v = v?;
    print(json, &v, || match &v.problem {
        None => format!("audit trail verified: {} records, each chained to the one before", v.records),
        Some(p) => format!("AUDIT TRAIL BROKEN after {} good records: {p}", v.records),
    })?;
    if !v.ok {
        anyhow::bail!("the audit trail does not verify");
    }
    Ok(())
}
