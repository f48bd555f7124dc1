use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn create_get_list_and_update_psps() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let got = app.send(app.admin(Method::GET, &format!("/admin/v1/psps/{}", psp.psp_id))).await.json();
    assert_eq!(got["iban"], "DE89370400440532013000");
    assert_eq!(got["fee_rate_bps"], 150);
    assert_eq!(got["payout_frequency"], "weekly");

    let patched = app
        .send(app.admin(Method::PATCH, &format!("/admin/v1/psps/{}", psp.psp_id)).json(&json!({
            "fee_rate_bps": 175, "payout_frequency": "monthly",
            "fee_bands": [{"max_duration": 60, "fee_rate_bps": 200}, {"max_duration": 30, "fee_rate_bps": 150}]
        })))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let p = patched.json();
    assert_eq!(p["fee_rate_bps"], 175);
    assert_eq!(p["fee_fixed"], 25);
    assert_eq!(p["fee_bands"][0]["max_duration"], 30);

    let bad = app
        .send(
            app.admin(Method::PATCH, &format!("/admin/v1/psps/{}", psp.psp_id))
                .json(&json!({"iban": "DE00370400440532013000"})),
        )
        .await;
    bad.assert_error(422, "request_validation_error");
    assert_eq!(bad.sources(), ["iban"]);
    let still = app.send(app.admin(Method::GET, &format!("/admin/v1/psps/{}", psp.psp_id))).await.json();
    assert_eq!(still["iban"], "DE89370400440532013000");
    // A blank billing e-mail is no address (the document declares `format: email`).
    for blank in ["", "  "] {
        let bad = app
            .send(
                app.admin(Method::PATCH, &format!("/admin/v1/psps/{}", psp.psp_id))
                    .json(&json!({"billing": {"email": blank}})),
            )
            .await;
        bad.assert_error(422, "request_validation_error");
        assert_eq!(bad.sources(), ["billing.email"]);
    }

    app.create_psp().await;
    let list = app.send(app.admin(Method::GET, "/admin/v1/psps?limit=1")).await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["has_more"], true);

    let unknown = uuid::Uuid::now_v7();
    app.send(app.admin(Method::GET, &format!("/admin/v1/psps/{unknown}")))
        .await
        .assert_error(404, "resource_not_found");
    app.send(app.admin(Method::POST, &format!("/admin/v1/psps/{unknown}/credentials")))
        .await
        .assert_error(404, "resource_not_found");
}

#[tokio::test]
async fn invalid_psp_input_is_422_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let before = app.snapshot().await;
    let r = app
        .send(app.admin(Method::POST, "/admin/v1/psps").json(&json!({
            "name": "P", "fee_rate_bps": 10001, "fee_fixed": -5, "iban": "DE89370400440532013001"
        })))
        .await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["fee_rate_bps", "fee_fixed", "iban", "payout_frequency"]);
    let r = app
        .send(app.admin(Method::POST, "/admin/v1/psps").json(&json!({"name": "P", "payout_frequency": "hourly"})))
        .await;
    r.assert_error(400, "request_invalid");
    assert_eq!(r.sources(), ["payout_frequency"]);
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn both_backends_have_the_same_schema() {
    // Runs where PostgreSQL is configured; compares its migrated schema with SQLite's.
    let Some(pg_url) = std::env::var("NETTERMS_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("NETTERMS_TEST_DATABASE_URL not set: schema comparison runs in the PostgreSQL suite");
        return;
    };
    let _ = pg_url;
    let pg = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let lite = netterms::store::Db::connect(
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        &netterms::store::PoolOptions::default(),
    )
    .await
    .unwrap();
    lite.migrate().await.unwrap();
    let a = pg.db().schema_columns().await.unwrap();
    let b = lite.schema_columns().await.unwrap();
    assert!(a.len() > 20);
    assert_eq!(a, b);
}

/// SQLite migrations run with foreign-key enforcement off (a CHECK changes only by rebuilding
/// its table): afterwards the pool enforces foreign keys again, the rebuilt tables are still the
/// ones others refer to, and a row breaking a key is refused.
#[tokio::test]
async fn sqlite_migrations_leave_foreign_keys_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let db = netterms::store::Db::connect(
        &format!("sqlite://{}", dir.path().join("fk.db").display()),
        &netterms::store::PoolOptions::default(),
    )
    .await
    .unwrap();
    db.migrate().await.unwrap();
    // The write pool's one connection is the one that migrated.
    let mut tx = db.begin().await.unwrap();
    type Found = (i64, Vec<(String, String)>, String);
    let r: netterms::store::StoreResult<Found> = async {
        Ok(netterms::with_conn!(&mut tx, c => {
            let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *c).await?;
            let refs: Vec<(String, String)> = sqlx::query_as(
                "SELECT m.name, f.\"table\" FROM sqlite_master m, pragma_foreign_key_list(m.name) f \
                 WHERE m.type = 'table' AND f.\"table\" IN ('payouts', 'direct_debits') ORDER BY 1",
            )
            .fetch_all(&mut *c)
            .await?;
            let orphan = sqlx::query("INSERT INTO payout_lines (entry_id, payout_id, amount) VALUES (x'00', x'01', 1)")
                .execute(&mut *c)
                .await
                .map(|_| "inserted".to_owned())
                .unwrap_or_else(|e| e.to_string());
            (on, refs, orphan)
        }))
    }
    .await;
    let (on, refs, orphan) = r.unwrap();
    assert_eq!(on, 1, "enforced after migrating");
    assert!(refs.contains(&("payout_lines".into(), "payouts".into())), "{refs:?}");
    assert!(refs.contains(&("fee_invoices".into(), "payouts".into())), "{refs:?}");
    assert!(orphan.contains("FOREIGN KEY"), "a broken key is refused: {orphan}");
}
