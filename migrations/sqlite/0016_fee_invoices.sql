-- netterms' fee invoices to PSPs (SPEC §10): one per payout that withheld fees, numbered without
-- gaps per year (the number is taken in the transaction that makes the payout, so a rollback
-- gives it back), with what was invoiced frozen at issue.
ALTER TABLE psps ADD COLUMN billing TEXT;

CREATE TABLE fee_invoice_numbers (
    year      INTEGER PRIMARY KEY,
    last_seq  INTEGER NOT NULL
);

CREATE TABLE fee_invoices (
    id            BLOB PRIMARY KEY,
    payout_id     BLOB NOT NULL UNIQUE REFERENCES payouts (id),
    psp_id        BLOB NOT NULL,
    year          INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    number        TEXT NOT NULL UNIQUE,
    currency      TEXT NOT NULL,
    net           INTEGER NOT NULL,
    vat           INTEGER NOT NULL,
    gross         INTEGER NOT NULL CHECK (gross = net + vat),
    -- The whole invoice as issued (domain::einvoice::FeeInvoice), JSON.
    document      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    UNIQUE (year, seq)
);
CREATE INDEX fee_invoices_psp ON fee_invoices (psp_id, id);
