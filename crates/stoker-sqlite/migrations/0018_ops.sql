-- Stoker's SQLite schema, version 19: failure-group counts by the hour (issue 13, item 3).
--
-- A group's row says how many failed attempts it has had ever; an operator asks how many in
-- the last hour, day or month. Each acknowledgement that records failed attempts also adds
-- them to their group's row for the current hour (Unix seconds, a multiple of 3,600), in the
-- same transaction as the group's upsert, one row per group per batch: a batch of completions
-- writes nothing here. A range reads one primary-key range per group. The history's roll-up
-- deletes hours past its hour retention (90 days by default).
--
-- Failures recorded before this version have no hours: ranges count from the upgrade on.
CREATE TABLE stoker_failure_hours (
    fingerprint TEXT    NOT NULL,
    hour        INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, hour)
) STRICT, WITHOUT ROWID;

-- Retention deletes by hour across every group.
CREATE INDEX stoker_failure_hours_hour_idx ON stoker_failure_hours (hour);
