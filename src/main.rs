use clap::Parser;
use netterms::cli::{Cli, Command};
use netterms::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi { check } = cli.command {
        return netterms::cli::openapi(check);
    }
    let config = Config::load(cli.config.as_deref())?;
    // What a command changes is audited as the actor `cli`, in the transaction of the change.
    if let Some(action) = netterms::cli::audited_action(&cli.command) {
        let rec = netterms::cli::audit_record(action);
        let now = netterms::clock::Clock::default().now();
        return netterms::store::audit::scope(rec, now, dispatch(cli.command, config)).await;
    }
    dispatch(cli.command, config).await
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            netterms::telemetry::init_logging(&config);
            let app = netterms::app::Application::build(config.clone()).await?;
            let addr = app.local_addr()?;
            let url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
            tracing::info!(
                environment = config.environment.as_str(),
                backend = app.services().db.backend().name(),
                "netterms {} listening on http://{addr} (public URL {url}, database {}, admin API {})",
                config.environment.as_str(),
                netterms::telemetry::redact_url(&config.database_url),
                if config.admin_token.is_some() {
                    "admin_token and operators' tokens"
                } else {
                    "operators' tokens (ntop_…)"
                },
            );
            if config.admin_token.is_some() && config.environment == netterms::config::Environment::Production {
                tracing::warn!(
                    "admin_token is set in production: it acts with every permission as the actor `admin_token`; \
                     create operators (`netterms operator create`) and their tokens, then remove it"
                );
            }
            app.run_until(netterms::app::shutdown_signal()).await
        }
        Command::Migrate => {
            netterms::telemetry::init_logging(&config);
            let s = netterms::service::Services::open(config, true).await?;
            eprintln!("migrations applied ({})", s.db.backend().name());
            s.db.close().await;
            Ok(())
        }
        Command::Psp { command } => netterms::cli::run_psp(config, command).await,
        Command::Ledger { command } => netterms::cli::run_ledger(config, command).await,
        Command::Statements { command } => netterms::cli::run_statements(config, command).await,
        Command::StatusReports { command } => netterms::cli::run_status_reports(config, command).await,
        Command::DirectDebit { command } => netterms::cli::run_direct_debit(config, command).await,
        Command::Payouts { command } => netterms::cli::run_payouts(config, command).await,
        Command::Buyers { command } => netterms::cli::run_buyers(config, command).await,
        Command::Operator { command } => netterms::cli::run_operator(config, command).await,
        Command::Audit { command } => netterms::cli::run_audit(config, command).await,
        Command::Demo { shop } => {
            anyhow::ensure!(
                config.environment == netterms::config::Environment::Sandbox,
                "the demo runs only in a sandbox"
            );
            netterms::telemetry::init_logging(&config);
            let app = netterms::app::Application::build(config.clone()).await?;
            let addr = app.local_addr()?;
            let base = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
            let services = app.services().clone();
            let server = tokio::spawn(app.run_until(netterms::app::shutdown_signal()));
            let listener = tokio::net::TcpListener::bind(shop).await?;
            let origin = format!("http://{}", listener.local_addr()?);
            let s = netterms::demo::provision(&services, &base, &origin).await?;
            tracing::info!("demo shop on {origin} (netterms at {base}): open it in a browser");
            tokio::select! {
                r = netterms::demo::serve(listener, s) => r?,
                r = server => r??,
            }
            Ok(())
        }
        Command::Openapi { .. } => Ok(()),
    }
}
