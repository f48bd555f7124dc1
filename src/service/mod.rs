//! Use cases: one function per thing a client can do, over a transaction. Shared by the HTTP
//! handlers and the CLI.

use std::sync::Arc;

use crate::clock::{Clock, PspTime};
use crate::config::Config;
use crate::domain::ids::PspId;
use crate::secrets::Keyring;
use crate::store::{AsExec, Db, StoreResult};

pub mod approvals;
pub mod audit;
pub mod authorizations;
pub mod captures;
pub mod checkout;
pub mod clock;
pub mod direct_debit;
pub mod disputes;
pub mod documents;
pub mod dunning;
pub mod facts;
pub mod fee_invoices;
pub mod imprint;
pub mod merchant_documents;
pub mod merchants;
pub mod messages;
pub mod operators;
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

    /// Every PSP with its current time (its sandbox clock; the deployment's in production).
    pub async fn psp_times(&self) -> StoreResult<Vec<(PspId, PspTime)>> {
        let mut conn = self.db.conn().await?;
        let clocks = crate::store::psps::clock_offsets(&mut conn).await?;
        let now = self.clock.now();
        let sandbox = self.config.is_sandbox();
        Ok(clocks
            .into_iter()
            .map(|(psp_id, offset)| (psp_id, PspTime::ahead(now, if sandbox { offset } else { 0 })))
            .collect())
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
                // Not part of a command's audited change.
                crate::store::audit::outside(crate::store::secrets::get_or_insert(
                    &db,
                    "sandbox_secret_key",
                    &fresh,
                    clock.now(),
                ))
                .await?
            }
        };
        let mailer = messages::Mailer::from_config(&config)?;
        Ok(Services { db, keyring: Keyring::new(key.as_bytes()), clock, config: Arc::new(config), mailer })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// The modules of `service/` each one names (`super::x`, `crate::service::x`), outside tests.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/service");
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.map(|e| e.path()).unwrap_or_default();
            let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if path.extension().is_some_and(|x| x == "rs") && name != "mod" {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default().to_owned();
                files.insert(name, code);
            }
        }
        let names: BTreeSet<String> = files.keys().cloned().collect();
        files
            .iter()
            .map(|(name, code)| {
                let mut uses = BTreeSet::new();
                for prefix in ["super::", "crate::service::"] {
                    for (i, _) in code.match_indices(prefix) {
                        let rest = &code[i + prefix.len()..];
                        let ident: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        if names.contains(&ident) && ident != *name {
                            uses.insert(ident);
                        }
                    }
                }
                (name.clone(), uses)
            })
            .collect()
    }

    /// The use cases form a one-way graph (issue 19, item 35): no module of `service/` reaches
    /// itself through what it imports. The scheduler (`clock`) stands above what it schedules;
    /// settlement (`payments`) is called by every money-in path and calls none of them.
    #[test]
    fn the_use_cases_import_one_way() {
        let g = imports();
        assert!(g.len() > 20, "{g:?}");
        fn reach(g: &BTreeMap<String, BTreeSet<String>>, from: &str, path: &mut Vec<String>) -> Option<Vec<String>> {
            for next in g.get(from).into_iter().flatten() {
                if path.first() == Some(next) {
                    let mut cycle = path.clone();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                if !path.contains(next) {
                    path.push(next.clone());
                    if let Some(c) = reach(g, next, path) {
                        return Some(c);
                    }
                    path.pop();
                }
            }
            None
        }
        for m in g.keys() {
            let cycle = reach(&g, m, &mut vec![m.clone()]);
            assert!(cycle.is_none(), "an import circle: {}", cycle.unwrap_or_default().join(" → "));
        }
        let importers_of =
            |m: &str| g.iter().filter(|(_, u)| u.contains(m)).map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert!(importers_of("clock").is_empty(), "the scheduler is imported by {:?}", importers_of("clock"));
        for money_in in ["statements", "direct_debit", "status_reports"] {
            assert!(!g["payments"].contains(money_in), "settlement calls {money_in}");
        }
    }
}
