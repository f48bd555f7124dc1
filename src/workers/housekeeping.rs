//! The periodic housekeeping kinds: each a scan of what is due, idempotent by its conditional
//! updates, so running it twice changes nothing more.

use chrono::Duration;

use super::Kind;
use crate::service::Services;

/// Finished jobs are kept this long for operators to look at.
const KEEP_DONE_JOBS: Duration = Duration::days(7);

pub async fn run(s: &Services, kind: Kind) -> anyhow::Result<()> {
    match kind {
        Kind::SendMessage | Kind::FetchDocument | Kind::PortalLink => {
            anyhow::bail!("{} is not a housekeeping kind", kind.as_str())
        }
        Kind::ScanDue => {
            let ran = crate::service::clock::run_due_for_all(s).await?;
            if ran != crate::service::clock::DueWork::default() {
                tracing::info!(?ran, "due work ran");
            }
        }
        Kind::Purge => {
            let now = s.clock.now();
            let keys = crate::store::idempotency::purge_expired(&s.db, now).await?;
            let jobs = crate::store::jobs::purge_done(&s.db, now - KEEP_DONE_JOBS).await?;
            if keys + jobs > 0 {
                tracing::info!(idempotency_keys = keys, jobs, "purged");
            }
        }
    }
    Ok(())
}
