-- The operator console, part 1 (SPEC §14.1, §14.2): operators as named people with roles, their
-- set-password links, second factor and recovery codes, sessions, admin API tokens; failed
-- sign-ins counted in the database (shared by every node); the hash-chained audit trail.

CREATE TABLE operators (
    id             UUID PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    -- Role names, comma-separated, sorted (admin, risk, collections, finance, support, read_only).
    roles          TEXT NOT NULL,
    -- Argon2id in PHC form; NULL until the operator set one through its link.
    password_hash  TEXT,
    -- The TOTP secret is derived from this seed with the server key (a database alone gives no
    -- codes); NULL: no second factor. `totp_pending` is an enrolment not yet confirmed.
    totp_seed      BYTEA,
    totp_pending   BYTEA,
    -- The last time step a code was accepted for: a code is never accepted twice.
    totp_last_step BIGINT,
    locale         TEXT NOT NULL DEFAULT 'en',
    active         BOOLEAN NOT NULL DEFAULT TRUE,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE operator_links (
    token_digest  BYTEA PRIMARY KEY,
    operator_id   UUID NOT NULL REFERENCES operators (id),
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    used_at       TIMESTAMPTZ
);
CREATE INDEX operator_links_operator ON operator_links (operator_id);

CREATE TABLE operator_recovery_codes (
    operator_id   UUID NOT NULL REFERENCES operators (id),
    code_digest   BYTEA NOT NULL,
    used_at       TIMESTAMPTZ,
    PRIMARY KEY (operator_id, code_digest)
);

-- `stage` 'password': the password was right, the second factor is still to come (nothing but
-- the second-factor form is served); 'full': signed in.
CREATE TABLE operator_sessions (
    id_digest     BYTEA PRIMARY KEY,
    operator_id   UUID NOT NULL REFERENCES operators (id),
    stage         TEXT NOT NULL CHECK (stage IN ('password', 'full')),
    csrf_token    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);

CREATE TABLE operator_tokens (
    id            UUID PRIMARY KEY,
    operator_id   UUID NOT NULL REFERENCES operators (id),
    token_digest  BYTEA NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ
);
CREATE INDEX operator_tokens_operator ON operator_tokens (operator_id);

-- Failed authentications per key (an account, a client address) in fixed windows.
CREATE TABLE auth_failures (
    key           TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL
);

-- Append-only; `hash` = SHA-256 over the record's content and the previous record's hash.
CREATE TABLE audit_events (
    seq           BIGINT PRIMARY KEY,
    id            UUID NOT NULL UNIQUE,
    at            TIMESTAMPTZ NOT NULL,
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT,
    actor_label   TEXT NOT NULL,
    action        TEXT NOT NULL,
    object_kind   TEXT,
    object_id     TEXT,
    reason        TEXT,
    changes       TEXT NOT NULL,
    request_id    TEXT,
    client_ip     TEXT,
    prev_hash     BYTEA NOT NULL,
    hash          BYTEA NOT NULL
);
CREATE INDEX audit_events_actor ON audit_events (actor_id, seq);
CREATE INDEX audit_events_object ON audit_events (object_id, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);

-- The chain's end: the last record's number and hash, written with it. Each append locks this
-- row, so appends take turns; a removed last record shows as a chain shorter than its head.
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
