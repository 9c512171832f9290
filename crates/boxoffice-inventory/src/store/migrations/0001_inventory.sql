-- Inventory's tables. PostgreSQL is the truth for what is sold: one ticket
-- row per seat (and per general-admission place) per event, never one hot
-- counter row, so commits of different seats never contend.

-- Events inventory sells, copied from the catalog's outbox when published.
CREATE TABLE inventory.events (
    event_id        uuid PRIMARY KEY,
    venue_id        uuid NOT NULL,
    status          text NOT NULL CHECK (status IN ('on_sale', 'cancelled')),
    on_sale_time    timestamptz,
    seat_count      integer NOT NULL CHECK (seat_count >= 0),
    currency_code   text NOT NULL,
    -- The sale layout (sections, rows, tiers, distances) for best available.
    layout          jsonb NOT NULL,
    catalog_version bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE inventory.tickets (
    event_id      uuid NOT NULL REFERENCES inventory.events (event_id),
    seat_index    integer NOT NULL CHECK (seat_index >= 0),
    section_id    uuid NOT NULL,
    price_tier_id uuid,
    status        text NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'sold')),
    booking_id    uuid,
    hold_id       uuid,
    version       bigint NOT NULL DEFAULT 1,
    sold_at       timestamptz,
    PRIMARY KEY (event_id, seat_index),
    CHECK ((status = 'sold') = (booking_id IS NOT NULL))
);
CREATE INDEX tickets_by_booking ON inventory.tickets (booking_id) WHERE booking_id IS NOT NULL;

-- How far inventory has read other services' event logs.
CREATE TABLE inventory.feed_cursors (
    name    text PRIMARY KEY,
    last_id bigint NOT NULL
);
INSERT INTO inventory.feed_cursors (name, last_id) VALUES ('catalog.outbox', 0);
