-- Waiting-room settings are an admin's decision and must outlive Redis: the
-- line itself lives in Redis (people rejoin after a flush, as with holds),
-- but whether an event's room is on, its rate and its opening time come back
-- from here whenever the event's Redis state is rebuilt.
CREATE TABLE inventory.waiting_rooms (
    event_id   uuid PRIMARY KEY REFERENCES inventory.events (event_id),
    enabled    boolean NOT NULL,
    -- Admissions per second.
    rate       integer NOT NULL CHECK (rate >= 0),
    -- When admission starts, in Unix milliseconds; 0 from when it was turned on.
    opens_ms   bigint NOT NULL CHECK (opens_ms >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
