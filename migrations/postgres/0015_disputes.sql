-- Disputes on the PSP's side (SPEC §10): its defence with documents, the operator's close, and
-- chargebacks: what a chargeback took from the invoice (the buyer owes it no longer, the PSP's
-- next payout bears it).
ALTER TABLE captures ADD COLUMN charged_back BIGINT NOT NULL DEFAULT 0 CHECK (charged_back >= 0);
ALTER TABLE disputes ADD COLUMN defense_reason TEXT;
ALTER TABLE disputes ADD COLUMN defended_at TIMESTAMPTZ;
-- `operator` or `deadline` (no defence by the deadline).
ALTER TABLE disputes ADD COLUMN closed_by TEXT;
ALTER TABLE disputes ADD COLUMN closed_at TIMESTAMPTZ;
ALTER TABLE disputes ADD COLUMN charged_back BIGINT NOT NULL DEFAULT 0;
-- Of that, what the buyer had paid already and is owed back (its credit).
ALTER TABLE disputes ADD COLUMN owed_to_buyer BIGINT NOT NULL DEFAULT 0;

CREATE TABLE dispute_documents (
    dispute_id    UUID NOT NULL REFERENCES disputes (id),
    seq           BIGINT NOT NULL,
    name          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    content       BYTEA NOT NULL,
    PRIMARY KEY (dispute_id, seq)
);

-- The deadline scan: open disputes by deadline.
CREATE INDEX disputes_deadline ON disputes (state, deadline);
