-- The operator console, part 1 (SPEC §14.1, §14.2): operators as named people with roles, their
-- set-password links, second factor and recovery codes, sessions, admin API tokens; failed
-- sign-ins counted in the database (shared by every node); the hash-chained audit trail.

CREATE TABLE operators (
    id             BLOB PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    -- Role names, comma-separated, sorted (admin, risk, collections, finance, support, read_only).
    roles          TEXT NOT NULL,
    -- Argon2id in PHC form; NULL until the operator set one through its link.
    password_hash  TEXT,
    -- The TOTP secret is derived from this seed with the server key (a database alone gives no
    -- codes); NULL: no second factor. `totp_pending` is an enrolment not yet confirmed.
    totp_seed      BLOB,
    totp_pending   BLOB,
    -- The last time step a code was accepted for: a code is never accepted twice.
    totp_last_step INTEGER,
    locale         TEXT NOT NULL DEFAULT 'en',
    active         INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE operator_links (
    token_digest  BLOB PRIMARY KEY,
    operator_id   BLOB NOT NULL REFERENCES operators (id),
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT
);
CREATE INDEX operator_links_operator ON operator_links (operator_id);

CREATE TABLE operator_recovery_codes (
    operator_id   BLOB NOT NULL REFERENCES operators (id),
    code_digest   BLOB NOT NULL,
    used_at       TEXT,
    PRIMARY KEY (operator_id, code_digest)
);

-- `stage` 'password': the password was right, the second factor is still to come (nothing but
-- the second-factor form is served); 'full': signed in.
CREATE TABLE operator_sessions (
    id_digest     BLOB PRIMARY KEY,
    operator_id   BLOB NOT NULL REFERENCES operators (id),
    stage         TEXT NOT NULL CHECK (stage IN ('password', 'full')),
    csrf_token    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    ended_at      TEXT
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);

CREATE TABLE operator_tokens (
    id            BLOB PRIMARY KEY,
    operator_id   BLOB NOT NULL REFERENCES operators (id),
    token_digest  BLOB NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    revoked_at    TEXT,
    last_used_at  TEXT
);
CREATE INDEX operator_tokens_operator ON operator_tokens (operator_id);

-- Failed authentications per key (an account, a client address) in fixed windows.
CREATE TABLE auth_failures (
    key           TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    window_start  TEXT NOT NULL
);

-- Append-only; `hash` = SHA-256 over the record's content and the previous record's hash.
CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY,
    id            BLOB NOT NULL UNIQUE,
    at            TEXT NOT NULL,
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
    prev_hash     BLOB NOT NULL,
    hash          BLOB NOT NULL
);
CREATE INDEX audit_events_actor ON audit_events (actor_id, seq);
CREATE INDEX audit_events_object ON audit_events (object_id, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);

-- The chain's end: the last record's number and hash, written with it. Each append locks this
-- row, so appends take turns; a removed last record shows as a chain shorter than its head.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));
