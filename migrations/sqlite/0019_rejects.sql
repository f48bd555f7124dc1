-- Banks' rejects of our files (pain.002): a collection the bank would not present is `rejected`
-- (its reason in `return_reason`); a payout whose transfer the bank refused is `rejected`, and
-- the amount is owed to the PSP again. SQLite cannot change a CHECK in place: both tables are
-- rebuilt (netterms runs SQLite migrations with foreign-key enforcement off and checks the keys
-- afterwards).
CREATE TABLE payouts_new (
    id             BLOB PRIMARY KEY,
    psp_id         BLOB NOT NULL,
    currency       TEXT NOT NULL,
    period_end     TEXT NOT NULL,
    cutoff         TEXT NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    line_count     INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'paid', 'rejected')),
    creditor_name  TEXT NOT NULL,
    creditor_iban  TEXT NOT NULL,
    sent_at        TEXT,
    paid_at        TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    creditor_bic   TEXT,
    reject_reason  TEXT,
    rejected_at    TEXT,
    CONSTRAINT payouts_period UNIQUE (psp_id, currency, period_end)
);
INSERT INTO payouts_new (id, psp_id, currency, period_end, cutoff, amount, line_count, state, creditor_name,
                         creditor_iban, sent_at, paid_at, created_at, updated_at, creditor_bic)
    SELECT id, psp_id, currency, period_end, cutoff, amount, line_count, state, creditor_name, creditor_iban,
           sent_at, paid_at, created_at, updated_at, creditor_bic FROM payouts;
DROP TABLE payouts;
ALTER TABLE payouts_new RENAME TO payouts;
CREATE INDEX payouts_psp ON payouts (psp_id, id);

CREATE TABLE direct_debits_new (
    id                 BLOB PRIMARY KEY,
    capture_id         BLOB NOT NULL REFERENCES captures (id),
    psp_id             BLOB NOT NULL,
    buyer_id           BLOB NOT NULL,
    attempt            INTEGER NOT NULL,
    file_id            BLOB REFERENCES direct_debit_files (id),
    end_to_end_id      TEXT NOT NULL UNIQUE,
    mandate_reference  TEXT NOT NULL,
    sequence           TEXT NOT NULL CHECK (sequence IN ('FRST', 'RCUR', 'OOFF')),
    currency           TEXT NOT NULL,
    amount             INTEGER NOT NULL CHECK (amount > 0),
    collection_date    TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'collected', 'returned', 'rejected')),
    payment_id         BLOB REFERENCES bank_payments (id),
    return_reason      TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    CONSTRAINT direct_debits_attempt UNIQUE (capture_id, attempt)
);
INSERT INTO direct_debits_new SELECT id, capture_id, psp_id, buyer_id, attempt, file_id, end_to_end_id,
    mandate_reference, sequence, currency, amount, collection_date, state, payment_id, return_reason, created_at,
    updated_at FROM direct_debits;
DROP TABLE direct_debits;
ALTER TABLE direct_debits_new RENAME TO direct_debits;
CREATE INDEX direct_debits_file ON direct_debits (file_id);
