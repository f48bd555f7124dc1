-- The buyer's e-mails (SPEC §9.2): written in the transaction of their cause, one per cause, sent
-- by a job (retried), kept with their status for operators and the sandbox mailbox.
CREATE TABLE messages (
    id               BLOB PRIMARY KEY,
    psp_id           BLOB NOT NULL,
    order_id         BLOB,
    capture_id       BLOB,
    kind             TEXT NOT NULL,
    -- What caused it, e.g. 'capture:<id>:payment_information': a second write is ignored.
    cause_key        TEXT NOT NULL UNIQUE,
    locale           TEXT NOT NULL,
    to_address       TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT NOT NULL,
    -- The attachment's document and the data it is rendered from (deterministic), if any.
    attachment       TEXT,
    -- The SMTP Message-ID, the same on every attempt.
    message_id       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'stored', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    sent_at          TEXT,
    updated_at       TEXT NOT NULL
);
CREATE INDEX messages_psp ON messages (psp_id, id);
CREATE INDEX messages_capture ON messages (capture_id);
CREATE INDEX messages_order ON messages (order_id);
