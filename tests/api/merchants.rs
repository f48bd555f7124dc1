use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn activate_get_list_deactivate_reactivate() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let m = app.create_merchant(&psp, "merchant-1").await;
    let id = m["merchant_id"].as_str().unwrap();
    assert_eq!(m["status"], "active");
    assert_eq!(m["external_id"], "merchant-1");
    assert_eq!(m["address"]["postal_code"], "10117");
    assert_eq!(m["payment_terms"], json!({"min_duration": 14, "max_duration": 60, "default_duration": 30}));

    let got = app.send(app.psp(&psp, Method::GET, &format!("/v1/merchants/{id}"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), m);

    let off = app.send(app.psp(&psp, Method::POST, &format!("/v1/merchants/{id}/deactivate"))).await;
    assert_eq!(off.status, 200, "{}", off.text());
    assert_eq!(off.json()["status"], "inactive");
    // Deactivating again changes nothing and writes no second event.
    let again = app.send(app.psp(&psp, Method::POST, &format!("/v1/merchants/{id}/deactivate"))).await;
    assert_eq!(again.json()["status"], "inactive");
    let on = app.send(app.psp(&psp, Method::POST, &format!("/v1/merchants/{id}/reactivate"))).await;
    assert_eq!(on.json()["status"], "active");

    let mut conn = app.db().conn().await.unwrap();
    let psp_id = psp.psp_id.parse().unwrap();
    let types = netterms::store::events::types_for_psp(&mut conn, psp_id).await.unwrap();
    assert_eq!(types, ["merchant.activated", "merchant.deactivated", "merchant.activated"]);
}

#[tokio::test]
async fn list_paginates_newest_first() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let other = app.create_psp().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.create_merchant(&psp, &format!("m-{i}")).await["merchant_id"].as_str().unwrap().to_owned());
    }
    app.create_merchant(&other, "foreign").await;
    ids.reverse();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/merchants?limit=2&starting_after={a}"),
            None => "/v1/merchants?limit=2".to_owned(),
        };
        let page = app.send(app.psp(&psp, Method::GET, &path)).await.json();
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|m| m["merchant_id"].as_str().unwrap().to_owned()));
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        after = seen.last().cloned();
    }
    assert_eq!(seen, ids);

    for bad in ["limit=0", "limit=101"] {
        let r = app.send(app.psp(&psp, Method::GET, &format!("/v1/merchants?{bad}"))).await;
        r.assert_error(422, "request_validation_error");
        assert_eq!(r.sources(), ["limit"]);
    }
    app.send(app.psp(&psp, Method::GET, "/v1/merchants?limit=abc")).await.assert_error(400, "request_invalid");
}

#[tokio::test]
async fn duplicate_external_id_is_409_per_psp() {
    let app = TestApp::spawn().await;
    let a = app.create_psp().await;
    let b = app.create_psp().await;
    app.create_merchant(&a, "same").await;
    let before = app.snapshot().await;
    let dup = app.send(app.psp(&a, Method::POST, "/v1/merchants").json(&merchant_body("same"))).await;
    dup.assert_error(409, "resource_already_exists");
    assert_eq!(app.snapshot().await, before);
    // Another PSP may use the same reference.
    app.create_merchant(&b, "same").await;
}

#[tokio::test]
async fn another_psps_merchant_is_404_exactly_like_an_unknown_one() {
    let app = TestApp::spawn().await;
    let owner = app.create_psp().await;
    let intruder = app.create_psp().await;
    let m = app.create_merchant(&owner, "private").await;
    let id = m["merchant_id"].as_str().unwrap();
    let unknown = uuid::Uuid::now_v7().to_string();
    let before = app.snapshot().await;

    for (method, suffix) in [(Method::GET, ""), (Method::POST, "/deactivate"), (Method::POST, "/reactivate")] {
        let foreign = app.send(app.psp(&intruder, method.clone(), &format!("/v1/merchants/{id}{suffix}"))).await;
        let missing = app.send(app.psp(&intruder, method.clone(), &format!("/v1/merchants/{unknown}{suffix}"))).await;
        foreign.assert_error(404, "resource_not_found");
        missing.assert_error(404, "resource_not_found");
        assert_eq!(foreign.json()["errors"], missing.json()["errors"]);
        assert_eq!(foreign.headers.get("content-type"), missing.headers.get("content-type"));
    }
    let list = app.send(app.psp(&intruder, Method::GET, "/v1/merchants")).await.json();
    assert_eq!(list["data"], json!([]));
    // Paging from another PSP's id shows nothing of it either.
    let list = app.send(app.psp(&intruder, Method::GET, &format!("/v1/merchants?starting_after={id}"))).await.json();
    assert_eq!(list["data"], json!([]));
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.send(app.psp(&owner, Method::GET, &format!("/v1/merchants/{id}"))).await.json()["status"], "active");
    // A malformed id is just another unknown id.
    app.send(app.psp(&intruder, Method::GET, "/v1/merchants/not-a-uuid")).await.assert_error(404, "resource_not_found");
}

#[tokio::test]
async fn unreadable_bodies_are_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let before = app.snapshot().await;
    let post = |body: &'static str, ct: &'static str| {
        app.psp(&psp, Method::POST, "/v1/merchants").header("content-type", ct).body(body)
    };

    app.send(post("{\"external_id\": ", "application/json")).await.assert_error(400, "request_invalid");
    app.send(post("", "application/json")).await.assert_error(400, "request_invalid");
    app.send(post("[1,2]", "application/json")).await.assert_error(400, "request_invalid");
    app.send(post("external_id=x", "application/x-www-form-urlencoded")).await.assert_error(400, "request_invalid");
    app.send(app.psp(&psp, Method::POST, "/v1/merchants").body("{}")).await.assert_error(400, "request_invalid");

    let mut wrong = merchant_body("x");
    wrong["address"]["postal_code"] = json!(10117);
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&wrong)).await;
    r.assert_error(400, "request_invalid");
    assert_eq!(r.sources(), ["address.postal_code"]);

    let mut wrong = merchant_body("x");
    wrong["payment_terms"]["min_duration"] = json!("fourteen");
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&wrong)).await;
    assert_eq!(r.sources(), ["payment_terms.min_duration"]);

    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn invalid_fields_are_422_with_each_source_and_change_nothing() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let before = app.snapshot().await;

    let mut body = merchant_body("x");
    body["name"] = json!("  ");
    body["legal_form"] = json!("12345678");
    body["tax_id"] = json!("DE12");
    body["address"]["country"] = json!("XX");
    body["contact"]["email"] = json!("not-an-email");
    body["website"] = json!("shop.example");
    body["payment_terms"] = json!({"min_duration": 3, "max_duration": 200});
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&body)).await;
    r.assert_error(422, "request_validation_error");
    let mut sources = r.sources();
    sources.sort();
    assert_eq!(
        sources,
        [
            "address.country",
            "contact.email",
            "legal_form",
            "name",
            "payment_terms.max_duration",
            "payment_terms.min_duration",
            "tax_id",
            "website"
        ]
    );

    // The identifier the legal form requires.
    let mut body = merchant_body("y");
    body.as_object_mut().unwrap().remove("registration_number");
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&body)).await;
    assert_eq!(r.sources(), ["registration_number"]);

    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&json!({}))).await;
    let mut sources = r.sources();
    sources.sort();
    assert_eq!(sources, ["address", "contact", "external_id", "legal_form", "name"]);

    let mut body = merchant_body("z");
    body["address"]["postal_code"] = json!("1011");
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&body)).await;
    assert_eq!(r.sources(), ["address.postal_code"]);

    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 4096).await;
    let psp = app.create_psp().await;
    let mut body = merchant_body("big");
    body["industry_sector"] = Value::String("x".repeat(10_000));
    let before = app.snapshot().await;
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&body)).await;
    r.assert_error(413, "request_too_large");
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").header("idempotency-key", "big-1").json(&body)).await;
    r.assert_error(413, "request_too_large");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn legal_forms_need_no_auth() {
    let app = TestApp::spawn().await;
    let r = app.send(app.client.get(app.url("/v1/legal-forms"))).await;
    assert_eq!(r.status, 200);
    let forms = r.json()["data"].as_array().unwrap().clone();
    let gmbh = forms.iter().find(|f| f["code"] == "10001").unwrap();
    assert_eq!(gmbh["required_input"], "registration_number");
    let einzel = forms.iter().find(|f| f["code"] == "6022").unwrap();
    assert_eq!(einzel["required_input"], "tax_id");
    assert!(forms.iter().any(|f| f["code"] == "99999"));
}
