-- Stoker's PostgreSQL schema, version 10: counters for every state, per tenant (issue 13).
--
-- Until now only finished jobs were counted (by the statement triggers of version 1, which
-- upsert `stoker_job_counts`); `job_stats` counted available, running and retryable jobs row
-- by row, so a backlog of ten million waiting jobs cost a stats call seconds. Counting every
-- state with the same upsert would make each claim and each acknowledgement update the same
-- few counter rows: every worker of a queue would queue up on one row lock.
--
-- So the triggers now only append: each statement that changes jobs inserts one delta row
-- per (queue, kind, tenant, state) it moved, into `stoker_job_count_deltas`, a table without
-- indexes or keys that no two writers ever contend on. `stoker_job_counts_fold` moves the
-- deltas into `stoker_job_counts` in one statement, a bounded batch at a time; the store
-- calls it before it reads the counts and with each prune (the leader's pruner runs every
-- 30 s). A reader sums the counters and the deltas not yet folded in one snapshot, so the
-- counts are exact at every instant, whether or not the fold has run.
--
-- The counter keys are not quite the states. `scheduled` counts the `available` jobs in the
-- schedule (their `run_at` still ahead, see version 3); the stager clearing the flag is an
-- UPDATE the trigger sees. `active` counts due `available` jobs and `running` ones together,
-- so the hottest statement, a claim of due jobs, moves no counter and writes no delta; a read
-- splits `active` by counting the running rows, which are never more than the cluster's
-- concurrency. Retryable jobs are counted as `retryable` whether or not their backoff has
-- passed.
--
-- A job without a tenant is counted under the tenant '' (tenant ids are never empty).
--
-- Retention per queue and per state (issue 13, item 9) deletes a queue's oldest jobs of one
-- finished state, and finds the newest N to keep, through `stoker_jobs_finished_idx`: only
-- finished jobs are in it, in the order those deletes read them.

ALTER TABLE stoker_job_counts ADD COLUMN tenant text NOT NULL DEFAULT '';
ALTER TABLE stoker_job_counts DROP CONSTRAINT stoker_job_counts_pkey;
ALTER TABLE stoker_job_counts ADD PRIMARY KEY (queue, kind, tenant, state);

CREATE TABLE stoker_job_count_deltas (
    queue  text   NOT NULL,
    kind   text   NOT NULL,
    tenant text   NOT NULL,
    state  text   NOT NULL,
    delta  bigint NOT NULL
);

-- The counter key of a job: its state, but `active` for due available and running jobs, and
-- `scheduled` for available jobs in the schedule. A plain SQL function, inlined where used.
CREATE FUNCTION stoker_job_count_key(state text, scheduled boolean) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN state IN ('available', 'running') AND NOT scheduled THEN 'active'
                WHEN state = 'available' THEN 'scheduled'
                ELSE state END
$$;

-- Start exact: one pass over the jobs, under the migration's own transaction.
DELETE FROM stoker_job_counts;
INSERT INTO stoker_job_counts (queue, kind, tenant, state, count)
SELECT queue, kind, COALESCE(tenant, ''),
       stoker_job_count_key(state, scheduled), count(*)
FROM stoker_jobs
GROUP BY 1, 2, 3, 4;

-- The one function behind the insert, update and delete triggers of version 1: +1 for each
-- row entering a key, -1 for each leaving it, summed per key; keys whose sum is zero (an
-- update that moved nothing, such as a progress report or a lease extension) write nothing.
CREATE OR REPLACE FUNCTION stoker_job_counts_apply() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO stoker_job_count_deltas (queue, kind, tenant, state, delta)
        SELECT queue, kind, COALESCE(tenant, ''),
               stoker_job_count_key(state, scheduled),
               count(*)
        FROM new_rows
        GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO stoker_job_count_deltas (queue, kind, tenant, state, delta)
        SELECT queue, kind, COALESCE(tenant, ''),
               stoker_job_count_key(state, scheduled),
               -count(*)
        FROM old_rows
        GROUP BY 1, 2, 3, 4;
    ELSE
        INSERT INTO stoker_job_count_deltas (queue, kind, tenant, state, delta)
        SELECT queue, kind, tenant, state, sum(delta) FROM (
            SELECT queue, kind, COALESCE(tenant, '') AS tenant,
                   stoker_job_count_key(state, scheduled) AS state,
                   1 AS delta
            FROM new_rows
            UNION ALL
            SELECT queue, kind, COALESCE(tenant, ''),
                   stoker_job_count_key(state, scheduled),
                   -1
            FROM old_rows
        ) d
        GROUP BY 1, 2, 3, 4
        HAVING sum(delta) <> 0;
    END IF;
    RETURN NULL;
END
$$;

-- TRUNCATE fires no delete trigger: start the counters and their deltas over with the table.
CREATE OR REPLACE FUNCTION stoker_job_counts_reset() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM stoker_job_counts;
    DELETE FROM stoker_job_count_deltas;
    RETURN NULL;
END
$$;

-- Folds up to `batch` delta rows into the counters, in one statement, and returns how many it
-- folded. Two folds at once take disjoint rows (the second skips rows the first deleted) and
-- upsert the counters in key order, so they cannot deadlock on them.
CREATE FUNCTION stoker_job_counts_fold(batch integer) RETURNS bigint
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    WITH moved AS (
        DELETE FROM stoker_job_count_deltas
        WHERE ctid = ANY (ARRAY(SELECT ctid FROM stoker_job_count_deltas LIMIT batch))
        RETURNING queue, kind, tenant, state, delta
    ), summed AS (
        SELECT queue, kind, tenant, state, sum(delta)::bigint AS delta, count(*) AS n
        FROM moved GROUP BY 1, 2, 3, 4
    ), upserted AS (
        INSERT INTO stoker_job_counts AS c (queue, kind, tenant, state, count)
        SELECT queue, kind, tenant, state, delta FROM summed
        ORDER BY queue, kind, tenant, state
        ON CONFLICT (queue, kind, tenant, state) DO UPDATE SET count = c.count + EXCLUDED.count
    )
    SELECT COALESCE(sum(n), 0)::bigint FROM summed;
$$;

-- Per-queue, per-state retention: oldest first, and the newest N, by index.
CREATE INDEX stoker_jobs_finished_idx ON stoker_jobs (queue, state, finished_at, id)
    WHERE state IN ('completed', 'discarded', 'cancelled');
