-- Checkout's tables: bookings with their tickets, payment attempts (which
-- are also the idempotency records of ConfirmBooking), and the provider's
-- webhook events. States only move along allowed edges: every update names
-- the state it expects, and the triggers below refuse any other edge.

CREATE TABLE checkout.bookings (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL,
    event_id         uuid NOT NULL,
    -- One booking per hold: a hold is sold at most once.
    hold_id          uuid NOT NULL UNIQUE,
    state            text NOT NULL CHECK (state IN
                         ('pending', 'confirming', 'confirmed', 'cancelling', 'cancelled', 'expired')),
    currency_code    text NOT NULL,
    subtotal_minor   bigint NOT NULL CHECK (subtotal_minor >= 0),
    fees_minor       bigint NOT NULL CHECK (fees_minor >= 0),
    total_minor      bigint NOT NULL CHECK (total_minor = subtotal_minor + fees_minor),
    refunded_minor   bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    -- The idempotency key of CreateBooking, if the client sent one.
    create_key       text,
    event_start_time timestamptz,
    -- The hold's expiry: a pending booking ends then.
    expire_time      timestamptz NOT NULL,
    -- The payment that paid for it (its id is the tickets' sale nonce).
    payment_id       uuid,
    failure_reason   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    confirmed_at     timestamptz,
    cancelled_at     timestamptz
);
CREATE UNIQUE INDEX bookings_create_key ON checkout.bookings (user_id, create_key) WHERE create_key IS NOT NULL;
CREATE INDEX bookings_by_user ON checkout.bookings (user_id, created_at DESC, id DESC);
CREATE INDEX bookings_unfinished ON checkout.bookings (state, updated_at)
    WHERE state IN ('pending', 'confirming', 'cancelling');

CREATE TABLE checkout.booking_tickets (
    booking_id    uuid NOT NULL REFERENCES checkout.bookings (id),
    seat_index    integer NOT NULL CHECK (seat_index >= 0),
    section_id    uuid,
    price_tier_id uuid,
    price_minor   bigint NOT NULL CHECK (price_minor >= 0),
    PRIMARY KEY (booking_id, seat_index)
);

CREATE TABLE checkout.payments (
    id              uuid PRIMARY KEY,
    booking_id      uuid NOT NULL REFERENCES checkout.bookings (id),
    user_id         uuid NOT NULL,
    -- ConfirmBooking's idempotency key, scoped to the user.
    idempotency_key text NOT NULL,
    payment_method  text NOT NULL,
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    currency_code   text NOT NULL,
    state           text NOT NULL CHECK (state IN
                        ('authorizing', 'authorized', 'captured', 'refunded', 'declined', 'voided')),
    provider_ref    text,
    refunded_minor  bigint NOT NULL DEFAULT 0,
    -- What the provider last told us through webhooks (rank orders them,
    -- so a late event changes nothing).
    provider_state  text,
    provider_rank   smallint NOT NULL DEFAULT 0,
    -- The stored answer of a failed attempt, returned to retries.
    outcome_code    integer,
    outcome_reason  text,
    outcome_message text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key)
);
-- At most one payment per booking is ever in flight or successful.
CREATE UNIQUE INDEX payments_one_live_per_booking ON checkout.payments (booking_id)
    WHERE state IN ('authorizing', 'authorized', 'captured', 'refunded');
CREATE INDEX payments_unfinished ON checkout.payments (updated_at)
    WHERE state IN ('authorizing', 'authorized');

CREATE TABLE checkout.webhook_events (
    event_id     text PRIMARY KEY,
    kind         text NOT NULL,
    payment_id   uuid,
    provider_ref text NOT NULL,
    status       text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION checkout.booking_state_edge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND (OLD.state, NEW.state) NOT IN (
        ('pending', 'confirming'), ('pending', 'expired'), ('pending', 'cancelled'),
        ('confirming', 'confirmed'), ('confirming', 'pending'), ('confirming', 'expired'),
        ('confirmed', 'cancelling'), ('cancelling', 'cancelled')
    ) THEN
        RAISE EXCEPTION 'booking % cannot go from % to %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER booking_state_edge BEFORE UPDATE OF state ON checkout.bookings
    FOR EACH ROW EXECUTE FUNCTION checkout.booking_state_edge();

CREATE FUNCTION checkout.payment_state_edge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND (OLD.state, NEW.state) NOT IN (
        ('authorizing', 'authorized'), ('authorizing', 'captured'), ('authorizing', 'declined'),
        ('authorizing', 'voided'), ('authorized', 'captured'), ('authorized', 'voided'),
        ('captured', 'refunded')
    ) THEN
        RAISE EXCEPTION 'payment % cannot go from % to %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payment_state_edge BEFORE UPDATE OF state ON checkout.payments
    FOR EACH ROW EXECUTE FUNCTION checkout.payment_state_edge();
