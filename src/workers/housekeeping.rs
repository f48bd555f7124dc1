//! The periodic housekeeping kinds: each a scan of what is due, idempotent by its conditional
//! updates, so running it twice changes nothing more.

use chrono::Duration;

use super::Kind;
use crate::service::Services;

/// Finished jobs are kept this long for operators to look at.
const KEEP_DONE_JOBS: Duration = Duration::days(7);

pub async fn run(s: &Services, kind: Kind) -> anyhow::Result<()> {
    match kind {
        Kind::ExpireAuthorizations => {
            let n = crate::service::authorizations::expire_due(s).await?;
            if n > 0 {
                tracing::info!(expired = n, "unconfirmed authorizations expired");
            }
        }
        Kind::MarkOverdue => {
            let n = crate::service::captures::mark_overdue(s).await?;
            if n > 0 {
                tracing::info!(late = n, "overdue invoices marked late");
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
