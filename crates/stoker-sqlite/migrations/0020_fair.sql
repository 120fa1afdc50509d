-- Fair queuing across tenants (issue 16, item 3).
--
-- A fair queue's claim lists the tenants with ready jobs by walking this index from one
-- tenant to the next (one index probe per tenant, never a scan of the backlog), then takes
-- each chosen tenant's first jobs in priority order from the same index. Jobs without a
-- tenant are one more share, found through the fetch index: they are left out of this one,
-- so a queue without tenants (most of them) pays nothing for it on insert or claim.
CREATE INDEX stoker_jobs_fair_idx ON stoker_jobs (queue, tenant, priority DESC, run_at, id)
    WHERE state IN ('available', 'retryable') AND scheduled = 0 AND tenant IS NOT NULL;

-- Each tenant's virtual time in each fair queue: every job started advances it by
-- 1 / weight; the claim serves the tenants with the smallest times first. Jobs without a
-- tenant are kept under '' (tenant ids are never empty).
CREATE TABLE stoker_fair_tenants (
    queue  TEXT NOT NULL,
    tenant TEXT NOT NULL,
    vtime  REAL NOT NULL,
    PRIMARY KEY (queue, tenant)
) STRICT, WITHOUT ROWID;

-- Each fair queue's virtual clock: the smallest virtual time among its tenants with ready
-- jobs at the last claim, where a tenant back from idle starts.
CREATE TABLE stoker_fair_clocks (
    queue TEXT NOT NULL PRIMARY KEY,
    clock REAL NOT NULL
) STRICT;

-- Enqueue quotas (issue 16, item 4): a limiter's token-bucket time for submissions, apart
-- from `tat` (which counts starts), so one limit may have a rate and a quota.
ALTER TABLE stoker_limit_state ADD COLUMN quota_tat INTEGER;
