-- A waitlist entry may be for one price tier (joined while that tier was
-- sold out): it is offered only seats of that tier. NULL: any seat of the
-- event, as before.
ALTER TABLE inventory.waitlist_entries ADD COLUMN IF NOT EXISTS price_tier_id uuid;
