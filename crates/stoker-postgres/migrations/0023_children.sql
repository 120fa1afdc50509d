-- Stoker's PostgreSQL schema, version 23: parents that wait for their children (issue 18).
--
-- A running job enqueues children it waits for: each child records its parent in
-- `awaited_by` and, while its edge is unresolved, the policy its failure applies in
-- `await_policy` ('cancel', 'run' or 'hold'; null once resolved or never waited for). The
-- parent counts its unresolved children in `children_pending` and the children that failed
-- under 'cancel' in `children_failed` (both null for a job that never had a child). All four
-- are null for ordinary jobs: a null costs a bit in the row's null bitmap, no bytes.
--
-- When its handler is done, the parent either finishes at once (nothing pending) or moves to
-- `blocked` with its result kept; children are only ever added to a running parent, so a
-- blocked job with `children_pending` set is one waiting for its children (a job blocked on
-- workflow dependencies never ran). The triggers below resolve a child's edge in the
-- transaction that finishes or deletes the child, on every path (acknowledgement, cancel,
-- rescue, bulk operation, prune), and complete (or cancel) a waiting parent in the same
-- transaction when its last child resolves: nothing is left for later, so a crash at any
-- point leaves either the whole change or none of it. The finish trigger's WHEN tests a
-- column that is null for every job without a waiting parent, as the row is written: an
-- ordinary acknowledgement queues no trigger event. The parent's own triggers (edges,
-- batch, callbacks, its own parent) run on its update in turn, and the counters' statement
-- triggers count it. A running parent whose child failed under 'cancel' is asked to stop,
-- and its worker told on the store's channel, as `job_cancel` does.

ALTER TABLE stoker_jobs
    ADD COLUMN awaited_by       bigint,
    ADD COLUMN await_policy     text CHECK (await_policy IN ('cancel', 'run', 'hold')),
    ADD COLUMN children_pending integer,
    ADD COLUMN children_failed  integer;

-- A parent's children (its detail, the count by state).
CREATE INDEX stoker_jobs_awaited_idx ON stoker_jobs (awaited_by) WHERE awaited_by IS NOT NULL;

DO $migration$
DECLARE
    channel text := 'stoker_' || current_schema();
BEGIN
    IF octet_length(channel) > 63 THEN
        channel := NULL;
    END IF;
    EXECUTE format($function$
CREATE FUNCTION stoker_child_resolve(parent bigint, failed boolean, at timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $body$
DECLARE
    channel text := %L;
    p record;
BEGIN
    UPDATE stoker_jobs
    SET children_pending = children_pending - 1,
        children_failed = children_failed + failed::int,
        cancel_requested_at = CASE WHEN state = 'running' AND failed
                                   THEN COALESCE(cancel_requested_at, at)
                                   ELSE cancel_requested_at END
    WHERE id = parent
    RETURNING state, children_pending, children_failed INTO p;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p.state = 'running' AND failed AND channel IS NOT NULL THEN
        PERFORM pg_notify(channel, 'c:' || parent);
    END IF;
    -- A parent waiting with nothing left pending completes; one with a child failed under
    -- 'cancel' ends cancelled.
    IF p.state = 'blocked' AND (p.children_pending = 0 OR p.children_failed > 0) THEN
        UPDATE stoker_jobs
        SET state = CASE WHEN p.children_failed > 0 THEN 'cancelled' ELSE 'completed' END,
            finished_at = at,
            scheduled = false
        WHERE id = parent;
    END IF;
END
$body$
$function$, channel);
END
$migration$;

CREATE FUNCTION stoker_jobs_resolve_child() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $body$
BEGIN
    PERFORM stoker_child_resolve(NEW.awaited_by,
                                 NEW.state <> 'completed' AND NEW.await_policy = 'cancel',
                                 COALESCE(NEW.finished_at, NEW.run_at));
    UPDATE stoker_jobs SET await_policy = NULL WHERE id = NEW.id;
    RETURN NULL;
END
$body$;

CREATE TRIGGER stoker_jobs_resolve_child
AFTER UPDATE OF state ON stoker_jobs
FOR EACH ROW
WHEN (NEW.await_policy IS NOT NULL
      AND NEW.state IN ('completed', 'discarded', 'cancelled')
      AND OLD.state IS DISTINCT FROM NEW.state
      AND (NEW.state = 'completed' OR NEW.await_policy <> 'hold'))
EXECUTE FUNCTION stoker_jobs_resolve_child();

-- A child deleted before its edge resolved (a delete, a bulk delete, the pruner) resolves it
-- as a failure that does not hold: under 'cancel' the parent is cancelled, under 'run' or
-- 'hold' it goes on without the child. No parent waits for a job that no longer exists.
CREATE FUNCTION stoker_jobs_delete_child() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $body$
BEGIN
    PERFORM stoker_child_resolve(OLD.awaited_by, OLD.await_policy = 'cancel',
                                 COALESCE(OLD.finished_at, OLD.run_at));
    RETURN NULL;
END
$body$;

CREATE TRIGGER stoker_jobs_delete_child
AFTER DELETE ON stoker_jobs
FOR EACH ROW
WHEN (OLD.await_policy IS NOT NULL)
EXECUTE FUNCTION stoker_jobs_delete_child();
