-- Webhooks publish `boxoffice.events.v1` envelopes (WebhookEndpointDisabled,
-- which notify mails to the endpoint's admin) through the events library's
-- outbox: these are the library's producer tables for schema `webhooks`, as
-- `boxoffice_events::outbox::outbox_ddl("webhooks")` writes them (a unit test
-- keeps the two the same).

CREATE SCHEMA IF NOT EXISTS webhooks;
CREATE SEQUENCE IF NOT EXISTS webhooks.event_outbox_id;
CREATE TABLE IF NOT EXISTS webhooks.event_outbox (
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
CREATE OR REPLACE FUNCTION webhooks.event_outbox_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('boxoffice_events_webhooks', '');
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS event_outbox_notify ON webhooks.event_outbox;
CREATE TRIGGER event_outbox_notify AFTER INSERT ON webhooks.event_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks.event_outbox_notify();
CREATE TABLE IF NOT EXISTS webhooks.event_relay (
    stream     text PRIMARY KEY,
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
