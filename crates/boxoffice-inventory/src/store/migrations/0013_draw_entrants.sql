-- The pre-queue draw's record: everyone who joined a waiting room before it
-- opened, at the place the draw gave them. Written in one transaction
-- before any drawn place reaches Redis, so the published seed and this list
-- are the whole audit (recompute the order from them; it must match) and
-- outlive the room's Redis keys. A redraw after Redis lost the line reads
-- the places back from here instead of drawing again.
CREATE TABLE IF NOT EXISTS inventory.draw_entrants (
    event_id uuid NOT NULL,
    place    bigint NOT NULL CHECK (place >= 1),
    user_id  uuid NOT NULL,
    PRIMARY KEY (event_id, place)
);

-- How many entrants the recorded draw has (set with the list).
ALTER TABLE inventory.waiting_rooms ADD COLUMN IF NOT EXISTS draw_entrants bigint;
