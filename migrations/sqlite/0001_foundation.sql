-- Foundation: instance secrets, PSPs and their credentials, merchants, idempotency keys, the event outbox.
CREATE TABLE instance_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE psps (
    id                 BLOB PRIMARY KEY,
    name               TEXT NOT NULL,
    fee_rate_bps       INTEGER NOT NULL CHECK (fee_rate_bps BETWEEN 0 AND 10000),
    fee_fixed_minor    INTEGER NOT NULL CHECK (fee_fixed_minor >= 0),
    fee_bands          TEXT NOT NULL,
    payout_iban        TEXT NOT NULL,
    payout_frequency   TEXT NOT NULL CHECK (payout_frequency IN ('daily', 'weekly', 'monthly')),
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);

CREATE TABLE psp_credentials (
    id             BLOB PRIMARY KEY,
    psp_id         BLOB NOT NULL REFERENCES psps (id),
    username       TEXT NOT NULL UNIQUE,
    secret_digest  BLOB NOT NULL,
    created_at     TEXT NOT NULL,
    revoked_at     TEXT,
    last_used_at   TEXT
);
CREATE INDEX psp_credentials_psp ON psp_credentials (psp_id);

CREATE TABLE password_links (
    token_digest   BLOB PRIMARY KEY,
    credential_id  BLOB NOT NULL REFERENCES psp_credentials (id),
    expires_at     TEXT NOT NULL,
    used_at        TEXT
);

CREATE TABLE merchants (
    id                    BLOB PRIMARY KEY,
    psp_id                BLOB NOT NULL REFERENCES psps (id),
    external_id           TEXT NOT NULL,
    name                  TEXT NOT NULL,
    legal_form            TEXT NOT NULL,
    registration_number   TEXT,
    registration_court    TEXT,
    tax_id                TEXT,
    address               TEXT NOT NULL,
    website               TEXT,
    industry_sector       TEXT,
    contact               TEXT NOT NULL,
    min_duration          INTEGER NOT NULL,
    max_duration          INTEGER NOT NULL,
    default_duration      INTEGER NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    CONSTRAINT merchants_psp_external_id UNIQUE (psp_id, external_id),
    CHECK (7 <= min_duration AND min_duration <= default_duration AND default_duration <= max_duration AND max_duration <= 120)
);
CREATE INDEX merchants_psp_id ON merchants (psp_id, id);

CREATE TABLE idempotency_keys (
    psp_id            BLOB NOT NULL,
    key               TEXT NOT NULL,
    fingerprint       BLOB NOT NULL,
    locked_until      TEXT,
    response_status   INTEGER,
    response_body     BLOB,
    created_at        TEXT NOT NULL,
    PRIMARY KEY (psp_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE events (
    id          BLOB PRIMARY KEY,
    psp_id      BLOB NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX events_psp ON events (psp_id, id);
