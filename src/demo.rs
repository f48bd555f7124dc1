//! `netterms demo`: a small merchant shop on its own origin that acts as its own PSP, so a new
//! user sees both checkout flows (widget and hosted payment page) against the local server.

use std::net::SocketAddr;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::psp::{PayoutFrequency, PspInput};
use crate::service::{Services, psps};

/// How the shop reaches netterms, as a PSP.
#[derive(Clone)]
pub struct Shop {
    /// netterms' base URL, e.g. `http://127.0.0.1:8080`.
    pub netterms: String,
    /// The shop's own origin, e.g. `http://127.0.0.1:8090`.
    pub origin: String,
    pub username: String,
    pub password: String,
    pub merchant_id: String,
    pub client: reqwest::Client,
}

/// Creates a PSP (with its password revealed in-process) and, over the PSP API, a merchant.
pub async fn provision(services: &Services, netterms: &str, origin: &str) -> anyhow::Result<Shop> {
    let input = PspInput {
        name: Some("Demo PSP".into()),
        fee_rate_bps: Some(150),
        fee_fixed: Some(25),
        iban: Some("DE89370400440532013000".into()),
        bic: None,
        payout_frequency: Some(PayoutFrequency::Weekly),
        fee_bands: None,
        billing: None,
    };
    let settings = input.validate().map_err(|e| anyhow::anyhow!("demo psp: {e:?}"))?;
    let created = psps::create(services, &settings).await?;
    let token = created.password_url.rsplit('/').next().unwrap_or_default().to_owned();
    let password = psps::reveal_password(services, &token).await?.expose().to_owned();
    let client = reqwest::Client::new();
    let merchant: Value = client
        .post(format!("{netterms}/v1/merchants"))
        .basic_auth(&created.username, Some(&password))
        .json(&json!({
            "external_id": format!("demo-{}", uuid::Uuid::now_v7()),
            "name": "Werkzeug & Co. Demo GmbH", "legal_form": "10001", "registration_number": "HRB 4711",
            "registration_court": "Amtsgericht Köln",
            "address": {"street": "Domstraße", "house_number": "1", "postal_code": "50668", "city": "Köln", "country": "DE"},
            "contact": {"name": "Demo", "email": "demo@shop.example"}
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(Shop {
        netterms: netterms.to_owned(),
        origin: origin.to_owned(),
        username: created.username,
        password,
        merchant_id: merchant["merchant_id"].as_str().unwrap_or_default().to_owned(),
        client,
    })
}

/// The order the demo sells; the buyer's e-mail selects sandbox outcomes (`+decline`, `+review`).
pub fn demo_order(email: &str) -> Value {
    json!({
        "external_order_id": format!("DEMO-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
        "amount": {"currency": "EUR", "gross": 59500, "net": 50000, "tax": 9500},
        "duration": 30,
        "debtor_company": {
            "name": "Kunde Maschinenbau GmbH", "legal_form": "10001", "registration_number": "HRB 54321",
            "registration_court": "Amtsgericht München",
            "address": {"street": "Leopoldstraße", "house_number": "10", "postal_code": "80802", "city": "München", "country": "DE"}
        },
        "debtor_person": {"salutation": "f", "first_name": "Anna", "last_name": "Einkauf", "email": email},
        "delivery_address": {"street": "Leopoldstraße", "house_number": "10", "postal_code": "80802", "city": "München", "country": "DE"},
        "line_items": [{"external_id": "drill-01", "title": "Akku-Bohrschrauber Profi", "quantity": 2,
                        "amount": {"currency": "EUR", "gross": 59500, "net": 50000, "tax": 9500}}]
    })
}

#[derive(Deserialize)]
struct EmailQuery {
    email: Option<String>,
}

async fn index(State(shop): State<Shop>) -> Html<String> {
    Html(SHOP_HTML.replace("{{NETTERMS}}", &shop.netterms))
}

async fn widget_session(State(shop): State<Shop>, Query(q): Query<EmailQuery>) -> Response {
    let r = shop
        .client
        .post(format!("{}/v1/widget-sessions", shop.netterms))
        .basic_auth(&shop.username, Some(&shop.password))
        .json(&json!({"merchant_id": shop.merchant_id, "merchant_customer_id": "demo-customer", "allowed_origins": [shop.origin]}))
        .send()
        .await;
    match r {
        Ok(r) => {
            let v: Value = r.json().await.unwrap_or_default();
            Json(json!({"session_id": v["session_id"], "client_secret": v["client_secret"], "order_data": demo_order(q.email.as_deref().unwrap_or("anna@kunde.example"))}))
                .into_response()
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct ConfirmBody {
    session_id: String,
    order_data: Value,
    result: Value,
}

/// The PSP's part: confirm with the order data, taking the company as the buyer authorized it.
async fn confirm(State(shop): State<Shop>, Json(b): Json<ConfirmBody>) -> Response {
    let mut order = b.order_data;
    order["debtor_company"] = b.result["debtor_company"].clone();
    let r = shop
        .client
        .post(format!("{}/v1/widget-sessions/{}/confirm-authorization", shop.netterms, b.session_id))
        .basic_auth(&shop.username, Some(&shop.password))
        .json(&order)
        .send()
        .await;
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or_default();
            Json(json!({"status": status, "order": v})).into_response()
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn pay(State(shop): State<Shop>, Query(q): Query<EmailQuery>) -> Response {
    let o = &shop.origin;
    let r = shop
        .client
        .post(format!("{}/v1/payment-page-sessions", shop.netterms))
        .basic_auth(&shop.username, Some(&shop.password))
        .json(&json!({
            "merchant_id": shop.merchant_id, "locale": "de",
            "order": demo_order(q.email.as_deref().unwrap_or("anna@kunde.example")),
            "redirect_urls": {"accept_url": format!("{o}/return/accept"), "decline_url": format!("{o}/return/decline"),
                              "cancel_url": format!("{o}/return/cancel")}
        }))
        .send()
        .await;
    match r {
        Ok(r) => {
            let v: Value = r.json().await.unwrap_or_default();
            match v["payment_page_url"].as_str() {
                Some(url) => Redirect::to(url).into_response(),
                None => (axum::http::StatusCode::BAD_GATEWAY, v.to_string()).into_response(),
            }
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn returned(Path(kind): Path<String>, Query(params): Query<Vec<(String, String)>>) -> Html<String> {
    let rows: String = params
        .iter()
        .map(|(k, v)| format!("<tr><th>{}</th><td id=\"p-{}\">{}</td></tr>", esc(k), esc(k), esc(v)))
        .collect();
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>\
         <title>Demo shop</title><body style='font-family:system-ui;max-width:40rem;margin:2rem auto'>\
         <h1 id=outcome>Back in the shop: {}</h1><table>{rows}</table><p><a href='/'>Shop again</a></p></body></html>",
        esc(&kind)
    ))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The shop's routes.
pub fn router(shop: Shop) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/widget-session", post(widget_session))
        .route("/api/confirm", post(confirm))
        .route("/pay", get(pay))
        .route("/return/{kind}", get(returned))
        .with_state(shop)
}

/// Serves the shop on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shop: Shop) -> std::io::Result<()> {
    axum::serve(listener, router(shop)).await
}

/// The address the demo shop listens on by default.
pub fn default_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8090))
}

const SHOP_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Werkzeug &amp; Co. — demo shop</title>
<style>
body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
.product{border:1px solid #ddd;border-radius:10px;padding:1rem;margin:1rem 0}
button,a.button{font-size:1rem;padding:.7rem 1.1rem;border-radius:8px;border:1px solid #2f6f3e;background:#2f6f3e;color:#fff;cursor:pointer;text-decoration:none;display:inline-block;margin:.3rem .3rem .3rem 0}
label{display:block;margin:.6rem 0 .2rem}input{font-size:1rem;padding:.4rem;width:100%;max-width:24rem}
#result{margin-top:1rem;font-weight:600}
</style>
<script src="{{NETTERMS}}/sdk/v1/checkout.js"></script>
</head>
<body>
<h1>Werkzeug &amp; Co. — demo shop</h1>
<p>This shop is a merchant of a demo PSP. Both buttons pay with netterms: the widget opens on this page; the hosted
payment page is a redirect. Add <code>+decline</code> or <code>+review</code> to the e-mail to see other outcomes.</p>
<div class="product"><strong>2 × Akku-Bohrschrauber Profi</strong> — 595,00 € (500,00 € + 95,00 € USt.), pay by invoice in 30 days</div>
<label for="email">Buyer e-mail</label><input id="email" value="anna@kunde.example">
<p>
<button id="widget-button" type="button">Pay by invoice (widget)</button>
<a class="button" id="page-button" href="/pay">Pay by invoice (hosted page)</a>
</p>
<div id="result" role="status" aria-live="polite"></div>
<script>
document.getElementById("page-button").addEventListener("click", function (e) {
  e.preventDefault();
  location.href = "/pay?email=" + encodeURIComponent(document.getElementById("email").value);
});
document.getElementById("widget-button").addEventListener("click", async function () {
  const out = document.getElementById("result");
  const email = document.getElementById("email").value;
  const s = await (await fetch("/api/widget-session?email=" + encodeURIComponent(email), {method: "POST"})).json();
  try {
    const result = await NettermsCheckout.mount({client_secret: s.client_secret, merchant_name: "Werkzeug & Co.",
      order_data: s.order_data, options: {payment_method: "bank_transfer"}});
    out.textContent = "Authorized (" + result.state + "), confirming …";
    const c = await (await fetch("/api/confirm", {method: "POST", headers: {"content-type": "application/json"},
      body: JSON.stringify({session_id: s.session_id, order_data: s.order_data, result: result})})).json();
    out.textContent = "Order " + c.order.order_id + " is " + c.order.state;
    out.setAttribute("data-state", c.order.state);
  } catch (err) {
    out.textContent = "Not paid by invoice: " + (err.decline_reason || err.state);
    out.setAttribute("data-state", err.state);
  }
});
</script>
</body>
</html>
"#;
