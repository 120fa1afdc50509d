-- Stoker's PostgreSQL schema, version 13: API tokens stored as data (issue 17, item 2).
--
-- One row per token, keyed by its visible id (the `<id>` of `stk_<id>_<secret>`). Only the
-- SHA-256 hash of the secret is kept. `last_used_at` is written at most once a minute.
CREATE TABLE stoker_tokens (
    id text PRIMARY KEY,
    name text NOT NULL,
    scopes text[] NOT NULL,
    tenant text,
    secret_hash bytea NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    last_used_at timestamptz,
    revoked_at timestamptz
);
