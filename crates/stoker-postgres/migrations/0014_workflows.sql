-- Stoker's PostgreSQL schema, version 14: workflows (issue 18).
--
-- A job with dependencies waits in state `blocked` (outside the fetch index, so claims never
-- see it) with `pending_deps` counting its unresolved edges. Only a job that others depend on
-- has `has_dependents` set, and only such a job, on moving into a finished state, runs the
-- trigger below (its WHEN is tested as the row is written; an ordinary acknowledgement queues
-- no trigger event at all). A trigger rather than a statement in each path resolves edges on
-- every path that finishes a job, acknowledgement, cancel, rescue, bulk operation, in that
-- path's own transaction, so no path can leave a job blocked with all its dependencies
-- finished. A child made available is announced on the store's channel like an insert (for
-- a schema whose channel name is hashed, past 56 bytes, workers find it by their poll).

ALTER TABLE stoker_jobs DROP CONSTRAINT stoker_jobs_state_check;
-- NOT VALID: every existing row passed the narrower check, so no scan is needed.
ALTER TABLE stoker_jobs ADD CONSTRAINT stoker_jobs_state_check CHECK (state IN (
    'blocked', 'available', 'running', 'retryable', 'completed', 'discarded', 'cancelled'))
    NOT VALID;

ALTER TABLE stoker_jobs
    ADD COLUMN workflow_id    bigint,
    ADD COLUMN workflow_node  text,
    ADD COLUMN pending_deps   integer NOT NULL DEFAULT 0,
    ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;

-- A workflow's jobs, and a node by name (unique within its workflow).
CREATE UNIQUE INDEX stoker_jobs_workflow_idx ON stoker_jobs (workflow_id, workflow_node)
    WHERE workflow_id IS NOT NULL;

CREATE TABLE stoker_workflows (
    id           bigserial   PRIMARY KEY,
    name         text        NOT NULL,
    tenant       text,
    created_at   timestamptz NOT NULL,
    cancelled_at timestamptz
);

-- One edge: `child_id` waits for `parent_id`. `resolved` once the parent completed, or failed
-- under `cancel` or `run`; a `hold` edge of a failed parent stays unresolved until the parent
-- is retried and completes.
CREATE TABLE stoker_deps (
    parent_id bigint  NOT NULL,
    child_id  bigint  NOT NULL,
    policy    text    NOT NULL CHECK (policy IN ('cancel', 'run', 'hold')),
    resolved  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (parent_id, child_id)
);

-- A job's dependencies (its results, the graph).
CREATE INDEX stoker_deps_child_idx ON stoker_deps (child_id, parent_id);

DO $migration$
DECLARE
    channel text := 'stoker_' || current_schema();
BEGIN
    IF octet_length(channel) > 63 THEN
        channel := NULL;
    END IF;
    EXECUTE format($function$
CREATE FUNCTION stoker_jobs_resolve_deps() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $body$
DECLARE
    finished timestamptz := COALESCE(NEW.finished_at, NEW.run_at);
    channel text := %L;
    announced bigint;
BEGIN
    -- A parent that did not complete cancels its blocked children on `cancel` edges (their
    -- own dependents follow, by this trigger on them).
    IF NEW.state <> 'completed' THEN
        UPDATE stoker_jobs AS c
        SET state = 'cancelled', finished_at = finished, scheduled = false
        FROM stoker_deps AS d
        WHERE d.parent_id = NEW.id AND NOT d.resolved AND d.policy = 'cancel'
          AND c.id = d.child_id AND c.state = 'blocked';
    END IF;
    -- A completed parent (or a failed one on a `run` edge) counts its children down; the
    -- last one makes a child available, into the schedule if its `run_at` is still ahead.
    WITH counted AS (
        UPDATE stoker_jobs AS c
        SET pending_deps = c.pending_deps - 1,
            state = CASE WHEN c.pending_deps = 1 AND c.state = 'blocked'
                         THEN 'available' ELSE c.state END,
            scheduled = CASE WHEN c.pending_deps = 1 AND c.state = 'blocked'
                             THEN c.run_at > finished ELSE c.scheduled END
        FROM stoker_deps AS d
        WHERE d.parent_id = NEW.id AND NOT d.resolved
          AND (NEW.state = 'completed' OR d.policy = 'run')
          AND c.id = d.child_id
        RETURNING c.queue, c.state, c.pending_deps
    )
    SELECT count(pg_notify(channel, 'a:' || q.queue)) INTO announced
    FROM (SELECT DISTINCT queue FROM counted
          WHERE state = 'available' AND pending_deps = 0 AND channel IS NOT NULL) AS q;
    UPDATE stoker_deps SET resolved = true
    WHERE parent_id = NEW.id AND NOT resolved
      AND (NEW.state = 'completed' OR policy <> 'hold');
    RETURN NULL;
END
$body$
$function$, channel);
END
$migration$;

CREATE TRIGGER stoker_jobs_resolve_deps
AFTER UPDATE OF state ON stoker_jobs
FOR EACH ROW
WHEN (NEW.has_dependents
      AND NEW.state IN ('completed', 'discarded', 'cancelled')
      AND OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION stoker_jobs_resolve_deps();
