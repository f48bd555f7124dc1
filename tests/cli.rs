//! The binary as a user runs it: `psp create --json`, then `serve` with no configuration but a
//! port, the README walkthrough over HTTP, graceful shutdown on SIGTERM, and JSON logs that hold
//! request ids and no secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_netterms");

fn netterms(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir).env_remove("DATABASE_URL").env("NETTERMS_LISTEN", "127.0.0.1:0");
    for (k, _) in std::env::vars() {
        if k.starts_with("NETTERMS_") && k != "NETTERMS_LISTEN" {
            c.env_remove(k);
        }
    }
    c
}

/// The password behind a one-time password link.
async fn reveal(c: &reqwest::Client, url: &str) -> String {
    let v: Value = c.get(url).header("accept", "application/json").send().await.unwrap().json().await.unwrap();
    v["password"].as_str().unwrap().to_owned()
}

/// Kills the server if the test fails half-way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn psp_create_then_serve_walkthrough_with_clean_json_logs() {
    let dir = tempfile::tempdir().unwrap();

    let out = netterms(dir.path())
        .args(["psp", "create", "--name", "Acme Payments", "--fee-rate-bps", "150", "--fee-fixed", "25"])
        .args(["--iban", "DE89370400440532013000", "--payout-frequency", "weekly", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["psp_id", "username", "password_url"] {
        assert!(created[key].is_string(), "{key} missing in {created}");
    }
    // The SQLite file was created and migrated in the working directory.
    assert!(dir.path().join("netterms.db").exists());
    let token = created["password_url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let username = created["username"].as_str().unwrap().to_owned();

    let mut child = KillOnDrop(
        netterms(dir.path())
            .arg("serve")
            .env("NETTERMS_LOG_FORMAT", "json")
            .env("NETTERMS_LOG_LEVEL", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let mut early = Vec::new();
    let message = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        early.push(line);
        if let Some(m) = v["message"].as_str().filter(|m| m.contains("listening on")) {
            break m.to_owned();
        }
    };
    assert!(message.contains("sandbox") && message.contains("listening on http://127.0.0.1:"), "{message}");
    let addr = message.split("listening on http://").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    let base = format!("http://{addr}");
    let log_reader = std::thread::spawn(move || {
        early.extend(lines.map_while(Result::ok));
        early
    });

    let client = reqwest::Client::new();
    let password = reveal(&client, &format!("{base}/credentials/{token}")).await;

    let merchant = json!({
        "external_id": "shop-1", "name": "Beispiel GmbH", "legal_form": "10001", "registration_number": "HRB 12345",
        "address": {"street": "Hauptstr.", "house_number": "1", "postal_code": "10115", "city": "Berlin", "country": "DE"},
        "contact": {"name": "Erika Mustermann", "email": "erika@example.com"}
    });
    let r = client
        .post(format!("{base}/v1/merchants"))
        .basic_auth(&username, Some(&password))
        .header("idempotency-key", "walkthrough-1")
        .json(&merchant)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client.get(format!("{base}/v1/merchants")).basic_auth(&username, Some("wrong")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // SIGTERM: the server finishes and exits cleanly.
    let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.0.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited = exited.expect("server did not stop within 10 s of SIGTERM");
    assert!(exited.success(), "{exited:?}");

    let logs = log_reader.join().unwrap();
    let all = logs.join("\n");
    assert!(!all.contains(&password), "password in logs");
    assert!(!all.contains(&token), "password link token in logs");
    assert!(!all.contains("erika@example.com"), "personal data in logs");
    let requests: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect();
    assert!(requests.len() >= 3, "{all}");
    for r in &requests {
        assert!(r["span"]["request_id"].is_string(), "{r}");
        assert!(r["status"].is_number(), "{r}");
    }
    assert!(all.contains("stopped"));
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = netterms(dir.path())
        .arg("serve")
        .env("NETTERMS_ENVIRONMENT", "production")
        .env("NETTERMS_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret_key") && err.contains("admin_token") && err.contains("https public_url"), "{err}");
    let out = netterms(dir.path()).arg("serve").env("NETTERMS_LISTEN", "not-an-address").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).to_lowercase().contains("listen"));
}

#[test]
fn openapi_check_detects_drift() {
    let dir = tempfile::tempdir().unwrap();
    let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    assert!(netterms(dir.path()).args(["openapi", "--check", committed]).status().unwrap().success());
    let stale = dir.path().join("stale.json");
    std::fs::write(&stale, "{}\n").unwrap();
    let out = netterms(dir.path()).args(["openapi", "--check"]).arg(&stale).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("differs"));
}

#[tokio::test]
async fn ledger_verify_exits_non_zero_naming_the_difference() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let out = netterms(dir.path()).args(["ledger", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ledger verified"));

    // An entry that does not balance, written behind the application's back.
    let url = format!("sqlite://{}", dir.path().join("netterms.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let id = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO ledger_entries (id, kind, ref_id, currency, created_at) VALUES ($1, 'test', $1, 'EUR', '2026-01-01T00:00:00Z')")
        .bind(id)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO ledger_lines (entry_id, account, amount) VALUES ($1, 'fee_revenue', 5)")
        .bind(id)
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();

    let out = netterms(dir.path()).args(["ledger", "verify"]).output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("entry {id} does not balance")), "{stdout}");
    assert!(stdout.contains("DIFFERENCE fee_revenue"), "{stdout}");
}

/// Webhooks never go through a proxy from the environment (it would resolve hostnames past the
/// address checks): with `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` pointing at a listener, the
/// delivery still reaches the receiver directly and the listener sees no connection.
#[tokio::test]
async fn webhooks_ignore_proxies_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    // The "proxy": counts connections and answers nothing useful.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    proxy.set_nonblocking(true).unwrap();
    let proxied = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = proxied.clone();
    std::thread::spawn(move || {
        loop {
            if let Ok((s, _)) = proxy.accept() {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    // The receiver.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let admin = "proxy-test-admin-token-0123456789";
    let mut child = KillOnDrop(
        netterms(dir.path())
            .arg("serve")
            .env("NETTERMS_ADMIN_TOKEN", admin)
            .env("NETTERMS_WEBHOOK_POLL_MS", "50")
            .env("HTTP_PROXY", &proxy_url)
            .env("HTTPS_PROXY", &proxy_url)
            .env("ALL_PROXY", &proxy_url)
            .env("http_proxy", &proxy_url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break format!("http://{}", rest.split(' ').next().unwrap());
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let psp: Value = c
        .post(format!("{base}/admin/v1/psps"))
        .bearer_auth(admin)
        .header("audit-reason", "walkthrough")
        .json(&json!({"name": "P", "fee_rate_bps": 100, "fee_fixed": 0, "iban": "DE89370400440532013000", "payout_frequency": "weekly"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let password = reveal(&c, psp["password_url"].as_str().unwrap()).await;
    let (user, pass) = (psp["username"].as_str().unwrap(), password.as_str());
    let r = c
        .post(format!("{base}/v1/webhook-endpoints"))
        .basic_auth(user, Some(pass))
        .json(&json!({"url": hook, "event_types": ["merchant.activated"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(format!("{base}/v1/merchants"))
        .basic_auth(user, Some(pass))
        .json(&json!({"external_id": "m", "name": "M GmbH", "legal_form": "10001", "registration_number": "HRB 1",
            "registration_court": "AG Berlin", "address": {"street": "S", "postal_code": "10115", "city": "Berlin", "country": "DE"},
            "contact": {"name": "N", "email": "n@m.example"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for _ in 0..100 {
        if hits.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "the webhook reached the receiver directly");
    assert_eq!(proxied.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing went to the proxy");
}

/// `statements import` books a file once (a second import is all duplicates), refuses a hostile
/// one naming why and booking nothing from it, and exits non-zero when any file was refused;
/// `direct-debit export` says when nothing is due; the ledger still verifies; `status-reports
/// import` reads a bank's pain.002 and refuses a hostile one.
#[test]
fn statements_import_and_direct_debit_export_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.xml");
    std::fs::write(
        &good,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><GrpHdr><MsgId>M</MsgId></GrpHdr>
<Stmt><Id>S</Id><Acct><Id><IBAN>DE02120300000000202051</IBAN></Id></Acct>
<Ntry><Amt Ccy="EUR">25.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><AcctSvcrRef>CLI-1</AcctSvcrRef>
<NtryDtls><TxDtls><RltdPties><Dbtr><Nm>Jemand</Nm></Dbtr></RltdPties><RmtInf><Ustrd>ohne Bezug</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>"#,
    )
    .unwrap();
    let hostile = dir.path().join("hostile.xml");
    std::fs::write(
        &hostile,
        r#"<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Document>&x;</Document>"#,
    )
    .unwrap();
    let out = netterms(dir.path()).args(["statements", "import"]).arg(&good).arg(&hostile).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("good.xml: camt.053 camt.053.001.02 — 1 entry, 1 payment (0 matched, 1 unmatched)"),
        "{stdout}"
    );
    assert!(stderr.contains("hostile.xml: refused, nothing booked") && stderr.contains("DOCTYPE"), "{stderr}");
    let out = netterms(dir.path()).args(["statements", "import", "--json"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["payments"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(1)), "{v}");
    let out = netterms(dir.path()).args(["direct-debit", "export"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing due for collection"));
    let out = netterms(dir.path()).args(["ledger", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // A bank's status report about a file this deployment never wrote: read, nothing changed, the
    // rejected item listed for the operator; a hostile one refused.
    let report = dir.path().join("pain002.xml");
    std::fs::write(
        &report,
        r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><CstmrPmtStsRpt><GrpHdr><MsgId>B</MsgId></GrpHdr>
<OrgnlGrpInfAndSts><OrgnlMsgId>NTFOREIGN</OrgnlMsgId><OrgnlMsgNmId>pain.008.001.08</OrgnlMsgNmId><GrpSts>PART</GrpSts></OrgnlGrpInfAndSts>
<OrgnlPmtInfAndSts><OrgnlPmtInfId>NTFOREIGN-1</OrgnlPmtInfId><TxInfAndSts><OrgnlEndToEndId>E2E-X</OrgnlEndToEndId>
<TxSts>RJCT</TxSts><StsRsnInf><Rsn><Cd>AC04</Cd></Rsn></StsRsnInf></TxInfAndSts></OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>"#,
    )
    .unwrap();
    let out = netterms(dir.path()).args(["status-reports", "import"]).arg(&report).arg(&hostile).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("pain002.xml: pain.002.001.03 about unknown NTFOREIGN — 0 accepted, 1 rejected"),
        "{stdout}"
    );
    assert!(stdout.contains("E2E-X: AC04 (The account is closed.) — not_applied"), "{stdout}");
    assert!(stderr.contains("hostile.xml: refused, nothing changed") && stderr.contains("DOCTYPE"), "{stderr}");
    // A buyer's credit: refused for an unknown buyer, and into a directory that is not there.
    let unknown = uuid::Uuid::now_v7().to_string();
    let out = netterms(dir.path()).args(["buyers", "refund-credit", &unknown]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("buyer not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = netterms(dir.path())
        .args(["buyers", "refund-credit", &unknown, "--out"])
        .arg(dir.path().join("missing").join("credit.xml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such directory"));
}

/// `psp create` takes the payout bank's BIC (required outside the EEA) and the billing details a
/// fee invoice needs; `psp update` completes them field by field; `payouts export --out` into a
/// directory that is not there exports nothing (and marks nothing sent).
#[test]
fn psp_billing_and_bic_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let swiss = ["--name", "Zuerich Pay AG", "--fee-rate-bps", "150", "--fee-fixed", "25"];
    let out = netterms(dir.path())
        .args(["psp", "create"])
        .args(swiss)
        .args(["--iban", "CH9300762011623852957", "--payout-frequency", "weekly"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bic") && err.contains("outside the EEA"), "{err}");
    let out = netterms(dir.path())
        .args(["psp", "create"])
        .args(swiss)
        .args(["--iban", "CH9300762011623852957", "--bic", "POFICHBEXXX", "--payout-frequency", "weekly"])
        .args(["--billing-street", "Bahnhofstrasse 1", "--billing-city", "Zürich", "--billing-country", "CH"])
        .args(["--vat-id", "CHE-123.456.789", "--billing-email", "rechnung@zuerich-pay.example", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["psp_id"].as_str().unwrap().to_owned();
    let out =
        netterms(dir.path()).args(["psp", "update", &id, "--billing-postal-code", "8001", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let psp: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(psp["bic"], "POFICHBEXXX", "{psp}");
    assert_eq!(
        psp["billing"],
        json!({"street": "Bahnhofstrasse 1", "postal_code": "8001", "city": "Zürich", "country": "CH",
               "vat_id": "CHE-123.456.789", "email": "rechnung@zuerich-pay.example"}),
        "the other fields are kept"
    );
    let out =
        netterms(dir.path()).args(["payouts", "export", "--out"]).arg(dir.path().join("missing")).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The command line's changes are audited as the actor `cli`; `audit verify` passes, and fails
/// (non-zero exit) once a record was edited.
#[test]
fn operator_commands_are_audited_and_audit_verify_finds_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| netterms(dir.path()).args(args).output().unwrap();
    let out = run(&[
        "operator",
        "create",
        "--email",
        "Anna@Ops.example",
        "--name",
        "Anna Admin",
        "--role",
        "admin",
        "--role",
        "risk",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["operator_id"].is_string());
    assert!(v["set_password_url"].as_str().unwrap().contains("/console/set-password/"));
    let out = run(&["operator", "token", "create", "--email", "anna@ops.example", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(t["token"].as_str().unwrap().starts_with("ntop_"));
    let out = run(&["operator", "create", "--email", "x@ops.example", "--name", "X", "--role", "root"]);
    assert!(!out.status.success());
    let out = run(&[
        "psp",
        "create",
        "--name",
        "Acme Payments",
        "--fee-rate-bps",
        "150",
        "--fee-fixed",
        "25",
        "--iban",
        "DE89370400440532013000",
        "--payout-frequency",
        "weekly",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["audit", "verify", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 3, "{v}");
    // The records say who (the command line) and what; then one is edited in the database.
    let db = dir.path().join("netterms.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let rows: Vec<String> = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let rows = sqlx::query_scalar("SELECT actor_kind || ' ' || action FROM audit_events ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_events SET reason = 'edited' WHERE seq = 2").execute(&mut c).await.unwrap();
        rows
    });
    assert_eq!(rows, ["cli operator.created", "cli operator.token_created", "cli psp.created"]);
    let out = run(&["audit", "verify"]);
    assert!(!out.status.success(), "a tampered trail must not verify");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("record 2 was altered"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
