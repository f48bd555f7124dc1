-- One durable job queue for all background work: enqueued in the transaction of its cause,
-- claimed with leases, retried with backoff, visible to operators when it fails.
CREATE TABLE jobs (
    id            UUID PRIMARY KEY,
    kind          TEXT NOT NULL,
    psp_id        UUID,
    payload       TEXT NOT NULL DEFAULT '{}',
    -- One job per cause: a second enqueue with the same key is ignored.
    unique_key    TEXT UNIQUE,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    run_at        TIMESTAMPTZ NOT NULL,
    locked_by     TEXT,
    locked_until  TIMESTAMPTZ,
    last_error    TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ
);
CREATE INDEX jobs_due ON jobs (state, run_at);
