-- Stoker's SQLite schema, version 12: the finished counts per tenant (issue 13).
--
-- `stoker_job_counts` gains the tenant in its key, so a tenant's counts (and a bulk retry's
-- "how many match" for one tenant) never page through its jobs. A job without a tenant is
-- counted under '' (tenant ids are never empty). The store keeps the counts in the same
-- transactions as the state changes, as since version 4; unfinished states are still counted
-- live, through the `(state, id)` index, because a counter written by every insert and every
-- claim costs SQLite's single writer more than those few rows cost a read.

CREATE TABLE stoker_job_counts_new (
    queue  TEXT    NOT NULL,
    kind   TEXT    NOT NULL,
    tenant TEXT    NOT NULL,
    state  TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (queue, kind, tenant, state)
) STRICT, WITHOUT ROWID;

-- Start exact: one pass over the finished jobs.
INSERT INTO stoker_job_counts_new (queue, kind, tenant, state, count)
SELECT queue, kind, COALESCE(tenant, ''), state, COUNT(*) FROM stoker_jobs
WHERE state IN ('completed', 'discarded', 'cancelled')
GROUP BY queue, kind, COALESCE(tenant, ''), state;

DROP TABLE stoker_job_counts;
ALTER TABLE stoker_job_counts_new RENAME TO stoker_job_counts;
