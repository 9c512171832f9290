-- Dynamic pricing: an event's rule as an admin last set it (SetPricingRule),
-- the truth the Redis pricing table is rebuilt from. One row per event; the
-- rule is a JSON array of tier entries (domain::pricing::TierRule), checked
-- by inventory before it is written. No row: every price is fixed.
CREATE TABLE inventory.pricing_rules (
    event_id uuid PRIMARY KEY REFERENCES inventory.events (event_id),
    tiers jsonb NOT NULL CHECK (jsonb_typeof(tiers) = 'array'),
    updated_at timestamptz NOT NULL DEFAULT now()
);
