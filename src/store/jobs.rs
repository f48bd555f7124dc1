//! The job queue: rows enqueued in the transaction of their cause (deferred, de-duplicated by a
//! unique key), claimed in batches with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's
//! single writer serializes claims), finished only by the claim that holds them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AsExec, Backend, Db, StoreResult, Tx};
use crate::domain::ids::{JobId, PspId};
use crate::with_conn;

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub kind: &'a str,
    pub psp_id: Option<PspId>,
    pub payload: &'a str,
    /// One job per cause: another enqueue with this key is ignored.
    pub unique_key: Option<&'a str>,
    pub run_at: DateTime<Utc>,
    pub max_attempts: i64,
}

/// Enqueues a job with the transaction's other writes (deferred); a job with the same unique key
/// already there wins.
pub fn enqueue(tx: &mut Tx, job: &NewJob<'_>, now: DateTime<Utc>) {
    enqueue_many(tx, std::slice::from_ref(&(job.clone(), now)));
}

/// Enqueues many jobs in one statement (deferred), each once per unique key.
pub fn enqueue_many(tx: &mut Tx, jobs: &[(NewJob<'_>, DateTime<Utc>)]) {
    let rows = jobs
        .iter()
        .map(|(job, now)| {
            vec![
                JobId::new().0.into(),
                job.kind.into(),
                super::Arg::OptUuid(job.psp_id.map(|p| p.0)),
                job.payload.into(),
                job.unique_key.into(),
                "queued".into(),
                0i64.into(),
                job.max_attempts.into(),
                job.run_at.into(),
                (*now).into(),
                (*now).into(),
            ]
        })
        .collect();
    tx.defer_rows(
        "INSERT INTO jobs (id, kind, psp_id, payload, unique_key, state, attempts, max_attempts, run_at, created_at, updated_at) VALUES",
        rows,
        "ON CONFLICT (unique_key) DO NOTHING",
    );
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    pub psp_id: Option<PspId>,
    /// What the job works on (JSON).
    pub payload: String,
    pub unique_key: Option<String>,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// When it is (next) due.
    pub run_at: DateTime<Utc>,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    /// The last failure's message.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "id, kind, psp_id, payload, unique_key, state, CAST(attempts AS BIGINT) AS attempts, \
     CAST(max_attempts AS BIGINT) AS max_attempts, run_at, locked_by, locked_until, last_error, created_at, updated_at, finished_at";

/// Claims up to `limit` due jobs for `worker` until `lease_until`: queued ones whose time has
/// come, and running ones whose lease ran out (their worker died). Commits at once.
pub async fn claim_due(
    db: &Db,
    worker: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<Job>> {
    let mut tx = db.begin().await?;
    let mut jobs: Vec<Job> = with_conn!(&mut tx, c, b => {
        let skip = if b == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        sqlx::query_as(&format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = $1, locked_until = $2, updated_at = $3 \
             WHERE id IN (SELECT id FROM jobs WHERE (state = 'queued' AND run_at <= $3) \
                          OR (state = 'running' AND locked_until < $3) ORDER BY run_at, id LIMIT $4{skip}) \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(worker).bind(lease_until).bind(now).bind(limit)
        .fetch_all(&mut *c).await?
    });
    tx.commit().await?;
    // In the order they became due (RETURNING keeps no order): a buyer's e-mails go out in the
    // order of their causes.
    jobs.sort_by_key(|j| (j.run_at, j.id.0));
    Ok(jobs)
}

/// Extends `worker`'s claim of a job to `lease_until`; `false` if the claim is no longer its (its
/// lease ran out and another worker took the job over: that one runs it).
pub async fn renew(
    db: &Db,
    job: &Job,
    worker: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut conn = db.relaxed_conn().await?;
    Ok(with_conn!(&mut conn, c => {
        sqlx::query(
            "UPDATE jobs SET locked_until = $4, updated_at = $5 \
             WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND state = 'running'",
        )
        .bind(job.id).bind(worker).bind(job.attempts).bind(lease_until).bind(now)
        .execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// Marks a claimed job done, if the claim is still `worker`'s (a takeover fences it out).
pub async fn finish(tx: &mut impl AsExec, job: &Job, worker: &str, now: DateTime<Utc>) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE jobs SET state = 'done', finished_at = $4, locked_by = NULL, locked_until = NULL, updated_at = $4 \
             WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND state = 'running'",
        )
        .bind(job.id).bind(worker).bind(job.attempts).bind(now)
        .execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// Records a failed attempt: queued again at `retry_at`, or `failed` when it was the last.
pub async fn fail(
    db: &Db,
    job: &Job,
    worker: &str,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    with_conn!(&mut tx, c => {
        let (state, run_at) = match retry_at {
            Some(t) => ("queued", t),
            None => ("failed", job.run_at),
        };
        sqlx::query(
            "UPDATE jobs SET state = $4, run_at = $5, last_error = $6, locked_by = NULL, locked_until = NULL, updated_at = $7, \
             finished_at = CASE WHEN $4 = 'failed' THEN $7 ELSE NULL END \
             WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND state = 'running'",
        )
        .bind(job.id).bind(worker).bind(job.attempts).bind(state).bind(run_at).bind(error).bind(now)
        .execute(&mut *c).await?;
    });
    tx.commit().await?;
    Ok(())
}

/// Jobs in `state` (all if `None`), newest first.
pub async fn list(
    conn: &mut impl AsExec,
    state: Option<&str>,
    limit: i64,
    before: Option<JobId>,
) -> StoreResult<Vec<Job>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(state).bind(before).bind(limit)
        .fetch_all(&mut *c).await?
    }))
}

pub async fn get(conn: &mut impl AsExec, id: JobId) -> StoreResult<Option<Job>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")).bind(id).fetch_optional(&mut *c).await?
    }))
}

/// Queues a failed job again, at once and with its attempts counted afresh; `false` if it is not failed.
pub async fn retry(tx: &mut impl AsExec, id: JobId, now: DateTime<Utc>) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, finished_at = NULL, updated_at = $2 \
             WHERE id = $1 AND state = 'failed'",
        )
        .bind(id).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// Deletes jobs that finished (done) before `before`; returns how many.
pub async fn purge_done(db: &Db, before: DateTime<Utc>) -> StoreResult<u64> {
    let mut tx = db.begin().await?;
    let n = with_conn!(&mut tx, c => {
        sqlx::query("DELETE FROM jobs WHERE state = 'done' AND finished_at < $1")
            .bind(before).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n)
}
