-- Inventory learns about venues and events from the catalog's published
-- events (boxoffice.events.v1) through a consumer group of the events
-- library, whose checkpoint lives in inventory.event_checkpoints. It keeps
-- each venue's layout (sections, rows, distances to the stage) from the
-- venue's VenueCreated, to build a published event's tickets and sale
-- layout without asking the catalog. The old cursor over the catalog's JSON
-- outbox goes; the new group reads the catalog's stream from its start
-- (applying an event is idempotent by catalog version).
CREATE TABLE inventory.venue_layouts (
    venue_id   uuid PRIMARY KEY,
    layout     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

DROP TABLE inventory.feed_cursors;
