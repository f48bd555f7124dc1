//! Operators (SPEC §14.1, §14.2): set-password links, sign-in with a second factor that cannot
//! be replayed, sessions that rotate and expire, throttling shared by two nodes, one permission
//! table for every admin operation and console action, the hash-chained audit trail.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// A browser without JavaScript: cookies kept by hand, redirects not followed.
pub struct Console<'a> {
    pub app: &'a TestApp,
    pub cookies: HashMap<String, String>,
}

impl<'a> Console<'a> {
    pub fn new(app: &'a TestApp) -> Console<'a> {
        Console { app, cookies: HashMap::new() }
    }

    fn keep(&mut self, r: &Resp) {
        for v in r.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if val.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                assert!(
                    attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict") && attrs.contains("Path=/console"),
                    "{v}"
                );
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        let r = self.app.send(self.app.client.get(self.app.url(path)).header("cookie", self.cookie_header())).await;
        self.keep(&r);
        r
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Resp {
        let r = self
            .app
            .send(
                self.app
                    .client
                    .post(self.app.url(path))
                    .header("cookie", self.cookie_header())
                    .header("sec-fetch-site", "same-origin")
                    .form(form),
            )
            .await;
        self.keep(&r);
        r
    }

    /// Posts a form of the page at `page` with that page's CSRF token.
    pub async fn submit(&mut self, page: &str, action: &str, form: &[(&str, &str)]) -> Resp {
        let html = self.get(page).await.text();
        let csrf = csrf_of(&html);
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend_from_slice(form);
        self.post(action, &f).await
    }
}

pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token");
    html[at + 19..].split('"').next().unwrap().to_owned()
}

/// The text inside the first element carrying `data-testid="id"`.
pub fn testid(html: &str, id: &str) -> String {
    let at = html.find(&format!("data-testid=\"{id}\"")).unwrap_or_else(|| panic!("no {id} in {html}"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    let inner = &rest[start..];
    let end = inner.find("</").unwrap();
    inner[..end].to_owned()
}

/// Creates an operator over the admin API (bootstrap token) and returns (id, set-password path).
pub async fn create_operator(app: &TestApp, email: &str, name: &str, roles: &[&str]) -> (String, String) {
    let r = app
        .send(
            app.admin(Method::POST, "/admin/v1/operators").json(&json!({"email": email, "name": name, "roles": roles})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let url = v["set_password_url"].as_str().unwrap().to_owned();
    app.secret(url.rsplit('/').next().unwrap());
    let path = url[url.find("/console/").unwrap()..].to_owned();
    (v["operator_id"].as_str().unwrap().to_owned(), path)
}

pub const PASSWORD: &str = "correct horse battery staple";

/// Sets the password through the link and signs in (no second factor: a sandbox).
pub async fn signed_in<'a>(app: &'a TestApp, email: &str, roles: &[&str]) -> (String, Console<'a>) {
    let (id, link) = create_operator(app, email, email, roles).await;
    let mut c = Console::new(app);
    let r = c.submit(&link, &link, &[("password", PASSWORD), ("repeated", PASSWORD)]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let r = c.submit("/console/login", "/console/login", &[("email", email), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.headers["location"], "/console");
    (id, c)
}

fn totp_now(app: &TestApp, secret: &[u8], ahead: i64) -> String {
    let step = netterms::domain::totp::step_of(app.services.clock.now().timestamp());
    netterms::domain::totp::code_at(secret, step + ahead)
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    let r = app.send(app.admin(Method::GET, "/admin/v1/audit-events?limit=100")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

/// The whole sign-in: a one-time link with the password rules, sign-in, TOTP enrolment with
/// recovery codes, and every credential used once only: a spent link, an old session, a TOTP
/// code, a recovery code; idle and absolute expiry; sign-out everywhere.
#[tokio::test]
async fn an_operator_signs_in_with_a_second_factor_that_cannot_be_replayed() {
    let app = TestApp::spawn().await;
    app.secret(PASSWORD);
    let (id, link) = create_operator(&app, "Risk.Rita@Ops.Example", "Rita Risk", &["risk"]).await;
    let mut c = Console::new(&app);

    // The link: weak passwords refused with the reason, nothing set; then set once.
    let page = c.get(&link).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Rita Risk"));
    for (pw, why) in [("kurz", "12"), ("password1234", "häufigsten"), ("risk.rita2026", "E-Mail")] {
        let r = c.submit(&link, &link, &[("password", pw), ("repeated", pw)]).await;
        assert_eq!(r.status, 422, "{pw}");
        assert!(r.text().contains(why), "{pw}: {}", r.text());
    }
    let r = c.submit(&link, &link, &[("password", PASSWORD), ("repeated", "something else entirely")]).await;
    assert_eq!(r.status, 422);
    // Without the form's token (another site's form), nothing happens.
    let r = c.post(&link, &[("password", PASSWORD), ("repeated", PASSWORD)]).await;
    assert_eq!(r.status, 403);
    let ops = app.send(app.admin(Method::GET, "/admin/v1/operators")).await.json();
    assert_eq!(ops["data"][0]["password_set"], false);
    let r = c.submit(&link, &link, &[("password", PASSWORD), ("repeated", PASSWORD)]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(c.get(&link).await.status, 410, "a link works once");

    // Sign-in: wrong password and unknown address answer alike; the form needs its token.
    let r = c
        .submit(
            "/console/login",
            "/console/login",
            &[("email", "risk.rita@ops.example"), ("password", "wrong password 123")],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .submit(
            "/console/login",
            "/console/login",
            &[("email", "nobody@ops.example"), ("password", "wrong password 123")],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c.post("/console/login", &[("email", "risk.rita@ops.example"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 403, "no CSRF token");
    let r = c
        .submit("/console/login", "/console/login", &[("email", "risk.rita@ops.example"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/console");
    let first = c.cookies["nt_console"].clone();
    app.secret(&first);
    assert_eq!(c.get("/console").await.status, 200);

    // Enrolment: the key from the page, a code of it, ten recovery codes; the session rotates.
    let page = c.get("/console/enrol").await.text();
    let key = testid(&page, "totp-secret");
    let secret = netterms::domain::totp::from_base32(&key).unwrap();
    app.secret(&key);
    let code = totp_now(&app, &secret, 0);
    let r = c.submit("/console/enrol", "/console/enrol", &[("code", "000000")]).await;
    assert_eq!(r.status, 422, "a wrong code enrols nothing");
    let r = c.submit("/console/enrol", "/console/enrol", &[("code", &code)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let codes: Vec<String> =
        r.text().split("<code>").skip(1).map(|s| s.split("</code>").next().unwrap().to_owned()).collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    codes.iter().for_each(|c| app.secret(c));
    let second = c.cookies["nt_console"].clone();
    assert_ne!(first, second, "the session id changes");
    app.secret(&second);
    let mut old = Console::new(&app);
    old.cookies.insert("nt_console".into(), first.clone());
    assert_eq!(old.get("/console").await.status, 303, "the old session is over");

    // Signing in again needs the second factor; the half-open session reaches nothing else.
    let r = c.submit("/console", "/console/logout", &[]).await;
    assert_eq!(r.status, 303);
    let r = c
        .submit("/console/login", "/console/login", &[("email", "risk.rita@ops.example"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.headers["location"], "/console/login/second-factor");
    let r = c.get("/console").await;
    assert_eq!(r.headers["location"], "/console/login/second-factor");
    let r = c.get("/console/audit").await;
    assert_eq!(r.headers["location"], "/console/login/second-factor");
    // The enrolment's code is spent.
    let r = c.submit("/console/login/second-factor", "/console/login/second-factor", &[("code", &code)]).await;
    assert_eq!(r.status, 401, "a TOTP code is accepted once");
    app.services.clock.advance(chrono::Duration::seconds(30));
    let next = totp_now(&app, &secret, 0);
    let r = c.submit("/console/login/second-factor", "/console/login/second-factor", &[("code", &next)]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.headers["location"], "/console");
    assert_eq!(c.get("/console").await.status, 200);
    let third = c.cookies["nt_console"].clone();
    app.secret(&third);

    // The same code again, in another sign-in: refused.
    let mut other = Console::new(&app);
    let r = other
        .submit("/console/login", "/console/login", &[("email", "risk.rita@ops.example"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, 303);
    let r = other.submit("/console/login/second-factor", "/console/login/second-factor", &[("code", &next)]).await;
    assert_eq!(r.status, 401, "replayed code");
    // A recovery code works once.
    let r = other
        .submit("/console/login/second-factor", "/console/login/second-factor", &[("code", &codes[3].to_uppercase())])
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let mut again = Console::new(&app);
    again
        .submit("/console/login", "/console/login", &[("email", "risk.rita@ops.example"), ("password", PASSWORD)])
        .await;
    let r = again.submit("/console/login/second-factor", "/console/login/second-factor", &[("code", &codes[3])]).await;
    assert_eq!(r.status, 401, "a recovery code is accepted once");
    let account = other.get("/console/account").await.text();
    assert!(
        account.contains("9 recovery codes left") || account.contains("9 Wiederherstellungscodes übrig"),
        "{account}"
    );

    // Idle 30 minutes: signed out.
    app.services.clock.advance(chrono::Duration::minutes(31));
    assert_eq!(c.get("/console").await.headers["location"], "/console/login");
    let mut third_c = Console::new(&app);
    third_c.cookies.insert("nt_console".into(), third);
    assert_eq!(third_c.get("/console").await.status, 303);

    // Sign out everywhere ends every session of the operator.
    let mut one = Console::new(&app);
    let mut two = Console::new(&app);
    for (c, code) in [(&mut one, &codes[5]), (&mut two, &codes[6])] {
        c.submit("/console/login", "/console/login", &[("email", "risk.rita@ops.example"), ("password", PASSWORD)])
            .await;
        let r = c.submit("/console/login/second-factor", "/console/login/second-factor", &[("code", code)]).await;
        assert_eq!(r.status, 303);
        assert_eq!(c.get("/console").await.status, 200);
    }
    let r = one.submit("/console/account", "/console/account/sign-out-everywhere", &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(one.get("/console").await.status, 303);
    assert_eq!(two.get("/console").await.status, 303);

    // Absolute expiry: 12 hours after sign-in, however active.
    let mut busy = Console::new(&app);
    busy.submit("/console/login", "/console/login", &[("email", "risk.rita@ops.example"), ("password", PASSWORD)])
        .await;
    app.services.clock.advance(chrono::Duration::seconds(30));
    let code = totp_now(&app, &secret, 0);
    let r = busy.submit("/console/login/second-factor", "/console/login/second-factor", &[("code", &code)]).await;
    assert_eq!(r.status, 303);
    for _ in 0..25 {
        app.services.clock.advance(chrono::Duration::minutes(29));
        busy.get("/console").await;
    }
    assert_eq!(busy.get("/console").await.status, 303, "12 hours are the most");

    let actions = audit_actions(&app).await;
    for a in [
        "operator.created",
        "operator.password_set",
        "operator.sign_in_failed",
        "operator.signed_in",
        "operator.second_factor_enrolled",
        "operator.second_factor_used",
        "operator.signed_out",
        "operator.signed_out_everywhere",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing in {actions:?}");
    }
    let v = netterms::service::audit::verify(&app.services).await.unwrap();
    assert!(v.ok, "{v:?}");
    let _ = id;
}

/// Two requests with one half-open session and one code: one signs in, the other gets nothing.
#[tokio::test]
async fn one_code_sent_twice_at_once_signs_in_once() {
    let app = TestApp::spawn().await;
    app.secret(PASSWORD);
    let (_, mut c) = signed_in(&app, "twice@ops.example", &["read_only"]).await;
    let page = c.get("/console/enrol").await.text();
    let secret = netterms::domain::totp::from_base32(&testid(&page, "totp-secret")).unwrap();
    let code = totp_now(&app, &secret, 0);
    assert_eq!(c.submit("/console/enrol", "/console/enrol", &[("code", &code)]).await.status, 200);
    c.submit("/console", "/console/logout", &[]).await;
    c.submit("/console/login", "/console/login", &[("email", "twice@ops.example"), ("password", PASSWORD)]).await;
    app.services.clock.advance(chrono::Duration::seconds(30));
    let code = totp_now(&app, &secret, 0);
    let csrf = csrf_of(&c.get("/console/login/second-factor").await.text());
    let (mut a, mut b) =
        (Console { app: &app, cookies: c.cookies.clone() }, Console { app: &app, cookies: c.cookies.clone() });
    let form = [("csrf", csrf.as_str()), ("code", code.as_str())];
    let (ra, rb) =
        tokio::join!(a.post("/console/login/second-factor", &form), b.post("/console/login/second-factor", &form));
    let ok = [&ra, &rb].iter().filter(|r| r.status == 303 && r.headers["location"] == "/console").count();
    assert_eq!(ok, 1, "{} {}", ra.status, rb.status);
}

/// Failed sign-ins are counted in the database: two nodes on one database lock the account
/// together, and a locked account says so whatever the password.
#[tokio::test]
async fn failed_sign_ins_are_counted_across_nodes() {
    let a = TestApp::spawn().await;
    a.secret(PASSWORD);
    let url = a.services.config.database_url.clone();
    let b = TestApp::spawn_with(|c| c.database_url = url).await;
    let (_, mut ca) = signed_in(&a, "lock@ops.example", &["support"]).await;
    create_operator(&a, "other@ops.example", "Other", &["support"]).await;
    let mut cb = Console::new(&b);
    let wrong = [("email", "lock@ops.example"), ("password", "not the password at all")];
    for i in 0..5 {
        let c = if i % 2 == 0 { &mut ca } else { &mut cb };
        let r = c.submit("/console/login", "/console/login", &wrong).await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let written = a.count("audit_events").await;
    for c in [&mut ca, &mut cb] {
        let r = c.submit("/console/login", "/console/login", &wrong).await;
        assert_eq!(r.status, 429);
        assert!(r.text().contains("gesperrt") || r.text().contains("locked"), "{}", r.text());
        assert!(r.headers.contains_key("retry-after"));
        // The right password gets the same answer: the lock tells nothing about it.
        let r = c
            .submit("/console/login", "/console/login", &[("email", "lock@ops.example"), ("password", PASSWORD)])
            .await;
        assert_eq!(r.status, 429);
    }
    assert_eq!(a.count("audit_events").await, written, "attempts on a locked account write nothing");
    // Another account from the same address is not locked by this one.
    let r = cb
        .submit("/console/login", "/console/login", &[("email", "other@ops.example"), ("password", "still not it 123")])
        .await;
    assert_eq!(r.status, 401);
    // After the window the account may try again.
    a.services.clock.advance(chrono::Duration::minutes(16));
    b.services.clock.advance(chrono::Duration::minutes(16));
    let r = ca.submit("/console/login", "/console/login", &wrong).await;
    assert_eq!(r.status, 401);
    assert!(audit_actions(&a).await.iter().any(|x| x == "operator.sign_in_locked"));
}

fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let name = &rest[start + 1..end];
        out.push_str(match name {
            "valid_from" => "2031-01-01",
            "seq" => "1",
            _ => "0195b2a4-0000-7000-8000-000000000001",
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every admin operation names its permission; a token of every role is refused (403, nothing
/// written) where its roles lack it and let through where they have it. The table and the
/// published document list the same operations.
#[tokio::test]
async fn every_admin_operation_and_console_action_checks_the_roles() {
    let app = TestApp::spawn().await;
    app.secret(PASSWORD);
    let doc: Value = serde_json::from_str(&netterms::web::openapi_pretty()).unwrap();
    let mut documented = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if path.starts_with("/admin/v1") {
            for m in ops.as_object().unwrap().keys() {
                documented.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    let mut table: Vec<(String, String)> =
        netterms::web::permissions::ADMIN.iter().map(|(m, p, _, _)| ((*m).to_owned(), (*p).to_owned())).collect();
    documented.sort();
    table.sort();
    assert_eq!(documented, table, "the permission table and the OpenAPI document differ");

    let roles = ["admin", "risk", "collections", "finance", "support", "read_only"];
    let mut tokens = HashMap::new();
    for r in roles {
        let id = create_operator(&app, &format!("{r}@ops.example"), r, &[r]).await.0;
        let t = netterms::service::operators::create_token(
            &app.services,
            &netterms::service::audit::Actor::cli(),
            uuid::Uuid::parse_str(&id).unwrap(),
            "route test",
            None,
        )
        .await
        .unwrap();
        app.secret(&t.token);
        tokens.insert(r, t.token);
    }
    let tables = [
        "psps",
        "psp_credentials",
        "operators",
        "operator_tokens",
        "bank_statements",
        "direct_debit_files",
        "disputes",
        "messages",
        "jobs",
        "audit_events",
        "base_rates",
        "settings",
    ];
    let mut snapshot = Vec::new();
    for t in tables {
        snapshot.push(app.count(t).await);
    }
    let mut refused = 0;
    for (method, route, perm, _) in netterms::web::permissions::ADMIN {
        for r in roles {
            let role = netterms::domain::operators::Role::parse(r).unwrap();
            let allowed = netterms::domain::operators::grants(role, *perm);
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let req = app
                .client
                .request(m, app.url(&concrete(route)))
                .bearer_auth(&tokens[r])
                .header("audit-reason", "route test")
                .json(&json!({}));
            let resp = app.send(req).await;
            if allowed {
                assert_ne!(resp.status, 403, "{r} {method} {route}: {}", resp.text());
            } else {
                resp.assert_error(403, "forbidden");
                refused += 1;
                let mut now = Vec::new();
                for t in tables {
                    now.push(app.count(t).await);
                }
                assert_eq!(now, snapshot, "{r} {method} {route} changed something");
            }
            // Whatever was let through may have written (a role with the permission); the
            // refusals after it compare against what is there now.
            if allowed {
                snapshot.clear();
                for t in tables {
                    snapshot.push(app.count(t).await);
                }
            }
        }
    }
    assert!(refused > 100, "{refused}");

    // An unknown, revoked or expired token is 401; the bootstrap token still works.
    let r = app
        .send(
            app.client.get(app.url("/admin/v1/operators")).bearer_auth("ntop_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        )
        .await;
    r.assert_error(401, "unauthorized");
    assert_eq!(app.send(app.admin(Method::GET, "/admin/v1/operators")).await.status, 200);

    // The console: each role signed in; the actions its roles lack are refused, nothing written.
    for r in roles {
        let (_, mut c) = signed_in(&app, &format!("console-{r}@ops.example"), &[r]).await;
        let role = netterms::domain::operators::Role::parse(r).unwrap();
        for (method, route, perm) in netterms::web::permissions::CONSOLE {
            let allowed = netterms::domain::operators::grants(role, *perm);
            let path = concrete(route);
            let before = app.count("operators").await;
            let resp = if *method == "GET" {
                c.get(&path).await
            } else {
                c.submit(
                    "/console/account",
                    &path,
                    &[("name", "x"), ("email", &format!("new-{r}@ops.example")), ("roles", "support")],
                )
                .await
            };
            if allowed {
                assert_ne!(resp.status, 403, "{r} {method} {route}");
            } else {
                assert_eq!(resp.status, 403, "{r} {method} {route}");
                assert_eq!(app.count("operators").await, before);
            }
            if route.contains("sign-out-everywhere") {
                // Signed out by that action: sign in again for the rest.
                c.submit(
                    "/console/login",
                    "/console/login",
                    &[("email", &format!("console-{r}@ops.example")), ("password", PASSWORD)],
                )
                .await;
            }
        }
        let csv = c.get("/console/audit?format=csv").await;
        let may_export = netterms::domain::operators::grants(role, netterms::domain::operators::Permission::Export);
        assert_eq!(csv.status, if may_export { 200 } else { 403 }, "{r} export");
    }
}

/// The chain proves that nothing was altered, removed, inserted or reordered.
#[tokio::test]
async fn the_audit_trail_shows_every_tampering() {
    let app = TestApp::spawn().await;
    for i in 0..4 {
        create_operator(&app, &format!("op{i}@ops.example"), &format!("Operator {i}"), &["read_only"]).await;
    }
    let verify = || netterms::service::audit::verify(&app.services);
    let ok = verify().await.unwrap();
    assert!(ok.ok && ok.records == 4, "{ok:?}");
    let page = app
        .send(app.admin(Method::GET, "/admin/v1/audit-events?actor=admin_token&action=operator.created&limit=2"))
        .await
        .json();
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"][0]["seq"], 4);
    let older = app.send(app.admin(Method::GET, "/admin/v1/audit-events?before=3")).await.json();
    assert_eq!(older["data"].as_array().unwrap().len(), 2);
    app.send(app.admin(Method::GET, "/admin/v1/audit-events?limit=0"))
        .await
        .assert_error(422, "request_validation_error");

    app.execute("UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 2").await;
    let v = verify().await.unwrap();
    assert!(!v.ok && v.problem.as_deref() == Some("record 2 was altered"), "{v:?}");
    app.execute("UPDATE audit_events SET reason = 'test arrangement' WHERE seq = 2").await;
    assert!(verify().await.unwrap().ok);

    app.execute("UPDATE audit_events SET seq = 10 WHERE seq = 2").await;
    app.execute("UPDATE audit_events SET seq = 2 WHERE seq = 3").await;
    app.execute("UPDATE audit_events SET seq = 3 WHERE seq = 10").await;
    let v = verify().await.unwrap();
    assert!(!v.ok, "reordered: {v:?}");
    app.execute("UPDATE audit_events SET seq = 10 WHERE seq = 3").await;
    app.execute("UPDATE audit_events SET seq = 3 WHERE seq = 2").await;
    app.execute("UPDATE audit_events SET seq = 2 WHERE seq = 10").await;
    assert!(verify().await.unwrap().ok);

    app.execute("DELETE FROM audit_events WHERE seq = 4").await;
    let v = verify().await.unwrap();
    assert!(!v.ok && v.problem.unwrap().contains("4 were written"), "removed last");
}

#[tokio::test]
async fn bad_operator_input_is_refused_in_the_envelope() {
    let app = TestApp::spawn().await;
    let r =
        app.send(app.admin(Method::POST, "/admin/v1/operators").json(&json!({"email": "x", "roles": ["root"]}))).await;
    r.assert_error(422, "request_validation_error");
    let sources = r.sources();
    assert!(
        sources.contains(&"email".to_owned())
            && sources.contains(&"name".to_owned())
            && sources.contains(&"roles/0".to_owned()),
        "{sources:?}"
    );
    let r = app
        .send(
            app.admin(Method::POST, "/admin/v1/operators")
                .json(&json!({"email": "a@b.example", "name": "A", "roles": []})),
        )
        .await;
    r.assert_error(422, "request_validation_error");
    let r = app.send(app.admin(Method::POST, "/admin/v1/operators").json(&json!({"email": 5}))).await;
    r.assert_error(400, "request_invalid");
    assert_eq!(app.count("operators").await, 0);
    assert_eq!(app.count("audit_events").await, 0);
    create_operator(&app, "a@b.example", "A", &["admin"]).await;
    let r = app
        .send(
            app.admin(Method::POST, "/admin/v1/operators")
                .json(&json!({"email": "A@B.example", "name": "A2", "roles": ["risk"]})),
        )
        .await;
    r.assert_error(409, "resource_already_exists");
    assert_eq!(app.count("operators").await, 1);
}

/// Every change over the admin API writes its audit record in the change's transaction: actor,
/// action, object, reason, the request's fields (personal data masked, secrets left out). A
/// refused request writes none; a change that must say why is refused without a reason.
#[tokio::test]
async fn admin_changes_are_audited_with_actor_reason_and_object() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let ev = app.send(app.admin(Method::GET, "/admin/v1/audit-events?action=psp.created")).await.json();
    let rec = &ev["data"][0];
    assert_eq!(rec["actor"], "admin_token", "{rec}");
    assert_eq!(rec["reason"], "test arrangement");
    assert_eq!(rec["changes"]["name"], "Example Payments GmbH");
    assert_eq!(rec["changes"]["iban"], "D***", "the account number is masked: {rec}");
    assert_eq!(rec["changes"]["billing"]["email"], "b***@psp.example");

    // Without a reason: 422, nothing changed, nothing recorded.
    let before = (app.count("psp_credentials").await, app.count("audit_events").await);
    let path = format!("/admin/v1/psps/{}/credentials", psp.psp_id);
    let r = app.send(app.client.post(app.url(&path)).bearer_auth(ADMIN_TOKEN)).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["Audit-Reason"]);
    let r = app.send(app.client.post(app.url(&path)).bearer_auth(ADMIN_TOKEN).header("audit-reason", "   ")).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!((app.count("psp_credentials").await, app.count("audit_events").await), before);
    // A refused change (an unknown PSP) records nothing either.
    let r = app
        .send(
            app.admin(Method::PATCH, "/admin/v1/psps/0195b2a4-0000-7000-8000-000000000001")
                .json(&json!({"fee_fixed": 5})),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(app.count("audit_events").await, before.1);

    // An operator's token: the record names the operator and the token, and the object.
    let (id, _) = create_operator(&app, "fin@ops.example", "Fiona Finance", &["admin"]).await;
    let t = netterms::service::operators::create_token(
        &app.services,
        &netterms::service::audit::Actor::cli(),
        uuid::Uuid::parse_str(&id).unwrap(),
        "rotation script",
        None,
    )
    .await
    .unwrap();
    app.secret(&t.token);
    let r = app
        .send(app.client.post(app.url(&path)).bearer_auth(&t.token).header("audit-reason", "quarterly rotation"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let ev = app.send(app.admin(Method::GET, "/admin/v1/audit-events?action=psp.credential_issued")).await.json();
    let rec = &ev["data"][0];
    assert_eq!(rec["actor"], "Fiona Finance (rotation script)");
    assert_eq!(rec["actor_kind"], "token");
    assert_eq!(rec["actor_id"], id.as_str());
    assert_eq!(rec["object_id"], psp.psp_id.as_str());
    assert_eq!(rec["reason"], "quarterly rotation");
    assert_eq!(rec["request_id"], r.headers["x-request-id"].to_str().unwrap());
    // Filtered by actor id and by object.
    let by_actor = app.send(app.admin(Method::GET, &format!("/admin/v1/audit-events?actor={id}"))).await.json();
    assert!(by_actor["data"].as_array().unwrap().iter().all(|e| e["actor_id"] == id.as_str()));
    let by_object =
        app.send(app.admin(Method::GET, &format!("/admin/v1/audit-events?object={}", psp.psp_id))).await.json();
    assert_eq!(by_object["data"].as_array().unwrap().len(), 1);
    // Changes that need no reason are still recorded (a reason given is kept).
    let r = app.send(app.client.get(app.url("/admin/v1/jobs")).bearer_auth(&t.token)).await;
    assert_eq!(r.status, 200);
    assert!(netterms::service::audit::verify(&app.services).await.unwrap().ok);
}

/// In production the second factor is not optional: after the password, an operator without
/// one reaches nothing but the enrolment; with one, nothing but the code form.
#[tokio::test]
async fn production_requires_the_second_factor() {
    let app = TestApp::spawn_with(|c| {
        c.environment = netterms::config::Environment::Production;
        c.public_url = Some("https://console.netterms.example".into());
    })
    .await;
    app.secret(PASSWORD);
    let (_, link) = create_operator(&app, "prod@ops.example", "Prod", &["finance"]).await;
    let mut c = Console::new(&app);
    let r = c.submit(&link, &link, &[("password", PASSWORD), ("repeated", PASSWORD)]).await;
    assert_eq!(r.status, 303);
    let r =
        c.submit("/console/login", "/console/login", &[("email", "prod@ops.example"), ("password", PASSWORD)]).await;
    assert_eq!(r.headers["location"], "/console/enrol");
    for page in ["/console", "/console/audit", "/console/account", "/console/login/second-factor"] {
        let r = c.get(page).await;
        assert_eq!(r.headers["location"], "/console/enrol", "{page}");
    }
    let page = c.get("/console/enrol").await;
    assert_eq!(page.status, 200);
    let key = testid(&page.text(), "totp-secret");
    app.secret(&key);
    let secret = netterms::domain::totp::from_base32(&key).unwrap();
    let r = c.submit("/console/enrol", "/console/enrol", &[("code", &totp_now(&app, &secret, 0))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers.get_all("set-cookie").iter().any(|v| v.to_str().unwrap().contains("Secure")),
        "Secure cookies in production"
    );
    assert_eq!(c.get("/console").await.status, 200);
    // Next time: the code first.
    c.submit("/console", "/console/logout", &[]).await;
    let r =
        c.submit("/console/login", "/console/login", &[("email", "prod@ops.example"), ("password", PASSWORD)]).await;
    assert_eq!(r.headers["location"], "/console/login/second-factor");
    assert_eq!(c.get("/console/enrol").await.headers["location"], "/console/login/second-factor");
}
