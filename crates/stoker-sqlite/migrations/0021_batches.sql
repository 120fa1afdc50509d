-- Stoker's SQLite schema, version 21: batches (issue 18).
--
-- A batch row counts its jobs by outcome. The trigger below moves the counters in the
-- transaction that moves a member into a finished state (or, on a retry, out of one), so a
-- batch's progress is one row's read, never a scan of its jobs. Like the edge trigger of
-- version 16 it watches `finished_at`, which every path into or out of a finished state
-- writes and a claim never does, so a claim pays nothing and an acknowledgement one call that
-- tests a column. The callback job is inserted with the batch, `blocked` (outside every
-- claim); the write that leaves a closed batch with nothing pending releases it, with the
-- counts merged into its args under "batch", and sets `finished_at`, which it tests first:
-- the callback is released exactly once, whatever retries follow.

ALTER TABLE stoker_jobs ADD COLUMN batch_id INTEGER;

-- A batch's jobs (its cancel).
CREATE INDEX stoker_jobs_batch_idx ON stoker_jobs (batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE stoker_batches (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    tenant       TEXT,
    callback_id  INTEGER,
    total        INTEGER NOT NULL DEFAULT 0,
    pending      INTEGER NOT NULL DEFAULT 0,
    completed    INTEGER NOT NULL DEFAULT 0,
    discarded    INTEGER NOT NULL DEFAULT 0,
    cancelled    INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    closed_at    INTEGER,
    finished_at  INTEGER,
    cancelled_at INTEGER
) STRICT;

-- A tenant's batches, newest first.
CREATE INDEX stoker_batches_tenant_idx ON stoker_batches (tenant, id);

CREATE TRIGGER stoker_jobs_batch_count
AFTER UPDATE OF finished_at ON stoker_jobs
WHEN NEW.batch_id IS NOT NULL AND OLD.state <> NEW.state
 AND (OLD.state = 'completed' OR OLD.state = 'discarded' OR OLD.state = 'cancelled'
      OR NEW.state = 'completed' OR NEW.state = 'discarded' OR NEW.state = 'cancelled')
BEGIN
    UPDATE stoker_batches
    SET pending = pending
            + (OLD.state = 'completed' OR OLD.state = 'discarded' OR OLD.state = 'cancelled')
            - (NEW.state = 'completed' OR NEW.state = 'discarded' OR NEW.state = 'cancelled'),
        completed = completed + (NEW.state = 'completed') - (OLD.state = 'completed'),
        discarded = discarded + (NEW.state = 'discarded') - (OLD.state = 'discarded'),
        cancelled = cancelled + (NEW.state = 'cancelled') - (OLD.state = 'cancelled')
    WHERE id = NEW.batch_id;

    -- The callback, released with the counts, unless the batch was cancelled.
    UPDATE stoker_jobs
    SET state = 'available',
        scheduled = run_at > COALESCE(NEW.finished_at, NEW.run_at),
        args = json_set(args, '$.batch', json((
            SELECT json_object('id', b.id, 'total', b.total, 'completed', b.completed,
                               'discarded', b.discarded, 'cancelled', b.cancelled)
            FROM stoker_batches AS b WHERE b.id = NEW.batch_id)))
    WHERE state = 'blocked' AND id = (
        SELECT callback_id FROM stoker_batches
        WHERE id = NEW.batch_id AND closed_at IS NOT NULL AND pending = 0
          AND finished_at IS NULL AND cancelled_at IS NULL);

    UPDATE stoker_batches SET finished_at = COALESCE(NEW.finished_at, NEW.run_at)
    WHERE id = NEW.batch_id AND closed_at IS NOT NULL AND pending = 0 AND finished_at IS NULL;
END;
