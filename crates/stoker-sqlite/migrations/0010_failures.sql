-- Stoker's SQLite schema, version 10: failure groups, bulk operations by filter, job logs
-- (issue 13).
--
-- `failure_group` is the fingerprint of a job's latest failed attempt (kind, error class,
-- message with numbers, hex and UUIDs taken out), written by the acknowledgement that records
-- the failure. Completions never write it, so the partial index below costs the drain
-- nothing: SQLite only maintains an index on an update that touches one of its columns.
ALTER TABLE stoker_jobs ADD COLUMN failure_group TEXT;

-- Bulk operations by failure group: the jobs of one group, by id.
CREATE INDEX stoker_jobs_failure_group_idx ON stoker_jobs (failure_group, id)
    WHERE failure_group IS NOT NULL;

-- One row per group, upserted with each failed attempt: listing groups reads this table only.
CREATE TABLE stoker_failure_groups (
    fingerprint    TEXT    PRIMARY KEY NOT NULL,
    kind           TEXT    NOT NULL,
    error_kind     TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    count          INTEGER NOT NULL,
    first_seen     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    sample_job_id  INTEGER NOT NULL,
    sample_message TEXT    NOT NULL
) STRICT, WITHOUT ROWID;

-- Listing by range, most recently seen first.
CREATE INDEX stoker_failure_groups_seen_idx ON stoker_failure_groups (last_seen);

-- Bulk operations: one row each, holding the filter and the progress, so a restart resumes
-- at `cursor` (every job id up to it has been visited).
CREATE TABLE stoker_bulk_ops (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    action      TEXT    NOT NULL,
    filter      TEXT    NOT NULL,
    priority    INTEGER,
    run_at      INTEGER,
    state       TEXT    NOT NULL,
    matched     INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    cursor      INTEGER NOT NULL,
    max_id      INTEGER NOT NULL,
    created_by  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;

-- The runner looks for running operations only.
CREATE INDEX stoker_bulk_ops_running_idx ON stoker_bulk_ops (id) WHERE state = 'running';

-- Job logs: lines a running attempt writes, numbered per job.
CREATE TABLE stoker_job_logs (
    job_id  INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    line    TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
) STRICT, WITHOUT ROWID;

-- A job's lines go with it, whichever path deletes it (delete, prune, bulk delete, manual
-- SQL). A per-row trigger on delete only: deletes are maintenance, never the drain.
CREATE TRIGGER stoker_job_logs_delete AFTER DELETE ON stoker_jobs
BEGIN
    DELETE FROM stoker_job_logs WHERE job_id = OLD.id;
END;
