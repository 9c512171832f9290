-- The door and ticket transfers. A ticket's code is signed over its
-- booking, seat and nonce: the booking's payment id until a transfer gives
-- it a new one (code_nonce) and a new holder (holder_id; NULL: the
-- booking's user). The door admits a ticket once (door_admissions' key;
-- with re-entry, once per exit), answers every scan id once (door_scans'
-- key), and keeps every double admission of offline scans (door_conflicts).

ALTER TABLE checkout.booking_tickets
    ADD COLUMN holder_id uuid,
    ADD COLUMN code_nonce uuid;
CREATE INDEX booking_tickets_by_holder ON checkout.booking_tickets (holder_id)
    WHERE holder_id IS NOT NULL;

CREATE TABLE checkout.door_settings (
    event_id        uuid PRIMARY KEY,
    reentry_allowed boolean NOT NULL DEFAULT false,
    -- Scans before this are refused (NULL: open).
    doors_open_time timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every scan with the answer it got; a retry with the same scan id is
-- answered from here.
CREATE TABLE checkout.door_scans (
    scan_id        text PRIMARY KEY,
    event_id       uuid NOT NULL,
    gate           text NOT NULL,
    -- SHA-256 of the code: a scan id sent again with another code is refused.
    code_sha256    bytea NOT NULL,
    direction      text NOT NULL CHECK (direction IN ('entry', 'exit')),
    offline        boolean NOT NULL,
    scan_time      timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    booking_id     uuid,
    seat_index     integer,
    -- 'pending' only inside the transaction that decides it.
    outcome        text NOT NULL CHECK (outcome IN ('pending', 'admitted', 'exited', 'refused', 'conflict')),
    refusal        text,
    used_gate      text,
    used_time      timestamptz
);
CREATE INDEX door_scans_by_event ON checkout.door_scans (event_id, gate);

-- One row per ticket ever admitted: whether it is inside, its first
-- entry and its latest (the one that let it in now).
CREATE TABLE checkout.door_admissions (
    booking_id   uuid NOT NULL,
    seat_index   integer NOT NULL,
    event_id     uuid NOT NULL,
    inside       boolean NOT NULL,
    entries      integer NOT NULL DEFAULT 1,
    first_gate   text NOT NULL,
    first_time   timestamptz NOT NULL,
    last_scan_id text NOT NULL,
    last_gate    text NOT NULL,
    last_time    timestamptz NOT NULL,
    PRIMARY KEY (booking_id, seat_index),
    FOREIGN KEY (booking_id, seat_index) REFERENCES checkout.booking_tickets (booking_id, seat_index)
);
CREATE INDEX door_admissions_by_event ON checkout.door_admissions (event_id);

-- A ticket admitted by two scans (one of them offline): the earlier scan
-- by scan time wins. A scan loses at most once.
CREATE TABLE checkout.door_conflicts (
    id            bigserial PRIMARY KEY,
    event_id      uuid NOT NULL,
    booking_id    uuid NOT NULL,
    seat_index    integer NOT NULL,
    winner_scan_id text NOT NULL REFERENCES checkout.door_scans (scan_id),
    loser_scan_id  text NOT NULL UNIQUE REFERENCES checkout.door_scans (scan_id),
    detected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX door_conflicts_by_event ON checkout.door_conflicts (event_id, id);

CREATE TABLE checkout.ticket_transfers (
    id              uuid PRIMARY KEY,
    booking_id      uuid NOT NULL,
    seat_index      integer NOT NULL,
    event_id        uuid NOT NULL,
    sender_id       uuid NOT NULL,
    -- Lowercased; matched against the accepting user's account email.
    recipient_email text NOT NULL,
    recipient_id    uuid,
    state           text NOT NULL CHECK (state IN ('pending', 'accepted', 'cancelled')),
    -- The code nonce it replaces (refused at the door once accepted) and
    -- the one it gives.
    old_nonce       uuid NOT NULL,
    new_nonce       uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    decided_at      timestamptz,
    FOREIGN KEY (booking_id, seat_index) REFERENCES checkout.booking_tickets (booking_id, seat_index)
);
CREATE UNIQUE INDEX ticket_transfers_one_pending ON checkout.ticket_transfers (booking_id, seat_index)
    WHERE state = 'pending';
CREATE INDEX ticket_transfers_by_sender ON checkout.ticket_transfers (sender_id, created_at DESC);
CREATE INDEX ticket_transfers_by_recipient ON checkout.ticket_transfers (recipient_email, created_at DESC);
CREATE INDEX ticket_transfers_replaced ON checkout.ticket_transfers (event_id) WHERE state = 'accepted';

-- Tickets given away: a booking with any cannot be cancelled (the check
-- and the transfer's acceptance both change this row, so they serialize).
ALTER TABLE checkout.bookings ADD COLUMN transferred_tickets integer NOT NULL DEFAULT 0;
-- The scanner kit's cancelled codes, per event.
CREATE INDEX bookings_cancelled_by_event ON checkout.bookings (event_id)
    WHERE state IN ('cancelling', 'cancelled');
