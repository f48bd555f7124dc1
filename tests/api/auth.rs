use reqwest::Method;

use crate::helpers::*;

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_with_a_challenge() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;

    let none = app.send(app.client.get(app.url("/v1/merchants"))).await;
    none.assert_error(401, "unauthorized");
    assert!(none.headers["www-authenticate"].to_str().unwrap().starts_with("Basic realm=\"netterms\""));

    let wrong =
        app.send(app.client.get(app.url("/v1/merchants")).basic_auth(&psp.username, Some("not-the-password"))).await;
    wrong.assert_error(401, "unauthorized");

    let unknown = app.send(app.client.get(app.url("/v1/merchants")).basic_auth("nobody_x", Some(&psp.password))).await;
    unknown.assert_error(401, "unauthorized");
    // Unknown user and wrong password look the same.
    assert_eq!(unknown.json()["errors"], wrong.json()["errors"]);

    let garbage = app.send(app.client.get(app.url("/v1/merchants")).header("authorization", "Basic %%%")).await;
    garbage.assert_error(401, "unauthorized");

    let ok = app.send(app.psp(&psp, Method::GET, "/v1/merchants")).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn rotation_keeps_both_credentials_until_the_old_is_revoked() {
    let app = TestApp::spawn().await;
    let old = app.create_psp().await;

    let issued = app.send(app.admin(Method::POST, &format!("/admin/v1/psps/{}/credentials", old.psp_id))).await;
    assert_eq!(issued.status, 201, "{}", issued.text());
    let v = issued.json();
    let new = TestPsp {
        password: app.reveal(v["password_url"].as_str().unwrap()).await,
        username: v["username"].as_str().unwrap().to_owned(),
        credential_id: v["credential_id"].as_str().unwrap().to_owned(),
        psp_id: old.psp_id.clone(),
    };
    assert!(new.username.starts_with(&format!("{}_", old.psp_id)));
    assert_eq!(app.send(app.psp(&old, Method::GET, "/v1/merchants")).await.status, 200);
    assert_eq!(app.send(app.psp(&new, Method::GET, "/v1/merchants")).await.status, 200);

    let revoked = app
        .send(
            app.admin(Method::POST, &format!("/admin/v1/psps/{}/credentials/{}/revoke", old.psp_id, old.credential_id)),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert!(revoked.json()["revoked_at"].is_string());

    app.send(app.psp(&old, Method::GET, "/v1/merchants")).await.assert_error(401, "unauthorized");
    app.send(app.psp(&old, Method::POST, "/v1/merchants").json(&merchant_body("m")))
        .await
        .assert_error(401, "unauthorized");
    assert_eq!(app.send(app.psp(&new, Method::GET, "/v1/merchants")).await.status, 200);
    assert_eq!(app.count("merchants").await, 0);

    let list = app.send(app.admin(Method::GET, &format!("/admin/v1/psps/{}/credentials", old.psp_id))).await;
    let creds = list.json()["data"].as_array().unwrap().clone();
    assert_eq!(creds.len(), 2);
    assert!(!list.text().contains(&old.password) && !list.text().contains(&new.password));
}

#[tokio::test]
async fn repeated_failures_are_slowed_down_but_never_lock_out_a_valid_credential() {
    let app = TestApp::spawn_with(|c| c.auth_failure_limit = 3).await;
    let psp = app.create_psp().await;
    let wrong = || app.client.get(app.url("/v1/merchants")).basic_auth(&psp.username, Some("wrong"));
    for _ in 0..3 {
        app.send(wrong()).await.assert_error(401, "unauthorized");
    }
    // Past the limit, failures wait longer and longer (250 ms, 500 ms, …) and are answered 429.
    let mut waited = Vec::new();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let r = app.send(wrong()).await;
        waited.push(started.elapsed());
        r.assert_error(429, "rate_limited");
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
    }
    assert!(waited[0] >= std::time::Duration::from_millis(250), "{waited:?}");
    assert!(waited[1] >= std::time::Duration::from_millis(500), "{waited:?}");
    // The owner of the credential still gets in, from the same address, at once.
    assert_eq!(app.send(app.psp(&psp, Method::GET, "/v1/merchants")).await.status, 200);
    // Per address and username: another PSP at the same address, and the operator (counted
    // apart), still get in.
    let other = app.create_psp().await;
    assert_eq!(app.send(app.psp(&other, Method::GET, "/v1/merchants")).await.status, 200);
    assert_eq!(app.send(app.admin(Method::GET, "/admin/v1/psps")).await.status, 200);
    for _ in 0..3 {
        app.send(app.client.get(app.url("/admin/v1/psps")).bearer_auth("wrong-token-0123456789")).await;
    }
    let r = app.send(app.client.get(app.url("/admin/v1/psps")).bearer_auth("wrong-token-0123456789")).await;
    r.assert_error(429, "rate_limited");
    assert_eq!(
        app.send(app.admin(Method::GET, "/admin/v1/psps")).await.status,
        200,
        "the operator is never locked out"
    );
    assert_eq!(app.send(app.psp(&other, Method::GET, "/v1/merchants")).await.status, 200);
}

/// Guessing across many usernames from one address (spraying) is slowed down too.
#[tokio::test]
async fn spraying_usernames_from_one_address_is_slowed_down() {
    let app = TestApp::spawn_with(|c| {
        c.auth_failure_limit = 3;
        c.auth_failures_per_address = 5;
    })
    .await;
    let guess =
        |n: usize| app.client.get(app.url("/v1/merchants")).basic_auth(format!("psp_guess{n}"), Some("Summer2026!"));
    for n in 0..5 {
        app.send(guess(n)).await.assert_error(401, "unauthorized");
    }
    app.send(guess(5)).await.assert_error(429, "rate_limited");
    app.send(guess(6)).await.assert_error(429, "rate_limited");
}

/// Behind a trusted proxy every client has its own counters: the client is the right-most
/// untrusted address of `X-Forwarded-For`. Without `trusted_proxies` the header is ignored.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_is_counted_apart() {
    for trusted in [true, false] {
        let app = TestApp::spawn_with(|c| {
            c.auth_failure_limit = 2;
            if trusted {
                c.trusted_proxies = vec!["127.0.0.0/8".into()];
            }
        })
        .await;
        let psp = app.create_psp().await;
        let from = |client: &str| {
            app.client
                .get(app.url("/v1/merchants"))
                .basic_auth(&psp.username, Some("wrong"))
                .header("x-forwarded-for", format!("203.0.113.50, {client}"))
        };
        for _ in 0..2 {
            app.send(from("198.51.100.1")).await.assert_error(401, "unauthorized");
        }
        app.send(from("198.51.100.1")).await.assert_error(429, "rate_limited");
        let other = app.send(from("198.51.100.2")).await;
        if trusted {
            other.assert_error(401, "unauthorized");
        } else {
            other.assert_error(429, "rate_limited");
        }
    }
}

#[tokio::test]
async fn password_link_works_once_then_410() {
    let app = TestApp::spawn().await;
    let r = app
        .send(app.admin(Method::POST, "/admin/v1/psps").json(&serde_json::json!({
            "name": "P", "fee_rate_bps": 100, "fee_fixed": 0, "iban": "DE89370400440532013000", "payout_frequency": "daily"
        })))
        .await;
    let v = r.json();
    let url = v["password_url"].as_str().unwrap().to_owned();
    app.secret(url.rsplit('/').next().unwrap());
    assert!(url.starts_with(&app.base));
    // The username has the documented shape.
    let username = v["username"].as_str().unwrap();
    let (prefix, random) = username.rsplit_once('_').unwrap();
    assert_eq!(prefix, v["psp_id"].as_str().unwrap());
    assert_eq!(random.len(), 16);
    assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));
    // No response of the admin API carries the password.
    assert!(r.text().find("password\"").is_none());

    let first = app.send(app.client.get(&url).header("accept", "application/json")).await;
    assert_eq!(first.status, 200);
    let pw = first.json()["password"].as_str().unwrap().to_owned();
    app.secret(&pw);
    assert!(pw.len() >= 32 && pw.chars().all(|c| c.is_ascii_alphanumeric()));

    let second = app.send(app.client.get(&url).header("accept", "application/json")).await;
    second.assert_error(410, "gone");
    let html = app.send(app.client.get(&url)).await;
    assert_eq!(html.status, 410);
    assert!(!html.text().contains(&pw));

    // The password works.
    let ok = app.send(app.client.get(app.url("/v1/merchants")).basic_auth(username, Some(&pw))).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn password_page_reveals_on_button_press_only_once() {
    let app = TestApp::spawn().await;
    let r = app
        .send(app.admin(Method::POST, &format!("/admin/v1/psps/{}/credentials", app.create_psp().await.psp_id)))
        .await;
    let url = r.json()["password_url"].as_str().unwrap().to_owned();
    app.secret(url.rsplit('/').next().unwrap());

    // Opening the page (as a link preview would) does not use the link up.
    for _ in 0..2 {
        let page = app.send(app.client.get(&url)).await;
        assert_eq!(page.status, 200);
        assert!(page.text().contains("Reveal password"));
        assert_eq!(page.headers["cache-control"], "no-store");
    }
    let revealed = app.send(app.client.post(&url)).await;
    assert_eq!(revealed.status, 200);
    let text = revealed.text();
    let start = text.find("<code>").unwrap() + 6;
    let pw = &text[start..start + 40];
    app.secret(pw);
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(app.send(app.client.post(&url)).await.status, 410);
    assert_eq!(app.send(app.client.get(&url)).await.status, 410);
}

#[tokio::test]
async fn expired_and_unknown_links() {
    let app = TestApp::spawn().await;
    let r = app
        .send(app.admin(Method::POST, "/admin/v1/psps").json(&serde_json::json!({
            "name": "P", "fee_rate_bps": 100, "fee_fixed": 0, "iban": "DE89370400440532013000", "payout_frequency": "daily"
        })))
        .await;
    let url = r.json()["password_url"].as_str().unwrap().to_owned();
    app.secret(url.rsplit('/').next().unwrap());
    app.execute("UPDATE password_links SET expires_at = (SELECT created_at FROM psps LIMIT 1)").await;
    app.send(app.client.get(&url).header("accept", "application/json")).await.assert_error(410, "gone");
    let unknown = app.send(app.client.get(app.url("/credentials/nope")).header("accept", "application/json")).await;
    unknown.assert_error(404, "resource_not_found");
}

#[tokio::test]
async fn admin_api_needs_its_token_and_without_one_only_operators_tokens() {
    let app = TestApp::spawn().await;
    app.send(app.client.get(app.url("/admin/v1/psps"))).await.assert_error(401, "unauthorized");
    app.send(app.client.get(app.url("/admin/v1/psps")).bearer_auth("wrong-token-wrong-token"))
        .await
        .assert_error(401, "unauthorized");
    let psp = app.create_psp().await;
    // A PSP credential is not an admin credential.
    app.send(app.client.get(app.url("/admin/v1/psps")).basic_auth(&psp.username, Some(&psp.password)))
        .await
        .assert_error(401, "unauthorized");

    // Without a configured admin_token the bootstrap token is nothing; an operator's token
    // works, and a request without any says what the admin API takes.
    let off = TestApp::spawn_with(|c| c.admin_token = None).await;
    off.send(off.client.get(off.url("/admin/v1/psps")).bearer_auth(ADMIN_TOKEN))
        .await
        .assert_error(401, "unauthorized");
    off.send(off.client.get(off.url("/admin/v1/psps"))).await.assert_error(403, "forbidden");
    let actor = netterms::service::audit::Actor::cli();
    let op = netterms::service::operators::create(
        &off.services,
        &actor,
        netterms::service::operators::NewOperator {
            email: Some("ops@ops.example".into()),
            name: Some("Ops".into()),
            roles: Some(vec!["read_only".into()]),
        },
    )
    .await
    .unwrap();
    let t = netterms::service::operators::create_token(&off.services, &actor, op.operator_id, "test", Some(1))
        .await
        .unwrap();
    off.secret(&t.token);
    assert_eq!(off.send(off.client.get(off.url("/admin/v1/psps")).bearer_auth(&t.token)).await.status, 200);
    // Revoked: refused at once.
    let r = netterms::service::operators::create_token(&off.services, &actor, op.operator_id, "revoked", None)
        .await
        .unwrap();
    off.secret(&r.token);
    assert_eq!(off.send(off.client.get(off.url("/admin/v1/psps")).bearer_auth(&r.token)).await.status, 200);
    netterms::service::operators::revoke_token(&off.services, &actor, op.operator_id, r.token_id).await.unwrap();
    off.send(off.client.get(off.url("/admin/v1/psps")).bearer_auth(&r.token)).await.assert_error(401, "unauthorized");
    // Expired: refused.
    off.services.clock.advance(chrono::Duration::days(2));
    off.send(off.client.get(off.url("/admin/v1/psps")).bearer_auth(&t.token)).await.assert_error(401, "unauthorized");
}
