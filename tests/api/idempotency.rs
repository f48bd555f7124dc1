use reqwest::Method;

use crate::helpers::*;

#[tokio::test]
async fn replay_is_byte_identical() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let req =
        || app.psp(&psp, Method::POST, "/v1/merchants").header("idempotency-key", "key-1").json(&merchant_body("m-1"));
    let first = app.send(req()).await;
    assert_eq!(first.status, 201);
    let second = app.send(req()).await;
    assert_eq!(second.status, 201);
    assert_eq!(second.bytes, first.bytes);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(app.count("merchants").await, 1);
    assert_eq!(app.count("events").await, 1);

    // The same key for another request is refused.
    let other = app
        .send(
            app.psp(&psp, Method::POST, "/v1/merchants").header("idempotency-key", "key-1").json(&merchant_body("m-2")),
        )
        .await;
    other.assert_error(422, "idempotency_key_reused");
    // Also on another path.
    let m = first.json();
    let path = format!("/v1/merchants/{}/deactivate", m["merchant_id"].as_str().unwrap());
    app.send(app.psp(&psp, Method::POST, &path).header("idempotency-key", "key-1"))
        .await
        .assert_error(422, "idempotency_key_reused");
    assert_eq!(app.count("merchants").await, 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_psp() {
    let app = TestApp::spawn().await;
    let a = app.create_psp().await;
    let b = app.create_psp().await;
    for psp in [&a, &b] {
        let r = app
            .send(
                app.psp(psp, Method::POST, "/v1/merchants")
                    .header("idempotency-key", "shared")
                    .json(&merchant_body("m")),
            )
            .await;
        assert_eq!(r.status, 201);
        assert!(r.headers.get("idempotent-replayed").is_none());
    }
    assert_eq!(app.count("merchants").await, 2);
}

#[tokio::test]
async fn a_failed_request_frees_its_key() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mut bad = merchant_body("m");
    bad["name"] = serde_json::json!("");
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").header("idempotency-key", "k").json(&bad)).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(app.count("idempotency_keys").await, 0);
    let r = app
        .send(app.psp(&psp, Method::POST, "/v1/merchants").header("idempotency-key", "k").json(&merchant_body("m")))
        .await;
    assert_eq!(r.status, 201);

    // A conflict (duplicate external_id) is not stored either.
    let r = app
        .send(app.psp(&psp, Method::POST, "/v1/merchants").header("idempotency-key", "k2").json(&merchant_body("m")))
        .await;
    r.assert_error(409, "resource_already_exists");
    assert_eq!(app.count("idempotency_keys").await, 1);
}

#[tokio::test]
async fn bad_keys_are_400() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let long = "k".repeat(256);
    for key in [long.as_str(), "has space"] {
        let r = app
            .send(app.psp(&psp, Method::POST, "/v1/merchants").header("idempotency-key", key).json(&merchant_body("m")))
            .await;
        r.assert_error(400, "request_invalid");
        assert_eq!(r.sources(), ["Idempotency-Key"]);
    }
    assert_eq!(app.count("merchants").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_requests_with_one_key_create_one_merchant() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let sends = (0..20).map(|_| {
        app.send(
            app.psp(&psp, Method::POST, "/v1/merchants")
                .header("idempotency-key", "race")
                .json(&merchant_body("raced")),
        )
    });
    let results = futures::future::join_all(sends).await;
    let created: Vec<_> = results.iter().filter(|r| r.status == 201).collect();
    assert!(!created.is_empty());
    for r in &results {
        match r.status.as_u16() {
            201 => assert_eq!(r.bytes, created[0].bytes),
            409 => assert_eq!(r.codes(), ["idempotency_in_progress"]),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(app.count("merchants").await, 1);
    assert_eq!(app.count("events").await, 1);
    // After the race, the key replays.
    let again = app
        .send(
            app.psp(&psp, Method::POST, "/v1/merchants")
                .header("idempotency-key", "race")
                .json(&merchant_body("raced")),
        )
        .await;
    assert_eq!(again.bytes, created[0].bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_activations_without_a_key_create_one_merchant() {
    // The unique external_id backs the key up: duplicates get 409, never a second merchant.
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let sends = (0..20).map(|_| app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&merchant_body("same"))));
    let results = futures::future::join_all(sends).await;
    assert_eq!(results.iter().filter(|r| r.status == 201).count(), 1);
    assert!(results.iter().filter(|r| r.status != 201).all(|r| r.codes() == ["resource_already_exists"]));
    assert_eq!(app.count("merchants").await, 1);
}

#[tokio::test]
async fn an_abandoned_claim_is_taken_over_after_its_lock() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let psp_id = psp.psp_id.parse().unwrap();
    let now = app.services.clock.now();
    use netterms::store::idempotency::{Claim, LOCK_FOR, claim};
    // A request that crashed after claiming: its claim is in flight until the lock runs out.
    let Claim::Run { token: first } = claim(app.db(), psp_id, "crashed", b"fp", now, LOCK_FOR).await.unwrap() else {
        panic!("a new key runs")
    };
    assert_eq!(claim(app.db(), psp_id, "crashed", b"fp", now, LOCK_FOR).await.unwrap(), Claim::InFlight);
    let later = now + netterms::store::idempotency::LOCK_FOR + chrono::Duration::seconds(1);
    let Claim::Run { token: second } = claim(app.db(), psp_id, "crashed", b"fp", later, LOCK_FOR).await.unwrap() else {
        panic!("an abandoned claim is taken over")
    };
    assert_ne!(first, second, "a takeover fences the first holder out with a new token");
    assert_eq!(claim(app.db(), psp_id, "crashed", b"fp", later, LOCK_FOR).await.unwrap(), Claim::InFlight);
}
