-- Stoker's SQLite schema, version 16: workflows (issue 18).
--
-- A job with dependencies waits in state `blocked` (outside the fetch index, so claims never
-- see it) with `pending_deps` counting its unresolved edges. Only a job that others depend on
-- has `has_dependents` set, and only such a job, on moving into a finished state, runs the
-- trigger below: an ordinary acknowledgement pays the test of a flag, no statement and no
-- read. A trigger (rather than a statement in each path) resolves edges on every path that
-- finishes a job, an acknowledgement, a cancel, a rescue, a bulk operation, in its own
-- transaction, so no path can leave a job blocked with all its dependencies finished.
-- Cascading cancels run the trigger from itself: the store turns on `recursive_triggers`.
-- SQLite runs row triggers as each row is written, so while `workflow_cancel` cancels a
-- workflow's jobs in one statement the trigger leaves that workflow's jobs to it (else a job
-- could be changed, and counted, twice).

ALTER TABLE stoker_jobs ADD COLUMN workflow_id INTEGER;
ALTER TABLE stoker_jobs ADD COLUMN workflow_node TEXT;
ALTER TABLE stoker_jobs ADD COLUMN pending_deps INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stoker_jobs ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0;

-- A workflow's jobs, and a node by name (unique within its workflow).
CREATE UNIQUE INDEX stoker_jobs_workflow_idx ON stoker_jobs (workflow_id, workflow_node)
    WHERE workflow_id IS NOT NULL;

CREATE TABLE stoker_workflows (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    tenant       TEXT,
    created_at   INTEGER NOT NULL,
    cancelled_at INTEGER
) STRICT;

-- One edge: `child_id` waits for `parent_id`. `resolved` once the parent completed, or failed
-- under `cancel` or `run`; a `hold` edge of a failed parent stays unresolved until the parent
-- is retried and completes.
CREATE TABLE stoker_deps (
    parent_id INTEGER NOT NULL,
    child_id  INTEGER NOT NULL,
    policy    TEXT    NOT NULL CHECK (policy IN ('cancel', 'run', 'hold')),
    resolved  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, child_id)
) STRICT, WITHOUT ROWID;

-- A job's dependencies (its results, the graph).
CREATE INDEX stoker_deps_child_idx ON stoker_deps (child_id, parent_id);

-- SQLite calls a trigger's program for every row its statement writes and tests WHEN there,
-- so the trigger watches `finished_at`, which every path into a finished state writes and a
-- claim never does: a claim pays nothing, an acknowledgement one call that tests a flag. The
-- WHEN avoids `IN (…)`, which SQLite evaluates through a temporary b-tree per row.
CREATE TRIGGER stoker_jobs_resolve_deps
AFTER UPDATE OF finished_at ON stoker_jobs
WHEN NEW.has_dependents = 1
 AND (NEW.state = 'completed' OR NEW.state = 'discarded' OR NEW.state = 'cancelled')
 AND OLD.state <> NEW.state
BEGIN
    -- A parent that did not complete cancels its blocked children on `cancel` edges; the
    -- store keeps the finished counts, so they are counted here.
    INSERT INTO stoker_job_counts (queue, kind, tenant, state, count)
    SELECT c.queue, c.kind, COALESCE(c.tenant, ''), 'cancelled', COUNT(*)
    FROM stoker_deps AS d JOIN stoker_jobs AS c ON c.id = d.child_id
    WHERE NEW.state <> 'completed' AND d.parent_id = NEW.id AND NOT d.resolved
      AND d.policy = 'cancel' AND c.state = 'blocked'
      AND (c.workflow_id IS NULL OR c.workflow_id NOT IN
           (SELECT id FROM stoker_workflows WHERE cancelled_at IS NOT NULL))
    GROUP BY 1, 2, 3
    ON CONFLICT (queue, kind, tenant, state) DO UPDATE SET count = count + excluded.count;

    UPDATE stoker_jobs
    SET state = 'cancelled', finished_at = COALESCE(NEW.finished_at, NEW.run_at), scheduled = 0
    WHERE NEW.state <> 'completed' AND state = 'blocked'
      AND (workflow_id IS NULL OR workflow_id NOT IN
           (SELECT id FROM stoker_workflows WHERE cancelled_at IS NOT NULL))
      AND id IN (SELECT child_id FROM stoker_deps
                 WHERE parent_id = NEW.id AND NOT resolved AND policy = 'cancel');

    -- A completed parent (or a failed one on a `run` edge) counts its children down; the last
    -- one makes a child available, into the schedule if its `run_at` is still ahead.
    UPDATE stoker_jobs
    SET pending_deps = pending_deps - 1,
        state = CASE WHEN pending_deps = 1 AND state = 'blocked' THEN 'available' ELSE state END,
        scheduled = CASE WHEN pending_deps = 1 AND state = 'blocked'
                         THEN run_at > COALESCE(NEW.finished_at, NEW.run_at) ELSE scheduled END
    WHERE (workflow_id IS NULL OR workflow_id NOT IN
           (SELECT id FROM stoker_workflows WHERE cancelled_at IS NOT NULL))
      AND id IN (SELECT child_id FROM stoker_deps
                 WHERE parent_id = NEW.id AND NOT resolved
                   AND (NEW.state = 'completed' OR policy = 'run'));

    UPDATE stoker_deps SET resolved = 1
    WHERE parent_id = NEW.id AND NOT resolved
      AND (NEW.state = 'completed' OR policy <> 'hold');
END;
