-- Webhook endpoints registered by admins, the deliveries the consumer
-- records for them (one per endpoint and domain event), every attempt at
-- sending one, and what admins were told about failing endpoints.

CREATE TABLE webhooks.endpoints (
    id                   uuid PRIMARY KEY,
    url                  text NOT NULL,
    event_types          text[] NOT NULL,
    description          text NOT NULL DEFAULT '',
    -- The HMAC key of the signatures (it must be readable to sign).
    secret               text NOT NULL,
    enabled              boolean NOT NULL DEFAULT true,
    disabled_reason      text NOT NULL DEFAULT '',
    disabled_at          timestamptz,
    created_by           uuid,
    created_at           timestamptz NOT NULL DEFAULT now(),
    consecutive_failures integer NOT NULL DEFAULT 0,
    failing_since        timestamptz
);

CREATE TABLE webhooks.deliveries (
    id              uuid PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhooks.endpoints (id) ON DELETE CASCADE,
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    -- The JSON sent, the same bytes on every attempt.
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- The next attempt was asked for by hand (RedeliverWebhook).
    manual          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    give_up_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    -- One delivery per endpoint and event, however often the event arrives.
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX deliveries_due ON webhooks.deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_of_endpoint ON webhooks.deliveries (endpoint_id, created_at DESC, id DESC);

CREATE TABLE webhooks.attempts (
    delivery_id      uuid NOT NULL REFERENCES webhooks.deliveries (id) ON DELETE CASCADE,
    number           integer NOT NULL,
    attempted_at     timestamptz NOT NULL,
    status_code      integer NOT NULL DEFAULT 0,
    duration_ms      integer NOT NULL,
    error            text NOT NULL DEFAULT '',
    response_excerpt text NOT NULL DEFAULT '',
    manual           boolean NOT NULL DEFAULT false,
    PRIMARY KEY (delivery_id, number)
);

CREATE TABLE webhooks.notifications (
    id            uuid PRIMARY KEY,
    endpoint_id   uuid NOT NULL,
    kind          text NOT NULL,
    message       text NOT NULL,
    admin_user_id uuid,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_newest ON webhooks.notifications (created_at DESC, id DESC);
