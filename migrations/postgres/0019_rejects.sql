-- Banks' rejects of our files (pain.002): a collection the bank would not present is `rejected`
-- (its reason in `return_reason`); a payout whose transfer the bank refused is `rejected`, and
-- the amount is owed to the PSP again.
ALTER TABLE payouts DROP CONSTRAINT payouts_state_check;
ALTER TABLE payouts ADD CONSTRAINT payouts_state_check CHECK (state IN ('pending', 'sent', 'paid', 'rejected'));
ALTER TABLE payouts ADD COLUMN reject_reason TEXT;
ALTER TABLE payouts ADD COLUMN rejected_at TIMESTAMPTZ;
ALTER TABLE direct_debits DROP CONSTRAINT direct_debits_state_check;
ALTER TABLE direct_debits ADD CONSTRAINT direct_debits_state_check
    CHECK (state IN ('pending', 'collected', 'returned', 'rejected'));
