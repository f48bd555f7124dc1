-- Money in (SPEC §9.5): bank statements, their entries, the buyer payments they hold and what
-- each payment settled; SEPA direct-debit collections and their files; credit transfers out.

-- Principal paid into netterms' bank account, and dunning fees and interest paid.
ALTER TABLE captures ADD COLUMN paid_bank INTEGER NOT NULL DEFAULT 0;
ALTER TABLE captures ADD COLUMN dunning_paid INTEGER NOT NULL DEFAULT 0;
CREATE INDEX captures_reference ON captures (payment_reference);
CREATE INDEX orders_mandate ON orders (mandate_reference);

-- One row per imported document (the same document imported twice gives two rows, booking
-- nothing the second time).
CREATE TABLE bank_statements (
    id          BLOB PRIMARY KEY,
    kind        TEXT NOT NULL,
    version     TEXT NOT NULL,
    digest      TEXT NOT NULL,
    source      TEXT NOT NULL,
    summary     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- One row per statement entry, once, by its key (the bank's reference, else a digest of it).
CREATE TABLE bank_entries (
    id            BLOB PRIMARY KEY,
    entry_key     TEXT NOT NULL UNIQUE,
    statement_id  BLOB NOT NULL REFERENCES bank_statements (id),
    account       TEXT,
    currency      TEXT NOT NULL,
    amount        INTEGER NOT NULL,
    credit        BOOLEAN NOT NULL,
    status        TEXT NOT NULL,
    -- booked: its transactions were processed; awaiting_details: a batch whose transactions a
    -- later camt.054 brings; details: those transactions, seen before their booking; ignored.
    state         TEXT NOT NULL CHECK (state IN ('booked', 'awaiting_details', 'details', 'ignored')),
    booking_date  TEXT,
    details       TEXT,
    note          TEXT,
    created_at    TEXT NOT NULL
);

-- A buyer payment (a credited transaction) or a direct-debit collection the bank booked.
CREATE TABLE bank_payments (
    id                BLOB PRIMARY KEY,
    payment_key       TEXT NOT NULL UNIQUE,
    entry_id          BLOB NOT NULL REFERENCES bank_entries (id),
    psp_id            BLOB,
    buyer_id          BLOB,
    currency          TEXT NOT NULL,
    amount            INTEGER NOT NULL CHECK (amount > 0),
    debtor_name       TEXT,
    debtor_iban       TEXT,
    creditor_iban     TEXT,
    reference         TEXT,
    remittance        TEXT,
    end_to_end_id     TEXT,
    mandate_id        TEXT,
    booking_date      TEXT,
    state             TEXT NOT NULL CHECK (state IN ('matched', 'unmatched', 'refunded', 'returned')),
    rule              TEXT,
    explanation       TEXT,
    -- The part that became the buyer's credit (an over-payment).
    credit            INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX bank_payments_state ON bank_payments (state, id);
CREATE INDEX bank_payments_end_to_end ON bank_payments (end_to_end_id);

-- What a payment paid on each invoice: dunning charges and principal.
CREATE TABLE payment_allocations (
    payment_id  BLOB NOT NULL REFERENCES bank_payments (id),
    capture_id  BLOB NOT NULL REFERENCES captures (id),
    charges     INTEGER NOT NULL CHECK (charges >= 0),
    principal   INTEGER NOT NULL CHECK (principal >= 0),
    PRIMARY KEY (payment_id, capture_id)
);
CREATE INDEX payment_allocations_capture ON payment_allocations (capture_id);

-- Collection files (pain.008) and the collections in them, one per invoice and attempt.
CREATE TABLE direct_debit_files (
    id               BLOB PRIMARY KEY,
    message_id       TEXT NOT NULL UNIQUE,
    collection_date  TEXT NOT NULL,
    currency         TEXT NOT NULL,
    count            INTEGER NOT NULL,
    total            INTEGER NOT NULL,
    xml              TEXT NOT NULL,
    created_at       TEXT NOT NULL
);

CREATE TABLE direct_debits (
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
    state              TEXT NOT NULL CHECK (state IN ('pending', 'collected', 'returned')),
    payment_id         BLOB REFERENCES bank_payments (id),
    return_reason      TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    CONSTRAINT direct_debits_attempt UNIQUE (capture_id, attempt)
);
CREATE INDEX direct_debits_file ON direct_debits (file_id);

-- Credit transfers netterms sends (pain.001): an unmatched payment sent back, a buyer's credit paid out.
CREATE TABLE credit_transfers (
    id              BLOB PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('unmatched_refund', 'credit_refund')),
    payment_id      BLOB REFERENCES bank_payments (id) UNIQUE,
    buyer_id        BLOB,
    currency        TEXT NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    creditor_name   TEXT NOT NULL,
    creditor_iban   TEXT NOT NULL,
    remittance      TEXT NOT NULL,
    xml             TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
