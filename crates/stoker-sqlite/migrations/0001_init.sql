-- Stoker's SQLite schema, version 1.
--
-- Times are INTEGER microseconds since the Unix epoch (UTC). JSON values (args, metadata,
-- errors, result, progress, worker queues) are TEXT. States are TEXT.

CREATE TABLE stoker_jobs (
    -- AUTOINCREMENT: ids are never reused, even after the newest job is deleted, because they
    -- are the keyset pagination cursor and the fetch-order tie-breaker.
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                TEXT    NOT NULL,
    queue               TEXT    NOT NULL,
    args                TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    priority            INTEGER NOT NULL,
    attempt             INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL,
    run_at              INTEGER NOT NULL,
    unique_key          TEXT,
    tenant              TEXT,
    metadata            TEXT    NOT NULL DEFAULT '{}',
    errors              TEXT    NOT NULL DEFAULT '[]',
    result              TEXT,
    progress            TEXT,
    timeout_ms          INTEGER,
    created_at          INTEGER NOT NULL,
    attempted_at        INTEGER,
    finished_at         INTEGER,
    worker_id           TEXT,
    cancel_requested_at INTEGER
) STRICT;

-- The fetch index: every claim is a scan of one queue's due jobs in fetch order.
CREATE INDEX stoker_jobs_fetch_idx ON stoker_jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('available', 'retryable');

-- Listing by state, newest first; live counts of unfinished states.
CREATE INDEX stoker_jobs_state_idx ON stoker_jobs (state, id);

-- Idempotency, scoped by tenant: a job without a tenant and one of tenant "a" may share a key.
-- Tenants are never empty strings (validation refuses them), so '' stands for "no tenant".
CREATE UNIQUE INDEX stoker_jobs_unique_idx ON stoker_jobs (COALESCE(tenant, ''), unique_key)
    WHERE unique_key IS NOT NULL;

-- The rescuer: running jobs by the worker holding them.
CREATE INDEX stoker_jobs_running_idx ON stoker_jobs (worker_id)
    WHERE state = 'running';

-- The pruner: finished jobs of a queue, oldest first (retention by age and by count).
CREATE INDEX stoker_jobs_finished_idx ON stoker_jobs (queue, finished_at, id)
    WHERE state IN ('completed', 'discarded', 'cancelled');

CREATE TABLE stoker_queues (
    name       TEXT    PRIMARY KEY NOT NULL,
    paused     INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE stoker_workers (
    id           TEXT    PRIMARY KEY NOT NULL,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT    NOT NULL,
    concurrency  INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    jobs_done    INTEGER NOT NULL DEFAULT 0,
    jobs_failed  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE stoker_leader (
    name       TEXT    PRIMARY KEY NOT NULL,
    leader_id  TEXT    NOT NULL,
    elected_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

-- Counts of finished jobs (completed, discarded, cancelled) by queue, kind and state, kept up
-- to date by the triggers below on every path that changes or deletes a job (ack, retry,
-- delete, prune, manual SQL), so stats never count millions of finished rows. Rows may reach
-- zero; readers skip them.
--
-- There is deliberately no INSERT trigger: Stoker only ever inserts `available` jobs, and even
-- a trigger whose WHEN clause is false costs SQLite a sub-program call per inserted row, which
-- would cut bulk insert throughput by a third. A row inserted by hand directly in a finished
-- state is not counted.
CREATE TABLE stoker_job_counts (
    queue TEXT    NOT NULL,
    kind  TEXT    NOT NULL,
    state TEXT    NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (queue, kind, state)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER stoker_jobs_count_delete AFTER DELETE ON stoker_jobs
WHEN OLD.state IN ('completed', 'discarded', 'cancelled')
BEGIN
    UPDATE stoker_job_counts SET count = MAX(count - 1, 0)
    WHERE queue = OLD.queue AND kind = OLD.kind AND state = OLD.state;
END;

CREATE TRIGGER stoker_jobs_count_update_old AFTER UPDATE OF state, queue, kind ON stoker_jobs
WHEN OLD.state IN ('completed', 'discarded', 'cancelled')
    AND (NEW.state IS NOT OLD.state OR NEW.queue IS NOT OLD.queue OR NEW.kind IS NOT OLD.kind)
BEGIN
    UPDATE stoker_job_counts SET count = MAX(count - 1, 0)
    WHERE queue = OLD.queue AND kind = OLD.kind AND state = OLD.state;
END;

CREATE TRIGGER stoker_jobs_count_update_new AFTER UPDATE OF state, queue, kind ON stoker_jobs
WHEN NEW.state IN ('completed', 'discarded', 'cancelled')
    AND (NEW.state IS NOT OLD.state OR NEW.queue IS NOT OLD.queue OR NEW.kind IS NOT OLD.kind)
BEGIN
    INSERT INTO stoker_job_counts (queue, kind, state, count)
    VALUES (NEW.queue, NEW.kind, NEW.state, 1)
    ON CONFLICT (queue, kind, state) DO UPDATE SET count = count + 1;
END;
