-- The buyer portal (SPEC §9.6): sign-in links and sessions, the merchant's documents, what the
-- buyer says it paid, support requests, disputes, and a buyer's standing payment method.

-- Whose orders a signed-in address sees: the order's debtor_person.email, lower-cased.
ALTER TABLE orders ADD COLUMN contact_email TEXT;
UPDATE orders SET contact_email = lower(json_extract(order_data, '$.debtor_person.email'));
CREATE INDEX orders_contact_email ON orders (contact_email);
-- When a mandate given later than the order (in the portal) was accepted.
ALTER TABLE orders ADD COLUMN mandate_signed_at TEXT;
-- Open disputes of the invoice: dunning waits while there is one.
ALTER TABLE captures ADD COLUMN disputes_open INTEGER NOT NULL DEFAULT 0;

CREATE TABLE portal_links (
    token_digest  BLOB PRIMARY KEY,
    email         TEXT NOT NULL,
    locale        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT
);
CREATE INDEX portal_links_email ON portal_links (email, created_at);

CREATE TABLE portal_sessions (
    id_digest     BLOB PRIMARY KEY,
    email         TEXT NOT NULL,
    csrf_token    TEXT NOT NULL,
    locale        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    ended_at      TEXT
);

-- The merchant's invoice (per capture) and credit notes (per refund), uploaded or fetched once.
CREATE TABLE merchant_documents (
    id           BLOB PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    subject_id   BLOB NOT NULL,
    psp_id       BLOB NOT NULL,
    capture_id   BLOB NOT NULL REFERENCES captures (id),
    source       TEXT NOT NULL CHECK (source IN ('upload', 'invoice_url')),
    content      BLOB NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CONSTRAINT merchant_documents_subject UNIQUE (kind, subject_id)
);
CREATE INDEX merchant_documents_capture ON merchant_documents (capture_id);

-- "I have paid": what the buyer says, until a payment or the pause's end settles it.
CREATE TABLE payment_claims (
    id          BLOB PRIMARY KEY,
    psp_id      BLOB NOT NULL,
    capture_id  BLOB NOT NULL REFERENCES captures (id),
    email       TEXT NOT NULL,
    paid_on     TEXT NOT NULL,
    currency    TEXT NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    state       TEXT NOT NULL CHECK (state IN ('open', 'matched')),
    payment_id  BLOB,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX payment_claims_capture ON payment_claims (capture_id, state);
CREATE INDEX payment_claims_state ON payment_claims (state, id);

CREATE TABLE support_requests (
    id               BLOB PRIMARY KEY,
    email            TEXT NOT NULL,
    psp_id           BLOB NOT NULL,
    capture_id       BLOB REFERENCES captures (id),
    locale           TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body             TEXT NOT NULL,
    attachment       BLOB,
    attachment_type  TEXT,
    attachment_name  TEXT,
    state            TEXT NOT NULL CHECK (state IN ('open', 'answered')),
    answer           TEXT,
    answered_at      TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX support_requests_email ON support_requests (email, id);
CREATE INDEX support_requests_state ON support_requests (state, id);

CREATE TABLE disputes (
    id            BLOB PRIMARY KEY,
    psp_id        BLOB NOT NULL,
    capture_id    BLOB NOT NULL REFERENCES captures (id),
    opened_by     TEXT NOT NULL CHECK (opened_by IN ('buyer', 'operator', 'sandbox')),
    email         TEXT,
    reason_code   TEXT NOT NULL CHECK (reason_code IN ('return', 'goods_not_received', 'faulty_goods', 'already_paid', 'incorrect_invoice', 'unauthorized_purchase')),
    description   TEXT NOT NULL,
    currency      TEXT NOT NULL,
    amount        INTEGER NOT NULL CHECK (amount > 0),
    state         TEXT NOT NULL CHECK (state IN ('open', 'resolved', 'chargeback')),
    deadline      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX disputes_capture ON disputes (capture_id);
CREATE INDEX disputes_psp ON disputes (psp_id, id);
CREATE INDEX disputes_state ON disputes (state, id);

-- A buyer's standing choice for its future orders (placed with this address for this company).
CREATE TABLE payment_preferences (
    email              TEXT NOT NULL,
    buyer_id           BLOB NOT NULL REFERENCES buyers (id),
    debit_iban         TEXT NOT NULL,
    mandate_reference  TEXT NOT NULL,
    mandate_text       TEXT NOT NULL,
    signed_at          TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (email, buyer_id)
);
