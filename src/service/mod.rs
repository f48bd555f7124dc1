//! Use cases: one function per thing a client can do, over a transaction. Shared by the HTTP
//! handlers and the CLI.

use std::sync::Arc;

use crate::clock::{Clock, PspTime};
use crate::config::Config;
use crate::domain::ids::PspId;
use crate::secrets::Keyring;
use crate::store::{AsExec, Db, StoreResult};

pub mod authorizations;
pub mod captures;
pub mod checkout;
pub mod clock;
pub mod direct_debit;
pub mod disputes;
pub mod documents;
pub mod dunning;
pub mod fee_invoices;
pub mod imprint;
pub mod merchant_documents;
pub mod merchants;
pub mod messages;
pub mod orders;
pub mod outbound;
pub mod payment_messages;
pub mod payments;
pub mod payouts;
pub mod portal;
pub mod psps;
pub mod sessions;
pub mod statements;
pub mod status_reports;
pub mod webhooks;

/// What every use case may need: the database, the server key, the clock and the configuration.
#[derive(Clone, Debug)]
pub struct Services {
    pub db: Db,
    pub keyring: Keyring,
    pub clock: Clock,
    pub config: Arc<Config>,
    /// The SMTP client for the buyer's e-mails (none configured: messages are stored, not sent).
    pub mailer: Option<messages::Mailer>,
}

impl Services {
    /// The clock of `psp_id` (SPEC §11): in a sandbox the deployment's clock plus the PSP's own
    /// offset, read from the database so every node agrees; in production the deployment's clock.
    pub async fn now_for(&self, conn: &mut impl AsExec, psp_id: PspId) -> StoreResult<PspTime> {
        let wall = self.clock.now();
        if !self.config.is_sandbox() {
            return Ok(PspTime { now: wall, wall });
        }
        let offset = crate::store::psps::clock_offset(conn, psp_id).await?.unwrap_or(0);
        Ok(PspTime::ahead(wall, offset))
    }

    /// Connects to the configured database and loads (or in sandbox creates) the server key.
    /// SQLite is migrated automatically; PostgreSQL must have been migrated (`netterms migrate`)
    /// unless `migrate` is set.
    pub async fn open(config: Config, migrate: bool) -> anyhow::Result<Services> {
        let opts = crate::store::PoolOptions { max_connections: config.db_max_connections, ..Default::default() };
        if migrate && !config.database_url.starts_with("sqlite:") {
            // Migrations may run long: on a pool of their own without the statement bound.
            let unbounded = Db::connect(&config.database_url, &opts).await?;
            unbounded.migrate().await?;
            unbounded.close().await;
        }
        let db = Db::connect(
            &config.database_url,
            &crate::store::PoolOptions { statement_timeout: config.statement_timeout(), ..opts },
        )
        .await?;
        if db.backend() == crate::store::Backend::Sqlite {
            db.migrate().await?;
        } else if !migrate {
            let pending = db.pending_migrations().await?;
            anyhow::ensure!(pending == 0, "the database lacks {pending} migration(s): run `netterms migrate` first");
        }
        let clock = Clock::default();
        let key = match &config.secret_key {
            Some(k) => k.expose().to_owned(),
            None => {
                let fresh = crate::secrets::random_alphanumeric(64);
                crate::store::secrets::get_or_insert(&db, "sandbox_secret_key", &fresh, clock.now()).await?
            }
        };
        let mailer = messages::Mailer::from_config(&config)?;
        Ok(Services { db, keyring: Keyring::new(key.as_bytes()), clock, config: Arc::new(config), mailer })
    }
}
