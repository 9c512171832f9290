-- Customer questions and their answers (the answer's mail is a message of
-- notify.messages, recorded in the same transaction).
CREATE TABLE notify.questions (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL,
    event_id   uuid,
    booking_id uuid,
    subject    text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    body       text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 5000),
    state      text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'answered', 'closed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX questions_by_user ON notify.questions (user_id, created_at DESC, id DESC);
CREATE INDEX questions_by_state ON notify.questions (state, created_at DESC, id DESC);

CREATE TABLE notify.answers (
    id          uuid PRIMARY KEY,
    question_id uuid NOT NULL REFERENCES notify.questions (id),
    admin_id    uuid NOT NULL,
    body        text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 5000),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX answers_by_question ON notify.answers (question_id, created_at);
