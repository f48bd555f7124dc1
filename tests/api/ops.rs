use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    assert_eq!(app.send(app.client.get(app.url("/healthz"))).await.status, 200);
    assert_eq!(app.send(app.client.get(app.url("/readyz"))).await.status, 200);
    app.send(app.client.get(app.url("/v1/legal-forms"))).await;
    let m = app.send(app.client.get(app.url("/metrics"))).await;
    assert_eq!(m.status, 200);
    assert!(
        m.text().contains("http_requests_total{method=\"GET\",route=\"/v1/legal-forms\",status=\"200\"}"),
        "{}",
        m.text()
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let r = app.send(app.client.get(app.url("/healthz"))).await;
    assert!(!r.headers["x-request-id"].is_empty());
    let r = app.send(app.client.get(app.url("/v1/merchants")).header("x-request-id", "client-chosen-42")).await;
    assert_eq!(r.headers["x-request-id"], "client-chosen-42");
    assert_eq!(r.json()["request_id"], "client-chosen-42");
    // An unsafe client id is replaced.
    let r = app.send(app.client.get(app.url("/healthz")).header("x-request-id", "a b")).await;
    assert_ne!(r.headers["x-request-id"], "a b");
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_envelope() {
    let app = TestApp::spawn().await;
    app.send(app.client.get(app.url("/v1/nothing-here"))).await.assert_error(404, "resource_not_found");
    app.send(app.client.delete(app.url("/v1/legal-forms"))).await.assert_error(405, "method_not_allowed");
    let psp = app.create_psp().await;
    app.send(app.psp(&psp, Method::PUT, "/v1/merchants")).await.assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn openapi_is_served_and_matches_the_committed_file() {
    let app = TestApp::spawn().await;
    let r = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(r.status, 200);
    let served = r.text();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    assert!(served == committed, "openapi.json is stale: run `cargo run -- openapi > openapi.json`");
    let spec = r.json();
    assert_eq!(spec["openapi"], "3.1.0");
    for path in ["/v1/merchants", "/v1/merchants/{merchant_id}", "/v1/legal-forms", "/admin/v1/psps"] {
        assert!(spec["paths"].get(path).is_some(), "{path} missing");
    }
    // The reference page (Swagger UI) is served from the binary, nothing from elsewhere.
    assert_eq!(app.send(app.client.get(app.url("/docs"))).await.status, 303);
    let docs = app.send(app.client.get(app.url("/docs/"))).await;
    assert_eq!(docs.status, 200);
    let html = docs.text();
    assert!(html.contains("swagger-ui") && !html.contains("https://") && !html.contains("//cdn"));
    assert!(docs.headers["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    let init = app.send(app.client.get(app.url("/docs/swagger-initializer.js"))).await.text();
    assert!(init.contains("/openapi.json"), "{init}");
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        assert_eq!(app.send(app.client.get(app.url(asset))).await.status, 200, "{asset}");
    }
    // The front page points to it.
    assert!(app.send(app.client.get(app.url("/"))).await.text().contains("href=\"/docs/\""));
}

/// Sends every request body example of the OpenAPI document, in an order that gives each the
/// objects it needs, with the placeholder ids replaced by real ones: each must be accepted.
#[tokio::test]
async fn every_documented_example_is_accepted() {
    let app = TestApp::spawn().await;
    let spec = app.send(app.client.get(app.url("/openapi.json"))).await.json();
    // An operation with named examples (one per kind of object it is called on) is sent each.
    let example = |method: &str, path: &str| -> Value {
        let media = &spec["paths"][path][method]["requestBody"]["content"]["application/json"];
        match media.get("examples") {
            Some(named) => named["widget"]["value"].clone(),
            None => media["example"].clone(),
        }
    };
    let named = |method: &str, path: &str, name: &str| -> Value {
        spec["paths"][path][method]["requestBody"]["content"]["application/json"]["examples"][name]["value"].clone()
    };
    let mut documented = std::collections::BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            // Bodies of JSON (a bank statement is XML).
            if op.pointer("/requestBody/content/application~1json").is_some() {
                assert!(!example(method, path).is_null(), "{method} {path} has no example");
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let mut sent = std::collections::BTreeSet::new();
    let mut send =
        async |method: &str, path: &str, concrete: &str, auth: Option<&TestPsp>, replace: &[(&str, &str)]| {
            let mut body = example(method, path).to_string();
            for (from, to) in replace {
                body = body.replace(from, to);
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let req = match auth {
                Some(psp) => app.psp(psp, m, concrete),
                None if path.starts_with("/admin") => app.admin(m, concrete),
                None => app.client.request(m, app.url(concrete)),
            };
            let r = app.send(req.header("content-type", "application/json").body(body)).await;
            assert!(r.status.is_success(), "{method} {path}: {} {}", r.status, r.text());
            sent.insert((method.to_owned(), path.to_owned()));
            r.json()
        };
    let psp = send("post", "/admin/v1/psps", "/admin/v1/psps", None, &[]).await;
    send("post", "/admin/v1/operators", "/admin/v1/operators", None, &[]).await;
    let psp_id = psp["psp_id"].as_str().unwrap().to_owned();
    send("patch", "/admin/v1/psps/{psp_id}", &format!("/admin/v1/psps/{psp_id}"), None, &[]).await;
    send("put", "/admin/v1/credit-policy", "/admin/v1/credit-policy", None, &[]).await;
    let password = app.reveal(psp["password_url"].as_str().unwrap()).await;
    let p = TestPsp {
        psp_id: psp_id.clone(),
        username: psp["username"].as_str().unwrap().to_owned(),
        password,
        credential_id: String::new(),
    };
    let m = send("post", "/v1/merchants", "/v1/merchants", Some(&p), &[]).await;
    let mid = m["merchant_id"].as_str().unwrap().to_owned();
    let ids: &[(&str, &str)] = &[(netterms::web::examples::EXAMPLE_MERCHANT_ID, &mid)];
    send("post", "/v1/webhook-endpoints", "/v1/webhook-endpoints", Some(&p), &[]).await;
    let page = send("post", "/v1/payment-page-sessions", "/v1/payment-page-sessions", Some(&p), ids).await;
    // The payment page's own example is accepted by a payment-page session (and the widget's,
    // which sends an order, is not: the order is the session's).
    let page_secret = page["client_secret"].as_str().unwrap().to_owned();
    let authorize = "/checkout-api/v1/sessions/{client_secret}/authorize";
    let page_url = app.url(&format!("/checkout-api/v1/sessions/{page_secret}/authorize"));
    let refused = app.send(app.client.post(&page_url).json(&named("post", authorize, "widget"))).await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    let r = app.send(app.client.post(&page_url).json(&named("post", authorize, "payment_page"))).await;
    assert!(r.status.is_success(), "the payment-page example: {} {}", r.status, r.text());
    let w = send("post", "/v1/widget-sessions", "/v1/widget-sessions", Some(&p), ids).await;
    let (sid, cs) = (w["session_id"].as_str().unwrap().to_owned(), w["client_secret"].as_str().unwrap().to_owned());
    let path = "/checkout-api/v1/sessions/{client_secret}/authorize";
    let a = send("post", path, &format!("/checkout-api/v1/sessions/{cs}/authorize"), None, &[]).await;
    assert_eq!(a["state"], "authorized", "{a}");
    let path = "/v1/widget-sessions/{session_id}/confirm-authorization";
    let o = send("post", path, &format!("/v1/widget-sessions/{sid}/confirm-authorization"), Some(&p), &[]).await;
    let oid = o["order_id"].as_str().unwrap().to_owned();
    send("patch", "/v1/orders/{order_id}", &format!("/v1/orders/{oid}"), Some(&p), &[]).await;
    let c = send("post", "/v1/orders/{order_id}/captures", &format!("/v1/orders/{oid}/captures"), Some(&p), &[]).await;
    let cid = c["capture_id"].as_str().unwrap().to_owned();
    // The example's date, moved to a month from now (it must lie ahead).
    let until = (chrono::Utc::now() + chrono::Duration::days(30)).format("%Y-%m-%dT00:00:00Z").to_string();
    for op in ["pause", "resume"] {
        let path = format!("/admin/v1/captures/{{capture_id}}/dunning/{op}");
        let concrete = format!("/admin/v1/captures/{cid}/dunning/{op}");
        send("post", &path, &concrete, None, &[("2027-03-31T00:00:00Z", until.as_str())]).await;
    }
    for op in ["extend-duration", "refunds", "confirm-payment"] {
        let path = format!("/v1/captures/{{capture_id}}/{op}");
        send("post", &path, &format!("/v1/captures/{cid}/{op}"), Some(&p), &[]).await;
    }
    let mut conn = app.db().conn().await.unwrap();
    let buyer: netterms::store::StoreResult<uuid::Uuid> = async {
        Ok(netterms::with_conn!(&mut conn, c => {
            sqlx::query_scalar("SELECT buyer_id FROM orders WHERE id = $1").bind(uuid::Uuid::parse_str(&oid).unwrap())
                .fetch_one(&mut *c).await?
        }))
    }
    .await;
    let buyer = buyer.unwrap();
    drop(conn);
    send("patch", "/admin/v1/buyers/{buyer_id}", &format!("/admin/v1/buyers/{buyer}"), None, &[]).await;
    send("post", "/v1/sandbox/clock/advance", "/v1/sandbox/clock/advance", Some(&p), &[]).await;
    send("put", "/admin/v1/dunning-policy", "/admin/v1/dunning-policy", None, &[]).await;
    // An unmatched payment assigned to the invoice, another sent back.
    let cap: &[(&str, &str)] = &[(netterms::web::examples::EXAMPLE_CAPTURE_ID, &cid)];
    for op in ["assign", "refund"] {
        let pay = send("post", "/v1/sandbox/payments", "/v1/sandbox/payments", Some(&p), &[]).await;
        assert_eq!(pay["state"], "unmatched", "{pay}");
        let path = format!("/admin/v1/unmatched-payments/{{payment_id}}/{op}");
        let concrete = format!("/admin/v1/unmatched-payments/{}/{op}", pay["payment_id"].as_str().unwrap());
        send("post", &path, &concrete, None, cap).await;
    }
    // The buyer pays into its virtual IBAN with nothing open: its credit, sent back.
    let mut conn = app.db().conn().await.unwrap();
    let viban: netterms::store::StoreResult<String> = async {
        Ok(netterms::with_conn!(&mut conn, c => {
            sqlx::query_scalar("SELECT virtual_iban FROM buyers WHERE id = $1").bind(buyer).fetch_one(&mut *c).await?
        }))
    }
    .await;
    drop(conn);
    let credit = app
        .send(app.psp(&p, Method::POST, "/v1/sandbox/payments").json(&json!({
            "iban": viban.unwrap(), "amount": {"currency": "EUR", "value": 5000}, "debtor_name": "Kunde Maschinenbau GmbH"
        })))
        .await;
    assert_eq!(credit.json()["credit"], 5000, "{}", credit.text());
    let path = "/admin/v1/buyers/{buyer_id}/credit-refunds";
    send("post", path, &format!("/admin/v1/buyers/{buyer}/credit-refunds"), None, &[]).await;
    // A return naming no collection of ours, applied to one by an operator; another dismissed.
    let dd2 = crate::payments::direct_debit_capture(&app, &p, &mid, "INV-DD-2").await;
    let due2: chrono::NaiveDate = dd2["due_date"].as_str().unwrap().parse().unwrap();
    crate::dunning::advance_to(&app, &p, crate::sepa_xsd::collection_day(due2)).await;
    let files = app.send(app.admin(Method::GET, "/admin/v1/direct-debit-files")).await.json();
    let e2e = files["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["collections"].as_array().unwrap().iter())
        .find(|c| c["capture_id"] == dd2["capture_id"])
        .map(|c| c["end_to_end_id"].as_str().unwrap().to_owned())
        .unwrap();
    for (r, e) in [("OPS-RET-1", "OTHER-E2E-1"), ("OPS-RET-2", "OTHER-E2E-2")] {
        use crate::camt::{Dialect, Ntry, Tx, camt053};
        let stray = Ntry {
            credit: false,
            txs: vec![Tx {
                amount: Some(11900),
                e2e: Some(e.into()),
                return_code: Some("MS03".into()),
                ..Tx::default()
            }],
            ..Ntry::credit(r, 11900, Tx::default())
        };
        let s = crate::payments::import(&app, &camt053(Dialect::V02, r, &[stray])).await;
        assert_eq!(s["unmatched"], 1, "{s}");
    }
    let held = app.send(app.admin(Method::GET, "/admin/v1/unmatched-returns?state=open")).await.json();
    let held: Vec<String> = held["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["unmatched_return_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(held.len(), 2);
    let path = "/admin/v1/unmatched-returns/{unmatched_return_id}/apply";
    let example_e2e = netterms::web::examples::EXAMPLE_END_TO_END_ID;
    let concrete = format!("/admin/v1/unmatched-returns/{}/apply", held[0]);
    send("post", path, &concrete, None, &[(example_e2e, e2e.as_str())]).await;
    let path = "/admin/v1/unmatched-returns/{unmatched_return_id}/dismiss";
    send("post", path, &format!("/admin/v1/unmatched-returns/{}/dismiss", held[1]), None, &[]).await;
    // A direct debit collected on its due date, then returned.
    let dd = crate::payments::direct_debit_capture(&app, &p, &mid, "INV-DD-1").await;
    let due: chrono::NaiveDate = dd["due_date"].as_str().unwrap().parse().unwrap();
    crate::dunning::advance_to(&app, &p, due + chrono::Duration::days(1)).await;
    let dd_id = dd["capture_id"].as_str().unwrap();
    let dd_ids: &[(&str, &str)] = &[(netterms::web::examples::EXAMPLE_CAPTURE_ID, dd_id)];
    send("post", "/v1/sandbox/direct-debit-returns", "/v1/sandbox/direct-debit-returns", Some(&p), dd_ids).await;
    // The returned invoice disputed in the sandbox, defended, resolved; then disputed by an operator.
    let d = send("post", "/v1/sandbox/disputes", "/v1/sandbox/disputes", Some(&p), dd_ids).await;
    let did = d["id"].as_str().unwrap();
    send("post", "/v1/disputes/{dispute_id}/defend", &format!("/v1/disputes/{did}/defend"), Some(&p), &[]).await;
    send("post", "/admin/v1/disputes/{dispute_id}/close", &format!("/admin/v1/disputes/{did}/close"), None, &[]).await;
    send("post", "/admin/v1/disputes", "/admin/v1/disputes", None, dd_ids).await;
    send("put", "/admin/v1/base-rates/{valid_from}", "/admin/v1/base-rates/2026-07-01", None, &[]).await;
    // A buyer's support request (as the portal stores it), answered.
    let request = uuid::Uuid::now_v7();
    let mut tx = app.db().begin().await.unwrap();
    let new = netterms::store::portal::NewSupport {
        id: request,
        email: "anna@kunde.example",
        psp_id: netterms::domain::ids::PspId(uuid::Uuid::parse_str(&psp_id).unwrap()),
        capture_id: None,
        locale: "de",
        subject: "Rechnungskopie",
        body: "Bitte senden Sie mir eine Kopie.",
        attachment: None,
    };
    netterms::store::portal::insert_support(&mut tx, &new, chrono::Utc::now()).await.unwrap();
    tx.commit().await.unwrap();
    let path = "/admin/v1/support-requests/{support_request_id}/answer";
    send("post", path, &format!("/admin/v1/support-requests/{request}/answer"), None, &[]).await;

    // Four eyes: two proposals of an operator (made through the use case), decided by the
    // bootstrap token.
    let cli = netterms::service::audit::Actor::cli();
    let input = netterms::service::operators::NewOperator {
        email: Some("proposer@ops.example".into()),
        name: Some("Proposer".into()),
        roles: Some(vec!["admin".into()]),
    };
    let op = netterms::service::operators::create(&app.services, &cli, input).await.unwrap();
    let proposer = netterms::service::audit::Actor {
        kind: netterms::service::audit::ActorKind::Token,
        operator_id: Some(op.operator_id),
        label: "Proposer".into(),
        roles: netterms::domain::operators::Roles::new(vec![netterms::domain::operators::Role::Admin]),
        request_id: None,
        client_ip: None,
    };
    let input = netterms::service::operators::NewOperator {
        email: Some("example@ops.example".into()),
        name: Some("Example".into()),
        roles: Some(vec!["support".into()]),
    };
    let ex = netterms::service::operators::create(&app.services, &cli, input).await.unwrap();
    let path = "/admin/v1/operators/{operator_id}";
    send("patch", path, &format!("/admin/v1/operators/{}", ex.operator_id), None, &[]).await;
    for verb in ["approve", "reject"] {
        let p = netterms::service::approvals::Proposal {
            action: "credit_policy.changed",
            method: "GET",
            route: "/admin/v1/credit-policy",
            path: "/admin/v1/credit-policy",
            body: String::new(),
            summary: json!({}),
            object_kind: None,
            object_id: None,
            reason: "example",
        };
        let a = netterms::service::approvals::propose(&app.services, &proposer, p).await.unwrap();
        let path = format!("/admin/v1/approvals/{{approval_id}}/{verb}");
        let r = send("post", &path, &format!("/admin/v1/approvals/{}/{verb}", a.approval_id), None, &[]).await;
        assert_eq!(r["state"], if verb == "approve" { "approved" } else { "rejected" }, "{r}");
    }
    assert_eq!(sent, documented, "every documented example was sent");
}

/// The README's webhook table lists every event type the code can emit, and nothing else.
#[test]
fn the_readme_lists_every_event_type() {
    let readme = include_str!("../../README.md");
    // The rows of the table under the header `| type | when | ...`.
    let listed: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| type | when |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    assert!(!listed.is_empty(), "the README has its webhook table");
    let catalogue: Vec<&str> = netterms::domain::events::catalogue().iter().map(|d| d.event_type).collect();
    for t in &catalogue {
        assert!(listed.contains(t), "README does not list {t}");
    }
    for t in &listed {
        assert!(catalogue.contains(t), "README lists {t}, which netterms does not emit");
    }
}
