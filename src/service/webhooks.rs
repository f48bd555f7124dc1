//! Webhooks: endpoint management for PSPs, the event API, and the delivery worker that sends
//! the outbox over HTTP following Standard Webhooks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use crate::domain::ids::{EndpointId, EventId, PspId};
use crate::domain::validate::{self, FieldError, Violations};
use crate::domain::webhook;
use crate::secrets::Purpose;
use crate::store::events::{self, Event};
use crate::store::webhooks::{self as store, AttemptRecord, Claimed, Delivery, Endpoint};
use crate::store::{StoreError, StoreResult, Tx};

/// At most this many endpoints per PSP.
pub const MAX_ENDPOINTS: i64 = 20;
/// How long a rotated-out secret still signs deliveries.
pub const ROTATION_OVERLAP: Duration = Duration::hours(24);
/// An endpoint that has failed for this long is disabled.
pub const DISABLE_AFTER_FAILING: Duration = Duration::days(5);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("not found")]
    NotFound(&'static str),
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("a PSP may have at most {MAX_ENDPOINTS} webhook endpoints")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The body of `POST /v1/webhook-endpoints`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct EndpointInput {
    /// Where deliveries are POSTed: an absolute https URL (http is allowed in sandbox).
    #[schema(required = true, example = "https://psp.example/netterms/webhooks")]
    pub url: Option<String>,
    /// Only these event types are sent; omitted or empty: all.
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
}

/// A new endpoint with its signing secret (shown this once).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: verify deliveries with it. Shown only in this response.
    pub secret: String,
}

/// A rotated secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new `whsec_…` secret. The previous one keeps signing (as a second signature) for 24 h.
    pub secret: String,
    pub previous_expires_at: DateTime<Utc>,
}

/// An event with its deliveries and their attempts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: Event,
    pub deliveries: Vec<Delivery>,
}

/// The signing secret that belongs to a stored seed (the seed alone, without the server key,
/// does not give it).
pub fn secret_for_seed(s: &Services, seed: &str) -> String {
    let key = s.keyring.digest(Purpose::WebhookSecret, seed.as_bytes());
    webhook::format_secret(&key[..24])
}

fn validate_input(
    s: &Services,
    input: EndpointInput,
) -> Result<(String, Option<String>, Vec<String>), Vec<FieldError>> {
    let mut v = Violations::new();
    let url = v.text("url", input.url, 2048);
    if let Some(u) = &url {
        if !validate::is_http_url(u) {
            v.add("url", "url must be an absolute http(s) URL");
        } else if !u.starts_with("https://") && !s.config.webhooks_may_reach_private() {
            v.add("url", "url must use https");
        }
    }
    let description = v.opt_text("description", input.description, 255);
    let mut types = input.event_types.unwrap_or_default();
    for (i, t) in types.iter().enumerate() {
        if !crate::domain::events::catalogue().iter().any(|d| d.event_type == t.as_str()) {
            v.add(format!("event_types[{i}]"), format!("unknown event type {t:?}"));
        }
    }
    types.sort();
    types.dedup();
    v.finish()?;
    Ok((url.unwrap_or_default(), description, types))
}

/// Creates an endpoint with its first secret, in `tx`.
pub async fn create_endpoint(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    input: EndpointInput,
) -> Result<CreatedEndpoint, WebhookError> {
    let (url, description, types) = validate_input(s, input).map_err(WebhookError::Invalid)?;
    let now = s.clock.now();
    let existing = store::list_endpoints(tx, psp_id, MAX_ENDPOINTS, None).await?;
    if i64::try_from(existing.len()).unwrap_or(i64::MAX) >= MAX_ENDPOINTS {
        return Err(WebhookError::TooMany);
    }
    let endpoint = store::insert_endpoint(tx, psp_id, &url, description.as_deref(), &types, now).await?;
    let seed = crate::secrets::random_alphanumeric(32);
    store::add_secret(tx, endpoint.id, &seed, now, now).await?;
    Ok(CreatedEndpoint { endpoint, secret: secret_for_seed(s, &seed) })
}

pub async fn get_endpoint(s: &Services, psp_id: PspId, id: EndpointId) -> Result<Endpoint, WebhookError> {
    let mut conn = s.db.conn().await?;
    store::get_endpoint(&mut conn, psp_id, id).await?.ok_or(WebhookError::NotFound("webhook endpoint"))
}

pub async fn list_endpoints(
    s: &Services,
    psp_id: PspId,
    limit: i64,
    after: Option<EndpointId>,
) -> Result<Vec<Endpoint>, WebhookError> {
    let mut conn = s.db.conn().await?;
    Ok(store::list_endpoints(&mut conn, psp_id, limit, after).await?)
}

pub async fn delete_endpoint(s: &Services, psp_id: PspId, id: EndpointId) -> Result<(), WebhookError> {
    let mut tx = s.db.begin().await?;
    if !store::delete_endpoint(&mut tx, psp_id, id, s.clock.now()).await? {
        return Err(WebhookError::NotFound("webhook endpoint"));
    }
    tx.commit().await?;
    Ok(())
}

pub async fn rotate_secret(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    id: EndpointId,
) -> Result<RotatedSecret, WebhookError> {
    let now = s.clock.now();
    store::get_endpoint(tx, psp_id, id).await?.ok_or(WebhookError::NotFound("webhook endpoint"))?;
    let seed = crate::secrets::random_alphanumeric(32);
    let previous_expires_at = now + ROTATION_OVERLAP;
    store::add_secret(tx, id, &seed, now, previous_expires_at).await?;
    Ok(RotatedSecret { secret: secret_for_seed(s, &seed), previous_expires_at })
}

pub async fn list_events(
    s: &Services,
    psp_id: PspId,
    limit: i64,
    after: Option<EventId>,
    event_type: Option<&str>,
) -> Result<Vec<Event>, WebhookError> {
    let mut conn = s.db.conn().await?;
    Ok(events::list(&mut conn, psp_id, limit, after, event_type).await?)
}

pub async fn get_event(s: &Services, psp_id: PspId, id: EventId) -> Result<EventDetail, WebhookError> {
    let mut conn = s.db.conn().await?;
    let event = events::get(&mut conn, psp_id, id).await?.ok_or(WebhookError::NotFound("event"))?;
    let deliveries = store::deliveries(&mut conn, id).await?;
    Ok(EventDetail { event, deliveries })
}

/// Sends an event again, now, to every enabled endpoint that wants it, in `tx`.
pub async fn redeliver(s: &Services, tx: &mut Tx, psp_id: PspId, id: EventId) -> Result<EventDetail, WebhookError> {
    let event = events::get(tx, psp_id, id).await?.ok_or(WebhookError::NotFound("event"))?;
    store::redeliver(tx, psp_id, id, &event.event_type, s.clock.now()).await?;
    let deliveries = store::deliveries(tx, id).await?;
    Ok(EventDetail { event, deliveries })
}

/// Whether an address is one webhooks may reach when private addresses are refused: not in any
/// block of the IANA special-purpose registries that is not globally reachable. IPv6 forms that
/// carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                std::net::Ipv4Addr::new(a, b, c, d)
            };
            // ::/96 (IPv4-compatible, also :: and ::1), ::ffff:0:0/96 (mapped), 64:ff9b::/96 (NAT64).
            if seg[..6] == [0, 0, 0, 0, 0, 0]
                || seg[..6] == [0, 0, 0, 0, 0, 0xffff]
                || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
            {
                return is_public_v4(embedded(seg[6], seg[7]));
            }
            // 2002::/16 (6to4): the IPv4 address follows the prefix.
            if seg[0] == 0x2002 {
                return is_public_v4(embedded(seg[1], seg[2]));
            }
            !((seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1) // 64:ff9b:1::/48 local-use NAT64
                || (seg[0] == 0x100 && seg[1..4] == [0, 0, 0]) // 100::/64 discard-only
                || (seg[0] == 0x2001 && seg[1] < 0x200) // 2001::/23 IETF protocol assignments (Teredo, …)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // 2001:db8::/32 documentation
                || (seg[0] & 0xfff0) == 0x3ff0 // 3fff::/20 documentation
                || seg[0] == 0x5f00 // 5f00::/16 segment routing
                || (seg[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
                || (seg[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
                || (seg[0] & 0xff00) == 0xff00) // ff00::/8 multicast
        }
    }
}

fn is_public_v4(v4: std::net::Ipv4Addr) -> bool {
    let o = v4.octets();
    !(o[0] == 0 // 0.0.0.0/8 "this network"
        || o[0] == 10 // private
        || (o[0] == 100 && (64..128).contains(&o[1])) // 100.64.0.0/10 shared (CGNAT)
        || o[0] == 127 // loopback
        || (o[0] == 169 && o[1] == 254) // link-local
        || (o[0] == 172 && (16..32).contains(&o[1])) // private
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF protocol assignments
        || (o[0] == 192 && o[1] == 0 && o[2] == 2) // TEST-NET-1
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast (deprecated)
        || (o[0] == 192 && o[1] == 168) // private
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        || (o[0] == 198 && o[1] == 51 && o[2] == 100) // TEST-NET-2
        || (o[0] == 203 && o[1] == 0 && o[2] == 113) // TEST-NET-3
        || o[0] >= 224) // multicast, reserved, broadcast
}

/// DNS resolution for webhook requests that drops non-public addresses, so a hostname cannot
/// lead a delivery to an internal service (checked on the addresses actually connected to).
struct PublicOnlyResolver;

/// The client of every request netterms makes to an address a PSP gave (webhooks, `invoice_url`):
/// `webhook_timeout_secs`, no redirects, never a proxy from the environment (it would resolve
/// hostnames itself, past the address checks), and unless the deployment allows private
/// addresses, only public ones after DNS resolution.
pub(crate) fn outbound_client(s: &Services, user_agent: &'static str) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(StdDuration::from_secs(s.config.webhook_timeout_secs))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .no_proxy()
        .pool_max_idle_per_host(32);
    if !s.config.webhooks_may_reach_private() {
        builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
    }
    builder.build()
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.filter(|a| is_public(a.ip())).collect();
            if addrs.is_empty() {
                return Err("refused: the host resolves only to private, loopback or link-local addresses".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The outcome of sending one attempt.
#[derive(Debug)]
struct Sent {
    status: Option<u16>,
    error: Option<String>,
    duration: StdDuration,
}

/// Claims due deliveries and sends them. Several dispatchers (in one process or on several nodes
/// sharing PostgreSQL) never send the same attempt twice: each attempt number is claimed once.
#[derive(Clone)]
pub struct Dispatcher {
    services: Services,
    client: reqwest::Client,
    worker: Arc<str>,
    allow_private: bool,
    lease: Duration,
}

/// How long a claimed delivery belongs to its worker beyond the attempt's timeout. A worker that
/// died mid-attempt leaves its claim; another takes it over once the lease ends.
const LEASE_MARGIN_SECS: i64 = 15;
/// Deliveries claimed per round.
const BATCH: i64 = 64;

impl Dispatcher {
    pub fn new(services: Services, worker: &str) -> anyhow::Result<Dispatcher> {
        let allow_private = services.config.webhooks_may_reach_private();
        let client = outbound_client(&services, concat!("netterms-webhooks/", env!("CARGO_PKG_VERSION")))?;
        let timeout = i64::try_from(services.config.webhook_timeout_secs).unwrap_or(60);
        let lease = Duration::seconds(timeout + LEASE_MARGIN_SECS);
        Ok(Dispatcher { services, client, worker: Arc::from(worker), allow_private, lease })
    }

    /// One round: claims up to a batch of due deliveries, sends them concurrently, stores every
    /// attempt. Returns how many were attempted.
    pub async fn run_once(&self) -> StoreResult<usize> {
        let s = &self.services;
        let now = s.clock.now();
        let mut tx = s.db.begin().await?;
        let claimed = store::claim_due(&mut tx, &self.worker, now, now + self.lease, BATCH).await?;
        tx.commit().await?;
        let n = claimed.len();
        let mut set = tokio::task::JoinSet::new();
        for c in claimed {
            let me = self.clone();
            set.spawn(async move { me.attempt(c).await });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %crate::web::error::error_chain(&e), "webhook attempt not recorded")
                }
                Err(e) => tracing::error!(error = %e, "webhook attempt task failed"),
            }
        }
        Ok(n)
    }

    async fn attempt(&self, claim: Claimed) -> StoreResult<()> {
        let s = &self.services;
        let mut conn = s.db.conn().await?;
        let Some(out) = store::outgoing(&mut conn, claim.event_id, claim.endpoint_id).await? else {
            return Ok(());
        };
        let seeds = store::active_seeds(&mut conn, claim.endpoint_id, s.clock.now()).await?;
        drop(conn);
        let started_at = s.clock.now();
        if claim.attempt == 1 {
            let lag = (started_at - out.queued_at).num_microseconds().unwrap_or(0);
            metrics::histogram!("webhook_first_attempt_lag_seconds").record(lag as f64 / 1e6);
        }
        let sent = self.send(&out.url, &claim.event_id.to_string(), out.payload.as_bytes(), &seeds).await;
        let now = s.clock.now();
        let delivered = sent.status.is_some_and(|c| (200..300).contains(&c));
        let gone = sent.status == Some(410);
        let jitter: f64 = rand::thread_rng().r#gen();
        let next = if delivered || gone { None } else { webhook::retry_delay(claim.attempt, jitter).map(|d| now + d) };
        let record = AttemptRecord {
            worker: self.worker.to_string(),
            started_at,
            duration_ms: i64::try_from(sent.duration.as_millis()).unwrap_or(i64::MAX),
            response_status: sent.status.map(i64::from),
            error: sent.error.clone(),
        };
        let outcome = if delivered {
            "delivered"
        } else if gone {
            "gone"
        } else {
            "failed"
        };
        metrics::counter!("webhook_attempts_total", "outcome" => outcome).increment(1);
        let mut tx = s.db.begin().await?;
        store::finish_attempt(&mut tx, &claim, &record, delivered, next, now).await?;
        if gone {
            store::disable_endpoint(&mut tx, claim.endpoint_id, "the endpoint answered 410 Gone", now).await?;
            tracing::warn!(endpoint_id = %claim.endpoint_id, "webhook endpoint disabled: 410 Gone");
        } else if !delivered && out.failing_since.is_some_and(|f| now - f >= DISABLE_AFTER_FAILING) {
            store::disable_endpoint(&mut tx, claim.endpoint_id, "every delivery failed for 5 days", now).await?;
            metrics::counter!("webhook_endpoints_disabled_total").increment(1);
            tracing::error!(endpoint_id = %claim.endpoint_id, alert = "operator", "webhook endpoint disabled: failing for 5 days");
        }
        tx.commit().await?;
        tracing::debug!(event_id = %claim.event_id, endpoint_id = %claim.endpoint_id, attempt = claim.attempt, outcome, "webhook attempt");
        Ok(())
    }

    async fn send(&self, url: &str, id: &str, body: &[u8], seeds: &[String]) -> Sent {
        let started = Instant::now();
        let fail = |e: String| Sent { status: None, error: Some(e), duration: started.elapsed() };
        if !self.allow_private {
            let host = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
            let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
            if literal.is_ok_and(|ip| !is_public(ip)) {
                return fail("refused: private, loopback or link-local address".into());
            }
        }
        let timestamp = self.services.clock.now().timestamp();
        let signatures = seeds
            .iter()
            .filter_map(|seed| webhook::parse_secret(&secret_for_seed(&self.services, seed)))
            .map(|key| webhook::sign(&key, id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ");
        let result = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures)
            .body(body.to_vec())
            .send()
            .await;
        match result {
            Ok(resp) => Sent { status: Some(resp.status().as_u16()), error: None, duration: started.elapsed() },
            Err(e) if e.is_timeout() => fail("timeout".into()),
            Err(e) if e.is_connect() => fail(format!("connection failed: {}", crate::web::error::error_chain(&e))),
            Err(e) => fail(format!("request failed: {}", crate::web::error::error_chain(&e))),
        }
    }

    /// Runs rounds until `stop` turns true: immediately again after a full batch, else after the
    /// poll interval.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let poll = StdDuration::from_millis(self.services.config.webhook_poll_ms);
        loop {
            if *stop.borrow() {
                return;
            }
            let n = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %crate::web::error::error_chain(&e), "webhook round failed");
                    0
                }
            };
            if n < usize::try_from(BATCH).unwrap_or(64) {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn special_purpose_addresses_are_not_public() {
        for a in [
            "10.1.2.3",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "3fff::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a} must be refused");
        }
        for a in
            ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8", "2002:808:808::1"]
        {
            assert!(is_public(a.parse().unwrap()), "{a} is public");
        }
    }
}
