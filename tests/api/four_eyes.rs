//! Four eyes (SPEC §14.2): the listed admin actions wait as proposals until another operator
//! with the permission approves them; the effect then runs as the approver, checked against the
//! state of that moment, in the transaction that records the decision.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn spawn() -> TestApp {
    TestApp::spawn_with(|c| c.four_eyes = netterms::config::Config::default().four_eyes).await
}

/// An operator with `roles` and an admin API token of theirs.
async fn operator_token(app: &TestApp, email: &str, roles: &[&str]) -> String {
    // Made on the command line (never held back).
    let cli = netterms::service::audit::Actor::cli();
    let input = netterms::service::operators::NewOperator {
        email: Some(email.into()),
        name: Some(email.into()),
        roles: Some(roles.iter().map(|r| (*r).to_owned()).collect()),
    };
    let op = netterms::service::operators::create(&app.services, &cli, input).await.unwrap();
    let t = netterms::service::operators::create_token(&app.services, &cli, op.operator_id, "four eyes", None)
        .await
        .unwrap();
    app.secret(&t.token);
    t.token
}

fn as_op(app: &TestApp, token: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token).header("audit-reason", "as agreed on the phone")
}

async fn decide(app: &TestApp, token: &str, id: &str, verb: &str, reason: Option<&str>) -> Resp {
    let body = match reason {
        Some(r) => json!({"reason": r}),
        None => json!({}),
    };
    app.send(app.client.post(app.url(&format!("/admin/v1/approvals/{id}/{verb}"))).bearer_auth(token).json(&body)).await
}

async fn actions(app: &TestApp) -> Vec<Value> {
    let r = app.send(app.admin(Method::GET, "/admin/v1/audit-events?limit=100")).await;
    r.json()["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_credential_is_issued_only_when_a_second_operator_approves() {
    let app = spawn().await;
    let psp = app.create_psp().await;
    let anna = operator_token(&app, "anna@ops.example", &["admin"]).await;
    let bert = operator_token(&app, "bert@ops.example", &["admin"]).await;
    let rita = operator_token(&app, "rita@ops.example", &["risk"]).await;
    let path = format!("/admin/v1/psps/{}/credentials", psp.psp_id);

    let before = app.count("psp_credentials").await;
    let r = app.send(as_op(&app, &anna, Method::POST, &path)).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let p = r.json();
    assert_eq!(p["state"], "pending");
    assert_eq!(p["action"], "psp.credential_issued");
    assert_eq!(p["proposed_by"], "anna@ops.example (four eyes)");
    assert_eq!(p["reason"], "as agreed on the phone");
    let id = p["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(app.count("psp_credentials").await, before, "nothing issued yet");
    let pending = app.send(app.admin(Method::GET, "/admin/v1/approvals?state=pending")).await.json();
    assert_eq!(pending["data"].as_array().unwrap().len(), 1);

    // Not the proposer, not a role without the permission, not without a reason.
    decide(&app, &anna, &id, "approve", Some("me")).await.assert_error(403, "forbidden");
    decide(&app, &rita, &id, "approve", Some("looks fine")).await.assert_error(403, "forbidden");
    decide(&app, &rita, &id, "reject", Some("no")).await.assert_error(403, "forbidden");
    decide(&app, &bert, &id, "approve", None).await.assert_error(422, "request_validation_error");
    assert_eq!(app.count("psp_credentials").await, before);

    let r = decide(&app, &bert, &id, "approve", Some("checked with the PSP")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a = r.json();
    assert_eq!(a["state"], "approved");
    assert_eq!(a["decided_by"], "bert@ops.example (four eyes)");
    assert_eq!(a["result"]["status"], 201);
    assert!(a["result"]["body"]["password_url"].is_string());
    app.secret(a["result"]["body"]["password_url"].as_str().unwrap().rsplit('/').next().unwrap());
    assert_eq!(app.count("psp_credentials").await, before + 1);
    // The password link was in the answer once; what is kept of it is masked.
    let kept = app.send(app.admin(Method::GET, "/admin/v1/approvals?state=approved")).await.json();
    assert_eq!(kept["data"][0]["result"]["body"]["password_url"], "***", "{kept}");
    decide(&app, &bert, &id, "approve", Some("again")).await.assert_error(409, "state_conflict");
    assert_eq!(app.count("psp_credentials").await, before + 1);

    // The trail: proposed by Anna, done by Bert with his reason, naming the proposal.
    let trail = actions(&app).await;
    let proposed = trail.iter().find(|e| e["action"] == "approval.proposed").unwrap();
    assert_eq!(proposed["actor"], "anna@ops.example (four eyes)");
    let done = trail.iter().find(|e| e["action"] == "psp.credential_issued").unwrap();
    assert_eq!(done["actor"], "bert@ops.example (four eyes)");
    assert_eq!(done["reason"], "checked with the PSP");
    assert_eq!(done["changes"]["approval_id"], id.as_str());
    assert!(netterms::service::audit::verify(&app.services).await.unwrap().ok);
}

#[tokio::test]
async fn two_approvers_at_once_make_one_effect() {
    let app = spawn().await;
    let anna = operator_token(&app, "anna@ops.example", &["admin"]).await;
    let bert = operator_token(&app, "bert@ops.example", &["risk"]).await;
    let cara = operator_token(&app, "cara@ops.example", &["admin"]).await;
    let mut policy = app.send(app.admin(Method::GET, "/admin/v1/credit-policy")).await.json();
    policy["review_above"] = json!(123_400);
    let r = app.send(as_op(&app, &anna, Method::PUT, "/admin/v1/credit-policy").json(&policy)).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    assert_ne!(app.send(app.admin(Method::GET, "/admin/v1/credit-policy")).await.json()["review_above"], 123_400);
    let (a, b) = tokio::join!(
        decide(&app, &bert, &id, "approve", Some("risk agrees")),
        decide(&app, &cara, &id, "approve", Some("admin agrees"))
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text(), b.text());
    assert_eq!(app.send(app.admin(Method::GET, "/admin/v1/credit-policy")).await.json()["review_above"], 123_400);
    let changed = actions(&app).await.into_iter().filter(|e| e["action"] == "credit_policy.changed").count();
    assert_eq!(changed, 1, "one effect");
    // A reject racing an approval of another proposal: one outcome as well.
    policy["review_above"] = json!(99_900);
    let r = app.send(as_op(&app, &anna, Method::PUT, "/admin/v1/credit-policy").json(&policy)).await;
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    let (a, b) =
        tokio::join!(decide(&app, &bert, &id, "approve", Some("yes")), decide(&app, &cara, &id, "reject", Some("no")));
    let ok = [&a, &b].iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "{} / {}", a.text(), b.text());
    let state = app.send(app.admin(Method::GET, "/admin/v1/approvals")).await.json()["data"][1]["state"].clone();
    let now = app.send(app.admin(Method::GET, "/admin/v1/credit-policy")).await.json()["review_above"].clone();
    assert_eq!(
        state == "approved",
        now == 99_900,
        "the policy changed exactly when the proposal was approved ({state})"
    );
    assert!(netterms::service::audit::verify(&app.services).await.unwrap().ok);
}

#[tokio::test]
async fn a_proposal_can_be_rejected_expires_after_seven_days_and_is_checked_again_when_approved() {
    let app = spawn().await;
    let psp = app.create_psp().await;
    let anna = operator_token(&app, "anna@ops.example", &["admin"]).await;
    let bert = operator_token(&app, "bert@ops.example", &["admin"]).await;

    // Rejected: nothing happens, and it cannot be approved afterwards.
    let r = app
        .send(
            as_op(&app, &anna, Method::POST, "/admin/v1/operators")
                .json(&json!({"email": "new@ops.example", "name": "New", "roles": ["finance"]})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    let r = decide(&app, &bert, &id, "reject", Some("not hired yet")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "rejected");
    decide(&app, &bert, &id, "approve", Some("changed my mind")).await.assert_error(409, "state_conflict");
    let ops = app.send(app.admin(Method::GET, "/admin/v1/operators")).await.json();
    assert!(!ops["data"].as_array().unwrap().iter().any(|o| o["email"] == "new@ops.example"));

    // Expired after seven days.
    let r = app.send(as_op(&app, &anna, Method::POST, &format!("/admin/v1/psps/{}/credentials", psp.psp_id))).await;
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    app.services.clock.advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    decide(&app, &bert, &id, "approve", Some("late")).await.assert_error(409, "state_conflict");
    let all = app.send(app.admin(Method::GET, "/admin/v1/approvals?state=expired")).await.json();
    assert_eq!(all["data"][0]["approval_id"], id.as_str());
    assert!(actions(&app).await.iter().any(|e| e["action"] == "approval.expired" && e["actor_kind"] == "system"));

    // A PSP's other fields change at once; its payout account waits for four eyes, and is
    // checked when approved: an invalid account is refused then and the proposal stays pending.
    let r = app
        .send(
            as_op(&app, &anna, Method::PATCH, &format!("/admin/v1/psps/{}", psp.psp_id))
                .json(&json!({"fee_fixed": 30})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app
        .send(
            as_op(&app, &anna, Method::PATCH, &format!("/admin/v1/psps/{}", psp.psp_id))
                .json(&json!({"iban": "DE00 1234"})),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["action"], "psp.bank_account_changed");
    assert_eq!(r.json()["changes"]["iban"], "DE00 1234", "the decider sees what is approved");
    let proposed = actions(&app).await.into_iter().find(|e| e["action"] == "approval.proposed").unwrap();
    assert_eq!(proposed["changes"]["changes"]["iban"], "D***", "the audit trail keeps it masked: {proposed}");
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    let r = decide(&app, &bert, &id, "approve", Some("bank letter seen")).await;
    r.assert_error(409, "approval_failed");
    assert!(r.text().contains("iban"), "{}", r.text());
    let p = app.send(app.admin(Method::GET, "/admin/v1/approvals?state=pending")).await.json();
    assert_eq!(p["data"][0]["approval_id"], id.as_str());
    let iban = app.send(app.admin(Method::GET, &format!("/admin/v1/psps/{}", psp.psp_id))).await.json()["iban"].clone();
    assert_eq!(iban, "DE89370400440532013000");
    // A valid one goes through on approval.
    let r = app
        .send(
            as_op(&app, &anna, Method::PATCH, &format!("/admin/v1/psps/{}", psp.psp_id))
                .json(&json!({"iban": "DE02 1203 0000 0000 2020 51"})),
        )
        .await;
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    let r = decide(&app, &bert, &id, "approve", Some("bank letter seen")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let iban = app.send(app.admin(Method::GET, &format!("/admin/v1/psps/{}", psp.psp_id))).await.json()["iban"].clone();
    assert_eq!(iban, "DE02120300000000202051");
    assert!(netterms::service::audit::verify(&app.services).await.unwrap().ok);
}

/// A manual-review order in `waiting`, of `gross`.
async fn waiting_order(app: &TestApp, psp: &TestPsp, mid: &str, gross: i64) -> String {
    let sid = crate::checkout::widget_session(app, psp, mid).await;
    let order = crate::checkout::order_body("anna+review@kunde.example", gross);
    let body = json!({"order": order, "payment_method": "bank_transfer", "terms_accepted": true});
    let a = crate::checkout::authorize(app, &sid, body).await.json();
    assert_eq!(a["state"], "pre_waiting", "{a}");
    let path = format!("/v1/widget-sessions/{}/confirm-authorization", session_id_of(&sid));
    let c = app.send(app.psp(psp, Method::POST, &path).json(&order)).await;
    assert_eq!(c.json()["state"], "waiting");
    a["order_id"].as_str().unwrap().to_owned()
}

/// A risk operator approves a review order at once up to `four_eyes_amount`; above it the
/// approval waits for a second operator, and the order stays in review until then.
#[tokio::test]
async fn approving_a_large_order_in_review_takes_two_operators() {
    let app = TestApp::spawn_with(|c| {
        c.four_eyes = netterms::config::Config::default().four_eyes;
        c.four_eyes_amount = 10_000;
    })
    .await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let rita = operator_token(&app, "rita@ops.example", &["risk"]).await;
    let anna = operator_token(&app, "anna@ops.example", &["admin"]).await;
    let small = waiting_order(&app, &psp, &mid, 9_000).await;
    let large = waiting_order(&app, &psp, &mid, 11_900).await;

    let r = app.send(as_op(&app, &rita, Method::POST, &format!("/admin/v1/orders/{small}/approve"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "created");

    let r = app.send(as_op(&app, &rita, Method::POST, &format!("/admin/v1/orders/{large}/approve"))).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["action"], "order.approved_above_four_eyes_amount");
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    let order = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{large}"))).await.json();
    assert_eq!(order["state"], "waiting", "still in review");
    let r = decide(&app, &anna, &id, "approve", Some("buyer known for years")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let order = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{large}"))).await.json();
    assert_eq!(order["state"], "created");
    let approved = app.send(app.psp(&psp, Method::GET, "/v1/events?limit=100")).await.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "order.approved")
        .count();
    assert_eq!(approved, 2, "one event per order");
}

/// A support operator pauses dunning for up to 14 days; collections for longer (SPEC §14.1).
#[tokio::test]
async fn support_pauses_dunning_for_at_most_fourteen_days() {
    let app = spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let c = crate::dunning::capture(&app, &psp, &mid, "S-1").await;
    let id = c["capture_id"].as_str().unwrap().to_owned();
    let sam = operator_token(&app, "sam@ops.example", &["support"]).await;
    let cora = operator_token(&app, "cora@ops.example", &["collections"]).await;
    let path = format!("/admin/v1/captures/{id}/dunning/pause");
    let in_days =
        |d: i64| (app.services.clock.now() + chrono::Duration::days(d)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let r = app
        .send(as_op(&app, &sam, Method::POST, &path).json(&json!({"reason": "buyer on holiday", "until": in_days(20)})))
        .await;
    r.assert_error(422, "request_validation_error");
    assert!(r.text().contains("14 days"), "{}", r.text());
    let r = app
        .send(as_op(&app, &sam, Method::POST, &path).json(&json!({"reason": "buyer on holiday", "until": in_days(10)})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app
        .send(
            as_op(&app, &cora, Method::POST, &path)
                .json(&json!({"reason": "payment plan agreed", "until": in_days(60)})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Roles and access change over the admin API: a removed role and a deactivation take effect at
/// once (its token stops working), an added role waits for four eyes, the last active admin
/// keeps the role, and a second factor can be reset (the operator enrols again).
#[tokio::test]
async fn roles_change_access_ends_and_the_second_factor_is_reset() {
    let app = spawn().await;
    let anna = operator_token(&app, "anna@ops.example", &["admin"]).await;
    let bert = operator_token(&app, "bert@ops.example", &["admin"]).await;
    let sam = operator_token(&app, "sam@ops.example", &["support", "collections"]).await;
    let ops = app.send(app.admin(Method::GET, "/admin/v1/operators")).await.json();
    let id_of = |email: &str| {
        ops["data"].as_array().unwrap().iter().find(|o| o["email"] == email).unwrap()["operator_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (sam_id, anna_id) = (id_of("sam@ops.example"), id_of("anna@ops.example"));
    let patch = |token: &str, id: &str, body: Value| {
        as_op(&app, token, Method::PATCH, &format!("/admin/v1/operators/{id}")).json(&body)
    };

    // Removing a role: at once.
    let r = app.send(patch(&anna, &sam_id, json!({"roles": ["support"]}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["roles"], json!(["support"]));
    let r = app.send(as_op(&app, &sam, Method::POST, "/admin/v1/disputes").json(&json!({}))).await;
    r.assert_error(403, "forbidden");
    // Adding one: four eyes.
    let r = app.send(patch(&anna, &sam_id, json!({"roles": ["support", "finance"]}))).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["action"], "operator.role_added");
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(decide(&app, &bert, &id, "approve", Some("moves to finance")).await.status, 200);
    let ops = app.send(app.admin(Method::GET, "/admin/v1/operators")).await.json();
    let sam_now = ops["data"].as_array().unwrap().iter().find(|o| o["email"] == "sam@ops.example").unwrap().clone();
    assert_eq!(sam_now["roles"], json!(["finance", "support"]));
    // Deactivated: the token is refused at once.
    let r = app.send(patch(&anna, &sam_id, json!({"active": false}))).await;
    assert_eq!(r.status, 200);
    app.send(app.client.get(app.url("/admin/v1/operators")).bearer_auth(&sam)).await.assert_error(401, "unauthorized");
    // The last active admin keeps the role: Bert leaves (fine, Anna stays), then Anna cannot.
    let bert_id = id_of("bert@ops.example");
    assert_eq!(app.send(patch(&anna, &bert_id, json!({"active": false}))).await.status, 200);
    app.send(patch(&anna, &anna_id, json!({"active": false}))).await.assert_error(409, "state_conflict");
    app.send(patch(&anna, &anna_id, json!({"roles": ["root"]}))).await.assert_error(422, "request_validation_error");

    // Second factor reset.
    let r =
        app.send(as_op(&app, &anna, Method::POST, &format!("/admin/v1/operators/{bert_id}/second-factor-reset"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["second_factor"], false);
    let trail = actions(&app).await;
    let updated: Vec<&Value> = trail.iter().filter(|e| e["action"] == "operator.updated").collect();
    assert!(updated.iter().any(
        |e| e["changes"]["roles"]["before"] == "collections,support" && e["changes"]["roles"]["after"] == "support"
    ));
    assert!(updated.iter().any(|e| e["changes"]["active"]["after"] == false));
    assert!(trail.iter().any(|e| e["action"] == "operator.second_factor_reset"));
    assert!(netterms::service::audit::verify(&app.services).await.unwrap().ok);
}

/// A request the operation would refuse as unreadable is refused before it becomes a proposal:
/// nothing waits, nothing is written.
#[tokio::test]
async fn unreadable_requests_are_refused_not_proposed() {
    let app = spawn().await;
    let anna = operator_token(&app, "anna@ops.example", &["admin"]).await;
    let before = (app.count("approvals").await, app.count("audit_events").await);
    let put = |body: &str, ct: &str| {
        as_op(&app, &anna, Method::PUT, "/admin/v1/credit-policy").header("content-type", ct).body(body.to_owned())
    };
    app.send(put("[1, 2]", "application/json")).await.assert_error(400, "request_invalid");
    app.send(put("{\"review_above\": \"many\"}", "application/json")).await.assert_error(400, "request_invalid");
    app.send(put("review_above=5", "text/plain")).await.assert_error(400, "request_invalid");
    let r = app
        .send(
            as_op(&app, &anna, Method::POST, "/admin/v1/operators").json(&json!({"email": "x@ops.example", "name": 5})),
        )
        .await;
    r.assert_error(400, "request_invalid");
    assert_eq!((app.count("approvals").await, app.count("audit_events").await), before);
}

/// Two admins deactivating each other at once: one wins, one active admin is left.
#[tokio::test]
async fn two_admins_cannot_both_leave_at_once() {
    let app = spawn().await;
    let anna = operator_token(&app, "anna@ops.example", &["admin"]).await;
    let bert = operator_token(&app, "bert@ops.example", &["admin"]).await;
    let ops = app.send(app.admin(Method::GET, "/admin/v1/operators")).await.json();
    let id_of = |email: &str| {
        ops["data"].as_array().unwrap().iter().find(|o| o["email"] == email).unwrap()["operator_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (anna_id, bert_id) = (id_of("anna@ops.example"), id_of("bert@ops.example"));
    let off = json!({"active": false});
    let (a, b) = tokio::join!(
        app.send(as_op(&app, &anna, Method::PATCH, &format!("/admin/v1/operators/{bert_id}")).json(&off)),
        app.send(as_op(&app, &bert, Method::PATCH, &format!("/admin/v1/operators/{anna_id}")).json(&off))
    );
    let ok = [&a, &b].iter().filter(|r| r.status == 200).count();
    assert!(ok <= 1, "{} / {}", a.text(), b.text());
    let ops = app.send(app.admin(Method::GET, "/admin/v1/operators")).await.json();
    let active = ops["data"].as_array().unwrap().iter().filter(|o| o["active"] == true).count();
    assert_eq!(active, 2 - ok, "an active admin is left");
    assert!(active >= 1);
}
