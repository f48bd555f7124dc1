//! Closed-loop load of complete widget checkouts (session → authorize → confirm) against a
//! running netterms, with a webhook receiver on loopback; prints the sustained rate and latency,
//! then the server's commit-to-first-attempt lag of webhook deliveries from `/metrics`.
//!
//! `cargo run --release --example checkout_load -- BASE USERNAME PASSWORD MERCHANT_ID [WORKERS] [SECONDS]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn order(n: u64) -> Value {
    json!({
        "external_order_id": format!("LOAD-{n}"),
        "amount": {"currency": "EUR", "gross": 11900, "net": 10000, "tax": 1900},
        "duration": 30,
        "debtor_company": {"name": format!("Lastkunde {n} GmbH"), "legal_form": "10001",
            "registration_number": format!("HRB {n}"), "registration_court": "Amtsgericht Köln",
            "address": {"street": "Ring", "house_number": "1", "postal_code": "50667", "city": "Köln", "country": "DE"}},
        "debtor_person": {"email": "load@kunde.example"}
    })
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, user, pass, merchant) = (args[1].clone(), args[2].clone(), args[3].clone(), args[4].clone());
    let workers: u64 = args.get(5).map_or(16, |s| s.parse().unwrap());
    let secs: u64 = args.get(6).map_or(10, |s| s.parse().unwrap());
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();

    // A receiver that answers 200 and counts.
    let received = Arc::new(AtomicU64::new(0));
    let r2 = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let r = r2.clone();
            async move {
                r.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let ep: Value = client
        .post(format!("{base}/v1/webhook-endpoints"))
        .basic_auth(&user, Some(&pass))
        .json(&json!({"url": hook, "event_types": ["authorization", "order.created"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ep["id"].is_string(), "{ep}");

    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, base, user, pass, merchant) =
            (client.clone(), base.clone(), user.clone(), pass.clone(), merchant.clone());
        let (counter, errors) = (counter.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                let ok = async {
                    let s: Value = client
                        .post(format!("{base}/v1/widget-sessions"))
                        .basic_auth(&user, Some(&pass))
                        .json(&json!({"merchant_id": merchant, "allowed_origins": ["https://shop.example"]}))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    let sid = s["session_id"].as_str()?.to_owned();
                    let cs = s["client_secret"].as_str()?.to_owned();
                    let a: Value = client
                        .post(format!("{base}/checkout-api/v1/sessions/{cs}/authorize"))
                        .json(&json!({"order": order(n), "payment_method": "bank_transfer", "terms_accepted": true}))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    if a["state"] != "authorized" {
                        return None;
                    }
                    let c = client
                        .post(format!("{base}/v1/widget-sessions/{sid}/confirm-authorization"))
                        .basic_auth(&user, Some(&pass))
                        .json(&order(n))
                        .send()
                        .await
                        .ok()?;
                    c.status().is_success().then_some(())
                }
                .await;
                match ok {
                    Some(()) => lat.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    None => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let done = lat.len();
    // Let the worker catch up, then read its lag from /metrics.
    let expected = u64::try_from(done).unwrap() * 2;
    for _ in 0..100 {
        if received.load(Ordering::Relaxed) >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let lag = |q: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("webhook_first_attempt_lag_seconds{") && l.contains(&format!("quantile=\"{q}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("n/a")
            .to_owned()
    };
    println!(
        "{}",
        json!({
            "workers": workers, "seconds": elapsed, "checkouts": done, "checkouts_per_s": done as f64 / elapsed,
            "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "errors": errors.load(Ordering::Relaxed),
            "webhooks_received": received.load(Ordering::Relaxed), "webhooks_expected": expected,
            "webhook_first_attempt_lag_p50_s": lag("0.5"), "webhook_first_attempt_lag_p99_s": lag("0.99"),
        })
    );
}
