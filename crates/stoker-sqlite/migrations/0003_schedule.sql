-- Stoker's SQLite schema, version 3: the schedule.
--
-- A job waiting for a `run_at` in the future (scheduled, or retrying after a backoff) used to
-- sit in the fetch index beside the due ones. The index is ordered by priority first, so a
-- claim finding fewer due jobs than it asked for read past every future entry of the queue
-- before giving up: with a million scheduled jobs, tens of milliseconds per claim.
--
-- Now such a job is written with `scheduled = 1`, which keeps it out of the fetch index and in
-- `stoker_jobs_scheduled_idx`, ordered by `run_at`. The leader's stager sets it back to 0 once
-- `run_at` has passed, reading only the entries that are due. The flag is not a state: a
-- scheduled job is `available` or `retryable` as before, and the API never shows the flag.
-- Queries repeat the predicates `scheduled = 0` and `scheduled = 1` word for word, so SQLite
-- can tell that the partial indexes apply.

ALTER TABLE stoker_jobs ADD COLUMN scheduled INTEGER NOT NULL DEFAULT 0
    CHECK (scheduled IN (0, 1));

-- Times are microseconds since the Unix epoch.
UPDATE stoker_jobs SET scheduled = 1
WHERE state IN ('available', 'retryable')
  AND run_at > CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER);

DROP INDEX stoker_jobs_fetch_idx;
CREATE INDEX stoker_jobs_fetch_idx ON stoker_jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('available', 'retryable') AND scheduled = 0;

CREATE INDEX stoker_jobs_scheduled_idx ON stoker_jobs (run_at, id) WHERE scheduled = 1;
