use reqwest::Method;

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
