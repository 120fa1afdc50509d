-- Stoker's SQLite schema, version 11: alert rules (issue 13, item 8).
--
-- `stoker_alert` holds one row per rule, by name: `definition` is the whole rule as JSON, the
-- other columns are its evaluation state. `version` grows with every write of either, and the
-- evaluator moves the state with a compare-and-set on it, in the same transaction as the
-- delivery job's insert: one message per change, whoever evaluates.
--
-- `stoker_alert_events` is each rule's recent history of sent changes (the newest 100).

CREATE TABLE stoker_alert (
    name TEXT PRIMARY KEY NOT NULL,
    definition TEXT NOT NULL,
    state TEXT NOT NULL,
    since INTEGER,
    clear_since INTEGER,
    value REAL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE stoker_alert_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    at INTEGER NOT NULL,
    job_id INTEGER
);

CREATE INDEX stoker_alert_events_name ON stoker_alert_events (name, id);
