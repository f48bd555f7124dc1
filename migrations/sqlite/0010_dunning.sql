-- Reminders, dunning and collection (SPEC §9.3). An invoice records the rank of its last dunning
-- step and the date its next one is due; the scan finds invoices by that date.
ALTER TABLE captures ADD COLUMN dunning_level INTEGER NOT NULL DEFAULT 0;
ALTER TABLE captures ADD COLUMN dunning_stage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE captures ADD COLUMN next_dunning_on TEXT;
-- The day the last step was taken (the next one keeps a least gap to it).
ALTER TABLE captures ADD COLUMN last_dunning_on TEXT;
ALTER TABLE captures ADD COLUMN dunning_paused_until TEXT;
ALTER TABLE captures ADD COLUMN dunning_pause_reason TEXT;
ALTER TABLE captures ADD COLUMN collection_at TEXT;
-- Fees and default interest charged (claims of netterms), and what of them was waived.
ALTER TABLE captures ADD COLUMN dunning_fees INTEGER NOT NULL DEFAULT 0;
ALTER TABLE captures ADD COLUMN dunning_interest INTEGER NOT NULL DEFAULT 0;
ALTER TABLE captures ADD COLUMN dunning_waived INTEGER NOT NULL DEFAULT 0;
-- The last day default interest has been charged for (none: interest does not run).
ALTER TABLE captures ADD COLUMN interest_through TEXT;
CREATE INDEX captures_dunning_due ON captures (psp_id, next_dunning_on);

-- One row per invoice and step: a step is taken once, however many scans find it due.
CREATE TABLE dunning_steps (
    capture_id  BLOB NOT NULL REFERENCES captures (id),
    step        TEXT NOT NULL,
    psp_id      BLOB NOT NULL,
    level       INTEGER NOT NULL,
    fee         INTEGER NOT NULL DEFAULT 0,
    interest    INTEGER NOT NULL DEFAULT 0,
    deadline    TEXT,
    taken_at    TEXT NOT NULL,
    PRIMARY KEY (capture_id, step)
);

-- The base rate of §247 BGB by date (changes on 1 January and 1 July). Operators add rows.
CREATE TABLE base_rates (
    valid_from  TEXT PRIMARY KEY,
    rate_bps    INTEGER NOT NULL,
    source      TEXT NOT NULL
);
INSERT INTO base_rates (valid_from, rate_bps, source) VALUES
    ('2016-07-01', -88, 'Deutsche Bundesbank; unchanged through 2022-07-01'),
    ('2023-01-01', 162, 'Deutsche Bundesbank'),
    ('2023-07-01', 312, 'Deutsche Bundesbank'),
    ('2024-01-01', 362, 'Deutsche Bundesbank (§247 BGB text: 3,62 Prozent)'),
    ('2024-07-01', 337, 'Deutsche Bundesbank'),
    ('2025-01-01', 227, 'Deutsche Bundesbank'),
    ('2025-07-01', 127, 'Deutsche Bundesbank'),
    ('2026-01-01', 127, 'Deutsche Bundesbank (unchanged)');
