-- Four eyes (SPEC §14.2): an operator's proposal of an action that a second operator with the
-- permission approves (the effect then runs, checked against the state of that moment, in the
-- approver's transaction together with the decision) or rejects; after 7 days it expires.
CREATE TABLE approvals (
    id              UUID PRIMARY KEY,
    action          TEXT NOT NULL,
    method          TEXT NOT NULL,
    route           TEXT NOT NULL,
    path            TEXT NOT NULL,
    -- The request as it will be made on approval (JSON body; empty when it has none).
    body            TEXT NOT NULL,
    -- What it changes, as the audit trail shows it (personal data masked).
    summary         TEXT NOT NULL,
    object_kind     TEXT,
    object_id       TEXT,
    proposer_kind   TEXT NOT NULL,
    proposer_id     TEXT,
    proposer_label  TEXT NOT NULL,
    reason          TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'expired')),
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    decided_at      TIMESTAMPTZ,
    decider_id      TEXT,
    decider_label   TEXT,
    decision_reason TEXT,
    -- The effect's answer on approval: {"status", "body"}.
    result          TEXT
);
CREATE INDEX approvals_state ON approvals (state, created_at);
