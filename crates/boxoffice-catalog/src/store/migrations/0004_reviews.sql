-- Reviews and ratings: who may review (confirmed bookings, kept by the
-- `catalog-reviews` consumer of checkout's events) and the reviews.

CREATE TABLE catalog.review_attendance (
    booking_id uuid PRIMARY KEY,
    user_id    uuid NOT NULL,
    event_id   uuid NOT NULL,
    confirmed  boolean NOT NULL
);
CREATE INDEX review_attendance_by_user_event
    ON catalog.review_attendance (user_id, event_id) WHERE confirmed;

CREATE TABLE catalog.reviews (
    id            uuid PRIMARY KEY,
    event_id      uuid NOT NULL REFERENCES catalog.events (id),
    user_id       uuid NOT NULL,
    rating        smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body          text NOT NULL CHECK (char_length(body) <= 2000),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    hidden        boolean NOT NULL DEFAULT false,
    hidden_reason text NOT NULL DEFAULT '',
    UNIQUE (event_id, user_id)
);
CREATE INDEX reviews_by_event ON catalog.reviews (event_id, created_at DESC, id DESC);
