-- Direct-debit returns that matched no collection (neither by end-to-end id nor by mandate and
-- amount) wait here, with their reason, until an operator applies one to a collection or
-- dismisses it.
CREATE TABLE unmatched_returns (
    id              UUID PRIMARY KEY,
    entry_id        UUID NOT NULL,
    seq             BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    reason          TEXT NOT NULL,
    end_to_end_id   TEXT,
    mandate_id      TEXT,
    debtor_name     TEXT,
    booking_date    TEXT,
    state           TEXT NOT NULL,
    applied_to      TEXT,
    note            TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    resolved_at     TIMESTAMPTZ,
    CONSTRAINT unmatched_returns_once UNIQUE (entry_id, seq)
);
CREATE INDEX unmatched_returns_state ON unmatched_returns (state, id);

-- The instant a payout run pays up to: a movement that reaches the ledger after the run is dated
-- no earlier (it belongs to the next payout).
ALTER TABLE payout_runs ADD COLUMN cutoff TIMESTAMPTZ;
UPDATE payout_runs SET cutoff = CAST(period_end AS DATE)::timestamp AT TIME ZONE 'UTC';
