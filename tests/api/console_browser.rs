//! The operator console in headless Chromium: the first admin (made on the command line) sets a
//! password, signs in, enrols TOTP (the test computes the codes), adds a risk and a finance
//! colleague, creates an API token, reads the audit trail and signs in again with the second
//! factor. Every page is checked with axe-core (no serious or critical violation) and shot in
//! both languages at 1440 px and tablet width into `test-artifacts/`.
//!
//! axe-core comes from npm (`axe-core`): `NETTERMS_AXE_JS` names its `axe.min.js`. Without it
//! the accessibility check says it skipped, unless `NETTERMS_REQUIRE_TOOLS` is set (CI).

use fantoccini::{Client, Locator};

use crate::browser::{browser, full_shot, text, wait_url};
use crate::helpers::*;
use crate::operators::PASSWORD;

fn axe_source() -> Option<String> {
    let path = std::env::var("NETTERMS_AXE_JS").ok().filter(|p| !p.is_empty());
    match path.and_then(|p| std::fs::read_to_string(p).ok()) {
        Some(s) => Some(s),
        None => {
            assert!(std::env::var("NETTERMS_REQUIRE_TOOLS").is_err(), "axe-core is required: set NETTERMS_AXE_JS");
            eprintln!("NETTERMS_AXE_JS not set: accessibility checks skipped (npm install axe-core)");
            None
        }
    }
}

/// Runs axe-core on the current page; fails on any serious or critical violation.
async fn accessible(c: &Client, axe: &Option<String>, page: &str) {
    let Some(src) = axe else { return };
    c.execute(src, vec![]).await.unwrap();
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']})
               .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(' | '))))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    let list = found.as_array().cloned().unwrap_or_default();
    assert!(list.is_empty(), "{page}: {list:?}");
}

/// The page at `path` in English and German, checked and shot at 1440 px and 820 px (tablet).
async fn shots(c: &Client, axe: &Option<String>, base: &str, path: &str, name: &str) {
    let sep = if path.contains('?') { '&' } else { '?' };
    for lang in ["en", "de"] {
        c.goto(&format!("{base}{path}{sep}lang={lang}")).await.unwrap();
        c.wait().for_element(Locator::Css("main")).await.unwrap();
        assert_eq!(c.find(Locator::Css("html")).await.unwrap().attr("lang").await.unwrap().as_deref(), Some(lang));
        accessible(c, axe, &format!("{path} ({lang})")).await;
        full_shot(c, &format!("console-{name}-{lang}-desktop.png"), 1440).await;
        full_shot(c, &format!("console-{name}-{lang}-tablet.png"), 820).await;
    }
}

/// The page as it stands (a form's answer), checked and shot at both widths.
async fn shot_here(c: &Client, axe: &Option<String>, name: &str) {
    accessible(c, axe, name).await;
    full_shot(c, &format!("console-{name}-desktop.png"), 1440).await;
    full_shot(c, &format!("console-{name}-tablet.png"), 820).await;
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.wait().for_element(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

fn totp(app: &TestApp, secret: &[u8]) -> String {
    let step = netterms::domain::totp::step_of(app.services.clock.now().timestamp());
    netterms::domain::totp::code_at(secret, step)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_first_day_in_a_real_browser() {
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = browser(profile.path()).await else { return };
    let axe = axe_source();
    let app = TestApp::spawn_with(|c| c.four_eyes = netterms::config::Config::default().four_eyes).await;
    app.secret(PASSWORD);
    let base = app.base.clone();

    // The first admin, created on the server as `netterms operator create` does (actor `cli`).
    let created = netterms::service::operators::create(
        &app.services,
        &netterms::service::audit::Actor::cli(),
        netterms::service::operators::NewOperator {
            email: Some("anna.admin@ops.example".into()),
            name: Some("Anna Admin".into()),
            roles: Some(vec!["admin".into()]),
        },
    )
    .await
    .unwrap();
    let link = &created.set_password_url[created.set_password_url.find("/console/").unwrap()..];
    app.secret(link.rsplit('/').next().unwrap());

    // The set-password page, then the password (a common one first: refused with the reason).
    shots(&c, &axe, &base, link, "set-password").await;
    c.goto(&format!("{base}{link}?lang=en")).await.unwrap();
    fill(&c, "#password", "qwertyuiop123").await;
    fill(&c, "#repeated", "qwertyuiop123").await;
    click(&c, "button[type=submit]").await;
    let alert = text(&c, "[role=alert]").await;
    assert!(alert.contains("most common"), "{alert}");
    shot_here(&c, &axe, "set-password-refused-en").await;
    fill(&c, "#password", PASSWORD).await;
    fill(&c, "#repeated", PASSWORD).await;
    click(&c, "button[type=submit]").await;
    wait_url(&c, &format!("{base}/console/login")).await;
    assert!(text(&c, "[role=alert]").await.contains("password is set"));

    // Sign-in.
    shots(&c, &axe, &base, "/console/login", "login").await;
    c.goto(&format!("{base}/console/login?lang=en")).await.unwrap();
    fill(&c, "#email", "anna.admin@ops.example").await;
    fill(&c, "#password", "a wrong password").await;
    click(&c, "button[type=submit]").await;
    assert!(text(&c, "[role=alert]").await.contains("Wrong e-mail address or password"));
    shot_here(&c, &axe, "login-failed-en").await;
    fill(&c, "#password", PASSWORD).await;
    click(&c, "button[type=submit]").await;
    wait_url(&c, &format!("{base}/console")).await;
    assert!(text(&c, "h1").await.contains("Anna Admin"));
    shots(&c, &axe, &base, "/console", "home").await;

    // Enrolment: the key on the page, a code computed from it, ten recovery codes.
    shots(&c, &axe, &base, "/console/enrol", "enrol").await;
    c.goto(&format!("{base}/console/enrol?lang=en")).await.unwrap();
    let key = text(&c, "[data-testid=totp-secret]").await;
    app.secret(&key);
    let secret = netterms::domain::totp::from_base32(&key).unwrap();
    assert!(c.find(Locator::Css("figure.qr svg")).await.is_ok(), "the QR code is shown");
    fill(&c, "#code", &totp(&app, &secret)).await;
    click(&c, "form[action='/console/enrol'] button[type=submit]").await;
    let codes = text(&c, "[data-testid=recovery-codes]").await;
    assert_eq!(codes.lines().filter(|l| !l.trim().is_empty()).count(), 10, "{codes}");
    codes.lines().for_each(|l| app.secret(l.trim()));
    shot_here(&c, &axe, "recovery-codes-en").await;
    click(&c, "a.button").await;
    wait_url(&c, &format!("{base}/console")).await;

    // A second admin, made on the command line, to approve what Anna proposes (four eyes).
    let bert = netterms::service::operators::create(
        &app.services,
        &netterms::service::audit::Actor::cli(),
        netterms::service::operators::NewOperator {
            email: Some("bert.admin@ops.example".into()),
            name: Some("Bert Admin".into()),
            roles: Some(vec!["admin".into()]),
        },
    )
    .await
    .unwrap();
    let bert_link = bert.set_password_url[bert.set_password_url.find("/console/").unwrap()..].to_owned();
    app.secret(bert_link.rsplit('/').next().unwrap());

    // Two colleagues, risk and finance: proposed, waiting for another admin.
    shots(&c, &axe, &base, "/console/operators", "operators").await;
    for (name, email, role) in
        [("Rita Risk", "rita.risk@ops.example", "risk"), ("Fritz Finance", "fritz.finance@ops.example", "finance")]
    {
        c.goto(&format!("{base}/console/operators?lang=en")).await.unwrap();
        fill(&c, "#oname", name).await;
        fill(&c, "#oemail", email).await;
        click(&c, &format!("#role-{role}")).await;
        fill(&c, "#oreason", "joins the team on Monday").await;
        click(&c, "form[action='/console/operators'] button[type=submit]").await;
        wait_url(&c, &format!("{base}/console/operators")).await;
        assert!(text(&c, "[role=status]").await.contains("Proposed"));
    }
    assert!(text(&c, "main").await.contains("Your proposal: another operator decides."));
    shot_here(&c, &axe, "approvals-proposed-en").await;
    shots(&c, &axe, &base, "/console/queues/approvals", "approvals").await;
    let list = app.send(app.admin(reqwest::Method::GET, "/admin/v1/operators")).await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "nobody is created before the approval");

    // An API token, shown once, acting with Anna's roles.
    shots(&c, &axe, &base, "/console/account", "account").await;
    c.goto(&format!("{base}/console/account?lang=en")).await.unwrap();
    fill(&c, "#tname", "month-end script").await;
    click(&c, "form[action='/console/account/tokens'] button[type=submit]").await;
    let token = text(&c, "[data-testid=new-token]").await;
    app.secret(&token);
    assert!(token.starts_with("ntop_"));
    shot_here(&c, &axe, "token-created-en").await;
    let r = app.send(app.client.get(app.url("/admin/v1/operators")).bearer_auth(&token)).await;
    assert_eq!(r.status, 200);

    // The audit trail shows each step with its actor.
    shots(&c, &axe, &base, "/console/audit", "audit").await;
    c.goto(&format!("{base}/console/audit?lang=en")).await.unwrap();
    let table = text(&c, "table").await;
    for needle in [
        "operator.created",
        "operator.password_set",
        "operator.second_factor_enrolled",
        "operator.token_created",
        "cli",
        "Anna Admin",
    ] {
        assert!(table.contains(needle), "{needle} not in the audit trail: {table}");
    }
    fill(&c, "#f-action", "operator.created").await;
    click(&c, "form[role=search] button[type=submit]").await;
    wait_url(&c, &format!("{base}/console/audit?")).await;
    let filtered = text(&c, "table tbody").await;
    assert_eq!(filtered.lines().filter(|l| l.contains("operator.created")).count(), 2, "Anna and Bert: {filtered}");
    assert!(!filtered.contains("operator.token_created"));
    shot_here(&c, &axe, "audit-filtered-en").await;

    // Bert sets his password, signs in and approves both proposals with his reason.
    click(&c, "form[action='/console/logout'] button").await;
    wait_url(&c, &format!("{base}/console/login")).await;
    c.goto(&format!("{base}{bert_link}?lang=en")).await.unwrap();
    fill(&c, "#password", "another horse battery staple").await;
    fill(&c, "#repeated", "another horse battery staple").await;
    click(&c, "button[type=submit]").await;
    wait_url(&c, &format!("{base}/console/login")).await;
    fill(&c, "#email", "bert.admin@ops.example").await;
    fill(&c, "#password", "another horse battery staple").await;
    click(&c, "button[type=submit]").await;
    wait_url(&c, &format!("{base}/console")).await;
    app.secret("another horse battery staple");
    for _ in 0..2 {
        c.goto(&format!("{base}/console/queues/approvals?lang=en")).await.unwrap();
        fill(&c, "form[action$='/decide'] input[name=reason]", "welcome aboard").await;
        click(&c, "form[action$='/decide'] button[value=approve]").await;
        let notice = text(&c, "[role=status]").await;
        assert!(notice.contains("Approved and carried out: operator.created"), "{notice}");
        assert!(notice.contains("/console/set-password/"), "{notice}");
        if let Some(link) = notice.split_whitespace().find(|w| w.contains("/console/set-password/")) {
            app.secret(link.rsplit('/').next().unwrap());
        }
    }
    shot_here(&c, &axe, "approvals-approved-en").await;
    let list = app.send(app.admin(reqwest::Method::GET, "/admin/v1/operators")).await.json();
    let roles: Vec<String> =
        list["data"].as_array().unwrap().iter().map(|o| o["roles"][0].as_str().unwrap().to_owned()).collect();
    assert_eq!(roles.len(), 4);
    assert!(roles.contains(&"risk".into()) && roles.contains(&"finance".into()), "{roles:?}");
    // Bert opens Fritz's page and deactivates him (a change that removes access: at once).
    let fritz = list["data"].as_array().unwrap().iter().find(|o| o["email"] == "fritz.finance@ops.example").unwrap()
        ["operator_id"]
        .as_str()
        .unwrap()
        .to_owned();
    shots(&c, &axe, &base, &format!("/console/operators/{fritz}"), "operator").await;
    c.goto(&format!("{base}/console/operators/{fritz}?lang=en")).await.unwrap();
    click(&c, "#active").await;
    fill(&c, "#ch-reason", "left the company").await;
    click(&c, &format!("form[action='/console/operators/{fritz}'] button[type=submit]")).await;
    assert!(text(&c, "[role=status]").await.contains("Saved"));
    assert!(text(&c, "main dl").await.contains("deactivated"));
    shot_here(&c, &axe, "operator-deactivated-en").await;
    c.goto(&format!("{base}/console/audit?lang=en&action=operator.created")).await.unwrap();
    let table = text(&c, "table tbody").await;
    assert!(table.contains("Bert Admin") && table.contains("welcome aboard"), "{table}");
    c.goto(&format!("{base}/console/audit?lang=en&action=operator.updated")).await.unwrap();
    assert!(text(&c, "table tbody").await.contains("left the company"));
    click(&c, "form[action='/console/logout'] button").await;
    wait_url(&c, &format!("{base}/console/login")).await;

    // Signing in again asks for the second factor.
    fill(&c, "#email", "anna.admin@ops.example").await;
    fill(&c, "#password", PASSWORD).await;
    click(&c, "button[type=submit]").await;
    wait_url(&c, &format!("{base}/console/login/second-factor")).await;
    shots(&c, &axe, &base, "/console/login/second-factor", "second-factor").await;
    app.services.clock.advance(chrono::Duration::seconds(30));
    fill(&c, "#code", &totp(&app, &secret)).await;
    click(&c, "button[type=submit]").await;
    wait_url(&c, &format!("{base}/console")).await;
    assert!(netterms::service::audit::verify(&app.services).await.unwrap().ok);
    c.close().await.unwrap();
}
