//! The job queue: periodic housekeeping as jobs, one run per slot; workers racing never run a
//! job twice; failures back off, end `failed`, show to operators and can be retried; a dead
//! worker's lease is taken over; a job enqueued in a transaction that rolls back never exists.

use chrono::Duration;
use netterms::store::jobs::{self, NewJob};
use reqwest::Method;

use crate::helpers::*;

async fn count_where(app: &TestApp, cond: &str) -> i64 {
    app.count(&format!("jobs WHERE {cond}")).await
}

async fn enqueue(app: &TestApp, kind: &str, key: &str, max_attempts: i64) {
    let now = app.services.clock.now();
    let mut tx = app.db().begin().await.unwrap();
    let job = NewJob { kind, psp_id: None, payload: "{}", unique_key: Some(key), run_at: now, max_attempts };
    jobs::enqueue(&mut tx, &job, now);
    tx.commit().await.unwrap();
}

/// Moves the clock to just after the next minute, so a test has most of a minute before the
/// minutely slot changes.
fn to_next_minute(app: &TestApp) {
    use chrono::Timelike;
    let now = app.services.clock.now();
    let into_minute = i64::from(now.second()) * 1_000_000 + i64::from(now.nanosecond() / 1000);
    app.services.clock.advance(Duration::microseconds(60_000_000 - into_minute + 100_000));
}

#[tokio::test]
async fn housekeeping_runs_as_jobs_once_per_slot() {
    use chrono::Timelike;
    let app = TestApp::spawn().await;
    to_next_minute(&app);
    assert_eq!(app.run_jobs().await, 2, "the scan of what is due and the purge, once each");
    assert_eq!(count_where(&app, "state = 'done'").await, 2);
    // Each scheduled its next slot; nothing more is due now, however often a worker looks.
    assert_eq!(count_where(&app, "state = 'queued'").await, 2);
    assert_eq!(app.run_jobs().await, 0);
    assert_eq!(app.run_jobs().await, 0);
    let hour = app.services.clock.now().hour();
    app.services.clock.advance(Duration::seconds(60));
    let new_hour = usize::from(app.services.clock.now().hour() != hour);
    assert_eq!(app.run_jobs().await, 1 + new_hour, "the minutely scan ran again, the hourly purge only in a new hour");
    assert_eq!(count_where(&app, "kind = 'purge' AND state = 'done'").await, 1 + i64::try_from(new_hour).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_never_run_a_job_twice() {
    let app = TestApp::spawn().await;
    to_next_minute(&app);
    for i in 0..40 {
        enqueue(&app, "purge", &format!("race-{i}"), 5).await;
    }
    let worker = |name: &'static str| {
        let w = netterms::workers::Worker::new(app.services.clone(), name);
        async move {
            let mut ran = 0;
            loop {
                let n = w.run_once().await.unwrap();
                if n == 0 {
                    return ran;
                }
                ran += n;
            }
        }
    };
    let (a, b) = tokio::join!(worker("a"), worker("b"));
    assert_eq!(a + b, 42, "40 jobs and the 2 periodic ones, each run once: {a} + {b}");
    assert_eq!(count_where(&app, "state = 'done'").await, 42);
    assert_eq!(count_where(&app, "attempts <> 1").await, 2, "only the 2 next slots, queued, have not run");
}

#[tokio::test]
async fn a_failing_job_backs_off_fails_shows_and_can_be_retried() {
    let app = TestApp::spawn().await;
    to_next_minute(&app);
    app.run_jobs().await;
    enqueue(&app, "no_such_kind", "doomed", 2).await;
    assert_eq!(app.run_jobs().await, 1);
    let page = app.send(app.admin(Method::GET, "/admin/v1/jobs?state=queued&limit=100")).await.json();
    let job = page["data"].as_array().unwrap().iter().find(|j| j["kind"] == "no_such_kind").unwrap().clone();
    assert_eq!(job["attempts"], 1);
    assert!(job["last_error"].as_str().unwrap().contains("unknown job kind"));
    // Backed off: not due again at once.
    assert_eq!(app.run_jobs().await, 0);
    app.services.clock.advance(Duration::seconds(11));
    app.run_jobs().await;
    let failed = app.send(app.admin(Method::GET, "/admin/v1/jobs?state=failed")).await.json();
    let data = failed["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{failed}");
    assert_eq!(data[0]["attempts"], 2);
    let id = data[0]["id"].as_str().unwrap().to_owned();
    let r = app.send(app.admin(Method::POST, &format!("/admin/v1/jobs/{id}/retry"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "queued");
    assert_eq!(r.json()["attempts"], 0);
    app.send(app.admin(Method::POST, &format!("/admin/v1/jobs/{id}/retry"))).await.assert_error(409, "state_conflict");
    app.send(app.admin(Method::POST, &format!("/admin/v1/jobs/{}/retry", uuid::Uuid::now_v7())))
        .await
        .assert_error(404, "resource_not_found");
    app.send(app.admin(Method::GET, "/admin/v1/jobs?state=lost")).await.assert_error(400, "request_invalid");
    // Without the operator's token there is nothing to see.
    assert_eq!(app.send(app.client.get(app.url("/admin/v1/jobs"))).await.status, 401);
}

#[tokio::test]
async fn a_dead_workers_lease_is_taken_over_and_its_late_finish_changes_nothing() {
    let app = TestApp::spawn().await;
    app.run_jobs().await;
    enqueue(&app, "purge", "orphan", 5).await;
    let now = app.services.clock.now();
    let claimed = jobs::claim_due(app.db(), "dead-worker", now, now + Duration::minutes(5), 10).await.unwrap();
    let orphan = claimed.into_iter().find(|j| j.unique_key.as_deref() == Some("orphan")).unwrap();
    assert_eq!(app.run_jobs().await, 0, "leased to a worker that may still be working");
    app.services.clock.advance(Duration::minutes(6));
    assert!(app.run_jobs().await >= 1);
    assert_eq!(count_where(&app, "unique_key = 'orphan' AND state = 'done' AND attempts = 2").await, 1);
    let mut tx = app.db().begin().await.unwrap();
    assert!(!jobs::finish(&mut tx, &orphan, "dead-worker", app.services.clock.now()).await.unwrap());
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_exists() {
    let app = TestApp::spawn().await;
    let now = app.services.clock.now();
    let mut tx = app.db().begin().await.unwrap();
    let job =
        NewJob { kind: "purge", psp_id: None, payload: "{}", unique_key: Some("ghost"), run_at: now, max_attempts: 5 };
    jobs::enqueue(&mut tx, &job, now);
    drop(tx);
    assert_eq!(count_where(&app, "unique_key = 'ghost'").await, 0);
    // And the same key twice is one job.
    enqueue(&app, "purge", "twice", 5).await;
    enqueue(&app, "purge", "twice", 5).await;
    assert_eq!(count_where(&app, "unique_key = 'twice'").await, 1);
}

/// A worker that reaches a job only after its lease ran out (a long lane: an SMTP server that
/// stalls each send until its timeout) and after another worker took the job over leaves it to
/// that worker: the e-mail goes out once, not once per worker (issue 19, item 25).
#[tokio::test]
async fn a_job_taken_over_is_not_run_by_the_worker_whose_lease_ran_out() {
    use crate::smtp::SmtpServer;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(|c| c.smtp_url = Some(netterms::secrets::Secret::new(smtp.url()))).await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    crate::payments::capture_of(&app, &psp, &mid, "LEASE-1", 11900).await;
    let now = app.services.clock.now();
    let slow = jobs::claim_due(app.db(), "slow-worker", now, now + Duration::seconds(60), 32).await.unwrap();
    let sends = slow.iter().filter(|j| j.kind == "send_message").count();
    assert!(sends >= 1, "{slow:?}");
    // Its lease runs out while it works on other things; another worker takes the jobs over.
    app.services.clock.advance(Duration::seconds(61));
    let now = app.services.clock.now();
    let next = jobs::claim_due(app.db(), "next-worker", now, now + Duration::minutes(5), 32).await.unwrap();
    assert_eq!(next.len(), slow.len(), "taken over");
    let (a, b) = (
        netterms::workers::Worker::new(app.services.clone(), "slow-worker"),
        netterms::workers::Worker::new(app.services.clone(), "next-worker"),
    );
    let (ra, rb) = tokio::join!(a.run_claimed(slow), b.run_claimed(next));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(smtp.received_count(), sends, "each e-mail once");
    assert_eq!(count_where(&app, "kind = 'send_message' AND state = 'done' AND locked_by IS NULL").await, sends as i64);
}
