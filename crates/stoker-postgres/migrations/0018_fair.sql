-- Fair queuing across tenants (issue 16, item 3).
--
-- A fair queue's claim lists the tenants with ready jobs by walking this index from one
-- tenant to the next (one index probe per tenant, never a scan of the backlog), then takes
-- each chosen tenant's first jobs in priority order from the same index. Jobs without a
-- tenant are one more share, found through the fetch index: they are left out of this one,
-- so a queue without tenants (most of them) pays nothing for it on insert. Its predicate
-- names the tenant, so the plain claim (which does not) can never take it.
CREATE INDEX stoker_jobs_fair_idx ON stoker_jobs (queue, tenant, priority DESC, run_at, id)
    WHERE state IN ('available', 'retryable') AND NOT scheduled AND tenant IS NOT NULL;

-- Each tenant's virtual time in each fair queue: every job started advances it by
-- 1 / weight; the claim serves the tenants with the smallest times first. Jobs without a
-- tenant are kept under '' (tenant ids are never empty). Rows of tenants gone idle stay,
-- one per tenant ever seen in the queue, and are read only when the tenant has jobs again.
CREATE TABLE stoker_fair_tenants (
    queue  text             NOT NULL,
    tenant text             NOT NULL,
    vtime  double precision NOT NULL,
    PRIMARY KEY (queue, tenant)
);

-- Each fair queue's virtual clock: the smallest virtual time among its tenants with ready
-- jobs at the last claim. A tenant that comes back from idle starts at the clock, level with
-- the others, rather than catching up on the turns it missed.
CREATE TABLE stoker_fair_clocks (
    queue text             PRIMARY KEY,
    clock double precision NOT NULL
);

-- Enqueue quotas (issue 16, item 4): a limiter's token-bucket time for submissions, apart
-- from `tat` (which counts starts), so one limit may have a rate and a quota. An insert locks
-- the rows of the quotas it draws on in (name, key) order, as claims lock limiters.
ALTER TABLE stoker_limit_state ADD COLUMN quota_tat timestamptz;
