-- Flow control (issue 16): concurrency slots are released by the acknowledgement itself, not
-- by a trigger.
--
-- SQLite calls an `AFTER UPDATE OF state` trigger's program for every row a claim or an
-- acknowledgement writes, even when its WHEN is false, so `stoker_flow_release` was paid by
-- every drain, limits or not. The only statement that moves a job out of `running` is the
-- batched finish (completion, failure, snooze, hand-back, cancel, rescue all go through it;
-- cancel and delete never touch a running job), which now releases the slots of the jobs it
-- finishes in the same transaction, and only when some limiter has a slot taken.
DROP TRIGGER IF EXISTS stoker_flow_release;

-- What lets the finish skip the release in one probe: the limiters with a slot taken. Only
-- concurrency limiters in use have a row here, so the index stays tiny and a queue without
-- limits never writes it.
CREATE INDEX stoker_limit_state_running_idx ON stoker_limit_state (running) WHERE running > 0;

-- Fair queuing with many tenants (issue 16): a claim no longer walks every tenant with ready
-- jobs. `ready` marks the tenants known to have jobs in the fair index (set by an insert, or
-- by the claim's bounded discovery walk; cleared by a claim that finds a tenant empty), and a
-- claim reads them in virtual-time order from this index, as few as its places need.
ALTER TABLE stoker_fair_tenants ADD COLUMN ready INTEGER NOT NULL DEFAULT 0;
CREATE INDEX stoker_fair_tenants_ready_idx ON stoker_fair_tenants (queue, vtime, tenant)
    WHERE ready = 1;

