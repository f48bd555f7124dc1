-- Payouts to PSPs (SPEC §10): one run per PSP and period (its cut-off), one payout per currency
-- of what the ledger owes the PSP up to the cut-off; each ledger movement is paid out once.
CREATE TABLE payout_runs (
    psp_id      BLOB NOT NULL,
    period_end  TEXT NOT NULL,
    payouts     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (psp_id, period_end)
);

CREATE TABLE payouts (
    id             BLOB PRIMARY KEY,
    psp_id         BLOB NOT NULL,
    currency       TEXT NOT NULL,
    period_end     TEXT NOT NULL,
    cutoff         TEXT NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    line_count     INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'paid')),
    creditor_name  TEXT NOT NULL,
    creditor_iban  TEXT NOT NULL,
    sent_at        TEXT,
    paid_at        TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    CONSTRAINT payouts_period UNIQUE (psp_id, currency, period_end)
);
CREATE INDEX payouts_psp ON payouts (psp_id, id);

CREATE TABLE payout_lines (
    entry_id   BLOB PRIMARY KEY REFERENCES ledger_entries (id),
    payout_id  BLOB NOT NULL REFERENCES payouts (id),
    -- What the movement adds to the payout (negative: a refund or direct payment recovered).
    amount     INTEGER NOT NULL
);
CREATE INDEX payout_lines_payout ON payout_lines (payout_id, entry_id);
