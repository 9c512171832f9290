-- Accounts: users and their roles.
CREATE TABLE accounts.users (
    id uuid PRIMARY KEY,
    -- As the user typed it (trimmed); `email_key` is the unique lowercase form.
    email text NOT NULL,
    email_key text NOT NULL UNIQUE,
    display_name text NOT NULL,
    -- argon2id PHC string, salt included.
    password_hash text NOT NULL,
    roles text[] NOT NULL DEFAULT ARRAY['customer'],
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT roles_known CHECK (roles <@ ARRAY['customer', 'admin'])
);
