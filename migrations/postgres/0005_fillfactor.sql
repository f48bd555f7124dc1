-- Rows updated in place on the hot path keep room on their page, so PostgreSQL can update them
-- without touching their indexes (HOT updates): an order on every capture, an idempotency key
-- when its response is stored.
ALTER TABLE orders SET (fillfactor = 70);
ALTER TABLE idempotency_keys SET (fillfactor = 70);
