-- Stoker's PostgreSQL schema, version 1.
--
-- The migrator runs this file inside one transaction with `search_path` set to the store's
-- schema, so nothing here is schema-qualified. Runtime SQL, in contrast, always qualifies
-- every table, because it may run on a caller's connection whose `search_path` is theirs.

-- Jobs. A lower fillfactor leaves room on each page so updates that touch no indexed column
-- (progress reports, for one) can be HOT.
CREATE TABLE stoker_jobs (
    id                  bigserial   PRIMARY KEY,
    kind                text        NOT NULL,
    queue               text        NOT NULL,
    args                jsonb       NOT NULL,
    state               text        NOT NULL DEFAULT 'available'
        CONSTRAINT stoker_jobs_state_check CHECK (state IN (
            'available', 'running', 'retryable', 'completed', 'discarded', 'cancelled')),
    priority            smallint    NOT NULL DEFAULT 0,
    attempt             integer     NOT NULL DEFAULT 0,
    max_attempts        integer     NOT NULL CHECK (max_attempts >= 1),
    run_at              timestamptz NOT NULL,
    unique_key          text,
    tenant              text,
    metadata            jsonb       NOT NULL DEFAULT '{}',
    errors              jsonb       NOT NULL DEFAULT '[]',
    result              jsonb,
    progress            jsonb,
    timeout_ms          bigint,
    created_at          timestamptz NOT NULL,
    attempted_at        timestamptz,
    finished_at         timestamptz,
    worker_id           text,
    cancel_requested_at timestamptz
) WITH (fillfactor = 80);

-- The fetch index: a claim walks it in exactly its ORDER BY, so it is an index scan however
-- many finished or running rows the table holds (they are not in the index at all).
CREATE INDEX stoker_jobs_fetch_idx ON stoker_jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('available', 'retryable');

-- Listing and pruning by state, and live counts of unfinished states.
CREATE INDEX stoker_jobs_state_idx ON stoker_jobs (state, id);

-- Idempotency keys, scoped by tenant: no tenant and tenant 'a' may share a key (tenant ids are
-- never empty, so '' stands for "no tenant"); rows without a key never conflict.
CREATE UNIQUE INDEX stoker_jobs_unique_idx ON stoker_jobs ((COALESCE(tenant, '')), unique_key)
    WHERE unique_key IS NOT NULL;

-- Running jobs by worker: stuck-job detection joins through it.
CREATE INDEX stoker_jobs_running_idx ON stoker_jobs (worker_id) WHERE state = 'running';

CREATE TABLE stoker_queues (
    name       text        PRIMARY KEY,
    paused     boolean     NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE stoker_workers (
    id           text        PRIMARY KEY,
    host         text        NOT NULL,
    pid          bigint      NOT NULL,
    queues       text[]      NOT NULL,
    concurrency  bigint      NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    jobs_done    bigint      NOT NULL DEFAULT 0,
    jobs_failed  bigint      NOT NULL DEFAULT 0
);

CREATE TABLE stoker_leader (
    name       text        PRIMARY KEY,
    leader_id  text        NOT NULL,
    elected_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Counts of finished jobs (completed, discarded, cancelled) per queue and kind, kept by the
-- statement triggers below so that stats never count millions of finished rows. Unfinished
-- states are counted live through the indexes instead, so inserting a job never touches this
-- table (an outbox insert inside a long transaction must not hold a lock other inserters wait
-- on).
CREATE TABLE stoker_job_counts (
    queue text   NOT NULL,
    kind  text   NOT NULL,
    state text   NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (queue, kind, state)
);

-- One function for the three statement triggers: it sums the rows entering (+1) and leaving
-- (-1) a finished state per (queue, kind, state) and applies the sums in one upsert, in key
-- order so that concurrent statements lock counter rows in the same order. Statements that
-- involve no finished row (inserts, claims) return after two scans of their transition
-- tables and touch nothing.
--
-- `SET search_path FROM CURRENT` pins the migrator's search_path (the store's schema), so the
-- function finds its tables whatever the search_path of the session whose statement fired it.
CREATE FUNCTION stoker_job_counts_apply() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NOT EXISTS (SELECT 1 FROM new_rows
                       WHERE state IN ('completed', 'discarded', 'cancelled')) THEN
            RETURN NULL;
        END IF;
        INSERT INTO stoker_job_counts AS c (queue, kind, state, count)
        SELECT queue, kind, state, count(*) FROM new_rows
        WHERE state IN ('completed', 'discarded', 'cancelled')
        GROUP BY queue, kind, state
        ORDER BY queue, kind, state
        ON CONFLICT (queue, kind, state) DO UPDATE SET count = c.count + EXCLUDED.count;
    ELSIF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT 1 FROM old_rows
                       WHERE state IN ('completed', 'discarded', 'cancelled')) THEN
            RETURN NULL;
        END IF;
        INSERT INTO stoker_job_counts AS c (queue, kind, state, count)
        SELECT queue, kind, state, -count(*) FROM old_rows
        WHERE state IN ('completed', 'discarded', 'cancelled')
        GROUP BY queue, kind, state
        ORDER BY queue, kind, state
        ON CONFLICT (queue, kind, state) DO UPDATE SET count = c.count + EXCLUDED.count;
    ELSE
        IF NOT EXISTS (SELECT 1 FROM new_rows
                       WHERE state IN ('completed', 'discarded', 'cancelled'))
           AND NOT EXISTS (SELECT 1 FROM old_rows
                           WHERE state IN ('completed', 'discarded', 'cancelled')) THEN
            RETURN NULL;
        END IF;
        INSERT INTO stoker_job_counts AS c (queue, kind, state, count)
        SELECT queue, kind, state, sum(delta) FROM (
            SELECT queue, kind, state, 1 AS delta FROM new_rows
            WHERE state IN ('completed', 'discarded', 'cancelled')
            UNION ALL
            SELECT queue, kind, state, -1 AS delta FROM old_rows
            WHERE state IN ('completed', 'discarded', 'cancelled')
        ) d
        GROUP BY queue, kind, state
        HAVING sum(delta) <> 0
        ORDER BY queue, kind, state
        ON CONFLICT (queue, kind, state) DO UPDATE SET count = c.count + EXCLUDED.count;
    END IF;
    RETURN NULL;
END
$$;

-- PostgreSQL allows transition tables only on single-event triggers: one trigger per event.
CREATE TRIGGER stoker_job_counts_insert AFTER INSERT ON stoker_jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stoker_job_counts_apply();

CREATE TRIGGER stoker_job_counts_update AFTER UPDATE ON stoker_jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stoker_job_counts_apply();

CREATE TRIGGER stoker_job_counts_delete AFTER DELETE ON stoker_jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stoker_job_counts_apply();

-- TRUNCATE fires no delete trigger: start the counters over with the table.
CREATE FUNCTION stoker_job_counts_reset() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM stoker_job_counts;
    RETURN NULL;
END
$$;

CREATE TRIGGER stoker_job_counts_truncate AFTER TRUNCATE ON stoker_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION stoker_job_counts_reset();
