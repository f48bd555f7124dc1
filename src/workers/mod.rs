//! Background work: one worker claims due jobs from the database and runs each by its kind.
//! Every kind's handler is idempotent (a job may run twice if its worker dies after the work
//! and before marking it done); periodic kinds schedule their next run by a unique key per slot,
//! so any number of nodes keep one schedule. (Webhook delivery keeps its own leased loop in
//! `service::webhooks`.)

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, DurationRound, Utc};

use crate::service::Services;
use crate::store::jobs::{self, Job, NewJob};

mod housekeeping;

/// Jobs claimed per round.
const BATCH: i64 = 32;

/// What a job may take beyond its SMTP exchange (rendering a PDF, a few statements).
const JOB_SLACK_SECS: i64 = 10;

/// What a job can be. The kind is stored as text; an unknown kind fails the job (visible to
/// operators) rather than the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// What became due on each PSP's clock: expiries, late invoices, reminders, dunning.
    ScanDue,
    /// Idempotency keys past retention, and finished jobs past a week.
    Purge,
    /// One buyer e-mail to send (queued with its cause).
    SendMessage,
    /// The merchant's invoice to fetch from a capture's `invoice_url`.
    FetchDocument,
    /// A buyer asked for a portal sign-in link.
    PortalLink,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::ScanDue, Kind::Purge, Kind::SendMessage, Kind::FetchDocument, Kind::PortalLink];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ScanDue => "scan_due",
            Kind::Purge => "purge",
            Kind::SendMessage => crate::service::messages::SEND_JOB,
            Kind::FetchDocument => crate::service::merchant_documents::FETCH_JOB,
            Kind::PortalLink => crate::service::portal::LINK_JOB,
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            // The kinds the scan replaced, still queued in a database from before it.
            "expire_authorizations" | "mark_overdue" => Some(Kind::ScanDue),
            _ => Kind::ALL.into_iter().find(|k| k.as_str() == s),
        }
    }

    /// Periodic kinds run once per slot of this length.
    fn period(self) -> Option<Duration> {
        match self {
            Kind::ScanDue => Some(Duration::minutes(1)),
            Kind::Purge => Some(Duration::hours(1)),
            Kind::SendMessage | Kind::FetchDocument | Kind::PortalLink => None,
        }
    }

    fn max_attempts(self) -> i64 {
        5
    }
}

/// Wait before attempt `n + 1` after `n` failed ones: 10 s, 40 s, 160 s, … at most an hour.
pub fn backoff(attempts: i64) -> Duration {
    let n = u32::try_from(attempts.clamp(1, 10)).unwrap_or(10);
    Duration::seconds((10 * 4_i64.pow(n - 1)).min(3600))
}

/// The job row of `kind`'s run in the slot holding `at` (periodic kinds).
fn periodic(kind: Kind, at: DateTime<Utc>) -> Option<(String, DateTime<Utc>)> {
    let period = kind.period()?;
    let slot = at.duration_trunc(period).ok()?;
    Some((format!("{}@{}", kind.as_str(), slot.to_rfc3339()), slot))
}

/// The row of a periodic kind's run in one slot.
fn periodic_job(kind: Kind, key: &str, slot: DateTime<Utc>) -> NewJob<'_> {
    NewJob {
        kind: kind.as_str(),
        psp_id: None,
        payload: "{}",
        unique_key: Some(key),
        run_at: slot,
        max_attempts: kind.max_attempts(),
    }
}

/// Makes sure every periodic kind has its run of the current slot queued (or done). Cheap and
/// idempotent: one row per kind and slot, whoever inserts it first.
pub async fn schedule_periodic(s: &Services) -> anyhow::Result<()> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    for kind in Kind::ALL {
        if let Some((key, slot)) = periodic(kind, now) {
            jobs::enqueue(&mut tx, &periodic_job(kind, &key, slot), now);
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Jobs of one lane run one after the other: a message's lane is its cause's object (the invoice
/// `capture:<id>`, the session …); every other job is a lane of its own.
fn lane_of(job: &Job) -> String {
    if job.kind == crate::service::messages::SEND_JOB {
        let cause = serde_json::from_str::<serde_json::Value>(&job.payload)
            .ok()
            .and_then(|v| v["cause_key"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let object: Vec<&str> = cause.splitn(3, ':').take(2).collect();
        return format!("message:{}", object.join(":"));
    }
    job.id.0.to_string()
}

/// Claims and runs due jobs.
#[derive(Clone)]
pub struct Worker {
    services: Services,
    name: Arc<str>,
}

impl Worker {
    pub fn new(services: Services, name: &str) -> Worker {
        Worker { services, name: Arc::from(name) }
    }

    /// One round: schedules the periodic kinds' current runs, claims a batch of due jobs and runs
    /// them one by one; returns how many ran.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        schedule_periodic(&self.services).await?;
        let now = self.services.clock.now();
        let lease = Duration::seconds(self.services.config.job_lease_secs);
        let claimed = jobs::claim_due(&self.services.db, &self.name, now, now + lease, BATCH).await?;
        self.run_claimed(claimed).await
    }

    /// Runs jobs this worker claimed, in lanes.
    pub async fn run_claimed(&self, claimed: Vec<Job>) -> anyhow::Result<usize> {
        let n = claimed.len();
        // The batch runs at once, in lanes: most jobs wait on something else (an SMTP server's
        // answer) and each is idempotent on its own, but the jobs of one lane — the e-mails about
        // one invoice — run one after the other, in the order they became due.
        let mut lanes: Vec<(String, Vec<Job>)> = Vec::new();
        for job in claimed {
            let lane = lane_of(&job);
            match lanes.iter_mut().find(|(l, _)| *l == lane) {
                Some((_, jobs)) => jobs.push(job),
                None => lanes.push((lane, vec![job])),
            }
        }
        let mut running = tokio::task::JoinSet::new();
        for (_, jobs) in lanes {
            let w = self.clone();
            running.spawn(async move {
                for job in &jobs {
                    if w.still_ours(job).await? {
                        w.run_job(job).await?;
                    }
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = running.join_next().await {
            r.map_err(|e| anyhow::anyhow!("job task: {e}"))??;
        }
        Ok(n)
    }

    /// Whether the job is still this worker's to run. A lane runs its jobs one after the other, so
    /// a job late in a long lane (an SMTP server that stalls each send until its timeout) could
    /// outlive its lease and be taken over by another worker — then both would send the same
    /// e-mail. A claim with less than the longest job's time left is renewed first, fenced on the
    /// claim (a job taken over is left to its new worker); a fresh claim costs no write.
    async fn still_ours(&self, job: &Job) -> anyhow::Result<bool> {
        let s = &self.services;
        let now = s.clock.now();
        let longest = Duration::seconds(i64::try_from(s.config.smtp_timeout_secs).unwrap_or(60) + JOB_SLACK_SECS);
        if job.locked_until.is_some_and(|until| until - now > longest) {
            return Ok(true);
        }
        let lease = Duration::seconds(s.config.job_lease_secs);
        let ours = jobs::renew(&s.db, job, &self.name, now + lease, now).await?;
        if !ours {
            tracing::info!(job_id = %job.id, kind = %job.kind, "job taken over by another worker after its lease ran out; skipped");
        }
        Ok(ours)
    }

    async fn run_job(&self, job: &Job) -> anyhow::Result<()> {
        let s = &self.services;
        let result = match Kind::parse(&job.kind) {
            // The send job ends itself, in the transaction that records the message's outcome.
            Some(Kind::SendMessage) => {
                return match crate::service::messages::send(s, job, &self.name).await {
                    Ok(()) => Ok(()),
                    Err(e) => self.failed(job, &e).await,
                };
            }
            Some(Kind::FetchDocument) => crate::service::merchant_documents::fetch(s, &job.payload).await,
            Some(Kind::PortalLink) => crate::service::portal::send_link(s, &job.payload).await,
            Some(kind) => housekeeping::run(s, kind).await,
            None => Err(anyhow::anyhow!("unknown job kind {:?}", job.kind)),
        };
        let now = s.clock.now();
        match result {
            Ok(()) => {
                let mut tx = s.db.begin().await?;
                jobs::finish(&mut tx, job, &self.name, now).await?;
                if let Some(kind) = Kind::parse(&job.kind) {
                    // The next run of a periodic kind: the slot after the current one (a worker
                    // that was down does not catch up slot by slot).
                    if let Some((key, slot)) = kind.period().and_then(|p| periodic(kind, now + p)) {
                        jobs::enqueue(&mut tx, &periodic_job(kind, &key, slot), now);
                    }
                }
                tx.commit().await?;
            }
            Err(e) => self.failed(job, &e).await?,
        }
        Ok(())
    }

    /// Records a failed attempt: retried with backoff, or failed for good after the last.
    async fn failed(&self, job: &Job, e: &anyhow::Error) -> anyhow::Result<()> {
        let s = &self.services;
        let now = s.clock.now();
        let message = format!("{e:#}");
        tracing::warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, error = %message, "job failed");
        let retry_at = (job.attempts < job.max_attempts).then(|| now + backoff(job.attempts));
        if retry_at.is_none() {
            tracing::error!(job_id = %job.id, kind = %job.kind, alert = "operator", "job failed for good");
            metrics::counter!("jobs_failed_total").increment(1);
        }
        jobs::fail(&s.db, job, &self.name, &message, retry_at, now).await?;
        Ok(())
    }

    /// Runs rounds until `stop` says so; sleeps `job_poll_ms` when nothing was due.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let idle = StdDuration::from_millis(self.services.config.job_poll_ms);
        loop {
            if *stop.borrow() {
                return;
            }
            let ran = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "job round failed");
                    0
                }
            };
            if ran == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert_eq!(backoff(1), Duration::seconds(10));
        assert_eq!(backoff(2), Duration::seconds(40));
        assert_eq!(backoff(3), Duration::seconds(160));
        assert_eq!(backoff(9), Duration::hours(1));
        assert_eq!(backoff(0), Duration::seconds(10));
    }

    #[test]
    fn periodic_slots_are_stable_keys() {
        let t = DateTime::parse_from_rfc3339("2026-11-27T12:34:56Z").unwrap().with_timezone(&Utc);
        let (k, slot) = periodic(Kind::ScanDue, t).unwrap();
        assert_eq!(k, "scan_due@2026-11-27T12:34:00+00:00");
        assert_eq!(slot, t.duration_trunc(Duration::minutes(1)).unwrap());
        let (k2, _) = periodic(Kind::ScanDue, t + Duration::seconds(3)).unwrap();
        assert_eq!(k, k2, "one run per slot, whoever schedules it");
        let (k3, _) = periodic(Kind::Purge, t).unwrap();
        assert_eq!(k3, "purge@2026-11-27T12:00:00+00:00");
    }
}
