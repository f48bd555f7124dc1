-- Captures (invoices), refunds (credit notes) and the double-entry ledger.
ALTER TABLE orders ADD COLUMN captured INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN canceled_amount INTEGER NOT NULL DEFAULT 0;

CREATE TABLE captures (
    id                       BLOB PRIMARY KEY,
    order_id                 BLOB NOT NULL REFERENCES orders (id),
    psp_id                   BLOB NOT NULL,
    merchant_id              BLOB NOT NULL,
    buyer_id                 BLOB NOT NULL,
    external_invoice_number  TEXT NOT NULL,
    invoice_url              TEXT,
    currency                 TEXT NOT NULL,
    gross                    INTEGER NOT NULL CHECK (gross > 0),
    net                      INTEGER NOT NULL,
    tax                      INTEGER NOT NULL,
    fee                      INTEGER NOT NULL CHECK (fee >= 0),
    refunded                 INTEGER NOT NULL DEFAULT 0,
    paid_direct                     INTEGER NOT NULL DEFAULT 0,
    state                    TEXT NOT NULL CHECK (state IN ('open', 'late', 'paid', 'canceled')),
    duration                 INTEGER NOT NULL,
    due_date                 TEXT NOT NULL,
    payment_reference        TEXT NOT NULL,
    shipping_info            TEXT,
    line_items               TEXT NOT NULL,
    created_at               TEXT NOT NULL,
    updated_at               TEXT NOT NULL,
    CONSTRAINT captures_merchant_invoice UNIQUE (merchant_id, external_invoice_number),
    CHECK (refunded >= 0 AND paid_direct >= 0 AND refunded <= gross)
);
CREATE INDEX captures_order ON captures (order_id);
CREATE INDEX captures_buyer ON captures (buyer_id, state);

CREATE TABLE refunds (
    id                          BLOB PRIMARY KEY,
    capture_id                  BLOB NOT NULL REFERENCES captures (id),
    psp_id                      BLOB NOT NULL,
    external_credit_note_number TEXT,
    reason                      TEXT,
    currency                    TEXT NOT NULL,
    gross                       INTEGER NOT NULL CHECK (gross > 0),
    net                         INTEGER NOT NULL,
    tax                         INTEGER NOT NULL,
    owed_to_buyer               INTEGER NOT NULL,
    created_at                  TEXT NOT NULL
);
CREATE INDEX refunds_capture ON refunds (capture_id);

CREATE TABLE ledger_entries (
    id          BLOB PRIMARY KEY,
    kind        TEXT NOT NULL,
    ref_id      BLOB NOT NULL,
    currency    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX ledger_entries_ref ON ledger_entries (ref_id);

CREATE TABLE ledger_lines (
    entry_id  BLOB NOT NULL REFERENCES ledger_entries (id),
    account   TEXT NOT NULL,
    amount    INTEGER NOT NULL,
    PRIMARY KEY (entry_id, account)
);
CREATE INDEX ledger_lines_account ON ledger_lines (account);
