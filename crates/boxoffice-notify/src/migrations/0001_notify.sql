-- Notifications: what the consumer knows (recipients, events, attendees),
-- the users' preferences, and every message, recorded before it is sent.

-- Addresses from accounts' UserRegistered; erased on UserErased.
CREATE TABLE notify.recipients (
    user_id      uuid PRIMARY KEY,
    email        text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The catalog's events as the mails name them (newest version wins).
CREATE TABLE notify.events (
    id            uuid PRIMARY KEY,
    title         text NOT NULL,
    start_time    timestamptz,
    venue         text NOT NULL DEFAULT '',
    city          text NOT NULL DEFAULT '',
    performer_ids uuid[] NOT NULL DEFAULT '{}',
    performers    text NOT NULL DEFAULT '',
    status        text NOT NULL,
    version       bigint NOT NULL
);

-- Who holds tickets for which event (for event changes and marketing).
CREATE TABLE notify.attendees (
    booking_id uuid PRIMARY KEY,
    user_id    uuid NOT NULL,
    event_id   uuid NOT NULL,
    confirmed  boolean NOT NULL
);
CREATE INDEX attendees_by_event ON notify.attendees (event_id) WHERE confirmed;
CREATE INDEX attendees_by_user ON notify.attendees (user_id) WHERE confirmed;

-- A user without a row gets marketing mail (they can opt out from any).
CREATE TABLE notify.preferences (
    user_id    uuid PRIMARY KEY,
    marketing  boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per mail, written by the consumer in the transaction that
-- records the domain event as processed, before anything is sent.
-- `pending` rows are due at `next_attempt_at`; a sender claims one by
-- moving that time forward (by the claim timeout) and counting the attempt.
CREATE TABLE notify.messages (
    id              uuid PRIMARY KEY,
    source_event_id uuid NOT NULL,
    user_id         uuid NOT NULL,
    kind            text NOT NULL,
    marketing       boolean NOT NULL,
    facts           jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'suppressed', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    to_address      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    UNIQUE (source_event_id, user_id, kind)
);
CREATE INDEX messages_due ON notify.messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX messages_by_user ON notify.messages (user_id, created_at);
