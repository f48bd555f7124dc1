-- Money-moving POSTs are safe to retry without an Idempotency-Key, and keys are fenced.

-- Each claim of a key gets a token; the effect's transaction commits only while the token is
-- still the claim's (a takeover changes it).
ALTER TABLE idempotency_keys ADD COLUMN token UUID;

-- Credit notes are numbered by the merchant, uniquely; a retried refund finds its credit note.
ALTER TABLE refunds ADD COLUMN merchant_id UUID;
ALTER TABLE refunds ADD COLUMN line_items TEXT NOT NULL DEFAULT '[]';
UPDATE refunds SET merchant_id = (SELECT c.merchant_id FROM captures c WHERE c.id = refunds.capture_id);
-- Duplicates made before numbers were unique keep their number with the refund's id appended.
UPDATE refunds SET external_credit_note_number = external_credit_note_number || ' (' || CAST(id AS TEXT) || ')'
WHERE EXISTS (SELECT 1 FROM refunds r WHERE r.merchant_id = refunds.merchant_id
              AND r.external_credit_note_number = refunds.external_credit_note_number AND r.id < refunds.id);
CREATE UNIQUE INDEX refunds_merchant_credit_note ON refunds (merchant_id, external_credit_note_number);

-- Payments the buyer made to the merchant directly (confirm-payment), one row each; a retry
-- with the same external_payment_id finds its row.
CREATE TABLE direct_payments (
    id                   UUID PRIMARY KEY,
    capture_id           UUID NOT NULL REFERENCES captures (id),
    psp_id               UUID NOT NULL,
    external_payment_id  TEXT,
    currency             TEXT NOT NULL,
    amount               BIGINT NOT NULL CHECK (amount > 0),
    created_at           TIMESTAMPTZ NOT NULL,
    CONSTRAINT direct_payments_external UNIQUE (capture_id, external_payment_id)
);
