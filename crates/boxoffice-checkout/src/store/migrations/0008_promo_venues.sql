-- Promo codes of an organiser: every event at a venue (the catalog's
-- closest notion of an organiser; its events carry none). A code is for
-- one event, one venue's events, or every event.
ALTER TABLE checkout.promo_codes
    ADD COLUMN venue_id uuid,
    ADD CONSTRAINT promo_codes_one_scope CHECK (venue_id IS NULL OR event_id IS NULL);
CREATE INDEX promo_codes_by_venue ON checkout.promo_codes (venue_id, created_at DESC)
    WHERE venue_id IS NOT NULL;
