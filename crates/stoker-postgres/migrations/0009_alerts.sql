-- Stoker's PostgreSQL schema, version 9: alert rules (issue 13, item 8).
--
-- `stoker_alert` holds one row per rule, by name: `definition` is the whole rule as written,
-- the other columns are its evaluation state. `version` grows with every write of either, and
-- the evaluator moves the state with a compare-and-set on it, in the same transaction as the
-- delivery job's insert: one message per change, whoever evaluates.
--
-- `stoker_alert_events` is each rule's recent history of sent changes (the newest 100).

CREATE TABLE stoker_alert (
    name text PRIMARY KEY,
    definition jsonb NOT NULL,
    state text NOT NULL,
    since timestamptz,
    clear_since timestamptz,
    value double precision,
    version bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE stoker_alert_events (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL,
    value double precision NOT NULL,
    threshold double precision NOT NULL,
    at timestamptz NOT NULL,
    job_id bigint
);

CREATE INDEX stoker_alert_events_name ON stoker_alert_events (name, id);
