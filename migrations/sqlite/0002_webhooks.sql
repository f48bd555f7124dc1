-- Webhooks: endpoints with signing secrets, one delivery per event and endpoint, every attempt.
ALTER TABLE events ADD COLUMN payload TEXT NOT NULL DEFAULT '';

CREATE TABLE webhook_endpoints (
    id               BLOB PRIMARY KEY,
    psp_id           BLOB NOT NULL REFERENCES psps (id),
    url              TEXT NOT NULL,
    description      TEXT,
    event_types      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('enabled', 'disabled', 'deleted')),
    disabled_reason  TEXT,
    failing_since    TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX webhook_endpoints_psp ON webhook_endpoints (psp_id, id);

CREATE TABLE webhook_secrets (
    id           BLOB PRIMARY KEY,
    endpoint_id  BLOB NOT NULL REFERENCES webhook_endpoints (id),
    seed         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT
);
CREATE INDEX webhook_secrets_endpoint ON webhook_secrets (endpoint_id);

CREATE TABLE webhook_deliveries (
    event_id         BLOB NOT NULL REFERENCES events (id),
    endpoint_id      BLOB NOT NULL REFERENCES webhook_endpoints (id),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    lease_until      TEXT,
    lease_owner      TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE webhook_attempts (
    id               BLOB PRIMARY KEY,
    event_id         BLOB NOT NULL,
    endpoint_id      BLOB NOT NULL,
    attempt          INTEGER NOT NULL,
    worker           TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    duration_ms      INTEGER NOT NULL,
    response_status  INTEGER,
    error            TEXT,
    CONSTRAINT webhook_attempts_once UNIQUE (event_id, endpoint_id, attempt),
    FOREIGN KEY (event_id, endpoint_id) REFERENCES webhook_deliveries (event_id, endpoint_id)
);
