-- Stoker's PostgreSQL schema, version 8: failure groups, bulk operations by filter, job logs
-- (issue 13).
--
-- `failure_group` is the fingerprint of a job's latest failed attempt (kind, error class,
-- message with numbers, hex and UUIDs taken out), written in the transaction that records the
-- failure. A nullable column: adding it rewrites nothing. Its index is partial, so a job that
-- never failed costs it nothing when it completes (PostgreSQL only adds entries to a partial
-- index for rows that satisfy its predicate).
ALTER TABLE stoker_jobs ADD COLUMN failure_group text;

CREATE INDEX stoker_jobs_failure_group_idx ON stoker_jobs (failure_group, id)
    WHERE failure_group IS NOT NULL;

-- One row per group, upserted with each failed attempt: listing groups reads this table only.
CREATE TABLE stoker_failure_groups (
    fingerprint    text        PRIMARY KEY,
    kind           text        NOT NULL,
    error_kind     text        NOT NULL,
    message        text        NOT NULL,
    count          bigint      NOT NULL,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    sample_job_id  bigint      NOT NULL,
    sample_message text        NOT NULL
);

CREATE INDEX stoker_failure_groups_seen_idx ON stoker_failure_groups (last_seen);

-- Bulk operations: one row each, holding the filter and the progress, so a restart resumes
-- at `cursor` (every job id up to it has been visited).
CREATE TABLE stoker_bulk_ops (
    id          bigserial   PRIMARY KEY,
    action      text        NOT NULL,
    filter      jsonb       NOT NULL,
    priority    smallint,
    run_at      timestamptz,
    state       text        NOT NULL,
    matched     bigint      NOT NULL DEFAULT 0,
    done        bigint      NOT NULL DEFAULT 0,
    skipped     bigint      NOT NULL DEFAULT 0,
    cursor      bigint      NOT NULL,
    max_id      bigint      NOT NULL,
    created_by  text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    finished_at timestamptz
);

CREATE INDEX stoker_bulk_ops_running_idx ON stoker_bulk_ops (id) WHERE state = 'running';

-- Job logs: lines a running attempt writes, numbered per job.
CREATE TABLE stoker_job_logs (
    job_id  bigint      NOT NULL,
    seq     bigint      NOT NULL,
    attempt integer     NOT NULL,
    at      timestamptz NOT NULL,
    line    text        NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- A job's lines go with it, whichever path deletes it (delete, prune, bulk delete, manual
-- SQL). A statement trigger on DELETE only, rather than a foreign key: a foreign key would
-- add a per-row check to every update of a job (claims and acknowledgements included),
-- while this costs only deletes, one statement per delete statement, reading the deleted
-- rows the counts' trigger already captures.
-- `SET search_path FROM CURRENT` pins the store's schema, as for the counts' functions.
CREATE FUNCTION stoker_job_logs_delete() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM stoker_job_logs l USING deleted d WHERE l.job_id = d.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER stoker_job_logs_delete AFTER DELETE ON stoker_jobs
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION stoker_job_logs_delete();

-- TRUNCATE fires no delete trigger: the lines go with the table.
CREATE FUNCTION stoker_job_logs_truncate() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    TRUNCATE stoker_job_logs;
    RETURN NULL;
END;
$$;

CREATE TRIGGER stoker_job_logs_truncate AFTER TRUNCATE ON stoker_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION stoker_job_logs_truncate();
