-- What the stats consumer keeps from the events (see src/consumer.rs).
CREATE SCHEMA IF NOT EXISTS stats;

-- Venue sections, from VenueCreated / VenueChanged:
-- [{"id", "name", "first", "capacity"}] in seat-index order.
CREATE TABLE stats.venues (
    venue_id   uuid PRIMARY KEY,
    sections   jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events, from the catalog's event snapshots; tiers:
-- [{"id", "name", "currency", "price", "sections": [id, ...]}].
CREATE TABLE stats.events (
    event_id   uuid PRIMARY KEY,
    title      text NOT NULL,
    venue_id   uuid,
    start_time timestamptz,
    status     text NOT NULL,
    tiers      jsonb NOT NULL DEFAULT '[]',
    -- The snapshot's version: an older snapshot never overwrites a newer one.
    version    bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_by_start ON stats.events (start_time, event_id);

-- Seats sold now (SeatsSold adds, SeatsReleased removes).
CREATE TABLE stats.sold_seats (
    event_id   uuid NOT NULL,
    seat_index integer NOT NULL,
    booking_id uuid NOT NULL,
    PRIMARY KEY (event_id, seat_index)
);

-- Bookings ever confirmed, from BookingConfirmed / BookingCancelled /
-- RefundIssued. No personal data: a booking is counted, not named.
CREATE TABLE stats.bookings (
    booking_id     uuid PRIMARY KEY,
    event_id       uuid NOT NULL,
    tickets        integer NOT NULL,
    currency_code  text NOT NULL,
    gross_minor    bigint NOT NULL,
    fees_minor     bigint NOT NULL,
    confirmed_at   timestamptz NOT NULL,
    cancelled_at   timestamptz,
    refunded_minor bigint NOT NULL DEFAULT 0
);
CREATE INDEX bookings_by_event ON stats.bookings (event_id, confirmed_at);
