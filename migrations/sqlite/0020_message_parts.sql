-- A message stores its body's parts once (greeting, paragraphs, facts, closing as compact JSON);
-- its text and HTML are made from them when read or sent (issue 20: the transaction that queues
-- a message wrote both renderings, two thirds of its bytes). Messages written before keep their
-- stored text and HTML. SQLite cannot drop NOT NULL in place: the table is rebuilt.
CREATE TABLE messages_new (
    id               BLOB PRIMARY KEY,
    psp_id           BLOB NOT NULL,
    order_id         BLOB,
    capture_id       BLOB,
    kind             TEXT NOT NULL,
    cause_key        TEXT NOT NULL UNIQUE,
    locale           TEXT NOT NULL,
    to_address       TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT,
    body_html        TEXT,
    body             TEXT,
    attachment       TEXT,
    message_id       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'stored', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    sent_at          TEXT,
    updated_at       TEXT NOT NULL
);
INSERT INTO messages_new (id, psp_id, order_id, capture_id, kind, cause_key, locale, to_address, subject, body_text,
    body_html, attachment, message_id, status, attempts, last_error, created_at, sent_at, updated_at)
SELECT id, psp_id, order_id, capture_id, kind, cause_key, locale, to_address, subject, body_text,
    body_html, attachment, message_id, status, attempts, last_error, created_at, sent_at, updated_at FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_psp ON messages (psp_id, id);
CREATE INDEX messages_capture ON messages (capture_id);
CREATE INDEX messages_order ON messages (order_id);
