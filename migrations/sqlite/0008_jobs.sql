-- One durable job queue for all background work: enqueued in the transaction of its cause,
-- claimed with leases, retried with backoff, visible to operators when it fails.
CREATE TABLE jobs (
    id            BLOB PRIMARY KEY,
    kind          TEXT NOT NULL,
    psp_id        BLOB,
    payload       TEXT NOT NULL DEFAULT '{}',
    -- One job per cause: a second enqueue with the same key is ignored.
    unique_key    TEXT UNIQUE,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    run_at        TEXT NOT NULL,
    locked_by     TEXT,
    locked_until  TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    finished_at   TEXT
);
CREATE INDEX jobs_due ON jobs (state, run_at);
