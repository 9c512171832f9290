-- The waitlist of sold-out events (see waitlist.rs): one entry per user and
-- event, in join order (`seq`; joining again after leaving, lapsing or
-- being served goes to the end of the line). `quantity` is what the user
-- still wants; an open offer is the hold `offer_hold_id` in the user's
-- name with `offer_seats` until `offer_expires_at`.
CREATE SEQUENCE IF NOT EXISTS inventory.waitlist_seq;

CREATE TABLE IF NOT EXISTS inventory.waitlist_entries (
    event_id         uuid NOT NULL,
    user_id          uuid NOT NULL,
    seq              bigint NOT NULL DEFAULT nextval('inventory.waitlist_seq'),
    quantity         integer NOT NULL CHECK (quantity >= 0),
    status           text NOT NULL
                     CHECK (status IN ('waiting', 'offered', 'fulfilled', 'lapsed', 'left')),
    joined_at        timestamptz NOT NULL DEFAULT now(),
    offer_hold_id    uuid,
    offer_seats      integer[],
    offer_expires_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, user_id),
    CHECK ((status = 'offered') = (offer_hold_id IS NOT NULL))
);

-- The line of each event, and the events that have one.
CREATE INDEX IF NOT EXISTS waitlist_line ON inventory.waitlist_entries (event_id, seq)
    WHERE status IN ('waiting', 'offered');
CREATE INDEX IF NOT EXISTS waitlist_by_user ON inventory.waitlist_entries (user_id)
    WHERE status IN ('waiting', 'offered');
