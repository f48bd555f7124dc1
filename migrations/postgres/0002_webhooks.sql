-- Webhooks: endpoints with signing secrets, one delivery per event and endpoint, every attempt.
ALTER TABLE events ADD COLUMN payload TEXT NOT NULL DEFAULT '';

CREATE TABLE webhook_endpoints (
    id               UUID PRIMARY KEY,
    psp_id           UUID NOT NULL REFERENCES psps (id),
    url              TEXT NOT NULL,
    description      TEXT,
    event_types      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('enabled', 'disabled', 'deleted')),
    disabled_reason  TEXT,
    failing_since    TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_endpoints_psp ON webhook_endpoints (psp_id, id);

CREATE TABLE webhook_secrets (
    id           UUID PRIMARY KEY,
    endpoint_id  UUID NOT NULL REFERENCES webhook_endpoints (id),
    seed         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ
);
CREATE INDEX webhook_secrets_endpoint ON webhook_secrets (endpoint_id);

CREATE TABLE webhook_deliveries (
    event_id         UUID NOT NULL REFERENCES events (id),
    endpoint_id      UUID NOT NULL REFERENCES webhook_endpoints (id),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    lease_until      TIMESTAMPTZ,
    lease_owner      TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE webhook_attempts (
    id               UUID PRIMARY KEY,
    event_id         UUID NOT NULL,
    endpoint_id      UUID NOT NULL,
    attempt          BIGINT NOT NULL,
    worker           TEXT NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL,
    duration_ms      BIGINT NOT NULL,
    response_status  BIGINT,
    error            TEXT,
    CONSTRAINT webhook_attempts_once UNIQUE (event_id, endpoint_id, attempt),
    FOREIGN KEY (event_id, endpoint_id) REFERENCES webhook_deliveries (event_id, endpoint_id)
);
