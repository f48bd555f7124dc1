//! netterms' benchmark (run it with `bench/run`). For each backend it starts a release
//! `netterms serve`, drives it from this separate process and prints one JSON line:
//! - the full flow (widget session → authorize → confirm → capture → refund) at a fixed offered rate,
//! - money-moving writes (captures with fresh idempotency keys) at a fixed offered rate — open loop:
//!   each request is scheduled ahead of time, latency counts from its scheduled start (no
//!   coordinated omission), and a request that would exceed the in-flight cap is dropped and counted,
//! - the sustained maximum of money-moving writes (closed loop, many workers),
//! - `pgbench` (TPC-B-like) on the same PostgreSQL in the same run,
//! - the server's peak resident set,
//! - a growth run: p99 of `GET /v1/orders/{id}` and of a capture at 10,000 and at 1,000,000 stored orders.
//!
//! `NETTERMS_BENCH_ONLY=statements` runs the bank-statement phase: 100,000 open invoices, and a
//! camt.053 paying each by its RF reference imported and matched by `netterms statements
//! import`, with the import's peak memory for a 20,000- and an 80,000-entry file.
//!
//! `NETTERMS_BENCH_ONLY=payouts` runs the payout phase: 100,000 captures of one weekly PSP, the
//! sandbox clock advanced to the next Monday (the run that pays them out), and the payout's
//! CSV report streamed, with the server's peak memory before and after it.
//!
//! `NETTERMS_BENCH_ONLY=after_capture` runs the phase of the buyer's side instead: a sandbox clock
//! advance of 120 days over 10,000 open invoices, PDFs per second and their size, e-mails per
//! second to a local SMTP server.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// The tests' SMTP server on loopback, as the e-mail sink.
#[path = "../../../tests/api/smtp.rs"]
#[allow(dead_code)]
mod smtp;

/// With NETTERMS_BENCH_TRACE=FILE, every open-loop request's (sequence number, latency µs) is
/// written to FILE, to see when slow requests happen.
static TRACE: std::sync::OnceLock<std::sync::Mutex<Vec<(u64, u64)>>> = std::sync::OnceLock::new();

const ADMIN: &str = "bench-admin-token-0123456789";

struct Server {
    child: Child,
    base: String,
    user: String,
    pass: String,
    merchant: String,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> String {
    std::env::var("NETTERMS_BIN").unwrap_or_else(|_| "target/release/netterms".into())
}

fn netterms(db_url: &str, port: u16) -> Command {
    let mut c = Command::new(bin());
    c.env_remove("DATABASE_URL")
        .env("NETTERMS_DATABASE_URL", db_url)
        .env("NETTERMS_LISTEN", format!("127.0.0.1:{port}"))
        .env("NETTERMS_SECRET_KEY", "bench-secret-key-0123456789-0123456789")
        .env("NETTERMS_ADMIN_TOKEN", ADMIN)
        // The bench sets its credit policy itself, with no second operator to approve it.
        .env("NETTERMS_FOUR_EYES", "[]")
        .env("NETTERMS_AUTH_FAILURE_LIMIT", "1000000")
        // One load generator is one client address: the checkout API's per-address limit is lifted.
        .env("NETTERMS_CHECKOUT_REQUESTS_PER_MINUTE_PER_ADDRESS", "1000000000")
        .env("NETTERMS_LOG_LEVEL", "error")
        .env("NETTERMS_DB_MAX_CONNECTIONS", "32")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

async fn start(db_url: &str, port: u16) -> Result<Server> {
    start_with(db_url, port, &[]).await
}

/// Starts netterms with more configuration (`NETTERMS_*` variables).
async fn start_with(db_url: &str, port: u16, env: &[(&str, String)]) -> Result<Server> {
    if db_url.starts_with("postgres") {
        let ok = netterms(db_url, port).arg("migrate").status()?.success();
        if !ok {
            bail!("migrate failed");
        }
    }
    let mut cmd = netterms(db_url, port);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.arg("serve").spawn().context("starting netterms")?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().pool_max_idle_per_host(512).build()?;
    for _ in 0..200 {
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let admin = |m: reqwest::Method, p: &str| {
        client.request(m, format!("{base}{p}")).bearer_auth(ADMIN).header("audit-reason", "benchmark set-up")
    };
    let psp: Value = admin(reqwest::Method::POST, "/admin/v1/psps")
        .json(&json!({"name": "Bench", "fee_rate_bps": 100, "fee_fixed": 0, "iban": "DE89370400440532013000", "payout_frequency": "daily"}))
        .send().await?.json().await?;
    let pw: Value = client
        .get(psp["password_url"].as_str().context("password_url")?)
        .header("accept", "application/json")
        .send()
        .await?
        .json()
        .await?;
    let mut policy: Value = admin(reqwest::Method::GET, "/admin/v1/credit-policy").send().await?.json().await?;
    for k in ["default_buyer_limit", "review_above", "max_order_amount"] {
        policy[k] = json!(1_000_000_000_000i64);
    }
    admin(reqwest::Method::PUT, "/admin/v1/credit-policy").json(&policy).send().await?.error_for_status()?;
    let user = psp["username"].as_str().context("username")?.to_owned();
    let pass = pw["password"].as_str().context("password")?.to_owned();
    let m: Value = client
        .post(format!("{base}/v1/merchants"))
        .basic_auth(&user, Some(&pass))
        .json(
            &json!({"external_id": "bench", "name": "Bench GmbH", "legal_form": "10001", "registration_number": "HRB 1",
            "address": {"street": "Ring", "postal_code": "50667", "city": "Köln", "country": "DE"},
            "contact": {"name": "Bench", "email": "bench@example.com"}}),
        )
        .send()
        .await?
        .json()
        .await?;
    let merchant = m["merchant_id"].as_str().context("merchant_id")?.to_owned();
    Ok(Server { child, base, user, pass, merchant, client })
}

fn order(n: u64, gross: i64) -> Value {
    json!({
        "external_order_id": format!("B-{n}"),
        "amount": {"currency": "EUR", "gross": gross, "net": gross, "tax": 0}, "duration": 30,
        "debtor_company": {"name": format!("Bench Kunde {n} GmbH"), "legal_form": "10001", "registration_number": format!("HRB {n}"),
            "registration_court": "AG Köln", "address": {"street": "Ring", "postal_code": "50667", "city": "Köln", "country": "DE"}},
        "debtor_person": {"email": "bench@kunde.example"}
    })
}

impl Server {
    async fn post(&self, path: &str, body: &Value) -> Option<Value> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.pass))
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(body)
            .send()
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                report_error(path, &format!("{e}"));
                return None;
            }
        };
        if !r.status().is_success() {
            let status = r.status();
            report_error(path, &format!("{status} {}", r.text().await.unwrap_or_default()));
            return None;
        }
        r.json().await.ok()
    }

    /// A confirmed order of `gross`: session → authorize → confirm.
    async fn order(&self, n: u64, gross: i64) -> Option<String> {
        let s = self
            .post(
                "/v1/widget-sessions",
                &json!({"merchant_id": self.merchant, "allowed_origins": ["https://shop.example"]}),
            )
            .await?;
        let sid = s["session_id"].as_str()?.to_owned();
        let cs = s["client_secret"].as_str()?.to_owned();
        let a: Value = self
            .client
            .post(format!("{}/checkout-api/v1/sessions/{cs}/authorize", self.base))
            .json(&json!({"order": order(n, gross), "payment_method": "bank_transfer", "terms_accepted": true}))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        if a["state"] != "authorized" {
            return None;
        }
        self.post(&format!("/v1/widget-sessions/{sid}/confirm-authorization"), &order(n, gross)).await?;
        Some(a["order_id"].as_str()?.to_owned())
    }

    async fn capture(&self, order: &str, gross: i64) -> Option<Value> {
        self.post(&format!("/v1/orders/{order}/captures"),
            &json!({"amount": {"currency": "EUR", "gross": gross, "net": gross, "tax": 0}, "external_invoice_number": uuid::Uuid::now_v7().to_string()})).await
    }

    /// A credit note of `gross` on a capture.
    async fn refund(&self, capture: &str, gross: i64) -> Option<Value> {
        self.post(
            &format!("/v1/captures/{capture}/refunds"),
            &json!({"amount": {"currency": "EUR", "gross": gross, "net": gross, "tax": 0},
                    "external_credit_note_number": uuid::Uuid::now_v7().to_string()}),
        )
        .await
    }

    /// A payment of `amount` the buyer made to the merchant directly.
    async fn confirm_payment(&self, capture: &str, amount: i64) -> Option<Value> {
        self.post(&format!("/v1/captures/{capture}/confirm-payment"), &json!({"amount": amount})).await
    }

    /// The whole life: checkout, capture, refund.
    async fn flow(&self, n: u64) -> Option<()> {
        let order = self.order(n, 11_900).await?;
        let c = self.capture(&order, 11_900).await?;
        let id = c["capture_id"].as_str()?;
        self.refund(id, 1_000).await?;
        Some(())
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }
}

/// The first few failed requests, on stderr: an error count says nothing about its cause.
fn report_error(path: &str, what: &str) {
    static SEEN: AtomicU64 = AtomicU64::new(0);
    if SEEN.fetch_add(1, Ordering::Relaxed) < 5 {
        eprintln!("request to {path} failed: {}", what.chars().take(300).collect::<String>());
    }
}

struct Stats {
    offered: f64,
    achieved: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    dropped: u64,
}

/// Open loop: `rate` requests per second for `secs`, each started at its scheduled time unless
/// `max_inflight` are still running (then it is dropped). Latency counts from the schedule.
async fn open_loop<F, Fut>(rate: u64, secs: u64, max_inflight: u64, f: F) -> Stats
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let f = Arc::new(f);
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram")));
    let (errors, dropped, inflight, ok) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let total = rate * secs;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(at).await;
        if inflight.load(Ordering::Relaxed) >= max_inflight {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        inflight.fetch_add(1, Ordering::Relaxed);
        let (f, hist, errors, inflight, ok) = (f.clone(), hist.clone(), errors.clone(), inflight.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let good = f(i).await;
            let us = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
            if let Some(t) = TRACE.get() {
                let _ = t.lock().map(|mut v| v.push((i, us)));
            }
            inflight.fetch_sub(1, Ordering::Relaxed);
            if good {
                ok.fetch_add(1, Ordering::Relaxed);
                let _ = hist.lock().await.record(us);
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let h = hist.lock().await;
    Stats {
        offered: rate as f64,
        achieved: ok.load(Ordering::Relaxed) as f64 / elapsed,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        errors: errors.load(Ordering::Relaxed),
        dropped: dropped.load(Ordering::Relaxed),
    }
}

/// Closed loop: `workers` run `f` back to back for `secs`; successes per second.
async fn closed_loop<F, Fut>(workers: u64, secs: u64, f: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let f = Arc::new(f);
    let ok = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (f, ok) = (f.clone(), ok.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < deadline {
                    if f(w * 1_000_000 + i).await {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    ok.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// CPU seconds (user + system) so far of the server, of all PostgreSQL processes, and of this
/// process. SQLite runs inside the server, so its share is the server's.
fn cpu_seconds(server: u32) -> (f64, f64, f64) {
    let server_s = proc_cpu(&server.to_string()).map_or(0.0, |x| x.1);
    let me = proc_cpu("self").map_or(0.0, |x| x.1);
    (server_s, postgres_cpu_seconds(), me)
}

/// CPU seconds so far of all PostgreSQL processes, including their children that have ended
/// (backends of closed connections, autovacuum workers), which the postmaster has collected.
fn postgres_cpu_seconds() -> f64 {
    let mut db = 0.0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.bytes().all(|b| b.is_ascii_digit())
            && let Some((comm, own, children)) = proc_cpu(&name)
            && comm.starts_with("postgres")
        {
            db += own + children;
        }
    }
    db
}

/// A process's (name, own CPU seconds, CPU seconds of its ended children), from `/proc`.
fn proc_cpu(pid: &str) -> Option<(String, f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    let own = f.get(11)? + f.get(12)?;
    let children = f.get(13)? + f.get(14)?;
    Some((comm, own / 100.0, children / 100.0))
}

/// (steal, total) ticks of all CPUs from /proc/stat.
fn steal_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0) };
    let f: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    (f.get(7).copied().unwrap_or(0), f.iter().take(8).sum())
}

fn steal_pct(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1).max(1) as f64;
    (after.0.saturating_sub(before.0) as f64 * 1000.0 / total).round() / 10.0
}

/// Copies an existing order `n` times with new ids (the growth run's filler), then lets the
/// database settle.
async fn grow(db_url: &str, template: &str, n: u64) -> Result<()> {
    let template = uuid::Uuid::parse_str(template)?;
    if db_url.starts_with("postgres") {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(db_url).await?;
        sqlx::query(
            "INSERT INTO orders (id, psp_id, merchant_id, session_id, buyer_id, state, currency, gross, net, tax, duration, \
             order_data, payment_method, created_at, updated_at) \
             SELECT gen_random_uuid(), psp_id, merchant_id, session_id, buyer_id, 'canceled', currency, gross, net, tax, duration, \
             '{}', payment_method, created_at, updated_at FROM orders, generate_series(1, $2) WHERE id = $1",
        ).bind(template).bind(i64::try_from(n)?).execute(&mut c).await?;
        // Measure the steady state of a database that holds this many orders, not the minutes
        // after a bulk load, when autovacuum and the checkpointer catch up on the same cores.
        sqlx::query("VACUUM (ANALYZE) orders").execute(&mut c).await?;
        sqlx::query("CHECKPOINT").execute(&mut c).await?;
    } else {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(db_url).await?;
        sqlx::query(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $2) \
             INSERT INTO orders (id, psp_id, merchant_id, session_id, buyer_id, state, currency, gross, net, tax, duration, \
             order_data, payment_method, created_at, updated_at) \
             SELECT randomblob(16), psp_id, merchant_id, session_id, buyer_id, 'canceled', currency, gross, net, tax, duration, \
             '{}', payment_method, created_at, updated_at FROM orders, s WHERE id = $1",
        ).bind(template).bind(i64::try_from(n)?).execute(&mut c).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut c).await?;
    }
    Ok(())
}

/// p99 of reads of one order and of captures at a fixed rate.
async fn probe(s: &Arc<Server>, orders: &Arc<Vec<String>>) -> (f64, f64) {
    let (s1, o1) = (s.clone(), orders.clone());
    let reads = open_loop(200, 10, 256, move |i| {
        let (s, o) = (s1.clone(), o1.clone());
        async move {
            let id = &o[usize::try_from(i).unwrap_or(0) % o.len()];
            s.client
                .get(format!("{}/v1/orders/{id}", s.base))
                .basic_auth(&s.user, Some(&s.pass))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    let (s2, o2) = (s.clone(), orders.clone());
    let caps = open_loop(100, 10, 256, move |i| {
        let (s, o) = (s2.clone(), o2.clone());
        async move { s.capture(&o[usize::try_from(i).unwrap_or(0) % o.len()], 1).await.is_some() }
    })
    .await;
    (reads.p99_ms, caps.p99_ms)
}

/// pgbench's TPS, and the CPU its PostgreSQL processes spent per transaction (ms).
fn pgbench(admin_url: &str) -> Result<(f64, f64)> {
    let db = format!("netterms_pgbench_{}", std::process::id());
    let psql = |sql: &str| Command::new("psql").arg(admin_url).arg("-qc").arg(sql).stdout(Stdio::null()).status();
    psql(&format!("CREATE DATABASE {db}"))?;
    let url = format!("{}/{db}", admin_url.rsplit_once('/').map_or(admin_url, |x| x.0));
    let init = Command::new("pgbench")
        .args(["-i", "-s", "10", "-q", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !init.success() {
        bail!("pgbench -i failed");
    }
    let before = postgres_cpu_seconds();
    let out = Command::new("pgbench").args(["-c", "16", "-j", "2", "-T", "15", "-n", &url]).output()?;
    let db_s = postgres_cpu_seconds() - before;
    psql(&format!("DROP DATABASE {db} WITH (FORCE)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str, nth: usize| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(nth))
            .and_then(|t| t.parse().ok())
    };
    let tps = field("tps = ", 2).context("pgbench printed no tps")?;
    let txs = field("number of transactions actually processed: ", 5).context("pgbench printed no count")?;
    Ok((tps, (db_s * 1000.0 / txs * 1000.0).round() / 1000.0))
}

/// Webhook delivery rate: 20 endpoints (the most a PSP may have) on one local receiver, then 500
/// merchant activations, each fanned out to every endpoint: 10,000 deliveries. The rate is
/// deliveries received per second from the first to the last.
async fn webhook_rate(s: &Arc<Server>) -> Result<f64> {
    let hits = Arc::new(AtomicU64::new(0));
    let stamps = Arc::new(std::sync::Mutex::new((None::<Instant>, None::<Instant>)));
    let (h, st) = (hits.clone(), stamps.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (h, st) = (h.clone(), st.clone());
            async move {
                h.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                if let Ok(mut g) = st.lock() {
                    g.0.get_or_insert(now);
                    g.1 = Some(now);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    for i in 0..20 {
        s.post(
            "/v1/webhook-endpoints",
            &json!({"url": url, "event_types": ["merchant.activated"], "description": format!("bench {i}")}),
        )
        .await
        .context("creating endpoint")?;
    }
    let s1 = s.clone();
    let made = Arc::new(AtomicU64::new(0));
    let m1 = made.clone();
    let tasks: Vec<_> = (0..8).map(|w| {
        let (s, m) = (s1.clone(), m1.clone());
        tokio::spawn(async move {
            for i in 0..63 {
                let body = json!({"external_id": format!("wh-{w}-{i}"), "name": "Webhook GmbH", "legal_form": "10001",
                    "registration_number": "HRB 1", "address": {"street": "Ring", "postal_code": "50667", "city": "Köln", "country": "DE"},
                    "contact": {"name": "W", "email": "w@example.com"}});
                if s.post("/v1/merchants", &body).await.is_some() {
                    m.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    }).collect();
    for t in tasks {
        let _ = t.await;
    }
    let expected = made.load(Ordering::Relaxed) * 20;
    let deadline = Instant::now() + Duration::from_secs(120);
    while hits.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = hits.load(Ordering::Relaxed);
    let (first, last) = *stamps.lock().map_err(|_| anyhow::anyhow!("lock"))?;
    let span = match (first, last) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => bail!("no webhook deliveries arrived"),
    };
    if got < expected {
        bail!("only {got} of {expected} webhook deliveries arrived");
    }
    Ok(got as f64 / span)
}

/// After the capture (SPEC §13): a sandbox clock advance of 120 days over `NETTERMS_BENCH_INVOICES`
/// (default 10,000) open invoices, payment-information PDFs rendered per second and their size, and
/// e-mails per second to an SMTP server on loopback.
/// `total` captures spread over `orders` by 32 workers, of `cents(i)` each: their answers (the
/// failed ones are missing) and the seconds it took.
async fn capture_many(
    s: &Arc<Server>,
    orders: &Arc<Vec<String>>,
    total: u64,
    cents: fn(u64) -> i64,
) -> Result<(Vec<Value>, f64)> {
    let captured = Arc::new(Mutex::new(Vec::new()));
    let made = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..32u64)
        .map(|w| {
            let (s, o, c, m) = (s.clone(), orders.clone(), captured.clone(), made.clone());
            tokio::spawn(async move {
                let mut i = w;
                while m.fetch_add(1, Ordering::Relaxed) < total {
                    if let Some(v) = s.capture(&o[usize::try_from(i).unwrap_or(0) % o.len()], cents(i)).await {
                        c.lock().await.push(v);
                    }
                    i += 32;
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let secs = t.elapsed().as_secs_f64();
    let out = captured.lock().await.clone();
    Ok((out, secs))
}

async fn after_capture(backend: &str, db_url: &str, port: u16) -> Result<Value> {
    let invoices: u64 = std::env::var("NETTERMS_BENCH_INVOICES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let sink = smtp::SmtpServer::start().await;
    sink.discard_bodies();
    // First without a job worker: the invoices' e-mails wait in the outbox, to be sent later in
    // one measured burst.
    let s = Arc::new(start_with(db_url, port, &[("NETTERMS_JOB_WORKER", "false".into())]).await?);
    let mut orders = Vec::new();
    for i in 0..16 {
        orders.push(s.order(2_000_000 + i, 1_000_000_000).await.context("preparing orders")?);
    }
    let orders = Arc::new(orders);
    let (captured, capture_s) = capture_many(&s, &orders, invoices, |_| 100).await?;
    eprintln!("[{backend}] {invoices} invoices captured in {capture_s:.1} s");
    let ids: Vec<String> = captured.iter().map(|v| v["capture_id"].as_str().unwrap_or_default().to_owned()).collect();
    if u64::try_from(ids.len())? != invoices {
        bail!("only {} of {invoices} invoices were captured", ids.len());
    }

    // PDFs: the payment information of invoices, back to back by 4 clients.
    let ids = Arc::new(ids);
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let (s2, i2, z2) = (s.clone(), ids.clone(), sizes.clone());
    let pdfs_per_s = closed_loop(4, 10, move |i| {
        let (s, ids, sizes) = (s2.clone(), i2.clone(), z2.clone());
        async move {
            let id = &ids[usize::try_from(i).unwrap_or(0) % ids.len()];
            let r = s
                .client
                .get(format!("{}/v1/captures/{id}/payment-information.pdf", s.base))
                .basic_auth(&s.user, Some(&s.pass))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(b) => {
                        sizes.lock().await.push(b.len());
                        true
                    }
                    Err(_) => false,
                },
                _ => false,
            }
        }
    })
    .await;
    let sizes = sizes.lock().await.clone();
    let pdf_max_kb = sizes.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
    eprintln!("[{backend}] {pdfs_per_s:.0} PDFs/s, at most {pdf_max_kb:.1} kB");

    // The advance: 120 days of reminders, levels, collection, messages and events.
    let t = Instant::now();
    let r = s
        .client
        .post(format!("{}/v1/sandbox/clock/advance", s.base))
        .basic_auth(&s.user, Some(&s.pass))
        .json(&json!({"days": 120}))
        .send()
        .await?;
    let advance_s = t.elapsed().as_secs_f64();
    let ran: Value = r.error_for_status()?.json().await?;
    let advance_rss_mb = s.rss_mb();
    if Arc::strong_count(&s) != 1 {
        bail!("the first server is still referenced");
    }
    eprintln!("[{backend}] advanced 120 days in {advance_s:.1} s: {}", ran["ran"]);
    drop(s);

    // E-mails: the same database, now with a job worker and the SMTP sink; every message queued
    // above (payment information, reminder, three notices, collection per invoice) goes out.
    let queued = invoices * 6;
    let s = start_with(
        db_url,
        port + 2,
        &[
            ("NETTERMS_SMTP_URL", sink.url()),
            ("NETTERMS_JOB_POLL_MS", "50".into()),
            ("NETTERMS_LOG_LEVEL", "error".into()),
        ],
    )
    .await?;
    // From the moment the server answers (its worker starts with it).
    let t = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut last = (0, Instant::now());
    while (sink.received_count() as u64) < queued && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = sink.received_count();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            eprintln!("[{backend}] no e-mail for 30 s after {n} of {queued}");
            break;
        }
    }
    let mail_s = t.elapsed().as_secs_f64();
    let sent = sink.received_count();
    drop(s);
    Ok(json!({
        "backend": backend,
        "invoices": invoices,
        "captures_per_s": invoices as f64 / capture_s,
        "advance_120_days_s": advance_s,
        "advance_ran": ran["ran"],
        "advance_rss_mb": advance_rss_mb,
        "pdfs_per_s": pdfs_per_s,
        "pdf_max_kb": pdf_max_kb,
        "emails": sent,
        "emails_per_s": sent as f64 / mail_s,
    }))
}

/// One entry of a realistic, compact camt.053.001.02 crediting `cents` with RF reference `rf`.
fn statement_entry(n: u64, cents: i64, rf: &str) -> String {
    format!(
        "<Ntry><Amt Ccy=\"EUR\">{}.{:02}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2026-03-02</Dt></BookgDt>\
         <ValDt><Dt>2026-03-02</Dt></ValDt><AcctSvcrRef>BENCH{n:09}</AcctSvcrRef><NtryDtls><TxDtls><Refs>\
         <EndToEndId>NOTPROVIDED</EndToEndId></Refs><RltdPties><Dbtr><Nm>Kunde GmbH</Nm></Dbtr><DbtrAcct><Id>\
         <IBAN>DE89370400440532013000</IBAN></Id></DbtrAcct></RltdPties><RmtInf><Strd><CdtrRefInf><Ref>{rf}</Ref>\
         </CdtrRefInf></Strd></RmtInf></TxDtls></NtryDtls></Ntry>\n",
        cents / 100,
        cents % 100
    )
}

/// Writes a camt.053 of the entries `(cents, rf)` to `path`.
fn write_statement(path: &std::path::Path, first: u64, entries: &[(i64, String)]) -> Result<u64> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    write!(
        f,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.02\">\
         <BkToCstmrStmt><GrpHdr><MsgId>BENCH</MsgId><CreDtTm>2026-03-02T18:00:00</CreDtTm></GrpHdr><Stmt><Id>BENCH-{first}</Id>\
         <Acct><Id><IBAN>DE02120300000000202051</IBAN></Id><Ccy>EUR</Ccy></Acct>\n"
    )?;
    for (i, (cents, rf)) in entries.iter().enumerate() {
        f.write_all(statement_entry(first + i as u64, *cents, rf).as_bytes())?;
    }
    writeln!(f, "</Stmt></BkToCstmrStmt></Document>")?;
    f.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// `netterms statements import FILE --json` on the stopped server's database: wall time, the
/// import's summary and the process's peak resident set (by /usr/bin/time).
fn import_statement(db_url: &str, port: u16, path: &std::path::Path) -> Result<(f64, Value, f64)> {
    let t = Instant::now();
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f").arg("maxrss_kb=%M");
    // NETTERMS_BENCH_PERF=FILE: the import runs under `perf record -g` writing FILE.
    if let Ok(out) = std::env::var("NETTERMS_BENCH_PERF") {
        cmd.args(["perf", "record", "-g", "-q", "-o", &out, "--"]);
    }
    cmd.arg(bin());
    for (k, v) in netterms(db_url, port).get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = cmd.args(["statements", "import", "--json"]).arg(path).output()?;
    let secs = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("import failed: {stderr}");
    }
    let rss_kb: f64 =
        stderr.lines().find_map(|l| l.strip_prefix("maxrss_kb=")).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0);
    Ok((secs, serde_json::from_slice(&out.stdout)?, rss_kb / 1024.0))
}

/// The statements phase: 100,000 open invoices, then one camt.053 paying each by its RF
/// reference imported and matched by the CLI; a 20,000-entry file first shows the memory the
/// import needs does not grow with the file.
async fn statements(backend: &str, db_url: &str, port: u16) -> Result<Value> {
    let invoices: u64 = std::env::var("NETTERMS_BENCH_INVOICES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    // A file a fifth of the size first, of invoices of its own.
    let small = invoices / 5;
    let total = invoices + small;
    let s = Arc::new(
        start_with(db_url, port, &[("NETTERMS_JOB_WORKER", "false".into()), ("NETTERMS_LOG_LEVEL", "error".into())])
            .await?,
    );
    let mut orders = Vec::new();
    for i in 0..16 {
        orders.push(s.order(3_000_000 + i, 1_000_000_000).await.context("preparing orders")?);
    }
    let orders = Arc::new(orders);
    let (captured, capture_s) = capture_many(&s, &orders, total, |i| 100 + i64::try_from(i % 900).unwrap_or(0)).await?;
    let refs: Vec<(i64, String)> = captured
        .iter()
        .map(|v| {
            let rf = v["payment_instructions"]["reference"].as_str().unwrap_or_default().to_owned();
            (v["amount"]["gross"].as_i64().unwrap_or(0), rf)
        })
        .collect();
    if u64::try_from(refs.len())? != total {
        bail!("only {} of {total} invoices were captured", refs.len());
    }
    eprintln!("[{backend}] {total} invoices captured in {capture_s:.1} s");
    drop(orders);
    let s = Arc::try_unwrap(s).map_err(|_| anyhow::anyhow!("server still referenced"))?;
    drop(s);

    let dir = tempfile_dir()?;
    let small_file = dir.join("small.xml");
    let big_file = dir.join("big.xml");
    let split = usize::try_from(small)?;
    let small_bytes = write_statement(&small_file, 0, &refs[..split])?;
    let big_bytes = write_statement(&big_file, small, &refs[split..])?;
    // NETTERMS_BENCH_KEEP=DIR keeps the files and a copy of the SQLite database before the
    // imports there, for profiling the import by hand.
    if let Ok(keep) = std::env::var("NETTERMS_BENCH_KEEP")
        && let Some(path) = db_url.strip_prefix("sqlite://")
    {
        std::fs::create_dir_all(&keep)?;
        std::fs::copy(path, std::path::Path::new(&keep).join("before.db"))?;
        std::fs::copy(&small_file, std::path::Path::new(&keep).join("small.xml"))?;
        std::fs::copy(&big_file, std::path::Path::new(&keep).join("big.xml"))?;
    }
    let (small_s, small_sum, small_rss) = import_statement(db_url, port, &small_file)?;
    eprintln!(
        "[{backend}] {small} entries ({:.1} MB) imported in {small_s:.2} s, peak RSS {small_rss:.0} MB: {small_sum}",
        small_bytes as f64 / 1e6
    );
    let (big_s, big_sum, big_rss) = import_statement(db_url, port, &big_file)?;
    let big_n = invoices;
    eprintln!(
        "[{backend}] {big_n} entries ({:.1} MB) imported in {big_s:.2} s, peak RSS {big_rss:.0} MB: {big_sum}",
        big_bytes as f64 / 1e6
    );
    // Again: every entry a duplicate.
    let (again_s, again_sum, _) = import_statement(db_url, port, &big_file)?;
    let _ = std::fs::remove_dir_all(&dir);
    if big_sum["matched"].as_u64() != Some(big_n) || small_sum["matched"].as_u64() != Some(small) {
        bail!("not every entry matched: {small_sum} {big_sum}");
    }
    Ok(json!({
        "backend": backend,
        "invoices": invoices,
        "captures_per_s": total as f64 / capture_s,
        "small_entries": small,
        "small_mb": small_bytes as f64 / 1e6,
        "small_import_s": small_s,
        "small_entries_per_s": small as f64 / small_s,
        "small_peak_rss_mb": small_rss,
        "big_entries": big_n,
        "big_mb": big_bytes as f64 / 1e6,
        "big_import_s": big_s,
        "big_entries_per_s": big_n as f64 / big_s,
        "big_peak_rss_mb": big_rss,
        "reimport_s": again_s,
        "reimport_duplicates": again_sum["duplicates"],
    }))
}

async fn payouts(backend: &str, db_url: &str, port: u16) -> Result<Value> {
    let invoices: u64 = std::env::var("NETTERMS_BENCH_INVOICES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let s = Arc::new(
        start_with(db_url, port, &[("NETTERMS_JOB_WORKER", "false".into()), ("NETTERMS_LOG_LEVEL", "error".into())])
            .await?,
    );
    let mut orders = Vec::new();
    for i in 0..16 {
        orders.push(s.order(4_000_000 + i, 1_000_000_000).await.context("preparing orders")?);
    }
    let orders = Arc::new(orders);
    let (captured, capture_s) =
        capture_many(&s, &orders, invoices, |i| 100 + i64::try_from(i % 900).unwrap_or(0)).await?;
    if u64::try_from(captured.len())? != invoices {
        bail!("only {} of {invoices} invoices were captured", captured.len());
    }
    eprintln!("[{backend}] {invoices} invoices captured in {capture_s:.1} s");
    let get = |path: String| s.client.get(format!("{}{path}", s.base)).basic_auth(&s.user, Some(&s.pass));
    let clock: Value = get("/v1/sandbox/clock".into()).send().await?.json().await?;
    let today: chrono::NaiveDate = clock["today"].as_str().unwrap_or_default().parse()?;
    use chrono::Datelike;
    let monday = today + chrono::Duration::days(7 - i64::from(today.weekday().num_days_from_monday()));
    let t = Instant::now();
    let r = s
        .client
        .post(format!("{}/v1/sandbox/clock/advance", s.base))
        .basic_auth(&s.user, Some(&s.pass))
        .json(&json!({"to": monday.to_string()}))
        .send()
        .await?;
    let advance_s = t.elapsed().as_secs_f64();
    let ran: Value = r.error_for_status()?.json().await?;
    if ran["ran"]["payouts"] != 1 {
        bail!("the advance made no payout: {ran}");
    }
    let list: Value = get("/v1/payouts".into()).send().await?.json().await?;
    let payout = list["data"][0].clone();
    let id = payout["payout_id"].as_str().unwrap_or_default().to_owned();
    eprintln!(
        "[{backend}] advanced to {monday} in {advance_s:.2} s: payout of {} lines, {} cents",
        payout["line_count"], payout["amount"]
    );
    let rss_before = s.rss_mb();
    let t = Instant::now();
    let mut resp = get(format!("/v1/payouts/{id}/report.csv")).send().await?.error_for_status()?;
    let (mut bytes, mut lines, mut sum) = (0usize, 0u64, 0i64);
    let mut rest = String::new();
    while let Some(chunk) = resp.chunk().await? {
        bytes += chunk.len();
        rest.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(at) = rest.find("\r\n") {
            let line: String = rest.drain(..at + 2).collect();
            if lines > 0 {
                sum += line.split(',').nth(4).and_then(|a| a.parse::<i64>().ok()).unwrap_or(0);
            }
            lines += 1;
        }
    }
    let csv_s = t.elapsed().as_secs_f64();
    let rss_after = s.rss_mb();
    if lines != invoices + 1 || Some(sum) != payout["amount"].as_i64() {
        bail!("the report has {lines} lines summing to {sum}, the payout {payout}");
    }
    eprintln!(
        "[{backend}] report.csv: {lines} lines, {:.1} MB in {csv_s:.2} s; peak RSS {rss_before:.0} MB before, {rss_after:.0} MB after",
        bytes as f64 / 1e6
    );
    drop(orders);
    Ok(json!({
        "backend": backend,
        "captures": invoices,
        "captures_per_s": invoices as f64 / capture_s,
        "payout_run_s": advance_s,
        "payout_lines": payout["line_count"],
        "csv_mb": bytes as f64 / 1e6,
        "csv_s": csv_s,
        "peak_rss_mb_before_csv": rss_before,
        "peak_rss_mb_after_csv": rss_after,
    }))
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("netterms-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// One kind of money write measured as the captures are: open loop at 500/s for `open_secs`, then
/// the closed-loop maximum with 64 workers for 10 s and the CPU it took per write.
async fn measure<F, Fut>(s: &Arc<Server>, open_secs: u64, f: F) -> Value
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let open = open_loop(500, open_secs, 1024, f.clone()).await;
    let cpu_before = cpu_seconds(s.child.id());
    let steal_before = steal_ticks();
    let max = closed_loop(64, 10, f).await;
    let cpu_after = cpu_seconds(s.child.id());
    let done = max * 10.0;
    let per_write = |a: f64, b: f64| ((a - b) * 1000.0 / done * 1000.0).round() / 1000.0;
    json!({"offered_rps": open.offered, "achieved_rps": open.achieved, "p50_ms": open.p50_ms, "p99_ms": open.p99_ms,
        "errors": open.errors, "dropped": open.dropped, "max_writes_per_s": max,
        "cpu_ms_per_write": {"netterms": per_write(cpu_after.0, cpu_before.0), "database": per_write(cpu_after.1, cpu_before.1),
            "load_generator": per_write(cpu_after.2, cpu_before.2), "steal_pct": steal_pct(steal_before, steal_ticks())}})
}

async fn run_backend(backend: &str, db_url: &str, port: u16, pgbench: Option<(f64, f64)>) -> Result<Value> {
    if std::env::var("NETTERMS_BENCH_ONLY").is_ok_and(|v| v == "after_capture") {
        return after_capture(backend, db_url, port).await;
    }
    if std::env::var("NETTERMS_BENCH_ONLY").is_ok_and(|v| v == "statements") {
        return statements(backend, db_url, port).await;
    }
    if std::env::var("NETTERMS_BENCH_ONLY").is_ok_and(|v| v == "payouts") {
        return payouts(backend, db_url, port).await;
    }
    let pgbench_tps = pgbench.map(|p| p.0);
    let pgbench_db_cpu_ms_per_tx = pgbench.map(|p| p.1);
    let s = Arc::new(start(db_url, port).await?);
    let only = std::env::var("NETTERMS_BENCH_ONLY").unwrap_or_default();
    if only == "webhooks" {
        return Ok(json!({"backend": backend, "webhook_deliveries_per_s": webhook_rate(&s).await?}));
    }
    // The full flow at a fixed rate.
    let s1 = s.clone();
    let counter = Arc::new(AtomicU64::new(0));
    let c1 = counter.clone();
    let flow_secs = if only == "writes" { 0 } else { 15 };
    let flow = open_loop(20, flow_secs, 512, move |_| {
        let (s, c) = (s1.clone(), c1.clone());
        async move { s.flow(c.fetch_add(1, Ordering::Relaxed)).await.is_some() }
    })
    .await;
    // Orders big enough for many one-cent captures.
    let mut orders = Vec::new();
    let n_orders: u64 = std::env::var("NETTERMS_BENCH_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    for i in 0..n_orders {
        orders.push(s.order(1_000_000 + i, 1_000_000_000).await.context("preparing orders")?);
    }
    let orders = Arc::new(orders);
    let (s2, o2) = (s.clone(), orders.clone());
    // Warm-up at the same rate, not measured: the pool opens its connections and each connection
    // prepares its statements.
    let (sw, ow) = (s.clone(), orders.clone());
    open_loop(500, 3, 1024, move |i| {
        let (s, o) = (sw.clone(), ow.clone());
        async move { s.capture(&o[usize::try_from(i).unwrap_or(0) % o.len()], 1).await.is_some() }
    })
    .await;
    let trace = std::env::var("NETTERMS_BENCH_TRACE").ok();
    if trace.is_some() {
        let _ = TRACE.set(std::sync::Mutex::new(Vec::new()));
    }
    let writes = open_loop(500, 20, 1024, move |i| {
        let (s, o) = (s2.clone(), o2.clone());
        async move { s.capture(&o[usize::try_from(i).unwrap_or(0) % o.len()], 1).await.is_some() }
    })
    .await;
    if let (Some(path), Some(t)) = (trace, TRACE.get()) {
        let lines: Vec<String> = t
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
            .iter()
            .map(|(i, us)| format!("{i} {us}"))
            .collect();
        std::fs::write(format!("{path}.{backend}"), lines.join("\n"))?;
    }
    let (s3, o3) = (s.clone(), orders.clone());
    let cpu_before = cpu_seconds(s.child.id());
    let steal_before = steal_ticks();
    let max_writes = closed_loop(64, 10, move |i| {
        let (s, o) = (s3.clone(), o3.clone());
        async move { s.capture(&o[usize::try_from(i).unwrap_or(0) % o.len()], 1).await.is_some() }
    })
    .await;
    // Where the two cores went during the closed loop, per write (ms of CPU).
    let cpu_after = cpu_seconds(s.child.id());
    let writes_done = max_writes * 10.0;
    let per_write = |a: f64, b: f64| ((a - b) * 1000.0 / writes_done * 1000.0).round() / 1000.0;
    let steal_after = steal_ticks();
    let cpu_ms_per_write = json!({
        "netterms": per_write(cpu_after.0, cpu_before.0),
        "database": per_write(cpu_after.1, cpu_before.1),
        "load_generator": per_write(cpu_after.2, cpu_before.2),
        // Time the hypervisor gave to others while we wanted the CPU (vmstat's `st`).
        "steal_pct": steal_pct(steal_before, steal_after),
    });
    if only == "writes" {
        // Refunds and direct payments (SPEC §13 names them with captures): one-cent credit notes
        // and payments on 16 large captures, in the same shape as the captures above.
        let mut big = Vec::new();
        for (i, o) in orders.iter().enumerate() {
            let c = s.capture(o, 100_000_000).await.with_context(|| format!("a large capture on order {i}"))?;
            big.push(c["capture_id"].as_str().context("capture_id")?.to_owned());
        }
        let big = Arc::new(big);
        let (s4, b4) = (s.clone(), big.clone());
        let refunds = measure(&s, 10, move |i| {
            let (s, b) = (s4.clone(), b4.clone());
            async move { s.refund(&b[usize::try_from(i).unwrap_or(0) % b.len()], 1).await.is_some() }
        })
        .await;
        let (s5, b5) = (s.clone(), big.clone());
        let payments = measure(&s, 10, move |i| {
            let (s, b) = (s5.clone(), b5.clone());
            async move { s.confirm_payment(&b[usize::try_from(i).unwrap_or(0) % b.len()], 1).await.is_some() }
        })
        .await;
        let with_ratio = |mut v: Value| {
            v["ratio_to_pgbench"] = json!(pgbench_tps.and_then(|t| v["max_writes_per_s"].as_f64().map(|m| m / t)));
            v
        };
        return Ok(json!({"backend": backend, "offered_rps": writes.offered, "achieved_rps": writes.achieved,
            "p50_ms": writes.p50_ms, "p99_ms": writes.p99_ms, "errors": writes.errors, "dropped": writes.dropped,
            "max_writes_per_s": max_writes, "pgbench_tps": pgbench_tps, "pgbench_db_cpu_ms_per_tx": pgbench_db_cpu_ms_per_tx, "ratio_to_pgbench": pgbench_tps.map(|t| max_writes / t),
            "cpu_ms_per_write": cpu_ms_per_write,
            "refunds": with_ratio(refunds), "confirm_payments": with_ratio(payments),
            "rss_mb": s.rss_mb()}));
    }
    let webhooks_per_s = webhook_rate(&s).await?;
    let rss_mb = s.rss_mb();
    // Growth: 10,000 then 1,000,000 stored orders.
    let have = n_orders + counter.load(Ordering::Relaxed);
    grow(db_url, &orders[0], 10_000u64.saturating_sub(have)).await?;
    let (get_10k, cap_10k) = probe(&s, &orders).await;
    grow(db_url, &orders[0], 990_000).await?;
    let (get_1m, cap_1m) = probe(&s, &orders).await;
    Ok(json!({
        "backend": backend,
        "flow": {"offered_per_s": flow.offered, "achieved_per_s": flow.achieved, "p50_ms": flow.p50_ms, "p99_ms": flow.p99_ms,
                 "errors": flow.errors, "dropped": flow.dropped},
        "offered_rps": writes.offered, "achieved_rps": writes.achieved, "p50_ms": writes.p50_ms, "p99_ms": writes.p99_ms,
        "errors": writes.errors, "dropped": writes.dropped,
        "max_writes_per_s": max_writes,
        "pgbench_tps": pgbench_tps,
        "pgbench_db_cpu_ms_per_tx": pgbench_db_cpu_ms_per_tx,
        "ratio_to_pgbench": pgbench_tps.map(|t| max_writes / t),
        "rss_mb": rss_mb,
        "cpu_ms_per_write": cpu_ms_per_write,
        "webhook_deliveries_per_s": webhooks_per_s,
        "growth": {"get_order_p99_ms_10k": get_10k, "get_order_p99_ms_1m": get_1m, "capture_p99_ms_10k": cap_10k, "capture_p99_ms_1m": cap_1m,
                   "get_ratio": get_1m / get_10k, "capture_ratio": cap_1m / cap_10k},
    }))
}

/// Every number of a result line, by its path (`refunds.p99_ms`).
fn figures(v: &Value, prefix: &str, out: &mut Vec<(String, f64)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                figures(v, &path, out);
            }
        }
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.push((prefix.to_owned(), f));
            }
        }
        _ => {}
    }
}

/// Whether a larger value of this figure is better (rates), worse (times, CPU, memory), or
/// neither (what was offered, pgbench's own figures).
fn better_when_larger(path: &str) -> Option<bool> {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    if path.contains("pgbench_") || leaf.starts_with("offered") || leaf == "steal_pct" {
        None
    } else if leaf.ends_with("_per_s") || leaf.ends_with("_rps") || leaf.starts_with("ratio_to") {
        Some(true)
    } else if leaf.ends_with("_ms")
        || leaf.contains("cpu")
        || leaf == "rss_mb"
        || leaf.ends_with("_ratio")
        || path.contains("cpu_ms_per_write")
        || leaf == "errors"
        || leaf == "dropped"
    {
        Some(false)
    } else {
        None
    }
}

/// `--compare BEFORE`: each figure of this run (or of `AFTER`) against the same backend's line
/// of an earlier run's output, as a ratio; a figure more than 10 % worse is marked.
fn compare(before: &[Value], after: &[Value]) -> String {
    let mut out = String::new();
    for a in after {
        let backend = a["backend"].as_str().unwrap_or("?");
        let Some(b) = before.iter().find(|b| b["backend"] == a["backend"]) else {
            out.push_str(&format!("{backend}: not in the earlier run\n"));
            continue;
        };
        let (mut fb, mut fa) = (Vec::new(), Vec::new());
        figures(b, "", &mut fb);
        figures(a, "", &mut fa);
        out.push_str(&format!("{backend:<9} {:<44} {:>12} {:>12} {:>7}\n", "figure", "before", "after", "ratio"));
        for (path, after) in &fa {
            let Some((_, before)) = fb.iter().find(|(p, _)| p == path) else { continue };
            let ratio = if *before == 0.0 { f64::NAN } else { after / before };
            let worse = match better_when_larger(path) {
                Some(true) => ratio < 0.9,
                Some(false) => ratio > 1.1 && (after - before).abs() > 0.05,
                None => false,
            };
            out.push_str(&format!(
                "{backend:<9} {path:<44} {before:>12.3} {after:>12.3} {ratio:>7.3}{}\n",
                if worse { "  WORSE" } else { "" }
            ));
        }
    }
    out
}

fn read_lines(path: &str) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("a result line of {path}")))
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    // `--compare BEFORE [AFTER]`: compare this run's lines (or AFTER's, without running) with BEFORE's.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let before = match args.as_slice() {
        [] => None,
        [flag, before] if flag == "--compare" => Some(read_lines(before)?),
        [flag, before, after] if flag == "--compare" => {
            print!("{}", compare(&read_lines(before)?, &read_lines(after)?));
            return Ok(());
        }
        _ => bail!("usage: bench/run [--compare BEFORE.jsonl [AFTER.jsonl]]"),
    };
    let mut lines = Vec::new();
    let pg_admin =
        std::env::var("NETTERMS_BENCH_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pg_up =
        Command::new("pg_isready").args(["-q", "-h", "127.0.0.1", "-p", "5432"]).status().is_ok_and(|s| s.success());
    let only = std::env::var("NETTERMS_BENCH_ONLY").unwrap_or_default();
    let pgbench_result = if pg_up && only.is_empty() || only == "writes" { Some(pgbench(&pg_admin)?) } else { None };
    let dir = std::env::temp_dir().join(format!("netterms-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // NETTERMS_BENCH_BACKENDS=postgres (or sqlite) runs one backend only.
    let backends = std::env::var("NETTERMS_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    if backends.contains("sqlite") {
        let line =
            run_backend("sqlite", &format!("sqlite://{}", dir.join("bench.db").display()), 18090, pgbench_result)
                .await?;
        println!("{line}");
        lines.push(line);
    }
    if pg_up && backends.contains("postgres") {
        let db = format!("netterms_bench_{}", std::process::id());
        Command::new("psql")
            .arg(&pg_admin)
            .arg("-qc")
            .arg(format!("CREATE DATABASE {db}"))
            .stdout(Stdio::null())
            .status()?;
        let url = format!("{}/{db}", pg_admin.rsplit_once('/').map_or(pg_admin.as_str(), |x| x.0));
        let line = run_backend("postgres", &url, 18091, pgbench_result).await;
        Command::new("psql")
            .arg(&pg_admin)
            .arg("-qc")
            .arg(format!("DROP DATABASE {db} WITH (FORCE)"))
            .stdout(Stdio::null())
            .status()?;
        let line = line?;
        println!("{line}");
        lines.push(line);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(before) = before {
        // On stderr, so that stdout stays one JSON line per backend (the next run's BEFORE).
        eprint!("{}", compare(&before, &lines));
    }
    Ok(())
}
