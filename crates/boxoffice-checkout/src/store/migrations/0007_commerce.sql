-- Commerce: tickets named as a person reads them (from the venue's layout
-- when the booking is made), discounts on bookings (a promo code, loyalty
-- points, the loyalty tier's), promo codes with their redemptions, and the
-- loyalty ledger. A booking's total is what is charged: subtotal plus fees
-- minus the discounts, which never take off more than the tickets cost.

ALTER TABLE checkout.booking_tickets
    ADD COLUMN section_name    text,
    ADD COLUMN row_label       text,
    ADD COLUMN seat_number     text,
    ADD COLUMN price_tier_name text;

ALTER TABLE checkout.bookings
    -- The promo code's discount.
    ADD COLUMN discount_minor         bigint NOT NULL DEFAULT 0 CHECK (discount_minor >= 0),
    ADD COLUMN promo_code_id          uuid,
    -- Loyalty points spent on it, and what they took off.
    ADD COLUMN points_spent           bigint NOT NULL DEFAULT 0 CHECK (points_spent >= 0),
    ADD COLUMN loyalty_discount_minor bigint NOT NULL DEFAULT 0 CHECK (loyalty_discount_minor >= 0),
    -- The buyer's loyalty tier when it was made, and its discount.
    ADD COLUMN loyalty_tier           text,
    ADD COLUMN tier_discount_minor    bigint NOT NULL DEFAULT 0 CHECK (tier_discount_minor >= 0);
-- 0001's unnamed check on the total (PostgreSQL named it; found by what
-- it says rather than by that name).
DO $$
DECLARE
    old_check text;
BEGIN
    FOR old_check IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'checkout.bookings'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%total_minor = (subtotal_minor + fees_minor)%'
    LOOP
        EXECUTE format('ALTER TABLE checkout.bookings DROP CONSTRAINT %I', old_check);
    END LOOP;
END $$;
ALTER TABLE checkout.bookings ADD CONSTRAINT bookings_total_adds_up
    CHECK (total_minor = subtotal_minor + fees_minor - discount_minor - loyalty_discount_minor
                         - tier_discount_minor
           -- Discounts take off ticket prices, never the fees.
           AND discount_minor + loyalty_discount_minor + tier_discount_minor <= subtotal_minor
           AND total_minor >= 0);

CREATE TABLE checkout.promo_codes (
    id               uuid PRIMARY KEY,
    -- Upper-case; buyers' input is matched case-insensitively.
    code             text NOT NULL UNIQUE,
    -- NULL: every event.
    event_id         uuid,
    -- Empty: every tier.
    price_tier_ids   uuid[] NOT NULL DEFAULT '{}',
    kind             text NOT NULL CHECK (kind IN ('percent_off', 'amount_off', 'fixed_price')),
    percent_off      integer NOT NULL DEFAULT 0 CHECK (percent_off BETWEEN 0 AND 100),
    amount_minor     bigint NOT NULL DEFAULT 0 CHECK (amount_minor >= 0),
    currency_code    text,
    valid_from       timestamptz,
    valid_until      timestamptz,
    -- 0: unlimited.
    max_redemptions  integer NOT NULL DEFAULT 0 CHECK (max_redemptions >= 0),
    max_per_user     integer NOT NULL DEFAULT 0 CHECK (max_per_user >= 0),
    min_tickets      integer NOT NULL DEFAULT 0 CHECK (min_tickets >= 0),
    -- Redemptions held now: changed only under this row's lock, so the
    -- limit holds however many buyers apply the code at once.
    redeemed         integer NOT NULL DEFAULT 0
                         CHECK (redeemed >= 0 AND (max_redemptions = 0 OR redeemed <= max_redemptions)),
    returned         integer NOT NULL DEFAULT 0 CHECK (returned >= 0),
    created_by       uuid,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX promo_codes_by_event ON checkout.promo_codes (event_id, created_at DESC);

CREATE TABLE checkout.promo_redemptions (
    id             uuid PRIMARY KEY,
    booking_id     uuid NOT NULL REFERENCES checkout.bookings (id),
    code_id        uuid NOT NULL REFERENCES checkout.promo_codes (id),
    user_id        uuid NOT NULL,
    discount_minor bigint NOT NULL CHECK (discount_minor >= 0),
    state          text NOT NULL CHECK (state IN ('active', 'returned')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    returned_at    timestamptz
);
-- A booking holds at most one redemption at a time.
CREATE UNIQUE INDEX promo_redemptions_one_per_booking ON checkout.promo_redemptions (booking_id)
    WHERE state = 'active';
CREATE INDEX promo_redemptions_by_user ON checkout.promo_redemptions (code_id, user_id)
    WHERE state = 'active';

-- Failed code guesses per user in the current window (throttling).
CREATE TABLE checkout.promo_attempts (
    user_id      uuid PRIMARY KEY,
    window_start timestamptz NOT NULL,
    failures     integer NOT NULL
);

-- Loyalty: every change of a user's points is an entry; the balance is
-- kept beside them, changed in the same transaction, so a spend is one
-- conditional update (`balance >= points`) however many bookings spend at
-- once. Earning and reversing are idempotent by the event that caused
-- them (`source_event_id`).
CREATE TABLE checkout.loyalty_accounts (
    user_id uuid PRIMARY KEY,
    balance bigint NOT NULL
);
CREATE TABLE checkout.loyalty_entries (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL,
    -- earn (BookingConfirmed), reverse (BookingCancelled of an earning
    -- booking), spend (on a pending booking), release (spent points back:
    -- changed, removed, or the booking ended).
    kind            text NOT NULL CHECK (kind IN ('earn', 'reverse', 'spend', 'release')),
    points          bigint NOT NULL,
    booking_id      uuid,
    source_event_id uuid UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX loyalty_entries_by_user ON checkout.loyalty_entries (user_id, created_at DESC);
CREATE UNIQUE INDEX loyalty_one_earn_per_booking ON checkout.loyalty_entries (booking_id)
    WHERE kind = 'earn';
CREATE UNIQUE INDEX loyalty_one_reverse_per_booking ON checkout.loyalty_entries (booking_id)
    WHERE kind = 'reverse';

-- A booking that expires or is cancelled gives its code's redemption back,
-- in the same transaction as the state change, whichever path made it
-- (a cancel, the reconciler, a confirmation whose seats were gone).
CREATE FUNCTION checkout.return_promo_redemption() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH r AS (
        UPDATE checkout.promo_redemptions SET state = 'returned', returned_at = now()
        WHERE booking_id = NEW.id AND state = 'active'
        RETURNING code_id
    )
    UPDATE checkout.promo_codes c SET redeemed = c.redeemed - 1, returned = c.returned + 1
    FROM r WHERE c.id = r.code_id;
    -- ...and the loyalty points spent on it.
    IF NEW.points_spent > 0 THEN
        INSERT INTO checkout.loyalty_entries (id, user_id, kind, points, booking_id)
        VALUES (gen_random_uuid(), NEW.user_id, 'release', NEW.points_spent, NEW.id);
        UPDATE checkout.loyalty_accounts SET balance = balance + NEW.points_spent
        WHERE user_id = NEW.user_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER booking_returns_promo AFTER UPDATE OF state ON checkout.bookings
    FOR EACH ROW WHEN (NEW.state IN ('expired', 'cancelled') AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION checkout.return_promo_redemption();
