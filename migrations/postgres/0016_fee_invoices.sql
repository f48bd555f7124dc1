-- netterms' fee invoices to PSPs (SPEC §10): one per payout that withheld fees, numbered without
-- gaps per year (the number is taken in the transaction that makes the payout, so a rollback
-- gives it back), with what was invoiced frozen at issue.
ALTER TABLE psps ADD COLUMN billing TEXT;

CREATE TABLE fee_invoice_numbers (
    year      BIGINT PRIMARY KEY,
    last_seq  BIGINT NOT NULL
);

CREATE TABLE fee_invoices (
    id            UUID PRIMARY KEY,
    payout_id     UUID NOT NULL UNIQUE REFERENCES payouts (id),
    psp_id        UUID NOT NULL,
    year          BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    number        TEXT NOT NULL UNIQUE,
    currency      TEXT NOT NULL,
    net           BIGINT NOT NULL,
    vat           BIGINT NOT NULL,
    gross         BIGINT NOT NULL CHECK (gross = net + vat),
    -- The whole invoice as issued (domain::einvoice::FeeInvoice), JSON.
    document      TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (year, seq)
);
CREATE INDEX fee_invoices_psp ON fee_invoices (psp_id, id);
