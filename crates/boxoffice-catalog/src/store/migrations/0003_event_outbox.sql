-- The catalog publishes `boxoffice.events.v1` envelopes (protobuf) through
-- the events library's outbox. These are the library's producer tables for
-- schema `catalog`, as `boxoffice_events::outbox::outbox_ddl("catalog")`
-- writes them (a unit test keeps the two the same). The old JSON outbox
-- goes: the catalog publishes its existing data once, as events, at its
-- next start (`CatalogStore::publish_existing_catalog`).

CREATE SCHEMA IF NOT EXISTS catalog;
CREATE SEQUENCE IF NOT EXISTS catalog.event_outbox_id;
CREATE TABLE IF NOT EXISTS catalog.event_outbox (
    id             bigint PRIMARY KEY,
    event_id       uuid NOT NULL UNIQUE,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL,
    event_type     text NOT NULL,
    envelope       bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (aggregate_type, aggregate_id, sequence)
);
CREATE OR REPLACE FUNCTION catalog.event_outbox_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('boxoffice_events_catalog', '');
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS event_outbox_notify ON catalog.event_outbox;
CREATE TRIGGER event_outbox_notify AFTER INSERT ON catalog.event_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION catalog.event_outbox_notify();
CREATE TABLE IF NOT EXISTS catalog.event_relay (
    stream     text PRIMARY KEY,
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

DROP TABLE catalog.outbox;
DROP FUNCTION catalog.outbox_take_id_in_commit_order();
