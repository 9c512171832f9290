-- The fair waiting room: a cap on active shoppers besides the rate, and the
-- pre-queue draw's seed. The seed is generated when the room opens (never
-- before, so nobody can know the order in advance) and kept here so admins
-- can publish it: the order of everyone who joined before opening is
-- recomputable from it and the list of those joiners.
ALTER TABLE inventory.waiting_rooms
    -- Most admitted shoppers at once; 0 for no cap (the rate alone).
    ADD COLUMN max_active integer NOT NULL DEFAULT 0 CHECK (max_active >= 0),
    -- 32 random bytes, set once at the first opening after joiners lined up.
    ADD COLUMN draw_seed bytea,
    ADD COLUMN drawn_at timestamptz;

-- When the event ends (the catalog's end time, else its start): a room's
-- Redis state expires a day after, so lines of past events do not pile up.
ALTER TABLE inventory.events ADD COLUMN ends_at timestamptz;
