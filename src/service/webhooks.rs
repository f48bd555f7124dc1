//! Webhooks: endpoint management for PSPs, the event API, and the delivery worker that sends
//! the outbox over HTTP following Standard Webhooks.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use super::outbound::Outbound;
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
        } else if let Err(e) = super::outbound::check_url(u, s.config.webhooks_may_reach_private()) {
            v.add("url", format!("url {e}"));
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

/// Every attempt of an event of `psp_id` (of one endpoint if given), newest first, in pages.
pub async fn attempts(
    s: &Services,
    psp_id: PspId,
    id: EventId,
    endpoint: Option<crate::domain::ids::EndpointId>,
    starting_after: Option<crate::domain::ids::AttemptId>,
    limit: i64,
) -> Result<Vec<store::Attempt>, WebhookError> {
    let mut conn = s.db.conn().await?;
    events::get(&mut conn, psp_id, id).await?.ok_or(WebhookError::NotFound("event"))?;
    Ok(store::attempts(&mut conn, id, endpoint, starting_after, limit).await?)
}

/// Sends an event again, now, to every enabled endpoint that wants it, in `tx`.
pub async fn redeliver(s: &Services, tx: &mut Tx, psp_id: PspId, id: EventId) -> Result<EventDetail, WebhookError> {
    let event = events::get(tx, psp_id, id).await?.ok_or(WebhookError::NotFound("event"))?;
    store::redeliver(tx, psp_id, id, &event.event_type, s.clock.now()).await?;
    let deliveries = store::deliveries(tx, id).await?;
    Ok(EventDetail { event, deliveries })
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
    outbound: Outbound,
    worker: Arc<str>,
    lease: Duration,
}

/// How long a claimed delivery belongs to its worker beyond the attempt's timeout. A worker that
/// died mid-attempt leaves its claim; another takes it over once the lease ends.
const LEASE_MARGIN_SECS: i64 = 15;
/// Deliveries claimed per round.
const BATCH: i64 = 64;

impl Dispatcher {
    pub fn new(services: Services, worker: &str) -> anyhow::Result<Dispatcher> {
        let outbound = Outbound::new(&services, concat!("netterms-webhooks/", env!("CARGO_PKG_VERSION")))?;
        let timeout = i64::try_from(services.config.webhook_timeout_secs).unwrap_or(60);
        let lease = Duration::seconds(timeout + LEASE_MARGIN_SECS);
        Ok(Dispatcher { services, outbound, worker: Arc::from(worker), lease })
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
        let request = match self.outbound.request(reqwest::Method::POST, url) {
            Ok(r) => r,
            Err(e) => return fail(format!("refused: the url {e}")),
        };
        let timestamp = self.services.clock.now().timestamp();
        let signatures = seeds
            .iter()
            .filter_map(|seed| webhook::parse_secret(&secret_for_seed(&self.services, seed)))
            .map(|key| webhook::sign(&key, id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ");
        let result = request
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
