//! The operator console at `/console` (SPEC §14): server-rendered, German and English, no
//! scripts and nothing loaded from elsewhere, usable by keyboard at 1440 px and on a tablet.
//! Sign-in (password, then the second factor), sessions in the database, a CSRF token on every
//! form, and each page's permission from [`super::permissions::CONSOLE`]. Every action calls the
//! same use case as the admin API.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::AppState;
use super::extract::ApiPath;
use super::portal::{ClientIp, cross_site, form, guess_lang, lang_param, params, secure_flag};
use crate::domain::locale::Locale;
use crate::domain::operators::Permission;
use crate::service::audit::Actor;
use crate::service::operators::{self, ConsoleSession, SetPassword, SignIn};

mod pages;

/// The session cookie (a random id; the database holds its digest).
const COOKIE: &str = "nt_console";
/// Before there is a session, the sign-in forms carry this cookie's value as their CSRF token.
const PRE_COOKIE: &str = "nt_console_pre";

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/console", get(pages::home))
        .route("/console/login", get(login_page).post(login))
        .route("/console/login/second-factor", get(second_factor_page).post(second_factor))
        .route("/console/logout", post(logout))
        .route("/console/set-password/{token}", get(set_password_page).post(set_password))
        .route("/console/enrol", get(enrol_page).post(enrol))
        .route("/console/account", get(pages::account))
        .route("/console/account/tokens", post(pages::create_token))
        .route("/console/account/tokens/{token_id}/revoke", post(pages::revoke_token))
        .route("/console/account/sign-out-everywhere", post(pages::sign_out_everywhere))
        .route("/console/operators", get(pages::operators).post(pages::create_operator))
        .route("/console/operators/{operator_id}", get(pages::operator).post(pages::update_operator))
        .route("/console/operators/{operator_id}/second-factor-reset", post(pages::reset_second_factor))
        .route("/console/operators/{operator_id}/password-link", post(pages::password_link))
        .route("/console/audit", get(pages::audit))
        .route("/console/queues/approvals", get(pages::approvals))
        .route("/console/queues/approvals/{approval_id}/decide", post(pages::decide))
        .route("/console/assets/console.css", get(stylesheet))
}

// ---------------------------------------------------------------------------------------------
// Requests and responses

pub(crate) fn t(l: Locale, de: &'static str, en: &'static str) -> &'static str {
    l.pick(de, en)
}

/// The value of the cookie `name` of a request.
pub(crate) fn cookie_named(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// `HttpOnly; SameSite=Strict; Path=/console`, and `Secure` except in a sandbox over plain http.
fn cookie_header(state: &AppState, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        secure_flag(state)
    ))
    .ok()
}

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

fn harden(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
}

pub(crate) fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup).into_response();
    harden(r.headers_mut());
    r
}

pub(crate) fn see_other(to: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    harden(r.headers_mut());
    r
}

fn with_cookie(mut r: Response, c: Option<HeaderValue>) -> Response {
    if let Some(c) = c {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

fn request_id() -> Option<String> {
    super::error::REQUEST_ID.try_with(Clone::clone).ok()
}

/// A signed-in operator's request: the session, its language and the actor it acts as.
pub(crate) struct Ctx {
    pub session: ConsoleSession,
    pub l: Locale,
    pub actor: Actor,
}

impl Ctx {
    pub fn may(&self, p: Permission) -> bool {
        self.actor.may(p)
    }
}

/// The session of a request that needs a full sign-in and the permission `CONSOLE` names for
/// `method route`; otherwise the response to send (sign-in page, second factor, 403).
pub(crate) async fn require(
    state: &AppState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    ip: std::net::IpAddr,
    method: Method,
    route: &str,
) -> Result<Ctx, Response> {
    let Some(cookie) = cookie_named(headers, COOKIE) else { return Err(see_other("/console/login")) };
    let session = match operators::session(&state.services, &cookie).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(see_other("/console/login")),
        Err(e) => {
            tracing::warn!(error = %super::error::error_chain(&e), "console session could not be read");
            return Err(see_other("/console/login"));
        }
    };
    let enrolling = route == "/console/enrol";
    if session.needs_second_factor && !enrolling {
        return Err(see_other(if session.operator.second_factor {
            "/console/login/second-factor"
        } else {
            "/console/enrol"
        }));
    }
    let mut l = session.locale;
    if let Some(want) = lang_param(q).filter(|w| *w != l) {
        let _ = operators::set_locale(&state.services, session.operator.operator_id, want).await;
        l = want;
    }
    let actor = session.actor(request_id(), Some(ip.to_string()));
    let needed = super::permissions::console(&method, route);
    if !needed.is_some_and(|p| actor.may(p)) {
        let ctx = Ctx { session, l, actor };
        return Err(message(
            l,
            Some(&ctx),
            StatusCode::FORBIDDEN,
            t(l, "Keine Berechtigung", "Not allowed"),
            t(l, "Ihre Rollen erlauben diese Seite nicht.", "Your roles do not allow this page."),
        ));
    }
    Ok(Ctx { session, l, actor })
}

/// A POST's CSRF token is the session's.
pub(crate) fn csrf_ok(ctx: &Ctx, f: &HashMap<String, String>) -> bool {
    f.get("csrf").is_some_and(|c| ctx.session.csrf_ok(c))
}

pub(crate) fn csrf_failed(ctx: &Ctx) -> Response {
    let l = ctx.l;
    message(
        l,
        Some(ctx),
        StatusCode::FORBIDDEN,
        t(l, "Formular abgelaufen", "Form expired"),
        t(
            l,
            "Das Formular war nicht mehr gültig. Laden Sie die Seite neu und versuchen Sie es erneut.",
            "The form was no longer valid. Reload the page and try again.",
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// The frame of every page

const STYLE: &str = include_str!("console.css");

async fn stylesheet() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    r
}

fn nav_item(here: &str, href: &'static str, label: &str) -> Markup {
    let current = if here == href || (href != "/console" && here.starts_with(href)) { Some("page") } else { None };
    html! { a href=(href) aria-current=[current] { (label) } }
}

pub(crate) fn shell(state: &AppState, l: Locale, title: &str, who: Option<&Ctx>, here: &str, body: Markup) -> Markup {
    let other = if l == Locale::De { ("en", "English") } else { ("de", "Deutsch") };
    let sandbox = state.services.config.is_sandbox();
    let sep = if here.contains('?') { "&" } else { "?" };
    html! {
        (DOCTYPE)
        html lang=(l.as_str()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · netterms console" }
                link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body.sandbox[sandbox] {
                a.skip href="#main" { (t(l, "Zum Inhalt", "Skip to content")) }
                header.top {
                    div.bar {
                        a.brand href="/console" { "netterms " span.muted { (t(l, "Konsole", "console")) } }
                        @if sandbox {
                            span.env.sandbox { (t(l, "Sandbox", "Sandbox")) }
                        } @else {
                            span.env.production { (t(l, "Produktion", "Production")) }
                        }
                        @if let Some(c) = who {
                            nav aria-label=(t(l, "Hauptnavigation", "Main navigation")) {
                                (nav_item(here, "/console", t(l, "Übersicht", "Home")))
                                @if c.may(Permission::Read) {
                                    (nav_item(here, "/console/operators", t(l, "Operatoren", "Operators")))
                                    (nav_item(here, "/console/queues/approvals", t(l, "Freigaben", "Approvals")))
                                    (nav_item(here, "/console/audit", t(l, "Protokoll", "Audit trail")))
                                }
                            }
                        }
                        div.tools {
                            a href=(format!("{here}{sep}lang={}", other.0)) lang=(other.0) { (other.1) }
                            @if let Some(c) = who {
                                a href="/console/account" aria-current=[(here == "/console/account").then_some("page")] {
                                    (c.session.operator.name)
                                }
                                form.inline method="post" action="/console/logout" {
                                    input type="hidden" name="csrf" value=(c.session.csrf);
                                    button.link type="submit" { (t(l, "Abmelden", "Sign out")) }
                                }
                            }
                        }
                    }
                }
                main id="main" { (body) }
                footer.site {
                    a href=(format!("/portal/imprint?lang={}", l.as_str())) { (t(l, "Impressum", "Imprint")) }
                }
            }
        }
    }
}

/// A page that only says something (refusals, errors), in the frame without navigation.
pub(crate) fn message(l: Locale, who: Option<&Ctx>, status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        h1 { (title) }
        div.card { p { (text) } p { a href=(if who.is_some() { "/console" } else { "/console/login" }) { (t(l, "Weiter", "Continue")) } } }
    };
    respond(status, plain_shell(l, title, who, body))
}

/// The frame without navigation: message pages, and the recovery codes shown once.
fn plain_shell(l: Locale, title: &str, who: Option<&Ctx>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(l.as_str()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · netterms console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                header.top { div.bar {
                    a.brand href="/console" { "netterms " span.muted { (t(l, "Konsole", "console")) } }
                    @if let Some(c) = who {
                        div.tools {
                            form.inline method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(c.session.csrf);
                                button.link type="submit" { (t(l, "Abmelden", "Sign out")) }
                            }
                        }
                    }
                } }
                main id="main" { (body) }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sign-in

/// The sign-in forms' CSRF token: the pre-session cookie's value, set if missing.
fn pre_token(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie_named(headers, PRE_COOKIE).filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_alphanumeric())) {
        Some(v) => (v, None),
        None => {
            let v = crate::secrets::random_alphanumeric(32);
            let c = cookie_header(state, PRE_COOKIE, &v, 3600);
            (v, c)
        }
    }
}

fn pre_token_ok(headers: &HeaderMap, f: &HashMap<String, String>) -> bool {
    use subtle::ConstantTimeEq;
    match (cookie_named(headers, PRE_COOKIE), f.get("csrf")) {
        (Some(a), Some(b)) => a.len() == 32 && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes())),
        _ => false,
    }
}

fn login_form(state: &AppState, l: Locale, csrf: &str, email: &str, notice: Option<(&str, &str)>) -> Markup {
    let title = t(l, "Anmelden", "Sign in");
    shell(
        state,
        l,
        title,
        None,
        "/console/login",
        html! {
            div.narrow {
                h1 { (title) }
                @if let Some((kind, text)) = notice {
                    div class=(format!("notice {kind}")) role="alert" { (text) }
                }
                div.card {
                    form method="post" action="/console/login" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="lang" value=(l.as_str());
                        label for="email" { (t(l, "E-Mail-Adresse", "E-mail address")) }
                        input id="email" name="email" type="email" autocomplete="username" required value=(email);
                        label for="password" { (t(l, "Passwort", "Password")) }
                        input id="password" name="password" type="password" autocomplete="current-password" required;
                        button type="submit" { (title) }
                    }
                }
                p.hint { (t(l, "Kein Passwort? Ein Administrator schickt Ihnen einen Link, mit dem Sie es festlegen.", "No password yet? An administrator sends you a link to set it.")) }
            }
        },
    )
}

/// `GET /console/login`.
async fn login_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = params(raw.as_deref());
    let l = guess_lang(&q, &headers);
    let (csrf, set) = pre_token(&state, &headers);
    let notice = match q.get("notice").map(String::as_str) {
        Some("password_set") => Some((
            "ok",
            t(l, "Ihr Passwort ist gesetzt. Melden Sie sich jetzt an.", "Your password is set. Sign in now."),
        )),
        Some("signed_out") => Some(("ok", t(l, "Sie sind abgemeldet.", "You are signed out."))),
        _ => None,
    };
    with_cookie(respond(StatusCode::OK, login_form(&state, l, &csrf, "", notice)), set)
}

/// `POST /console/login`: address and password.
async fn login(State(state): State<AppState>, ClientIp(ip): ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let l = lang_param(&f).unwrap_or_else(|| guess_lang(&HashMap::new(), &headers));
    let (csrf, set) = pre_token(&state, &headers);
    if cross_site(&state, &headers) || !pre_token_ok(&headers, &f) {
        let notice = Some((
            "error",
            t(
                l,
                "Das Formular war nicht mehr gültig. Bitte erneut anmelden.",
                "The form was no longer valid. Please sign in again.",
            ),
        ));
        return with_cookie(respond(StatusCode::FORBIDDEN, login_form(&state, l, &csrf, "", notice)), set);
    }
    let email = f.get("email").map(String::as_str).unwrap_or("");
    let password = f.get("password").map(String::as_str).unwrap_or("");
    let previous = cookie_named(&headers, COOKIE);
    let outcome =
        operators::sign_in(&state.services, email, password, previous.as_deref(), request_id(), &ip.to_string()).await;
    match outcome {
        Ok(SignIn::Session(s)) => {
            let to = if !s.needs_second_factor {
                "/console"
            } else if has_second_factor(&state, email).await {
                "/console/login/second-factor"
            } else {
                "/console/enrol"
            };
            with_cookie(see_other(to), cookie_header(&state, COOKIE, &s.cookie, s.max_age_secs))
        }
        Ok(SignIn::Failed) => {
            let notice =
                Some(("error", t(l, "E-Mail-Adresse oder Passwort ist falsch.", "Wrong e-mail address or password.")));
            with_cookie(respond(StatusCode::UNAUTHORIZED, login_form(&state, l, &csrf, email, notice)), set)
        }
        Ok(SignIn::Locked { retry_after_secs }) => locked_page(&state, l, &csrf, email, retry_after_secs, set),
        Err(e) => {
            tracing::error!(error = %super::error::error_chain(&e), "console sign-in failed");
            message(
                l,
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                t(l, "Nicht verfügbar", "Unavailable"),
                t(l, "Bitte versuchen Sie es gleich noch einmal.", "Please try again in a moment."),
            )
        }
    }
}

async fn has_second_factor(state: &AppState, email: &str) -> bool {
    operators::by_email(&state.services, email).await.is_ok_and(|o| o.second_factor)
}

fn locked_page(state: &AppState, l: Locale, csrf: &str, email: &str, retry: i64, set: Option<HeaderValue>) -> Response {
    let minutes = (retry + 59) / 60;
    let text = match l {
        Locale::De => format!(
            "Zu viele fehlgeschlagene Anmeldungen: Das Konto ist für bis zu {minutes} Minuten gesperrt. Versuchen Sie es danach erneut."
        ),
        Locale::En => format!(
            "Too many failed sign-ins: the account is locked for up to {minutes} minutes. Try again after that."
        ),
    };
    let mut r = respond(StatusCode::TOO_MANY_REQUESTS, login_form(state, l, csrf, email, Some(("error", &text))));
    if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    with_cookie(r, set)
}

/// A session at the second-factor stage (or a full one, which goes home).
async fn half_session(state: &AppState, headers: &HeaderMap) -> Result<ConsoleSession, Response> {
    let Some(cookie) = cookie_named(headers, COOKIE) else { return Err(see_other("/console/login")) };
    match operators::session(&state.services, &cookie).await {
        Ok(Some(s)) if s.needs_second_factor => Ok(s),
        Ok(Some(_)) => Err(see_other("/console")),
        _ => Err(see_other("/console/login")),
    }
}

fn second_factor_form(state: &AppState, s: &ConsoleSession, l: Locale, notice: Option<&str>) -> Markup {
    let title = t(l, "Zweiter Faktor", "Second factor");
    shell(
        state,
        l,
        title,
        None,
        "/console/login/second-factor",
        html! {
            div.narrow {
                h1 { (title) }
                @if let Some(n) = notice { div.notice.error role="alert" { (n) } }
                div.card {
                    p { (t(l, "Geben Sie den sechsstelligen Code aus Ihrer Authenticator-App ein – oder einen Ihrer Wiederherstellungscodes.", "Enter the six-digit code from your authenticator app — or one of your recovery codes.")) }
                    form method="post" action="/console/login/second-factor" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        label for="code" { (t(l, "Code", "Code")) }
                        input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required maxlength="20";
                        button type="submit" { (t(l, "Bestätigen", "Confirm")) }
                    }
                }
            }
        },
    )
}

/// `GET /console/login/second-factor`.
async fn second_factor_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = params(raw.as_deref());
    let s = match half_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !s.operator.second_factor {
        return see_other("/console/enrol");
    }
    let l = lang_param(&q).unwrap_or(s.locale);
    respond(StatusCode::OK, second_factor_form(&state, &s, l, None))
}

/// `POST /console/login/second-factor`: a TOTP code or a recovery code.
async fn second_factor(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let s = match half_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let l = s.locale;
    if !f.get("csrf").is_some_and(|c| s.csrf_ok(c)) || cross_site(&state, &headers) {
        return respond(
            StatusCode::FORBIDDEN,
            second_factor_form(
                &state,
                &s,
                l,
                Some(t(l, "Das Formular war nicht mehr gültig.", "The form was no longer valid.")),
            ),
        );
    }
    let code = f.get("code").map(String::as_str).unwrap_or("");
    match operators::second_factor(&state.services, &s, code, request_id(), &ip.to_string()).await {
        Ok(SignIn::Session(n)) => {
            with_cookie(see_other("/console"), cookie_header(&state, COOKIE, &n.cookie, n.max_age_secs))
        }
        Ok(SignIn::Failed) => respond(
            StatusCode::UNAUTHORIZED,
            second_factor_form(
                &state,
                &s,
                l,
                Some(t(l, "Der Code ist falsch oder wurde schon benutzt.", "The code is wrong or was used already.")),
            ),
        ),
        Ok(SignIn::Locked { retry_after_secs }) => {
            let (csrf, set) = pre_token(&state, &headers);
            locked_page(&state, l, &csrf, &s.operator.email, retry_after_secs, set)
        }
        Err(e) => {
            tracing::warn!(error = %super::error::error_chain(&e), "second factor failed");
            see_other("/console/enrol")
        }
    }
}

/// `POST /console/logout`.
async fn logout(State(state): State<AppState>, ClientIp(ip): ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let Some(cookie) = cookie_named(&headers, COOKIE) else { return see_other("/console/login") };
    if let Ok(Some(s)) = operators::session(&state.services, &cookie).await
        && f.get("csrf").is_some_and(|c| s.csrf_ok(c))
    {
        let actor = s.actor(request_id(), Some(ip.to_string()));
        if let Err(e) = operators::sign_out(&state.services, &s, &actor).await {
            tracing::warn!(error = %super::error::error_chain(&e), "console sign-out failed");
        }
    }
    with_cookie(see_other("/console/login?notice=signed_out"), cookie_header(&state, COOKIE, "", 0))
}

// ---------------------------------------------------------------------------------------------
// Set password (one-time link)

fn set_password_form(state: &AppState, l: Locale, token: &str, csrf: &str, name: &str, notice: Option<&str>) -> Markup {
    let title = t(l, "Passwort festlegen", "Set your password");
    shell(
        state,
        l,
        title,
        None,
        "/console/login",
        html! {
            div.narrow {
                h1 { (title) }
                @if let Some(n) = notice { div.notice.error role="alert" { (n) } }
                div.card {
                    p { (t(l, "Willkommen, ", "Welcome, ")) strong { (name) } ". "
                        (t(l, "Wählen Sie ein Passwort mit mindestens 12 Zeichen, das nicht zu den häufigsten gehört. Ein Satz aus mehreren Wörtern ist gut zu merken.", "Choose a password of at least 12 characters that is not one of the most common. A sentence of several words is easy to remember.")) }
                    form method="post" action=(format!("/console/set-password/{token}")) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="lang" value=(l.as_str());
                        label for="password" { (t(l, "Neues Passwort", "New password")) }
                        input id="password" name="password" type="password" autocomplete="new-password" required minlength="12" maxlength="256";
                        label for="repeated" { (t(l, "Passwort wiederholen", "Repeat the password")) }
                        input id="repeated" name="repeated" type="password" autocomplete="new-password" required minlength="12" maxlength="256";
                        button type="submit" { (t(l, "Passwort speichern", "Save password")) }
                    }
                }
            }
        },
    )
}

fn link_gone(state: &AppState, l: Locale) -> Response {
    let title = t(l, "Link nicht mehr gültig", "Link no longer valid");
    respond(
        StatusCode::GONE,
        shell(
            state,
            l,
            title,
            None,
            "/console/login",
            html! {
                div.narrow { h1 { (title) } div.card { p { (t(l, "Dieser Link wurde schon benutzt oder ist abgelaufen. Bitten Sie einen Administrator um einen neuen.", "This link was used already or has expired. Ask an administrator for a new one.")) } } }
            },
        ),
    )
}

/// `GET /console/set-password/{token}`.
async fn set_password_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ApiPath(token): ApiPath<String>,
) -> Response {
    let q = params(raw.as_deref());
    let l = guess_lang(&q, &headers);
    match operators::link_operator(&state.services, &token).await {
        Ok(Some(op)) => {
            let (csrf, set) = pre_token(&state, &headers);
            let mut r = respond(StatusCode::OK, set_password_form(&state, l, &token, &csrf, &op.name, None));
            // The token is in the path: keep it out of any Referer.
            r.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            with_cookie(r, set)
        }
        _ => link_gone(&state, l),
    }
}

/// `POST /console/set-password/{token}`.
async fn set_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiPath(token): ApiPath<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let l = lang_param(&f).unwrap_or_else(|| guess_lang(&HashMap::new(), &headers));
    let (csrf, set) = pre_token(&state, &headers);
    let name = match operators::link_operator(&state.services, &token).await {
        Ok(Some(op)) => op.name,
        _ => return link_gone(&state, l),
    };
    let again = |status: StatusCode, notice: &str| {
        with_cookie(respond(status, set_password_form(&state, l, &token, &csrf, &name, Some(notice))), set.clone())
    };
    if cross_site(&state, &headers) || !pre_token_ok(&headers, &f) {
        return again(
            StatusCode::FORBIDDEN,
            t(
                l,
                "Das Formular war nicht mehr gültig. Bitte erneut versuchen.",
                "The form was no longer valid. Please try again.",
            ),
        );
    }
    let password = f.get("password").map(String::as_str).unwrap_or("");
    let repeated = f.get("repeated").map(String::as_str).unwrap_or("");
    let actor = Actor::anonymous("set-password link", request_id(), Some(ip.to_string()));
    match operators::set_password(&state.services, &actor, &token, password, repeated).await {
        Ok(SetPassword::Done(op)) => {
            // The language the operator chose here is the console's for them from now on.
            let _ = operators::set_locale(&state.services, op.operator_id, l).await;
            see_other(&format!("/console/login?notice=password_set&lang={}", l.as_str()))
        }
        Ok(SetPassword::Weak(w)) => {
            let text = format!("{} {}", t(l, "Das Passwort", "The password"), w.describe(l == Locale::De));
            with_cookie(
                respond(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    set_password_form(&state, l, &token, &csrf, &name, Some(&text)),
                ),
                set.clone(),
            )
        }
        Ok(SetPassword::Mismatch) => again(
            StatusCode::UNPROCESSABLE_ENTITY,
            t(l, "Die beiden Eingaben stimmen nicht überein.", "The two entries differ."),
        ),
        Ok(SetPassword::LinkGone) => link_gone(&state, l),
        Err(e) => {
            tracing::error!(error = %super::error::error_chain(&e), "setting a password failed");
            again(
                StatusCode::SERVICE_UNAVAILABLE,
                t(l, "Bitte versuchen Sie es gleich noch einmal.", "Please try again in a moment."),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Second factor enrolment

fn enrol_body(l: Locale, csrf: &str, e: &operators::Enrolment, notice: Option<&str>) -> Markup {
    let qr = crate::documents::epc::qr(&e.otpauth_uri).map(|(m, w)| crate::documents::epc::svg(&m, w));
    html! {
        h1 { (t(l, "Zweiten Faktor einrichten", "Set up your second factor")) }
        @if let Some(n) = notice { div.notice.error role="alert" { (n) } }
        div.card.enrol {
            div {
                ol {
                    li { (t(l, "Öffnen Sie Ihre Authenticator-App (z. B. FreeOTP, Aegis, Google oder Microsoft Authenticator).", "Open your authenticator app (e.g. FreeOTP, Aegis, Google or Microsoft Authenticator).")) }
                    li { (t(l, "Scannen Sie den QR-Code – oder geben Sie den Schlüssel von Hand ein.", "Scan the QR code — or type in the key by hand.")) }
                    li { (t(l, "Geben Sie den sechsstelligen Code ein, den die App zeigt.", "Enter the six-digit code the app shows.")) }
                }
                p { (t(l, "Schlüssel", "Key")) ": " code.secret data-testid="totp-secret" { (e.secret_base32) } }
                form method="post" action="/console/enrol" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="code" { (t(l, "Code aus der App", "Code from the app")) }
                    input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required maxlength="8";
                    button type="submit" { (t(l, "Einrichten", "Set up")) }
                }
            }
            @if let Some(svg) = qr {
                figure.qr {
                    div role="img" aria-label=(t(l, "QR-Code für die Authenticator-App", "QR code for the authenticator app")) { (PreEscaped(svg)) }
                }
            }
        }
    }
}

/// `GET /console/enrol`: the QR code and key of a new second factor.
async fn enrol_page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = params(raw.as_deref());
    let ctx = match require(&state, &headers, &q, ip, Method::GET, "/console/enrol").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let l = ctx.l;
    if ctx.session.needs_second_factor && ctx.session.operator.second_factor {
        return see_other("/console/login/second-factor");
    }
    match operators::begin_enrolment(&state.services, &ctx.session).await {
        Ok(e) => {
            let who = (!ctx.session.needs_second_factor).then_some(&ctx);
            let title = t(l, "Zweiter Faktor", "Second factor");
            respond(
                StatusCode::OK,
                shell(&state, l, title, who, "/console/enrol", enrol_body(l, &ctx.session.csrf, &e, None)),
            )
        }
        Err(e) => {
            tracing::warn!(error = %super::error::error_chain(&e), "enrolment could not start");
            see_other("/console")
        }
    }
}

/// `POST /console/enrol`: confirms with a code; shows the recovery codes once.
async fn enrol(State(state): State<AppState>, ClientIp(ip): ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let ctx = match require(&state, &headers, &HashMap::new(), ip, Method::POST, "/console/enrol").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let l = ctx.l;
    if !csrf_ok(&ctx, &f) {
        return csrf_failed(&ctx);
    }
    let code = f.get("code").map(String::as_str).unwrap_or("");
    match operators::confirm_enrolment(&state.services, &ctx.session, code, request_id(), &ip.to_string()).await {
        Ok(Some((codes, new))) => {
            let title = t(l, "Wiederherstellungscodes", "Recovery codes");
            let body = html! {
                h1 { (title) }
                div.notice.ok role="status" { (t(l, "Der zweite Faktor ist eingerichtet.", "Your second factor is set up.")) }
                div.card {
                    p { (t(l, "Bewahren Sie diese zehn Codes sicher auf (ausgedruckt oder im Passwortmanager). Jeder gilt einmal, falls Sie Ihr Telefon nicht zur Hand haben. Sie werden nur jetzt angezeigt.", "Keep these ten codes somewhere safe (printed, or in a password manager). Each works once if your phone is not at hand. They are shown only now.")) }
                    ul.codes data-testid="recovery-codes" { @for c in &codes { li { code { (c) } } } }
                    p { a.button href="/console" { (t(l, "Weiter zur Konsole", "Continue to the console")) } }
                }
            };
            let r = respond(StatusCode::OK, plain_shell(l, title, None, body));
            match new {
                Some(n) => with_cookie(r, cookie_header(&state, COOKIE, &n.cookie, n.max_age_secs)),
                None => r,
            }
        }
        Ok(None) => match operators::begin_enrolment(&state.services, &ctx.session).await {
            Ok(e) => {
                let who = (!ctx.session.needs_second_factor).then_some(&ctx);
                let notice = t(
                    l,
                    "Der Code passt nicht. Prüfen Sie die Uhrzeit Ihres Telefons und geben Sie den aktuellen Code ein.",
                    "The code does not match. Check your phone's time and enter the current code.",
                );
                let title = t(l, "Zweiter Faktor", "Second factor");
                respond(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    shell(&state, l, title, who, "/console/enrol", enrol_body(l, &ctx.session.csrf, &e, Some(notice))),
                )
            }
            Err(_) => see_other("/console"),
        },
        Err(e) => {
            tracing::warn!(error = %super::error::error_chain(&e), "enrolment failed");
            see_other("/console")
        }
    }
}
