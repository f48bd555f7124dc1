-- Checkout: buyers (de-duplicated, with a virtual IBAN), sessions of both flows, orders, and
-- every credit decision with the rules that fired.
CREATE TABLE buyers (
    id                   UUID PRIMARY KEY,
    dedup_key            TEXT NOT NULL UNIQUE,
    name                 TEXT NOT NULL,
    legal_form           TEXT NOT NULL,
    registration_number  TEXT,
    registration_court   TEXT,
    tax_id               TEXT,
    address              TEXT NOT NULL,
    search_name          TEXT NOT NULL,
    credit_limit         BIGINT,
    blocked              BOOLEAN NOT NULL DEFAULT FALSE,
    virtual_iban         TEXT NOT NULL UNIQUE,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX buyers_search_name ON buyers (search_name);

CREATE TABLE checkout_sessions (
    id                    UUID PRIMARY KEY,
    kind                  TEXT NOT NULL CHECK (kind IN ('payment_page', 'widget')),
    psp_id                UUID NOT NULL REFERENCES psps (id),
    merchant_id           UUID NOT NULL REFERENCES merchants (id),
    status                TEXT NOT NULL CHECK (status IN ('open', 'authorized', 'declined', 'completed', 'expired', 'canceled')),
    order_data            TEXT,
    merchant_customer_id  TEXT,
    allowed_origins       TEXT NOT NULL,
    redirect_urls         TEXT,
    locale                TEXT NOT NULL,
    order_id              UUID,
    expires_at            TIMESTAMPTZ NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);

CREATE TABLE orders (
    id                 UUID PRIMARY KEY,
    psp_id             UUID NOT NULL REFERENCES psps (id),
    merchant_id        UUID NOT NULL REFERENCES merchants (id),
    session_id         UUID NOT NULL REFERENCES checkout_sessions (id),
    buyer_id           UUID REFERENCES buyers (id),
    state              TEXT NOT NULL,
    decline_reason     TEXT,
    external_order_id  TEXT,
    currency           TEXT NOT NULL,
    gross              BIGINT NOT NULL CHECK (gross > 0),
    net                BIGINT NOT NULL,
    tax                BIGINT NOT NULL,
    duration           BIGINT NOT NULL,
    order_data         TEXT NOT NULL,
    payment_method     TEXT NOT NULL CHECK (payment_method IN ('bank_transfer', 'direct_debit')),
    debit_iban         TEXT,
    mandate_reference  TEXT,
    mandate_text       TEXT,
    expires_at         TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    CHECK (gross = net + tax)
);
CREATE INDEX orders_buyer_state ON orders (buyer_id, state);
CREATE INDEX orders_psp ON orders (psp_id, id);
CREATE INDEX orders_session ON orders (session_id);
CREATE INDEX orders_expiry ON orders (state, expires_at);

CREATE TABLE decisions (
    id              UUID PRIMARY KEY,
    order_id        UUID NOT NULL REFERENCES orders (id),
    buyer_id        UUID REFERENCES buyers (id),
    outcome         TEXT NOT NULL,
    decline_reason  TEXT,
    rules           TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX decisions_order ON decisions (order_id);

-- Operator settings that override the configuration file (the credit policy).
CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
