-- Stoker's PostgreSQL schema, version 3: the schedule.
--
-- A job waiting for a `run_at` in the future (scheduled, or retrying after a backoff) used to
-- sit in the fetch index beside the due ones. The index is ordered by priority first, so a
-- claim finding fewer due jobs than it asked for read past every future entry of the queue
-- before giving up: with a million scheduled jobs, tens of milliseconds per claim.
--
-- Now such a job is written with `scheduled = true`, which keeps it out of the fetch index and
-- in `stoker_jobs_scheduled_idx`, ordered by `run_at`. The leader's stager clears the flag once
-- `run_at` has passed, reading only the entries that are due. The flag is not a state: a
-- scheduled job is `available` or `retryable` as before, and the API never shows the flag.

ALTER TABLE stoker_jobs ADD COLUMN scheduled boolean NOT NULL DEFAULT false;

UPDATE stoker_jobs SET scheduled = true
WHERE state IN ('available', 'retryable') AND run_at > now();

-- Only a waiting job can be in the schedule: a claim, a cancel or a finish clears the flag.
ALTER TABLE stoker_jobs ADD CONSTRAINT stoker_jobs_scheduled_check
    CHECK (NOT scheduled OR state IN ('available', 'retryable'));

DROP INDEX stoker_jobs_fetch_idx;
CREATE INDEX stoker_jobs_fetch_idx ON stoker_jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('available', 'retryable') AND NOT scheduled;

CREATE INDEX stoker_jobs_scheduled_idx ON stoker_jobs (run_at, id) WHERE scheduled;
