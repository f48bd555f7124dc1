use netterms::domain::webhook::{VerifyError, verify};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn deliveries_are_signed_and_verify_with_the_endpoint_secret() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let rx = Receiver::start(vec![]).await;
    let (endpoint_id, secret) = app.create_endpoint(&psp, &rx.url, &[]).await;
    assert!(secret.starts_with("whsec_"));
    // The secret is shown only once.
    let got = app.send(app.psp(&psp, Method::GET, &format!("/v1/webhook-endpoints/{endpoint_id}"))).await;
    assert_eq!(got.status, 200);
    assert!(!got.text().contains(&secret) && got.json().get("secret").is_none());

    let m = app.create_merchant(&psp, "shop-1").await;
    assert_eq!(app.deliver_all().await, 1);
    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    let body: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(body["type"], "merchant.activated");
    assert_eq!(body["id"], hit.id.as_str());
    assert_eq!(body["data"]["merchant_id"], m["merchant_id"]);
    assert!(body["created_at"].is_string());

    let ts_now = hit.timestamp.parse::<i64>().unwrap();
    assert!((ts_now - now_secs()).abs() < 60);
    assert_eq!(verify(&secret, &hit.id, &hit.timestamp, &hit.signature, &hit.body, now_secs()), Ok(()));
    // A receiver rejects a tampered body, a wrong secret and a stale timestamp.
    let mut tampered = hit.body.clone();
    tampered[10] ^= 1;
    assert_eq!(
        verify(&secret, &hit.id, &hit.timestamp, &hit.signature, &tampered, now_secs()),
        Err(VerifyError::NoMatch)
    );
    let wrong = netterms::domain::webhook::format_secret(b"another-secret-of-24-byte");
    assert_eq!(
        verify(&wrong, &hit.id, &hit.timestamp, &hit.signature, &hit.body, now_secs()),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        verify(&secret, &hit.id, &hit.timestamp, &hit.signature, &hit.body, ts_now + 301),
        Err(VerifyError::TimestampOutOfTolerance)
    );
    // Nothing more is due.
    assert_eq!(app.deliver_all().await, 0);
}

#[tokio::test]
async fn a_failed_attempt_is_retried_with_the_same_webhook_id_and_every_attempt_is_stored() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let rx = Receiver::start(vec![500]).await;
    app.create_endpoint(&psp, &rx.url, &[]).await;
    app.create_merchant(&psp, "shop-1").await;

    assert_eq!(app.deliver_all().await, 1);
    // The retry waits for its backoff (5 s ± 20 %).
    assert_eq!(app.deliver_all().await, 0);
    app.services.clock.advance(chrono::Duration::seconds(7));
    assert_eq!(app.deliver_all().await, 1);

    let hits = rx.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id, hits[1].id);
    assert_eq!(hits[0].body, hits[1].body);

    let event = app.send(app.psp(&psp, Method::GET, &format!("/v1/events/{}", hits[0].id))).await.json();
    let attempts = event["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["response_status"], 500);
    assert_eq!(attempts[1]["response_status"], 200);
    assert_eq!(event["deliveries"][0]["status"], "delivered");
}

#[tokio::test]
async fn redirects_count_as_failures_and_410_disables_the_endpoint() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let rx = Receiver::start(vec![302, 410]).await;
    let (endpoint_id, _) = app.create_endpoint(&psp, &rx.url, &[]).await;
    app.create_merchant(&psp, "shop-1").await;
    app.deliver_all().await;
    app.services.clock.advance(chrono::Duration::seconds(7));
    app.deliver_all().await;
    let ep = app.send(app.psp(&psp, Method::GET, &format!("/v1/webhook-endpoints/{endpoint_id}"))).await.json();
    assert_eq!(ep["status"], "disabled");
    assert!(ep["disabled_reason"].as_str().unwrap().contains("410"));
    let events = app.send(app.psp(&psp, Method::GET, "/v1/events")).await.json();
    let id = events["data"][0]["id"].as_str().unwrap().to_owned();
    let event = app.send(app.psp(&psp, Method::GET, &format!("/v1/events/{id}"))).await.json();
    let statuses: Vec<_> =
        event["deliveries"][0]["attempts"].as_array().unwrap().iter().map(|a| a["response_status"].clone()).collect();
    assert_eq!(statuses, [json!(302), json!(410)]);
    assert_eq!(event["deliveries"][0]["status"], "failed");
    // A disabled endpoint gets nothing more.
    app.create_merchant(&psp, "shop-2").await;
    app.services.clock.advance(chrono::Duration::hours(1));
    assert_eq!(app.deliver_all().await, 0);
    assert_eq!(rx.hits().len(), 2);
}

#[tokio::test]
async fn event_type_filters_redelivery_and_rotation() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let all = Receiver::start(vec![]).await;
    let only_off = Receiver::start(vec![]).await;
    let (endpoint_id, old_secret) = app.create_endpoint(&psp, &all.url, &[]).await;
    app.create_endpoint(&psp, &only_off.url, &["merchant.deactivated"]).await;
    let m = app.create_merchant(&psp, "shop-1").await;
    let id = m["merchant_id"].as_str().unwrap();
    app.send(app.psp(&psp, Method::POST, &format!("/v1/merchants/{id}/deactivate"))).await;
    app.deliver_all().await;
    assert_eq!(all.hits().len(), 2);
    let off_hits = only_off.hits();
    assert_eq!(off_hits.len(), 1);
    assert_eq!(serde_json::from_slice::<Value>(&off_hits[0].body).unwrap()["type"], "merchant.deactivated");

    // Rotation: deliveries carry both signatures during the overlap; each secret verifies.
    let rotated =
        app.send(app.psp(&psp, Method::POST, &format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret"))).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_secret = rotated.json()["secret"].as_str().unwrap().to_owned();
    app.secret(&new_secret);
    assert_ne!(new_secret, old_secret);

    let activated = all
        .hits()
        .into_iter()
        .find(|h| serde_json::from_slice::<Value>(&h.body).unwrap()["type"] == "merchant.activated")
        .unwrap();
    let event_id = activated.id.clone();
    let r = app.send(app.psp(&psp, Method::POST, &format!("/v1/events/{event_id}/redeliver"))).await;
    assert_eq!(r.status, 202, "{}", r.text());
    app.deliver_all().await;
    let hits = all.hits();
    assert_eq!(hits.len(), 3);
    let again = &hits[2];
    assert_eq!(again.id, event_id);
    assert_eq!(again.body, activated.body);
    assert_eq!(again.signature.split(' ').count(), 2);
    for secret in [&old_secret, &new_secret] {
        assert_eq!(verify(secret, &again.id, &again.timestamp, &again.signature, &again.body, now_secs()), Ok(()));
    }
    // The merchant.activated event is not for the filtered endpoint, so redelivery does not reach it.
    assert_eq!(only_off.hits().len(), 1);
}

#[tokio::test]
async fn events_and_endpoints_of_another_psp_are_404() {
    let app = TestApp::spawn().await;
    let a = app.create_psp().await;
    let b = app.create_psp().await;
    let rx = Receiver::start(vec![]).await;
    let (endpoint_id, _) = app.create_endpoint(&a, &rx.url, &[]).await;
    app.create_merchant(&a, "shop").await;
    let events = app.send(app.psp(&a, Method::GET, "/v1/events?type=merchant.activated")).await.json();
    let event_id = events["data"][0]["id"].as_str().unwrap().to_owned();
    for (m, path) in [
        (Method::GET, format!("/v1/events/{event_id}")),
        (Method::POST, format!("/v1/events/{event_id}/redeliver")),
        (Method::GET, format!("/v1/webhook-endpoints/{endpoint_id}")),
        (Method::DELETE, format!("/v1/webhook-endpoints/{endpoint_id}")),
        (Method::POST, format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret")),
    ] {
        app.send(app.psp(&b, m, &path)).await.assert_error(404, "resource_not_found");
    }
    assert_eq!(app.send(app.psp(&b, Method::GET, "/v1/events")).await.json()["data"], json!([]));
    assert_eq!(
        app.send(app.psp(&a, Method::DELETE, &format!("/v1/webhook-endpoints/{endpoint_id}"))).await.status,
        204
    );
    app.send(app.psp(&a, Method::GET, &format!("/v1/webhook-endpoints/{endpoint_id}")))
        .await
        .assert_error(404, "resource_not_found");
}

#[tokio::test]
async fn endpoint_input_is_validated() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let r = app
        .send(
            app.psp(&psp, Method::POST, "/v1/webhook-endpoints")
                .json(&json!({"url": "ftp://x", "event_types": ["nope"]})),
        )
        .await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["url", "event_types[0]"]);
    app.send(app.psp(&psp, Method::POST, "/v1/webhook-endpoints").json(&json!({"url": 5})))
        .await
        .assert_error(400, "request_invalid");
    assert_eq!(app.count("webhook_endpoints").await, 0);
}

#[tokio::test]
async fn private_addresses_are_refused_when_not_allowed() {
    let app = TestApp::spawn_with(|c| c.webhook_allow_private = Some(false)).await;
    let psp = app.create_psp().await;
    let rx = Receiver::start(vec![]).await;
    // Without private addresses allowed, endpoints must be https.
    let r = app.send(app.psp(&psp, Method::POST, "/v1/webhook-endpoints").json(&json!({"url": rx.url}))).await;
    assert_eq!(r.sources(), ["url"]);
    let port = rx.url.split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
    // Private targets are refused when registered, in every notation of the address.
    for host in ["127.0.0.1", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]", "localhost"] {
        let url = format!("https://{host}:{port}/hook");
        let r = app.send(app.psp(&psp, Method::POST, "/v1/webhook-endpoints").json(&json!({"url": url}))).await;
        assert_eq!(r.sources(), ["url"], "{url}: {}", r.text());
    }
    assert_eq!(app.count("webhook_endpoints").await, 0);
    // Endpoints stored before (or pointed there since): refused at delivery.
    app.create_endpoint(&psp, "https://hooks.psp.example/a", &[]).await;
    app.create_endpoint(&psp, "https://hooks.psp.example/b", &[]).await;
    app.execute(&format!(
        "UPDATE webhook_endpoints SET url = CASE WHEN url LIKE '%/a' THEN 'https://2130706433:{port}/hook' \
         ELSE 'https://localhost:{port}/hook' END"
    ))
    .await;
    app.create_merchant(&psp, "shop").await;
    assert_eq!(app.deliver_all().await, 2);
    assert!(rx.hits().is_empty());
    let events = app.send(app.psp(&psp, Method::GET, "/v1/events")).await.json();
    let id = events["data"][0]["id"].as_str().unwrap().to_owned();
    let event = app.send(app.psp(&psp, Method::GET, &format!("/v1/events/{id}"))).await.json();
    for d in event["deliveries"].as_array().unwrap() {
        let err = d["attempts"][0]["error"].as_str().unwrap();
        assert!(err.contains("refused"), "{err}");
        assert_eq!(d["status"], "pending");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_never_deliver_one_attempt_twice() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let rx = Receiver::start(vec![]).await;
    app.create_endpoint(&psp, &rx.url, &[]).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(app.create_merchant(&psp, &format!("shop-{i}")).await["merchant_id"].clone());
    }
    let workers: Vec<_> = ["worker-a", "worker-b"]
        .into_iter()
        .map(|name| {
            let d = netterms::service::webhooks::Dispatcher::new(app.services.clone(), name).unwrap();
            tokio::spawn(async move {
                let mut total = 0;
                for _ in 0..50 {
                    let n = d.run_once().await.unwrap();
                    total += n;
                    if n == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                total
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert_eq!(total, 60);
    let hits = rx.hits();
    assert_eq!(hits.len(), 60);
    let mut seen: Vec<_> = hits.iter().map(|h| h.id.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 60, "an event was delivered twice");
    assert_eq!(app.count("webhook_attempts").await, 60);
}

#[tokio::test]
async fn an_events_attempts_are_paged_and_redelivery_is_rate_limited() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let rx = Receiver::start(vec![]).await;
    app.create_endpoint(&psp, &rx.url, &[]).await;
    app.create_merchant(&psp, "shop-1").await;
    assert_eq!(app.deliver_all().await, 1);
    let id = rx.hits()[0].id.clone();
    let redeliver =
        |key: String| app.psp(&psp, Method::POST, &format!("/v1/events/{id}/redeliver")).header("Idempotency-Key", key);
    for n in 0..12 {
        let r = app.send(redeliver(format!("again-{n}"))).await;
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(app.deliver_all().await, 1);
    }
    // The event shows the latest ten attempts of its delivery and how many there were.
    let event = app.send(app.psp(&psp, Method::GET, &format!("/v1/events/{id}"))).await.json();
    let d = &event["deliveries"][0];
    assert_eq!(d["attempts_total"], 13);
    let inline: Vec<i64> = d["attempts"].as_array().unwrap().iter().map(|a| a["attempt"].as_i64().unwrap()).collect();
    assert_eq!(inline, (4..=13).collect::<Vec<_>>());
    // Every attempt, newest first, in pages.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = after.as_ref().map(|a| format!("&starting_after={a}")).unwrap_or_default();
        let page = app.send(app.psp(&psp, Method::GET, &format!("/v1/events/{id}/attempts?limit=5{q}"))).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 5);
        seen.extend(data.iter().map(|a| a["attempt"].as_i64().unwrap()));
        after = data.last().map(|a| a["attempt_id"].as_str().unwrap().to_owned());
        if page["has_more"] != true {
            break;
        }
    }
    assert_eq!(seen, (1..=13).rev().collect::<Vec<_>>());
    // Another PSP sees no such event.
    let other = app.create_psp().await;
    let r = app.send(app.psp(&other, Method::GET, &format!("/v1/events/{id}/attempts"))).await;
    assert_eq!(r.status, 404);
    // Sixty redeliveries a minute, then 429 with Retry-After; a retry of an answered request
    // is still answered from its Idempotency-Key.
    let mut accepted = 12;
    let refused = loop {
        let r = app.send(redeliver(format!("more-{accepted}"))).await;
        if r.status != 202 {
            break r;
        }
        accepted += 1;
        assert!(accepted <= 60, "more than 60 redeliveries accepted in a minute");
    };
    assert_eq!(accepted, 60);
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.json()["errors"][0]["code"], "rate_limited");
    assert!(refused.headers.get("retry-after").is_some());
    assert_eq!(app.send(redeliver("again-0".into())).await.status, 202);
}
