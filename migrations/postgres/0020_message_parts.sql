-- A message stores its body's parts once (greeting, paragraphs, facts, closing as compact JSON);
-- its text and HTML are made from them when read or sent (issue 20: the transaction that queues
-- a message wrote both renderings, two thirds of its bytes, compressed into TOAST). Messages
-- written before keep their stored text and HTML.
ALTER TABLE messages ADD COLUMN body TEXT;
ALTER TABLE messages ALTER COLUMN body_text DROP NOT NULL;
ALTER TABLE messages ALTER COLUMN body_html DROP NOT NULL;
