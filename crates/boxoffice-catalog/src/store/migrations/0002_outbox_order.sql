-- Outbox consumers (the search indexer first) read `id > last seen` in id
-- order. With concurrent writers a bigserial id is taken at insert but
-- becomes visible at commit, so a small id could commit after a larger one
-- was read and be skipped for ever. Taking the id under a transaction-scoped
-- advisory lock makes ids commit in order: the lock is held from the outbox
-- insert (the last statement of every catalog write) to commit, so whoever
-- sees id N committed will never later see a new id below N.
CREATE FUNCTION catalog.outbox_take_id_in_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('catalog.outbox'));
    NEW.id := nextval(pg_get_serial_sequence('catalog.outbox', 'id'));
    RETURN NEW;
END;
$$;

CREATE TRIGGER outbox_commit_order BEFORE INSERT ON catalog.outbox
    FOR EACH ROW EXECUTE FUNCTION catalog.outbox_take_id_in_commit_order();

-- The trigger takes the id; the column default would take a second one
-- (leaving a gap after every row) before the trigger runs.
ALTER TABLE catalog.outbox ALTER COLUMN id DROP DEFAULT;

-- The indexer's rebuild reads the newest row of every event.
CREATE INDEX outbox_by_aggregate ON catalog.outbox (aggregate_id, id DESC);
