-- Sessions (one per login, i.e. per device) and their refresh-token
-- families, revocations the edges follow, and the single-use tokens of
-- email verification and password reset. Tokens are stored as SHA-256
-- hashes only: a copy of this table logs nobody in.

CREATE TABLE accounts.sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES accounts.users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    -- The current refresh token's expiry.
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    -- logout, revoked, reuse, password_changed, password_reset
    revoked_reason text
);
CREATE INDEX sessions_by_user ON accounts.sessions (user_id, created_at DESC);

-- Every refresh token ever issued for a session (its family). A token is
-- spent by one refresh; a spent token presented again revokes the family.
CREATE TABLE accounts.refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES accounts.sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    spent_at   timestamptz
);
CREATE INDEX refresh_tokens_by_session ON accounts.refresh_tokens (session_id);

-- Revoked sessions whose access tokens may still be unexpired, for the
-- edges' revocation feed. No user id: a revocation outlives an erased
-- account and says nothing about whom it belonged to.
CREATE TABLE accounts.revocations (
    session_id  uuid PRIMARY KEY,
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    forget_at   timestamptz NOT NULL
);
CREATE INDEX revocations_by_forget ON accounts.revocations (forget_at);
CREATE FUNCTION accounts.revocations_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('accounts_revocations', '');
    RETURN NULL;
END $$;
CREATE TRIGGER revocations_notify AFTER INSERT ON accounts.revocations
    FOR EACH STATEMENT EXECUTE FUNCTION accounts.revocations_notify();

-- Single-use tokens: `email_change` carries the new email until verified,
-- `password_reset` nothing.
CREATE TABLE accounts.user_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES accounts.users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('email_change', 'password_reset')),
    new_email  text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    spent_at   timestamptz
);
CREATE INDEX user_tokens_by_user ON accounts.user_tokens (user_id, purpose);
