-- The catalog's tables. Venues and their seats are immutable once created
-- (a new layout is a new venue), which keeps seat indexes stable for
-- inventory's bitmaps.

CREATE TABLE catalog.venues (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    street       text NOT NULL DEFAULT '',
    city         text NOT NULL,
    region       text NOT NULL DEFAULT '',
    postal_code  text NOT NULL DEFAULT '',
    country_code text NOT NULL,
    latitude     double precision,
    longitude    double precision,
    time_zone    text NOT NULL,
    capacity     integer NOT NULL CHECK (capacity >= 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog.sections (
    id               uuid PRIMARY KEY,
    venue_id         uuid NOT NULL REFERENCES catalog.venues (id),
    position         integer NOT NULL,
    name             text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('seated', 'general_admission')),
    first_seat_index integer NOT NULL CHECK (first_seat_index >= 0),
    capacity         integer NOT NULL CHECK (capacity > 0),
    UNIQUE (venue_id, name),
    UNIQUE (venue_id, position)
);

-- One row per seat of a seated section; general-admission places have seat
-- indexes too (the section's range) but no rows here.
CREATE TABLE catalog.seats (
    venue_id    uuid NOT NULL REFERENCES catalog.venues (id),
    seat_index  integer NOT NULL CHECK (seat_index >= 0),
    section_id  uuid NOT NULL REFERENCES catalog.sections (id),
    row_label   text NOT NULL,
    row_position integer NOT NULL,
    number      text NOT NULL,
    x           real NOT NULL,
    y           real NOT NULL,
    PRIMARY KEY (venue_id, seat_index)
);

CREATE TABLE catalog.performers (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    genre       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog.events (
    id            uuid PRIMARY KEY,
    title         text NOT NULL,
    description   text NOT NULL DEFAULT '',
    category      text NOT NULL,
    status        text NOT NULL CHECK (status IN ('draft', 'published', 'cancelled')),
    venue_id      uuid NOT NULL REFERENCES catalog.venues (id),
    start_time    timestamptz NOT NULL,
    end_time      timestamptz NOT NULL,
    on_sale_time  timestamptz,
    cancel_reason text,
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (end_time > start_time)
);
CREATE INDEX events_by_start ON catalog.events (start_time, id);
CREATE INDEX events_by_venue ON catalog.events (venue_id, start_time);

CREATE TABLE catalog.event_performers (
    event_id     uuid NOT NULL REFERENCES catalog.events (id),
    performer_id uuid NOT NULL REFERENCES catalog.performers (id),
    position     integer NOT NULL,
    PRIMARY KEY (event_id, performer_id)
);
CREATE INDEX event_performers_by_performer ON catalog.event_performers (performer_id);

CREATE TABLE catalog.price_tiers (
    id            uuid PRIMARY KEY,
    event_id      uuid NOT NULL REFERENCES catalog.events (id),
    position      integer NOT NULL,
    name          text NOT NULL,
    currency_code text NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    amount_minor  bigint NOT NULL CHECK (amount_minor >= 0),
    section_ids   uuid[] NOT NULL
);
CREATE INDEX price_tiers_by_event ON catalog.price_tiers (event_id, position);

-- Every change appends here in the same transaction; search and inventory
-- consume it in id order, at least once.
CREATE TABLE catalog.outbox (
    id             bigserial PRIMARY KEY,
    aggregate_type text NOT NULL,
    aggregate_id   uuid NOT NULL,
    event_type     text NOT NULL,
    version        bigint NOT NULL,
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Cache invalidation: every change to what GetEvent / GetSeatMap / GetVenue /
-- GetPerformer return notifies `catalog_changes` with '<kind>:<id>'. NOTIFY is
-- delivered at commit, so listeners never see uncommitted state.
CREATE FUNCTION catalog.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_data record;
BEGIN
    IF TG_OP = 'DELETE' THEN row_data := OLD; ELSE row_data := NEW; END IF;
    IF TG_TABLE_NAME IN ('events') THEN
        PERFORM pg_notify('catalog_changes', 'event:' || row_data.id);
    ELSIF TG_TABLE_NAME IN ('price_tiers', 'event_performers') THEN
        PERFORM pg_notify('catalog_changes', 'event:' || row_data.event_id);
    ELSIF TG_TABLE_NAME = 'performers' THEN
        PERFORM pg_notify('catalog_changes', 'performer:' || row_data.id);
    ELSIF TG_TABLE_NAME = 'venues' THEN
        PERFORM pg_notify('catalog_changes', 'venue:' || row_data.id);
    ELSIF TG_TABLE_NAME IN ('sections', 'seats') THEN
        PERFORM pg_notify('catalog_changes', 'venue:' || row_data.venue_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify AFTER INSERT OR UPDATE OR DELETE ON catalog.events
    FOR EACH ROW EXECUTE FUNCTION catalog.notify_change();
CREATE TRIGGER price_tiers_notify AFTER INSERT OR UPDATE OR DELETE ON catalog.price_tiers
    FOR EACH ROW EXECUTE FUNCTION catalog.notify_change();
CREATE TRIGGER event_performers_notify AFTER INSERT OR UPDATE OR DELETE ON catalog.event_performers
    FOR EACH ROW EXECUTE FUNCTION catalog.notify_change();
CREATE TRIGGER performers_notify AFTER INSERT OR UPDATE OR DELETE ON catalog.performers
    FOR EACH ROW EXECUTE FUNCTION catalog.notify_change();
CREATE TRIGGER venues_notify AFTER INSERT OR UPDATE OR DELETE ON catalog.venues
    FOR EACH ROW EXECUTE FUNCTION catalog.notify_change();
CREATE TRIGGER sections_notify AFTER UPDATE OR DELETE ON catalog.sections
    FOR EACH ROW EXECUTE FUNCTION catalog.notify_change();
