-- A booking the reconciler gives up on (expired with no payment the
-- provider knows of) may still have seats that inventory sold to one of its
-- attempts. The booking is expired first (so no late retry can confirm it
-- any more) and flagged as owing a release; the flag is cleared once
-- inventory has put the seats back. A crash in between leaves the flag, and
-- the next reconciler pass releases again (releasing is idempotent).

ALTER TABLE checkout.bookings ADD COLUMN seats_release_owed boolean NOT NULL DEFAULT false;

CREATE INDEX bookings_owing_release ON checkout.bookings (updated_at) WHERE seats_release_owed;
