-- Each sandbox PSP's own clock: how far it runs ahead of the deployment's, and who is advancing it.
ALTER TABLE psps ADD COLUMN clock_offset_us INTEGER NOT NULL DEFAULT 0 CHECK (clock_offset_us >= 0);
ALTER TABLE psps ADD COLUMN clock_lease_until TEXT;
CREATE INDEX captures_psp_due ON captures (psp_id, state, due_date);
