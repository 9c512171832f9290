-- What can change the set of sold-out events (events on sale with no ticket
-- available, see sold_out.rs) notifies `boxoffice_inventory_sold_out` at
-- its commit, so the set is looked up again only then: a sale that sold an
-- event out and a release that put it back on sale (they append `SoldOut`
-- and `BackOnSale` under the outbox lock, exactly once each), and any
-- change of which events exist or are on sale (new events come with their
-- tickets in the same transaction).
CREATE OR REPLACE FUNCTION inventory.sold_out_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('boxoffice_inventory_sold_out', '');
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS sold_out_events_changed ON inventory.events;
CREATE TRIGGER sold_out_events_changed
    AFTER INSERT OR DELETE OR UPDATE OF status ON inventory.events
    FOR EACH STATEMENT EXECUTE FUNCTION inventory.sold_out_changed();

DROP TRIGGER IF EXISTS sold_out_published ON inventory.event_outbox;
CREATE TRIGGER sold_out_published
    AFTER INSERT ON inventory.event_outbox
    FOR EACH ROW
    WHEN (NEW.event_type IN ('boxoffice.events.v1.SoldOut', 'boxoffice.events.v1.BackOnSale'))
    EXECUTE FUNCTION inventory.sold_out_changed();
