//! The test harness: a real server on a fresh database per test (SQLite always; PostgreSQL when
//! `NETTERMS_TEST_DATABASE_URL` is set), a typed client, and a log capture that fails any test
//! whose secrets reached a log line.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use netterms::config::Config;
use netterms::secrets::Secret;
use netterms::service::Services;
use netterms::store::Db;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Every log line of this test binary, at debug level.
fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = CaptureWriter(buf.clone());
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || writer.clone())
            .try_init();
        buf
    })
}

#[derive(Clone)]
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

/// A PostgreSQL database made for one test and dropped after it.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

/// Where a test's database lives; dropped after the app.
#[allow(dead_code)]
enum DbGuard {
    Sqlite(tempfile::TempDir),
    Postgres(PgDatabase),
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub services: Services,
    secrets: Mutex<Vec<String>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _guard: DbGuard,
}

/// A PSP's API credential.
#[derive(Clone, Debug)]
pub struct TestPsp {
    pub psp_id: String,
    pub username: String,
    pub password: String,
    pub credential_id: String,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The `code`s of an error envelope.
    pub fn codes(&self) -> Vec<String> {
        self.json()["errors"].as_array().unwrap().iter().map(|e| e["code"].as_str().unwrap().to_owned()).collect()
    }

    /// The `source`s of an error envelope.
    pub fn sources(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["source"].as_str().map(str::to_owned))
            .collect()
    }

    /// Asserts an error envelope with this status and first code, and a request id matching the header.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        let body = self.json();
        assert_eq!(body["errors"][0]["code"], code, "body: {body}");
        let rid = self.headers.get("x-request-id").unwrap().to_str().unwrap();
        assert_eq!(body["request_id"], rid);
        assert!(!body["errors"][0]["title"].as_str().unwrap().is_empty());
    }
}

/// The session id inside a checkout session's client secret (`cs_<32 hex>_<secret>`).
pub fn session_id_of(client_secret: &str) -> String {
    let hex = client_secret.strip_prefix("cs_").and_then(|r| r.split('_').next()).unwrap();
    uuid::Uuid::try_parse(hex).unwrap().to_string()
}

pub fn merchant_body(external_id: &str) -> Value {
    json!({
        "external_id": external_id,
        "name": "Beispiel Handels GmbH",
        "legal_form": "10001",
        "registration_number": "HRB 12345",
        "registration_court": "Amtsgericht Charlottenburg",
        "tax_id": "DE123456789",
        "address": {"street": "Friedrichstraße", "house_number": "123", "postal_code": "10117", "city": "Berlin", "country": "DE"},
        "website": "https://shop.example",
        "industry_sector": "G",
        "contact": {"name": "Erika Mustermann", "email": "erika@shop.example", "phone": "+49 30 1234567"},
        "payment_terms": {"min_duration": 14, "max_duration": 60, "default_duration": 30}
    })
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server on a fresh database; `tweak` may change the configuration first.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        log_buffer();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(Secret::new(ADMIN_TOKEN)),
            secret_key: Some(Secret::new("test-secret-key-that-is-long-enough-0123456789")),
            db_max_connections: 5,
            // Tests step the delivery and job workers themselves (see `deliver_all`, `run_jobs`).
            webhook_worker: false,
            job_worker: false,
            // Four eyes holds back what only its own tests look at (`operators::four_eyes_*`).
            four_eyes: Vec::new(),
            ..Config::default()
        };
        let guard = match std::env::var("NETTERMS_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            Some(admin_url) => {
                let name = format!("netterms_test_{}", uuid::Uuid::new_v4().simple());
                use sqlx::Connection;
                let mut c =
                    sqlx::PgConnection::connect(&admin_url).await.expect("connect to NETTERMS_TEST_DATABASE_URL");
                sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut c).await.unwrap();
                let (base, _) = admin_url.rsplit_once('/').expect("database url with a database name");
                config.database_url = format!("{base}/{name}");
                DbGuard::Postgres(PgDatabase { admin_url, name })
            }
            None => {
                let dir = tempfile::tempdir().unwrap();
                config.database_url = format!("sqlite://{}", dir.path().join("netterms.db").display());
                DbGuard::Sqlite(dir)
            }
        };
        tweak(&mut config);
        config.validate().unwrap();
        let services = Services::open(config, true).await.unwrap();
        let app = netterms::app::Application::with_services(services.clone()).await.unwrap();
        let addr = app.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            services,
            secrets: Mutex::new(vec![ADMIN_TOKEN.to_owned()]),
            shutdown: Some(tx),
            server: Some(server),
            _guard: guard,
        }
    }

    pub fn db(&self) -> &Db {
        &self.services.db
    }

    /// Remembers a secret that must never appear in a log line.
    pub fn secret(&self, s: &str) {
        self.secrets.lock().unwrap().push(s.to_owned());
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap().to_vec();
        Resp { status, headers, bytes }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        // Changes of money, policies and access say why (SPEC §14.2).
        self.client.request(method, self.url(path)).bearer_auth(ADMIN_TOKEN).header("audit-reason", "test arrangement")
    }

    pub fn psp(&self, psp: &TestPsp, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).basic_auth(&psp.username, Some(&psp.password))
    }

    /// Reveals a password link's password (as JSON) and remembers both as secrets.
    pub async fn reveal(&self, password_url: &str) -> String {
        let token = password_url.rsplit('/').next().unwrap();
        self.secret(token);
        // Whatever public URL the deployment has, the link is served by this app.
        let r = self
            .send(self.client.get(self.url(&format!("/credentials/{token}"))).header("accept", "application/json"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let pw = r.json()["password"].as_str().unwrap().to_owned();
        self.secret(&pw);
        pw
    }

    /// Creates a PSP through the admin API and fetches its password.
    pub async fn create_psp(&self) -> TestPsp {
        let r = self
            .send(self.admin(Method::POST, "/admin/v1/psps").json(&json!({
                "name": "Example Payments GmbH", "fee_rate_bps": 150, "fee_fixed": 25,
                "iban": "DE89 3704 0044 0532 0130 00", "payout_frequency": "weekly",
                "billing": {"street": "Zahlweg 5", "postal_code": "60311", "city": "Frankfurt am Main",
                            "country": "DE", "email": "buchhaltung@psp.example"}
            })))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let v = r.json();
        let password = self.reveal(v["password_url"].as_str().unwrap()).await;
        TestPsp {
            psp_id: v["psp_id"].as_str().unwrap().to_owned(),
            username: v["username"].as_str().unwrap().to_owned(),
            password,
            credential_id: v["credential_id"].as_str().unwrap().to_owned(),
        }
    }

    /// Activates a merchant and returns it.
    pub async fn create_merchant(&self, psp: &TestPsp, external_id: &str) -> Value {
        let r = self.send(self.psp(psp, Method::POST, "/v1/merchants").json(&merchant_body(external_id))).await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    }

    /// Row count of a table, straight from the database.
    pub async fn count(&self, table: &str) -> i64 {
        let mut conn = self.db().conn().await.unwrap();
        let n: netterms::store::StoreResult<i64> = async {
            Ok(netterms::with_conn!(&mut conn, c => {
                sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut *c).await?
            }))
        }
        .await;
        n.unwrap()
    }

    /// Row counts of every table that a PSP request may write.
    pub async fn snapshot(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for t in ["psps", "psp_credentials", "password_links", "merchants", "idempotency_keys", "events"] {
            out.push((t.to_owned(), self.count(t).await));
        }
        out
    }

    /// Runs a statement directly (for arranging states such as an expired link).
    pub async fn execute(&self, sql: &str) {
        let mut tx = self.db().begin().await.unwrap();
        let done: netterms::store::StoreResult<()> = async {
            netterms::with_conn!(&mut tx, c => { sqlx::query(sql).execute(&mut *c).await?; });
            Ok(())
        }
        .await;
        done.unwrap();
        tx.commit().await.unwrap();
    }
}

impl TestApp {
    /// Runs delivery rounds until nothing is due now; returns how many attempts were made.
    pub async fn deliver_all(&self) -> usize {
        let d = netterms::service::webhooks::Dispatcher::new(self.services.clone(), "test-worker").unwrap();
        let mut total = 0;
        loop {
            let n = d.run_once().await.unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    }

    /// Runs job rounds until nothing is due now; returns how many jobs ran.
    pub async fn run_jobs(&self) -> usize {
        let w = netterms::workers::Worker::new(self.services.clone(), "test-jobs");
        let mut total = 0;
        loop {
            let n = w.run_once().await.unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    }

    /// Creates a webhook endpoint and returns (endpoint id, secret).
    pub async fn create_endpoint(&self, psp: &TestPsp, url: &str, types: &[&str]) -> (String, String) {
        let r = self
            .send(self.psp(psp, Method::POST, "/v1/webhook-endpoints").json(&json!({"url": url, "event_types": types})))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let v = r.json();
        let secret = v["secret"].as_str().unwrap().to_owned();
        self.secret(&secret);
        // Named like every other id; `id` stays for older clients.
        assert_eq!(v["endpoint_id"], v["id"], "{v}");
        (v["endpoint_id"].as_str().unwrap().to_owned(), secret)
    }
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
}

/// A webhook receiver on loopback that answers with scripted statuses (then 200) and records
/// every request.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    pub async fn start(script: Vec<u16>) -> Receiver {
        use axum::http::HeaderMap;
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let (h, sc) = (hits.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (h, sc) = (h.clone(), sc.clone());
                async move {
                    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    h.lock().unwrap().push(Hit {
                        id: get("webhook-id"),
                        timestamp: get("webhook-timestamp"),
                        signature: get("webhook-signature"),
                        body: body.to_vec(),
                    });
                    let status = sc.lock().unwrap().pop_front().unwrap_or(200);
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url: format!("http://{addr}/hook"), hits }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
        }
        if std::thread::panicking() {
            return;
        }
        let logs = captured_logs();
        for s in self.secrets.lock().unwrap().iter() {
            assert!(!logs.contains(s.as_str()), "a secret reached the logs");
        }
    }
}

/// `../shared/fixtures/<sub>`, if this checkout has it (a fresh clone has no `../shared`; CI has
/// it and sets `NETTERMS_REQUIRE_FIXTURES`, so there its absence fails).
pub fn fixtures(sub: &str) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures").join(sub);
    if dir.exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("NETTERMS_REQUIRE_FIXTURES").is_err(),
        "NETTERMS_REQUIRE_FIXTURES is set but {} is missing",
        dir.display()
    );
    eprintln!("skipped: {} is not there (a fresh clone has no ../shared; CI has it)", dir.display());
    None
}
