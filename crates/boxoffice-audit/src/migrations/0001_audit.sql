-- The audit log. Append only: a trigger refuses UPDATE, DELETE and
-- TRUNCATE on both tables for every role (the owner included), so a record
-- once committed stays as it was written. Ids only: no names, addresses,
-- request bodies, card data or tokens.

CREATE TABLE audit.records (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record_time   timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL CHECK (kind IN ('admin', 'payment')),
    -- A user id, or 'system:<part>' for background work.
    actor         text NOT NULL,
    action        text NOT NULL,
    request_id    text NOT NULL DEFAULT '',
    target        text NOT NULL DEFAULT '',
    -- Payments: set when written. Admin calls: in audit.outcomes.
    outcome       text,
    amount_minor  bigint NOT NULL DEFAULT 0,
    currency_code text NOT NULL DEFAULT ''
);
CREATE INDEX records_actor ON audit.records (actor, id);
CREATE INDEX records_time ON audit.records (record_time);
CREATE INDEX records_request ON audit.records (request_id) WHERE request_id <> '';

-- The answer of an admin call, written after it (the call's record is
-- written before the call is forwarded).
CREATE TABLE audit.outcomes (
    record_id    bigint PRIMARY KEY REFERENCES audit.records (id),
    outcome      text NOT NULL,
    outcome_time timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit.refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON audit.records
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON audit.records
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER outcomes_append_only BEFORE UPDATE OR DELETE ON audit.outcomes
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER outcomes_no_truncate BEFORE TRUNCATE ON audit.outcomes
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
