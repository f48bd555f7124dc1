//! The console's pages behind sign-in: home, the operator's account (tokens, sessions, second
//! factor), operators, the audit trail.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use maud::html;

use super::{Ctx, csrf_failed, csrf_ok, message, require, respond, see_other, shell, t};
use crate::domain::locale::Locale;
use crate::domain::operators::{Permission, Role};
use crate::service::audit::{self, Entry};
use crate::service::operators::{self, NewOperator, OperatorError};
use crate::store::audit::{AuditFilter, AuditRow};
use crate::web::AppState;
use crate::web::extract::ApiPath;
use crate::web::portal::{ClientIp, form, params};

macro_rules! ctx_or {
    ($state:expr, $headers:expr, $q:expr, $ip:expr, $method:expr, $route:expr) => {
        match require($state, $headers, $q, $ip, $method, $route).await {
            Ok(c) => c,
            Err(r) => return r,
        }
    };
}

fn role_name(l: Locale, r: Role) -> &'static str {
    match r {
        Role::Admin => t(l, "Administration", "Admin"),
        Role::Risk => t(l, "Risiko", "Risk"),
        Role::Collections => t(l, "Forderungsmanagement", "Collections"),
        Role::Finance => t(l, "Finanzen", "Finance"),
        Role::Support => t(l, "Support", "Support"),
        Role::ReadOnly => t(l, "Nur lesen", "Read only"),
    }
}

fn when(l: Locale, at: chrono::DateTime<chrono::Utc>) -> String {
    match l {
        Locale::De => at.format("%d.%m.%Y %H:%M UTC").to_string(),
        Locale::En => at.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

fn failed(ctx: &Ctx, e: OperatorError) -> Response {
    let l = ctx.l;
    match e {
        OperatorError::NotFound => message(
            l,
            Some(ctx),
            StatusCode::NOT_FOUND,
            t(l, "Nicht gefunden", "Not found"),
            t(l, "Das gibt es nicht (mehr).", "This does not exist (any more)."),
        ),
        OperatorError::Invalid(v) => {
            let text = v.iter().map(|f| format!("{}: {}", f.source, f.title)).collect::<Vec<_>>().join("; ");
            message(l, Some(ctx), StatusCode::UNPROCESSABLE_ENTITY, t(l, "Eingabe prüfen", "Check your input"), &text)
        }
        OperatorError::Exists => message(
            l,
            Some(ctx),
            StatusCode::CONFLICT,
            t(l, "Nicht möglich", "Not possible"),
            t(
                l,
                "Es gibt schon einen Operator mit dieser E-Mail-Adresse.",
                "An operator with this e-mail address exists.",
            ),
        ),
        OperatorError::Conflict(text) | OperatorError::Forbidden(text) => {
            message(l, Some(ctx), StatusCode::CONFLICT, t(l, "Nicht möglich", "Not possible"), &text)
        }
        OperatorError::Store(e) => {
            tracing::error!(error = %crate::web::error::error_chain(&e), "console action failed");
            message(
                l,
                Some(ctx),
                StatusCode::SERVICE_UNAVAILABLE,
                t(l, "Nicht verfügbar", "Unavailable"),
                t(l, "Bitte versuchen Sie es gleich noch einmal.", "Please try again in a moment."),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Home

/// `GET /console`: who is signed in, what their roles allow, where to go.
pub async fn home(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = params(raw.as_deref());
    let ctx = ctx_or!(&state, &headers, &q, ip, Method::GET, "/console");
    let l = ctx.l;
    let op = &ctx.session.operator;
    let title = t(l, "Übersicht", "Home");
    let body = html! {
        h1 { (t(l, "Willkommen, ", "Welcome, ")) (op.name) }
        @if !op.second_factor {
            div.notice.warn role="status" {
                (t(l, "Ihr Konto hat noch keinen zweiten Faktor. ", "Your account has no second factor yet. "))
                a href="/console/enrol" { (t(l, "Jetzt einrichten", "Set it up now")) }
                @if state.services.config.is_sandbox() { " " span.hint { (t(l, "(in der Sandbox freiwillig, in Produktion Pflicht)", "(optional in a sandbox, required in production)")) } }
            }
        }
        div.cols {
            section.card aria-labelledby="roles-h" {
                h2 id="roles-h" { (t(l, "Ihre Rollen", "Your roles")) }
                ul { @for r in &op.roles { li { strong { (role_name(l, *r)) } " — " (r.describe(l == Locale::De)) } } }
            }
            section.card aria-labelledby="go-h" {
                h2 id="go-h" { (t(l, "Arbeitsbereiche", "Work areas")) }
                ul {
                    li { a href="/console/operators" { (t(l, "Operatoren", "Operators")) } " — " (t(l, "wer hier arbeitet, mit welchen Rollen", "who works here, with which roles")) }
                    li { a href="/console/audit" { (t(l, "Protokoll", "Audit trail")) } " — " (t(l, "wer was wann getan hat", "who did what, when")) }
                    li { a href="/console/account" { (t(l, "Ihr Konto", "Your account")) } " — " (t(l, "API-Tokens, zweiter Faktor, Sitzungen", "API tokens, second factor, sessions")) }
                }
            }
        }
    };
    respond(StatusCode::OK, shell(&state, l, title, Some(&ctx), "/console", body))
}

// ---------------------------------------------------------------------------------------------
// Account

fn account_page(
    state: &AppState,
    ctx: &Ctx,
    tokens: &[operators::TokenInfo],
    left: i64,
    created: Option<&str>,
) -> Response {
    let l = ctx.l;
    let op = &ctx.session.operator;
    let title = t(l, "Ihr Konto", "Your account");
    let body = html! {
        h1 { (title) }
        @if let Some(tok) = created {
            div.notice.ok role="status" {
                p { (t(l, "Neues API-Token – es wird nur jetzt angezeigt:", "New API token — shown only now:")) }
                p { code.secret data-testid="new-token" { (tok) } }
            }
        }
        div.cols {
            section.card aria-labelledby="me-h" {
                h2 id="me-h" { (t(l, "Angaben", "Details")) }
                dl {
                    dt { (t(l, "Name", "Name")) } dd { (op.name) }
                    dt { (t(l, "E-Mail", "E-mail")) } dd { (op.email) }
                    dt { (t(l, "Rollen", "Roles")) } dd { @for r in &op.roles { span.badge { (role_name(l, *r)) } } }
                    dt { (t(l, "Zweiter Faktor", "Second factor")) }
                    dd {
                        @if op.second_factor {
                            span.badge.ok { (t(l, "eingerichtet", "enrolled")) } " "
                            span.hint { (left) " " (t(l, "Wiederherstellungscodes übrig", "recovery codes left")) }
                        } @else {
                            span.badge.warn { (t(l, "fehlt", "missing")) } " " a href="/console/enrol" { (t(l, "einrichten", "set up")) }
                        }
                    }
                }
            }
            section.card aria-labelledby="sess-h" {
                h2 id="sess-h" { (t(l, "Sitzungen", "Sessions")) }
                p { (t(l, "Abmelden auf allen Geräten beendet jede Sitzung, auch diese.", "Signing out everywhere ends every session, this one too.")) }
                form method="post" action="/console/account/sign-out-everywhere" {
                    input type="hidden" name="csrf" value=(ctx.session.csrf);
                    button.secondary type="submit" { (t(l, "Überall abmelden", "Sign out everywhere")) }
                }
            }
        }
        section.card aria-labelledby="tok-h" {
            h2 id="tok-h" { (t(l, "API-Tokens", "API tokens")) }
            p.hint { (t(l, "Ein Token (ntop_…) handelt über die Admin-API mit Ihren Rollen und wird im Protokoll mit Ihrem Namen geführt.", "A token (ntop_…) acts over the admin API with your roles and is recorded in the audit trail under your name.")) }
            @if tokens.is_empty() {
                p { (t(l, "Noch keine Tokens.", "No tokens yet.")) }
            } @else {
                div.table-scroll { table {
                    thead { tr {
                        th scope="col" { (t(l, "Name", "Name")) }
                        th scope="col" { (t(l, "Erstellt", "Created")) }
                        th scope="col" { (t(l, "Läuft ab", "Expires")) }
                        th scope="col" { (t(l, "Zuletzt benutzt", "Last used")) }
                        th scope="col" { (t(l, "Status", "State")) }
                        th scope="col" { span.skip { (t(l, "Aktion", "Action")) } }
                    } }
                    tbody { @for tk in tokens { tr {
                        td { (tk.name) }
                        td { (when(l, tk.created_at)) }
                        td { @if let Some(e) = tk.expires_at { (when(l, e)) } @else { "—" } }
                        td { @if let Some(u) = tk.last_used_at { (when(l, u)) } @else { "—" } }
                        td { @if tk.revoked_at.is_some() { span.badge.off { (t(l, "widerrufen", "revoked")) } } @else { span.badge.ok { (t(l, "aktiv", "active")) } } }
                        td { @if tk.revoked_at.is_none() {
                            form.inline method="post" action=(format!("/console/account/tokens/{}/revoke", tk.token_id)) {
                                input type="hidden" name="csrf" value=(ctx.session.csrf);
                                button.link type="submit" aria-label=(format!("{} {}", t(l, "Widerrufen:", "Revoke:"), tk.name)) { (t(l, "Widerrufen", "Revoke")) }
                            }
                        } }
                    } } }
                } }
            }
            form method="post" action="/console/account/tokens" {
                input type="hidden" name="csrf" value=(ctx.session.csrf);
                div.filters {
                    div { label for="tname" { (t(l, "Name des Tokens", "Token name")) } input id="tname" name="name" required maxlength="100" placeholder=(t(l, "z. B. Buchhaltungs-Skript", "e.g. accounting script")); }
                    div { label for="tdays" { (t(l, "Gültig (Tage, leer: unbegrenzt)", "Valid for (days, empty: no expiry)")) } input id="tdays" name="expires_in_days" type="number" min="1" max="3650"; }
                    div { button type="submit" { (t(l, "Token erstellen", "Create token")) } }
                }
            }
        }
    };
    respond(StatusCode::OK, shell(state, l, title, Some(ctx), "/console/account", body))
}

async fn show_account(state: &AppState, ctx: &Ctx, created: Option<&str>) -> Response {
    let id = ctx.session.operator.operator_id;
    let tokens = match operators::tokens(&state.services, id).await {
        Ok(t) => t,
        Err(e) => return failed(ctx, e),
    };
    let left = operators::recovery_codes_left(&state.services, id).await.unwrap_or(0);
    account_page(state, ctx, &tokens, left, created)
}

/// `GET /console/account`.
pub async fn account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = params(raw.as_deref());
    let ctx = ctx_or!(&state, &headers, &q, ip, Method::GET, "/console/account");
    show_account(&state, &ctx, None).await
}

/// `POST /console/account/tokens`: a token for the signed-in operator, shown once.
pub async fn create_token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let ctx = ctx_or!(&state, &headers, &HashMap::new(), ip, Method::POST, "/console/account/tokens");
    if !csrf_ok(&ctx, &f) {
        return csrf_failed(&ctx);
    }
    let days = match f.get("expires_in_days").map(|d| d.trim()).filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => match d.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return failed(
                    &ctx,
                    OperatorError::Invalid(vec![crate::domain::validate::FieldError {
                        source: "expires_in_days".into(),
                        title: "must be a whole number of days".into(),
                    }]),
                );
            }
        },
    };
    let name = f.get("name").map(String::as_str).unwrap_or("");
    match operators::create_token(&state.services, &ctx.actor, ctx.session.operator.operator_id, name, days).await {
        Ok(c) => show_account(&state, &ctx, Some(&c.token)).await,
        Err(e) => failed(&ctx, e),
    }
}

/// `POST /console/account/tokens/{token_id}/revoke`.
pub async fn revoke_token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiPath(token_id): ApiPath<uuid::Uuid>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let ctx = ctx_or!(&state, &headers, &HashMap::new(), ip, Method::POST, "/console/account/tokens/{token_id}/revoke");
    if !csrf_ok(&ctx, &f) {
        return csrf_failed(&ctx);
    }
    match operators::revoke_token(&state.services, &ctx.actor, ctx.session.operator.operator_id, token_id).await {
        Ok(()) => see_other("/console/account"),
        Err(e) => failed(&ctx, e),
    }
}

/// `POST /console/account/sign-out-everywhere`.
pub async fn sign_out_everywhere(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let ctx = ctx_or!(&state, &headers, &HashMap::new(), ip, Method::POST, "/console/account/sign-out-everywhere");
    if !csrf_ok(&ctx, &f) {
        return csrf_failed(&ctx);
    }
    match operators::sign_out_everywhere(&state.services, &ctx.actor, ctx.session.operator.operator_id).await {
        Ok(_) => see_other("/console/login?notice=signed_out"),
        Err(e) => failed(&ctx, e),
    }
}

// ---------------------------------------------------------------------------------------------
// Operators

fn operators_page(state: &AppState, ctx: &Ctx, list: &[operators::Operator], link: Option<(&str, &str)>) -> Response {
    let l = ctx.l;
    let title = t(l, "Operatoren", "Operators");
    let manage = ctx.may(Permission::ManageOperators);
    let body = html! {
        h1 { (title) }
        @if let Some((name, url)) = link {
            div.notice.ok role="status" {
                p { (t(l, "Link zum Festlegen des Passworts für ", "Set-password link for ")) strong { (name) } (t(l, " – nur jetzt angezeigt; geben Sie ihn persönlich weiter:", " — shown only now; hand it over in person:")) }
                p { code.secret data-testid="set-password-url" { (url) } }
            }
        }
        section.card aria-labelledby="list-h" {
            h2 id="list-h" { (list.len()) " " (if list.len() == 1 { t(l, "Operator", "operator") } else { t(l, "Operatoren", "operators") }) }
            div.table-scroll { table {
                thead { tr {
                    th scope="col" { (t(l, "Name", "Name")) }
                    th scope="col" { (t(l, "E-Mail", "E-mail")) }
                    th scope="col" { (t(l, "Rollen", "Roles")) }
                    th scope="col" { (t(l, "Zugang", "Access")) }
                    th scope="col" { (t(l, "Angelegt", "Created")) }
                    @if manage { th scope="col" { span.skip { (t(l, "Aktion", "Action")) } } }
                } }
                tbody { @for o in list { tr {
                    td { (o.name) }
                    td.wrap { (o.email) }
                    td { @for r in &o.roles { span.badge { (role_name(l, *r)) } } }
                    td {
                        @if !o.active { span.badge.off { (t(l, "deaktiviert", "deactivated")) } }
                        @else if !o.password_set { span.badge.warn { (t(l, "Passwort offen", "no password yet")) } }
                        @else if o.second_factor { span.badge.ok { (t(l, "Passwort + 2FA", "password + 2FA")) } }
                        @else { span.badge.warn { (t(l, "ohne 2FA", "no 2FA")) } }
                    }
                    td { (when(l, o.created_at)) }
                    @if manage { td.actions {
                        a href=(format!("/console/operators/{}", o.operator_id)) aria-label=(format!("{} {}", t(l, "Ändern:", "Change:"), o.name)) { (t(l, "Ändern", "Change")) }
                        form.inline method="post" action=(format!("/console/operators/{}/password-link", o.operator_id)) {
                            input type="hidden" name="csrf" value=(ctx.session.csrf);
                            button.link type="submit" aria-label=(format!("{} {}", t(l, "Neuer Passwort-Link für", "New password link for"), o.name)) { (t(l, "Neuer Passwort-Link", "New password link")) }
                        }
                    } }
                } } }
            } }
        }
        @if manage {
            section.card aria-labelledby="new-h" {
                h2 id="new-h" { (t(l, "Operator anlegen", "Add an operator")) }
                form method="post" action="/console/operators" {
                    input type="hidden" name="csrf" value=(ctx.session.csrf);
                    div.filters {
                        div { label for="oname" { (t(l, "Name", "Name")) } input id="oname" name="name" required maxlength="200" autocomplete="off"; }
                        div { label for="oemail" { (t(l, "E-Mail-Adresse", "E-mail address")) } input id="oemail" name="email" type="email" required autocomplete="off"; }
                    }
                    fieldset {
                        legend { (t(l, "Rollen", "Roles")) }
                        @for r in Role::ALL {
                            div.check {
                                input type="checkbox" id=(format!("role-{}", r.as_str())) name="roles" value=(r.as_str());
                                label for=(format!("role-{}", r.as_str())) { strong { (role_name(l, r)) } " — " (r.describe(l == Locale::De)) }
                            }
                        }
                    }
                    label for="oreason" { (t(l, "Grund (für das Protokoll)", "Reason (for the audit trail)")) }
                    input id="oreason" name="reason" required maxlength="500" placeholder=(t(l, "z. B. neu im Risikoteam ab 1. Januar", "e.g. joins the risk team on 1 January"));
                    @if state.services.config.four_eyes.iter().any(|a| a == "operator.created") {
                        p.hint { (t(l, "Vier Augen: Ein anderer Administrator muss zustimmen, bevor der Operator angelegt wird.", "Four eyes: another admin approves before the operator is created.")) }
                    }
                    button type="submit" { (t(l, "Anlegen", "Add")) }
                }
            }
        }
    };
    respond(StatusCode::OK, shell(state, l, title, Some(ctx), "/console/operators", body))
}

async fn show_operators(state: &AppState, ctx: &Ctx, link: Option<(&str, &str)>) -> Response {
    match operators::list(&state.services).await {
        Ok(list) => operators_page(state, ctx, &list, link),
        Err(e) => failed(ctx, e),
    }
}

/// `GET /console/operators`.
pub async fn operators(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = params(raw.as_deref());
    let ctx = ctx_or!(&state, &headers, &q, ip, Method::GET, "/console/operators");
    show_operators(&state, &ctx, None).await
}

/// `POST /console/operators`: the same use case as `POST /admin/v1/operators`.
pub async fn create_operator(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let f: HashMap<String, String> = pairs.iter().cloned().collect();
    let ctx = ctx_or!(&state, &headers, &HashMap::new(), ip, Method::POST, "/console/operators");
    if !csrf_ok(&ctx, &f) {
        return csrf_failed(&ctx);
    }
    let roles: Vec<String> = pairs.iter().filter(|(k, _)| k == "roles").map(|(_, v)| v.clone()).collect();
    let l = ctx.l;
    // Giving access says why (SPEC §14.2).
    let Some(reason) = f.get("reason").map(|r| r.trim()).filter(|r| !r.is_empty() && r.chars().count() <= 500) else {
        let why = crate::domain::validate::FieldError {
            source: "reason".into(),
            title: t(l, "ist nötig (1 bis 500 Zeichen)", "is required (1 to 500 characters)").into(),
        };
        return failed(&ctx, OperatorError::Invalid(vec![why]));
    };
    let input =
        NewOperator { email: f.get("email").cloned(), name: f.get("name").cloned(), roles: Some(roles.clone()) };
    if state.services.config.four_eyes.iter().any(|a| a == "operator.created") {
        // Four eyes: the same proposal `POST /admin/v1/operators` makes.
        let body = serde_json::json!({"email": input.email, "name": input.name, "roles": roles});
        let proposal = crate::service::approvals::Proposal {
            action: "operator.created",
            method: "POST",
            route: "/admin/v1/operators",
            path: "/admin/v1/operators",
            body: body.to_string(),
            summary: crate::web::auth::masked(body),
            object_kind: Some("operator".into()),
            object_id: None,
            reason,
        };
        return match crate::service::approvals::propose(&state.services, &ctx.actor, proposal).await {
            Ok(_) => show_approvals(
                &state,
                &ctx,
                Some((
                    "ok",
                    t(
                        l,
                        "Vorgeschlagen: Der neue Operator wird angelegt, sobald ein anderer Administrator zustimmt.",
                        "Proposed: the new operator is created once another admin approves.",
                    )
                    .into(),
                )),
            )
            .await,
            Err(e) => failed(&ctx, OperatorError::Conflict(e.to_string())),
        };
    }
    let name = input.name.clone().unwrap_or_default();
    let rec = crate::store::audit::NewAudit {
        reason: Some(reason.to_owned()),
        request_id: ctx.actor.request_id.clone(),
        client_ip: ctx.actor.client_ip.clone(),
        ..Default::default()
    };
    let now = state.services.clock.now();
    match crate::store::audit::scope(rec, now, operators::create(&state.services, &ctx.actor, input)).await {
        Ok(c) => show_operators(&state, &ctx, Some((name.trim(), &c.set_password_url))).await,
        Err(e) => failed(&ctx, e),
    }
}

/// `POST /console/operators/{operator_id}/password-link`: a new link (the old ones end).
pub async fn password_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiPath(id): ApiPath<uuid::Uuid>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let ctx =
        ctx_or!(&state, &headers, &HashMap::new(), ip, Method::POST, "/console/operators/{operator_id}/password-link");
    if !csrf_ok(&ctx, &f) {
        return csrf_failed(&ctx);
    }
    let name = match operators::get(&state.services, id).await {
        Ok(o) => o.name,
        Err(e) => return failed(&ctx, e),
    };
    match operators::reset_link(&state.services, &ctx.actor, id).await {
        Ok(c) => show_operators(&state, &ctx, Some((&name, &c.set_password_url))).await,
        Err(e) => failed(&ctx, e),
    }
}

// ---------------------------------------------------------------------------------------------
// Audit trail

const PAGE: i64 = 50;

fn audit_filter(q: &HashMap<String, String>) -> AuditFilter {
    let text = |k: &str| q.get(k).map(|v| v.trim().chars().take(200).collect::<String>()).filter(|v| !v.is_empty());
    let day = |k: &str| {
        q.get(k)
            .and_then(|v| chrono::NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").ok())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
    };
    AuditFilter {
        actor: text("actor"),
        action: text("action"),
        object: text("object"),
        from: day("from"),
        // "to" names the last day shown: records before the next midnight.
        to: day("to").map(|d| d + chrono::Duration::days(1)),
        before_seq: q.get("before").and_then(|b| b.parse().ok()).filter(|b: &i64| *b > 0),
    }
}

/// The first eight characters of an id (the whole id is the link's title and target).
fn short_id(id: &str) -> String {
    if id.chars().count() > 12 { format!("{}…", id.chars().take(8).collect::<String>()) } else { id.to_owned() }
}

/// A change record as lines of "field: value" (before → after where it has both).
fn changes(raw: &str) -> maud::Markup {
    let v: serde_json::Value = serde_json::from_str(raw).unwrap_or(serde_json::Value::Null);
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".into(),
        serde_json::Value::Array(a) if a.iter().all(|x| x.is_string()) => {
            a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    };
    html! {
        @if let Some(map) = v.as_object().filter(|m| !m.is_empty()) {
            ul.changes { @for (k, val) in map {
                li {
                    span.hint { (k) ": " }
                    @match (val.get("before"), val.get("after")) {
                        (Some(b), Some(a)) => { (show(b)) " → " (show(a)) }
                        _ => { (show(val)) }
                    }
                }
            } }
        } @else {
            "—"
        }
    }
}

fn query_of(q: &HashMap<String, String>, skip: &[&str], extra: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    let mut keys: Vec<_> = q.keys().filter(|k| !skip.contains(&k.as_str())).collect();
    keys.sort();
    for k in keys {
        s.append_pair(k, &q[k]);
    }
    for (k, v) in extra {
        s.append_pair(k, v);
    }
    s.finish()
}

fn csv_field(v: &str) -> String {
    // A leading = + - @ makes a spreadsheet run a formula: quote it as text.
    let v = if v.starts_with(['=', '+', '-', '@']) { format!("'{v}") } else { v.to_owned() };
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v }
}

fn csv_row(r: &AuditRow) -> String {
    let fields = [
        r.seq.to_string(),
        crate::store::audit::stamp(r.at),
        r.actor_kind.clone(),
        r.actor_id.clone().unwrap_or_default(),
        r.actor_label.clone(),
        r.action.clone(),
        r.object_kind.clone().unwrap_or_default(),
        r.object_id.clone().unwrap_or_default(),
        r.reason.clone().unwrap_or_default(),
        r.changes.clone(),
        r.request_id.clone().unwrap_or_default(),
        r.client_ip.clone().unwrap_or_default(),
        hex::encode(&r.hash),
    ];
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// `GET /console/audit`: filters in the URL, newest first, keyset pages; `format=csv` exports
/// every record the filters select (streamed page by page, audited as an export).
pub async fn audit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = params(raw.as_deref());
    let ctx = ctx_or!(&state, &headers, &q, ip, Method::GET, "/console/audit");
    let l = ctx.l;
    let f = audit_filter(&q);
    if q.get("format").map(String::as_str) == Some("csv") {
        if !ctx.may(Permission::Export) {
            return message(
                l,
                Some(&ctx),
                StatusCode::FORBIDDEN,
                t(l, "Keine Berechtigung", "Not allowed"),
                t(l, "Ihre Rollen erlauben keinen Export.", "Your roles do not allow exports."),
            );
        }
        return export_audit(state, ctx, f).await;
    }
    let mut rows = match audit::list(&state.services, &f, PAGE + 1).await {
        Ok(r) => r,
        Err(e) => return failed(&ctx, e.into()),
    };
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let title = t(l, "Protokoll", "Audit trail");
    let v = |k: &str| q.get(k).cloned().unwrap_or_default();
    let next = more
        .then(|| {
            rows.last().map(|r| {
                format!("/console/audit?{}", query_of(&q, &["before", "lang"], &[("before", r.seq.to_string())]))
            })
        })
        .flatten();
    let csv = format!("/console/audit?{}", query_of(&q, &["before", "lang", "format"], &[("format", "csv".into())]));
    let here = format!("/console/audit?{}", query_of(&q, &["lang"], &[]));
    let body = html! {
        h1 { (title) }
        form.card method="get" action="/console/audit" role="search" aria-label=(t(l, "Protokoll filtern", "Filter the audit trail")) {
            div.filters {
                div { label for="f-actor" { (t(l, "Handelnde Person (Name oder ID)", "Actor (name or id)")) } input id="f-actor" name="actor" value=(v("actor")); }
                div { label for="f-action" { (t(l, "Aktion", "Action")) } input id="f-action" name="action" value=(v("action")) placeholder="operator.created"; }
                div { label for="f-object" { (t(l, "Objekt-ID", "Object id")) } input id="f-object" name="object" value=(v("object")); }
                div { label for="f-from" { (t(l, "Von", "From")) } input id="f-from" name="from" type="date" value=(v("from")); }
                div { label for="f-to" { (t(l, "Bis", "To")) } input id="f-to" name="to" type="date" value=(v("to")); }
                div { button type="submit" { (t(l, "Filtern", "Filter")) } }
            }
        }
        div.card {
            div.actions {
                span { (rows.len()) @if more { "+" } " " (if rows.len() == 1 && !more { t(l, "Eintrag", "record") } else { t(l, "Einträge", "records") }) }
                @if ctx.may(Permission::Export) { a href=(csv) { (t(l, "Als CSV exportieren", "Export as CSV")) } }
            }
            div.table-scroll { table.audit {
                caption.skip { (title) }
                thead { tr {
                    th scope="col" class="num" { "#" }
                    th scope="col" { (t(l, "Zeit", "Time")) }
                    th scope="col" { (t(l, "Wer", "Actor")) }
                    th scope="col" { (t(l, "Aktion", "Action")) }
                    th scope="col" { (t(l, "Objekt", "Object")) }
                    th scope="col" { (t(l, "Grund", "Reason")) }
                    th scope="col" { (t(l, "Änderung", "Change")) }
                    th scope="col" { (t(l, "Adresse", "Address")) }
                } }
                tbody { @for r in &rows { tr {
                    td.num { (r.seq) }
                    td.nowrap { (when(l, r.at)) }
                    td { (r.actor_label) br; span.hint { (r.actor_kind) } }
                    td { code { (r.action) } }
                    td {
                        @if let Some(k) = &r.object_kind { (k) }
                        @if let Some(id) = &r.object_id {
                            br;
                            a.id href=(format!("/console/audit?object={id}")) title=(id)
                                aria-label=(format!("{} {id}", t(l, "Alle Einträge zu", "Every record of"))) { (short_id(id)) }
                        }
                    }
                    td.wrap { (r.reason.as_deref().unwrap_or("—")) }
                    td { (changes(&r.changes)) }
                    td { (r.client_ip.as_deref().unwrap_or("—")) }
                } } }
            } }
            @if rows.is_empty() { p { (t(l, "Keine Einträge für diese Filter.", "No records for these filters.")) } }
            div.pager { @if let Some(n) = next { a href=(n) rel="next" { (t(l, "Ältere Einträge", "Older records")) } } }
        }
    };
    respond(StatusCode::OK, shell(&state, l, title, Some(&ctx), &here, body))
}

async fn export_audit(state: AppState, ctx: Ctx, f: AuditFilter) -> Response {
    // The export itself is audited before anything is sent.
    let now = state.services.clock.now();
    let recorded: Result<(), crate::store::StoreError> = async {
        let mut tx = state.services.db.begin().await?;
        let filters = serde_json::json!({
            "actor": f.actor, "action": f.action, "object": f.object, "from": f.from, "to": f.to,
        });
        audit::record(
            &mut tx,
            &ctx.actor,
            Entry {
                action: "audit.exported",
                object_kind: Some("audit_events"),
                object_id: None,
                reason: None,
                changes: filters,
            },
            now,
        )
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = recorded {
        return failed(&ctx, e.into());
    }
    let services = state.services.clone();
    let stream = futures_util::stream::unfold((Some(f), true), move |(f, first)| {
        let services = services.clone();
        async move {
            let mut f = f?;
            let mut out = String::new();
            if first {
                out.push_str("seq,at,actor_kind,actor_id,actor,action,object_kind,object_id,reason,changes,request_id,client_ip,hash\r\n");
            }
            let rows = match audit::list(&services, &f, 1000).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %crate::web::error::error_chain(&e), "audit export failed midway");
                    return Some((Err(std::io::Error::other("export failed")), (None, false)));
                }
            };
            let done = rows.len() < 1000;
            for r in &rows {
                out.push_str(&csv_row(r));
            }
            f.before_seq = rows.last().map(|r| r.seq);
            let next = if done || f.before_seq.is_none() { None } else { Some(f) };
            if out.is_empty() && next.is_none() && !first {
                return None;
            }
            Some((Ok::<_, std::io::Error>(Bytes::from(out)), (next, false)))
        }
    });
    let mut r = axum::body::Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"audit.csv\""));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

// ---------------------------------------------------------------------------------------------
// Approvals (four eyes)

fn approvals_page(
    state: &AppState,
    ctx: &Ctx,
    list: &[crate::service::approvals::Approval],
    notice: Option<(&str, String)>,
) -> Response {
    let l = ctx.l;
    let title = t(l, "Freigaben", "Approvals");
    let me = ctx.session.operator.operator_id.to_string();
    let body = html! {
        h1 { (title) " " span.badge { (list.len()) } }
        @if let Some((kind, text)) = &notice { div class=(format!("notice {kind}")) role="status" { (text) } }
        p.hint { (t(l, "Vier Augen: Diese Aktionen wirken erst, wenn ein zweiter Operator mit der Berechtigung sie freigibt. Älteste zuerst; nach 7 Tagen verfallen sie.", "Four eyes: these actions take effect only when a second operator with the permission approves them. Oldest first; they expire after 7 days.")) }
        @if list.is_empty() {
            div.card { p { (t(l, "Nichts wartet auf eine Freigabe.", "Nothing is waiting for approval.")) } }
        }
        @for a in list {
            section.card aria-labelledby=(format!("ap-{}", a.approval_id)) {
                h2 id=(format!("ap-{}", a.approval_id)) { code { (a.action) } }
                dl {
                    dt { (t(l, "Vorgeschlagen von", "Proposed by")) } dd { (a.proposed_by) }
                    dt { (t(l, "Am", "On")) } dd { (when(l, a.created_at)) }
                    dt { (t(l, "Verfällt", "Expires")) } dd { (when(l, a.expires_at)) }
                    dt { (t(l, "Grund", "Reason")) } dd { (a.reason) }
                    dt { (t(l, "Vorgang", "Operation")) } dd { code { (a.method) " " (a.path) } }
                    dt { (t(l, "Änderung", "Change")) } dd { (changes(&a.changes.to_string())) }
                }
                @if a.proposed_by_id.as_deref() == Some(me.as_str()) {
                    p.hint { (t(l, "Ihr Vorschlag: Ein anderer Operator entscheidet.", "Your proposal: another operator decides.")) }
                } @else {
                    form method="post" action=(format!("/console/queues/approvals/{}/decide", a.approval_id)) {
                        input type="hidden" name="csrf" value=(ctx.session.csrf);
                        label for=(format!("reason-{}", a.approval_id)) { (t(l, "Ihr Grund", "Your reason")) }
                        input id=(format!("reason-{}", a.approval_id)) name="reason" required maxlength="500";
                        div.actions {
                            button type="submit" name="decision" value="approve" { (t(l, "Freigeben", "Approve")) }
                            button.secondary type="submit" name="decision" value="reject" { (t(l, "Ablehnen", "Reject")) }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, shell(state, l, title, Some(ctx), "/console/queues/approvals", body))
}

async fn show_approvals(state: &AppState, ctx: &Ctx, notice: Option<(&str, String)>) -> Response {
    match crate::service::approvals::list(&state.services, Some("pending"), 200).await {
        Ok(list) => approvals_page(state, ctx, &list, notice),
        Err(e) => failed(ctx, OperatorError::Conflict(e.to_string())),
    }
}

/// `GET /console/queues/approvals`: what waits for a second operator, oldest first.
pub async fn approvals(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = params(raw.as_deref());
    let ctx = ctx_or!(&state, &headers, &q, ip, Method::GET, "/console/queues/approvals");
    show_approvals(&state, &ctx, None).await
}

/// `POST /console/queues/approvals/{approval_id}/decide`: approve or reject, through the same
/// use case as `POST /admin/v1/approvals/{id}/approve|reject`.
pub async fn decide(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiPath(id): ApiPath<uuid::Uuid>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let ctx =
        ctx_or!(&state, &headers, &HashMap::new(), ip, Method::POST, "/console/queues/approvals/{approval_id}/decide");
    if !csrf_ok(&ctx, &f) {
        return csrf_failed(&ctx);
    }
    let l = ctx.l;
    let reason = f.get("reason").map(String::as_str);
    let outcome = match f.get("decision").map(String::as_str) {
        Some("approve") => crate::web::approvals::carry_out(&state, &ctx.actor, id, reason).await.map(|(_, a)| a),
        Some("reject") => crate::web::approvals::decide_reject(&state, &ctx.actor, id, reason).await,
        _ => {
            return show_approvals(
                &state,
                &ctx,
                Some(("error", t(l, "Bitte Freigeben oder Ablehnen wählen.", "Choose approve or reject.").into())),
            )
            .await;
        }
    };
    let notice = match outcome {
        Ok(a) if a.state == "approved" => {
            let mut text = format!("{} {}", t(l, "Freigegeben und ausgeführt:", "Approved and carried out:"), a.action);
            // A new operator's set-password link, shown to the approver this once.
            if let Some(url) = a.result.as_ref().and_then(|r| r["body"]["set_password_url"].as_str()) {
                text.push_str(&format!(
                    " — {} {url}",
                    t(l, "Link zum Festlegen des Passworts (nur jetzt):", "set-password link (shown only now):")
                ));
            }
            ("ok", text)
        }
        Ok(a) => ("ok", format!("{} {}", t(l, "Abgelehnt:", "Rejected:"), a.action)),
        Err(e) => ("error", error_title(e)),
    };
    show_approvals(&state, &ctx, Some(notice)).await
}

/// What an API error says, for a notice.
fn error_title(e: crate::web::error::ApiError) -> String {
    e.title()
}

// ---------------------------------------------------------------------------------------------
// One operator: roles, access, second factor

fn operator_page(state: &AppState, ctx: &Ctx, o: &operators::Operator, notice: Option<(&str, String)>) -> Response {
    let l = ctx.l;
    let title = o.name.clone();
    let manage = ctx.may(Permission::ManageOperators);
    let body = html! {
        p { a href="/console/operators" { "← " (t(l, "Operatoren", "Operators")) } }
        h1 { (title) }
        @if let Some((kind, text)) = &notice { div class=(format!("notice {kind}")) role="status" { (text) } }
        div.cols {
            section.card aria-labelledby="op-h" {
                h2 id="op-h" { (t(l, "Angaben", "Details")) }
                dl {
                    dt { (t(l, "E-Mail", "E-mail")) } dd { (o.email) }
                    dt { (t(l, "Rollen", "Roles")) } dd { @for r in &o.roles { span.badge { (role_name(l, *r)) } } }
                    dt { (t(l, "Zugang", "Access")) } dd { @if o.active { span.badge.ok { (t(l, "aktiv", "active")) } } @else { span.badge.off { (t(l, "deaktiviert", "deactivated")) } } }
                    dt { (t(l, "Zweiter Faktor", "Second factor")) } dd { @if o.second_factor { (t(l, "eingerichtet", "enrolled")) } @else { (t(l, "keiner", "none")) } }
                }
            }
            @if manage {
                section.card aria-labelledby="sf-h" {
                    h2 id="sf-h" { (t(l, "Zweiten Faktor zurücksetzen", "Reset the second factor")) }
                    p.hint { (t(l, "Bei verlorenem Telefon: Die Sitzungen enden, der Operator richtet bei der nächsten Anmeldung einen neuen ein.", "For a lost phone: the sessions end and the operator sets up a new one at the next sign-in.")) }
                    form method="post" action=(format!("/console/operators/{}/second-factor-reset", o.operator_id)) {
                        input type="hidden" name="csrf" value=(ctx.session.csrf);
                        label for="sf-reason" { (t(l, "Grund", "Reason")) }
                        input id="sf-reason" name="reason" required maxlength="500";
                        button.danger type="submit" { (t(l, "Zurücksetzen", "Reset")) }
                    }
                }
            }
        }
        @if manage {
            section.card aria-labelledby="ch-h" {
                h2 id="ch-h" { (t(l, "Rollen und Zugang ändern", "Change roles and access")) }
                form method="post" action=(format!("/console/operators/{}", o.operator_id)) {
                    input type="hidden" name="csrf" value=(ctx.session.csrf);
                    fieldset {
                        legend { (t(l, "Rollen", "Roles")) }
                        @for r in Role::ALL {
                            div.check {
                                input type="checkbox" id=(format!("role-{}", r.as_str())) name="roles" value=(r.as_str()) checked[o.roles.contains(&r)];
                                label for=(format!("role-{}", r.as_str())) { strong { (role_name(l, r)) } " — " (r.describe(l == Locale::De)) }
                            }
                        }
                    }
                    div.check {
                        input type="checkbox" id="active" name="active" value="true" checked[o.active];
                        label for="active" { (t(l, "Aktiv (ohne Haken: deaktiviert; Sitzungen und Tokens enden)", "Active (unticked: deactivated; sessions and tokens end)")) }
                    }
                    label for="ch-reason" { (t(l, "Grund (für das Protokoll)", "Reason (for the audit trail)")) }
                    input id="ch-reason" name="reason" required maxlength="500";
                    @if state.services.config.four_eyes.iter().any(|a| a == "operator.role_added") {
                        p.hint { (t(l, "Vier Augen: Eine zusätzliche Rolle wirkt erst, wenn ein anderer Administrator zustimmt.", "Four eyes: an added role takes effect once another admin approves.")) }
                    }
                    button type="submit" { (t(l, "Speichern", "Save")) }
                }
            }
        }
    };
    respond(StatusCode::OK, shell(state, l, &title, Some(ctx), "/console/operators", body))
}

async fn show_operator(state: &AppState, ctx: &Ctx, id: uuid::Uuid, notice: Option<(&str, String)>) -> Response {
    match operators::get(&state.services, id).await {
        Ok(o) => operator_page(state, ctx, &o, notice),
        Err(e) => failed(ctx, e),
    }
}

/// `GET /console/operators/{operator_id}`.
pub async fn operator(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Response {
    let q = params(raw.as_deref());
    let ctx = ctx_or!(&state, &headers, &q, ip, Method::GET, "/console/operators/{operator_id}");
    show_operator(&state, &ctx, id, None).await
}

/// A console form's reason (1 to 500 characters).
fn reason_of(f: &HashMap<String, String>) -> Option<&str> {
    f.get("reason").map(|r| r.trim()).filter(|r| !r.is_empty() && r.chars().count() <= 500)
}

fn reason_missing(ctx: &Ctx) -> Response {
    let why = crate::domain::validate::FieldError {
        source: "reason".into(),
        title: t(ctx.l, "ist nötig (1 bis 500 Zeichen)", "is required (1 to 500 characters)").into(),
    };
    failed(ctx, OperatorError::Invalid(vec![why]))
}

/// The pending audit record of a console action: its reason and origin.
fn console_audit(ctx: &Ctx, reason: &str) -> crate::store::audit::NewAudit {
    crate::store::audit::NewAudit {
        reason: Some(reason.to_owned()),
        request_id: ctx.actor.request_id.clone(),
        client_ip: ctx.actor.client_ip.clone(),
        ..Default::default()
    }
}

/// `POST /console/operators/{operator_id}`: the same use case (and four eyes) as `PATCH
/// /admin/v1/operators/{id}`.
pub async fn update_operator(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiPath(id): ApiPath<uuid::Uuid>,
    body: Bytes,
) -> Response {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let f: HashMap<String, String> = pairs.iter().cloned().collect();
    let ctx = ctx_or!(&state, &headers, &HashMap::new(), ip, Method::POST, "/console/operators/{operator_id}");
    if !csrf_ok(&ctx, &f) {
        return csrf_failed(&ctx);
    }
    let Some(reason) = reason_of(&f) else { return reason_missing(&ctx) };
    let l = ctx.l;
    let roles: Vec<String> = pairs.iter().filter(|(k, _)| k == "roles").map(|(_, v)| v.clone()).collect();
    let patch = operators::OperatorPatch { roles: Some(roles.clone()), active: Some(f.contains_key("active")) };
    let four_eyes = state.services.config.four_eyes.iter().any(|a| a == "operator.role_added");
    if four_eyes && operators::adds_a_role(&state.services, id, &patch).await {
        let body = serde_json::json!({"roles": roles, "active": patch.active});
        let path = format!("/admin/v1/operators/{id}");
        let proposal = crate::service::approvals::Proposal {
            action: "operator.role_added",
            method: "PATCH",
            route: "/admin/v1/operators/{operator_id}",
            path: &path,
            body: body.to_string(),
            summary: body,
            object_kind: Some("operator".into()),
            object_id: Some(id.to_string()),
            reason,
        };
        return match crate::service::approvals::propose(&state.services, &ctx.actor, proposal).await {
            Ok(_) => {
                show_approvals(
                    &state,
                    &ctx,
                    Some((
                        "ok",
                        t(
                            l,
                            "Vorgeschlagen: Die zusätzliche Rolle wirkt, sobald ein anderer Administrator zustimmt.",
                            "Proposed: the added role takes effect once another admin approves.",
                        )
                        .into(),
                    )),
                )
                .await
            }
            Err(e) => failed(&ctx, OperatorError::Conflict(e.to_string())),
        };
    }
    let now = state.services.clock.now();
    match crate::store::audit::scope(
        console_audit(&ctx, reason),
        now,
        operators::update(&state.services, &ctx.actor, id, patch),
    )
    .await
    {
        Ok(_) => show_operator(&state, &ctx, id, Some(("ok", t(l, "Gespeichert.", "Saved.").into()))).await,
        Err(e) => failed(&ctx, e),
    }
}

/// `POST /console/operators/{operator_id}/second-factor-reset`.
pub async fn reset_second_factor(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiPath(id): ApiPath<uuid::Uuid>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let ctx = ctx_or!(
        &state,
        &headers,
        &HashMap::new(),
        ip,
        Method::POST,
        "/console/operators/{operator_id}/second-factor-reset"
    );
    if !csrf_ok(&ctx, &f) {
        return csrf_failed(&ctx);
    }
    let Some(reason) = reason_of(&f) else { return reason_missing(&ctx) };
    let now = state.services.clock.now();
    let l = ctx.l;
    match crate::store::audit::scope(
        console_audit(&ctx, reason),
        now,
        operators::reset_second_factor(&state.services, &ctx.actor, id),
    )
    .await
    {
        Ok(_) => {
            show_operator(
                &state,
                &ctx,
                id,
                Some(("ok", t(l, "Der zweite Faktor ist zurückgesetzt.", "The second factor is reset.").into())),
            )
            .await
        }
        Err(e) => failed(&ctx, e),
    }
}
