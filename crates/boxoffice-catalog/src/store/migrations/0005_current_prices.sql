-- Current prices of dynamically priced tiers, kept by the `catalog-prices`
-- consumer group from inventory's `TierPricesChanged` events: per tier,
-- the entry of the newest event (`sequence`, the envelope's sequence of
-- inventory's event aggregate). GetEvent and GetSeatMap show them; a tier
-- with no row (or a row that is not dynamic) costs its catalog price.
CREATE TABLE catalog.current_prices (
    event_id       uuid NOT NULL,
    tier_id        uuid NOT NULL,
    sequence       bigint NOT NULL,
    currency_code  text NOT NULL,
    price_minor    bigint NOT NULL,
    dynamic        boolean NOT NULL,
    floor_minor    bigint NOT NULL,
    ceiling_minor  bigint NOT NULL,
    step_change_bp integer NOT NULL,
    step_sold_bp   integer NOT NULL,
    sold_count     integer NOT NULL,
    seat_count     integer NOT NULL,
    PRIMARY KEY (event_id, tier_id)
);

-- A price that moved drops the event from every process's GetEvent cache,
-- as any other change of what GetEvent shows does.
CREATE FUNCTION catalog.notify_price_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_changes', 'event:' || NEW.event_id);
    RETURN NULL;
END;
$$;
CREATE TRIGGER current_prices_notify AFTER INSERT OR UPDATE ON catalog.current_prices
    FOR EACH ROW EXECUTE FUNCTION catalog.notify_price_change();
