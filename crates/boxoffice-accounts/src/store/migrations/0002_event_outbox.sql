-- Accounts publishes `boxoffice.events.v1` envelopes (UserRegistered)
-- through the events library's outbox: these are the library's producer
-- tables for schema `accounts`, as
-- `boxoffice_events::outbox::outbox_ddl("accounts")` writes them (a unit
-- test keeps the two the same).

CREATE SCHEMA IF NOT EXISTS accounts;
CREATE SEQUENCE IF NOT EXISTS accounts.event_outbox_id;
CREATE TABLE IF NOT EXISTS accounts.event_outbox (
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
CREATE OR REPLACE FUNCTION accounts.event_outbox_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('boxoffice_events_accounts', '');
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS event_outbox_notify ON accounts.event_outbox;
CREATE TRIGGER event_outbox_notify AFTER INSERT ON accounts.event_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION accounts.event_outbox_notify();
CREATE TABLE IF NOT EXISTS accounts.event_relay (
    stream     text PRIMARY KEY,
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
