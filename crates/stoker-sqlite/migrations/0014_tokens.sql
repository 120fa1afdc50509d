-- Stoker's SQLite schema, version 15: API tokens stored as data (issue 17, item 2).
--
-- One row per token, keyed by its visible id (the `<id>` of `stk_<id>_<secret>`). Only the
-- SHA-256 hash of the secret is kept. `scopes` is a JSON array of scope names. Times are
-- microseconds since the epoch, as elsewhere. `last_used_at` is written at most once a minute.
CREATE TABLE stoker_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    tenant TEXT,
    secret_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    revoked_at INTEGER
);
