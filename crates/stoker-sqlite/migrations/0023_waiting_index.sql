-- Stoker's SQLite schema, version 23: the waiting jobs counted from one covering index
-- (issue 14).
--
-- The counts of unfinished states (`job_stats`) and the queue depths were read through the
-- `(state, id)` index, one table row per waiting job: 40,000 row lookups, about 100 ms, for
-- a table of 1,000,000 jobs of which 4 % wait, and each dashboard page made several such
-- reads. This index holds, for every job waiting in `blocked`, `available` or `retryable`,
-- every column those reads group and filter on, so they walk the index alone (about five
-- times faster) and read no table row.
--
-- Why an index rather than counters kept by the store (as the finished states have since
-- version 4): a counter is right only if every statement that moves a job between waiting
-- states writes it, and those statements are many (insert, claim, stager, retry, snooze,
-- rescue, cancel, the workflow and flow-control wake-ups, bulk operations); an index is kept
-- by SQLite on every path, manual SQL included. What it costs the hot path: one index entry
-- written when a job is enqueued (or moved back to waiting) and one removed when it is
-- claimed; running jobs are not in it, so an acknowledgement writes nothing to it. Running
-- jobs, at most the cluster's concurrency, are still counted through `(state, id)`.

-- The predicate is a chain of ORs, not an IN list, for the reason of version 5: SQLite checks
-- it for every row a statement writes, and would build a temporary b-tree per row for a list
-- of three values. Queries that use this index repeat it word for word.
CREATE INDEX stoker_jobs_waiting_idx ON stoker_jobs (queue, kind, tenant, state, scheduled, run_at)
    WHERE state = 'blocked' OR state = 'available' OR state = 'retryable';
