-- ConfirmBooking writes once, at the end: the payment is inserted in its
-- final state and the booking goes straight from pending to confirmed (or,
-- when its seats are gone, to expired). `confirming` remains only for
-- attempts an earlier version claimed before calling the provider; the
-- reconciler still finishes or reverses those.

CREATE OR REPLACE FUNCTION checkout.booking_state_edge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND (OLD.state, NEW.state) NOT IN (
        ('pending', 'confirmed'), ('pending', 'expired'), ('pending', 'cancelled'),
        ('pending', 'confirming'), ('confirming', 'confirmed'), ('confirming', 'pending'),
        ('confirming', 'expired'), ('confirmed', 'cancelling'), ('cancelling', 'cancelled')
    ) THEN
        RAISE EXCEPTION 'booking % cannot go from % to %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
