-- Whether an event has any ticket left to sell, answered from an index
-- (the sold-out and back-on-sale checks of every sale and release). A
-- sale's new row version is sold, so it adds no entry here: only releases
-- and new tickets do.
CREATE INDEX IF NOT EXISTS tickets_available ON inventory.tickets (event_id) WHERE status = 'available';
