-- How many times the buyer submitted a checkout session: a declined session may be retried a
-- bounded number of times (`checkout_max_attempts`).
ALTER TABLE checkout_sessions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
