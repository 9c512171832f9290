-- Social login with OpenID Connect: the identities (issuer, subject) linked
-- to users, the state of logins under way, and the link offers that wait for
-- an account owner's proof.

-- Registered accounts verify email changes; a provider can vouch for the
-- email of an account it creates.
ALTER TABLE accounts.users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

-- One row per (issuer, subject): an identity logs into exactly one user.
CREATE TABLE accounts.social_identities (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES accounts.users (id) ON DELETE CASCADE,
    issuer        text NOT NULL,
    subject       text NOT NULL,
    -- The email the provider last reported (for the owner's export).
    email         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (issuer, subject)
);
CREATE INDEX social_identities_by_user ON accounts.social_identities (user_id);

-- Logins between StartSocialLogin and FinishSocialLogin. The state is kept
-- as a SHA-256 hash and is spent by the first finish (deleted); the PKCE
-- verifier and the nonce travel nowhere else.
CREATE TABLE accounts.social_login_states (
    state_hash    bytea PRIMARY KEY,
    provider      text NOT NULL,
    nonce         text NOT NULL,
    pkce_verifier text NOT NULL,
    redirect_uri  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX social_login_states_by_expiry ON accounts.social_login_states (expires_at);

-- A provider's identity whose email is an existing account's: linked only
-- when that account's owner proves it (LinkSocialLogin). Single-use, hashed.
CREATE TABLE accounts.social_link_offers (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES accounts.users (id) ON DELETE CASCADE,
    issuer     text NOT NULL,
    subject    text NOT NULL,
    email      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX social_link_offers_by_user ON accounts.social_link_offers (user_id);
