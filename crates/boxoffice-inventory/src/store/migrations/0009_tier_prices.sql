-- Dynamic pricing, serialized and published.
--
-- A rule's version: every SetPricingRule of an event takes the next one
-- under the row's lock (and the outbox's append lock), and Redis only
-- takes a pricing table whose version is higher than the one it has, so
-- two admins setting rules at once leave the last committed one in force.
-- Removing a rule keeps the row with no tiers, so versions never go back.
ALTER TABLE inventory.pricing_rules ADD COLUMN version bigint NOT NULL DEFAULT 1;

-- Per dynamically priced tier: its rule and how many of its seats are
-- sold, kept by every sale and release in the same statement that decides
-- sold out (under the append lock), so a step of the price is published
-- (`TierPricesChanged`) in the transaction that made it. Rebuilt from the
-- tickets whenever the rule changes.
CREATE TABLE inventory.tier_prices (
    event_id       uuid NOT NULL REFERENCES inventory.events (event_id),
    tier_id        uuid NOT NULL,
    currency_code  text NOT NULL,
    base_minor     bigint NOT NULL,
    step_change_bp bigint NOT NULL,
    step_sold_bp   bigint NOT NULL,
    floor_minor    bigint NOT NULL,
    ceiling_minor  bigint NOT NULL,
    seat_count     bigint NOT NULL,
    sold           integer NOT NULL CHECK (sold >= 0),
    PRIMARY KEY (event_id, tier_id)
);
