-- Stoker's PostgreSQL schema, version 21: queue depths from the counters (issue 14).
--
-- The queue depths (each queue's due and scheduled waiting jobs and its oldest due job) were
-- read from the waiting rows themselves: with 5,000,000 jobs of which 200,000 wait, a
-- parallel scan of the whole table, about 0.8 s, for every dashboard page that shows queues.
-- The counters of version 10 already hold the due available jobs (`active`, less the running
-- rows) and the scheduled ones; only `retryable` jobs were counted together whether or not
-- their backoff had passed. A retryable job in the schedule now has a key of its own,
-- `retryable_scheduled`, so every number of a depth is a sum of counters; the stager clearing
-- the flag is an UPDATE the count trigger sees, as for scheduled available jobs. The oldest
-- due job of a queue is the first entry of `stoker_jobs_due_idx`: a new index entry per
-- enqueued (or retried) job, none per claim, since a running job is outside its condition.

-- No job changes while the counters move to the new key: the triggers already use it.
LOCK TABLE stoker_jobs IN SHARE MODE;

CREATE OR REPLACE FUNCTION stoker_job_count_key(state text, scheduled boolean) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN state IN ('available', 'running') AND NOT scheduled THEN 'active'
                WHEN state = 'available' THEN 'scheduled'
                WHEN state = 'retryable' AND scheduled THEN 'retryable_scheduled'
                ELSE state END
$$;

-- The retryable jobs in the schedule leave `retryable` for their own key: one pass over the
-- retryable jobs, through the `(state, id)` index.
INSERT INTO stoker_job_count_deltas (queue, kind, tenant, state, delta)
SELECT queue, kind, COALESCE(tenant, ''), k.key, k.sign * count(*)
FROM stoker_jobs
CROSS JOIN (VALUES ('retryable', -1), ('retryable_scheduled', 1)) AS k (key, sign)
WHERE state = 'retryable' AND scheduled
GROUP BY 1, 2, 3, k.key, k.sign;

-- A queue's oldest due job: its first entry here. `priority IS NOT NULL` (always true) keeps
-- the index out of the claim's reach: with the claim's own predicate the planner took this
-- smaller index for it and sorted, reading every dead entry of the drain (W2 at concurrency
-- 50 fell from 19,000 to 4,000 jobs/s). Only a query that names the clause can use it.
CREATE INDEX stoker_jobs_due_idx ON stoker_jobs (queue, run_at)
    WHERE state IN ('available', 'retryable') AND NOT scheduled AND priority IS NOT NULL;
