-- Stoker's SQLite schema, version 4: finished counts kept by the store, not by triggers.
--
-- The three triggers of version 1 kept `stoker_job_counts` exact on every path, manual SQL
-- included, but SQLite runs a trigger once per row: every claimed job ran one and every
-- acknowledged job two, about a fifth of a drain's time. The store now writes the counts
-- itself, in the same transaction as each change that moves a job into or out of a finished
-- state (acknowledgement, cancel, retry, delete, prune).
--
-- What this gives up: a job moved into or out of a finished state, or deleted in one, by SQL
-- written outside Stoker is no longer counted, as a job inserted by hand in a finished state
-- never was. Such a change can be repaired by re-running the recount below by hand.

DROP TRIGGER stoker_jobs_count_delete;
DROP TRIGGER stoker_jobs_count_update_old;
DROP TRIGGER stoker_jobs_count_update_new;

-- Start exact, whatever manual SQL did before: one pass over the finished jobs.
DELETE FROM stoker_job_counts;
INSERT INTO stoker_job_counts (queue, kind, state, count)
SELECT queue, kind, state, COUNT(*) FROM stoker_jobs
WHERE state IN ('completed', 'discarded', 'cancelled')
GROUP BY queue, kind, state;
