-- Stoker's SQLite schema, version 25: parents that wait for their children (issue 18).
--
-- A running job enqueues children it waits for: each child records its parent in
-- `awaited_by` and, while its edge is unresolved, the policy its failure applies in
-- `await_policy` ('cancel', 'run' or 'hold'; null once resolved or never waited for). The
-- parent counts its unresolved children in `children_pending` and the children that failed
-- under 'cancel' in `children_failed` (both null for a job that never had a child). All four
-- are null for ordinary jobs, which SQLite does not even store at the end of a row.
--
-- When its handler is done, the parent either finishes at once (nothing pending) or moves to
-- `blocked` with its result kept; children are only ever added to a running parent, so a
-- blocked job with `children_pending` set is one waiting for its children (a job blocked on
-- workflow dependencies never ran). The triggers below resolve a child's edge in the
-- transaction that finishes or deletes the child, on every path (acknowledgement, cancel,
-- rescue, bulk operation, prune), and complete (or cancel) a waiting parent in the same
-- transaction when its last child resolves: no bookkeeping is left for later, so a crash
-- at any point leaves either the whole change or none of it.
--
-- Like the edge trigger of version 16 the finish trigger watches `finished_at`, which every
-- path into a finished state writes and a claim never does; its WHEN tests a column that is
-- null for every job without a waiting parent. A parent it finishes writes `finished_at`, so
-- the parent's own triggers (edges, batch, callbacks, its own parent) run in turn
-- (`recursive_triggers` is on). The finished counts the store keeps are moved here for the
-- parent, as the edge trigger does for the jobs it cancels.

ALTER TABLE stoker_jobs ADD COLUMN awaited_by INTEGER;
-- The policy's check is written as ORs: SQLite evaluates an IN list of three values by
-- building a temporary b-tree, afresh for every row written (schema version 5).
ALTER TABLE stoker_jobs ADD COLUMN await_policy TEXT
    CHECK (await_policy IS NULL OR await_policy = 'cancel' OR await_policy = 'run'
           OR await_policy = 'hold');
ALTER TABLE stoker_jobs ADD COLUMN children_pending INTEGER;
ALTER TABLE stoker_jobs ADD COLUMN children_failed INTEGER;

-- A parent's children (its detail, the count by state).
CREATE INDEX stoker_jobs_awaited_idx ON stoker_jobs (awaited_by) WHERE awaited_by IS NOT NULL;

CREATE TRIGGER stoker_jobs_resolve_child
AFTER UPDATE OF finished_at ON stoker_jobs
WHEN NEW.await_policy IS NOT NULL
 AND (NEW.state = 'completed' OR NEW.state = 'discarded' OR NEW.state = 'cancelled')
 AND OLD.state <> NEW.state
 AND (NEW.state = 'completed' OR NEW.await_policy <> 'hold')
BEGIN
    -- A child that failed under 'cancel' asks a running parent to stop.
    UPDATE stoker_jobs
    SET children_pending = children_pending - 1,
        children_failed = children_failed
            + (NEW.state <> 'completed' AND NEW.await_policy = 'cancel'),
        cancel_requested_at = CASE
            WHEN state = 'running' AND NEW.state <> 'completed' AND NEW.await_policy = 'cancel'
            THEN COALESCE(cancel_requested_at, COALESCE(NEW.finished_at, NEW.run_at))
            ELSE cancel_requested_at END
    WHERE id = NEW.awaited_by;

    UPDATE stoker_jobs SET await_policy = NULL WHERE id = NEW.id;

    -- A parent waiting with nothing left pending completes; one with a child failed under
    -- 'cancel' ends cancelled. Counted first, from the same condition.
    INSERT INTO stoker_job_counts (queue, kind, tenant, state, count)
    SELECT queue, kind, COALESCE(tenant, ''),
           CASE WHEN children_failed > 0 THEN 'cancelled' ELSE 'completed' END, 1
    FROM stoker_jobs
    WHERE id = NEW.awaited_by AND state = 'blocked' AND children_pending IS NOT NULL
      AND (children_pending = 0 OR children_failed > 0)
    ON CONFLICT (queue, kind, tenant, state) DO UPDATE SET count = count + excluded.count;

    UPDATE stoker_jobs
    SET state = CASE WHEN children_failed > 0 THEN 'cancelled' ELSE 'completed' END,
        finished_at = COALESCE(NEW.finished_at, NEW.run_at),
        scheduled = 0
    WHERE id = NEW.awaited_by AND state = 'blocked' AND children_pending IS NOT NULL
      AND (children_pending = 0 OR children_failed > 0);
END;

-- A child deleted before its edge resolved (by a delete, a bulk delete or the pruner)
-- resolves it as a failure that does not hold: under 'cancel' the parent is cancelled, under
-- 'run' or 'hold' it goes on without the child. A parent is never left waiting for a job
-- that no longer exists.
CREATE TRIGGER stoker_jobs_delete_child
AFTER DELETE ON stoker_jobs
WHEN OLD.await_policy IS NOT NULL
BEGIN
    UPDATE stoker_jobs
    SET children_pending = children_pending - 1,
        children_failed = children_failed + (OLD.await_policy = 'cancel'),
        cancel_requested_at = CASE
            WHEN state = 'running' AND OLD.await_policy = 'cancel'
            THEN COALESCE(cancel_requested_at, OLD.run_at)
            ELSE cancel_requested_at END
    WHERE id = OLD.awaited_by;

    INSERT INTO stoker_job_counts (queue, kind, tenant, state, count)
    SELECT queue, kind, COALESCE(tenant, ''),
           CASE WHEN children_failed > 0 THEN 'cancelled' ELSE 'completed' END, 1
    FROM stoker_jobs
    WHERE id = OLD.awaited_by AND state = 'blocked' AND children_pending IS NOT NULL
      AND (children_pending = 0 OR children_failed > 0)
    ON CONFLICT (queue, kind, tenant, state) DO UPDATE SET count = count + excluded.count;

    UPDATE stoker_jobs
    SET state = CASE WHEN children_failed > 0 THEN 'cancelled' ELSE 'completed' END,
        finished_at = COALESCE(OLD.finished_at, OLD.run_at),
        scheduled = 0
    WHERE id = OLD.awaited_by AND state = 'blocked' AND children_pending IS NOT NULL
      AND (children_pending = 0 OR children_failed > 0);
END;
