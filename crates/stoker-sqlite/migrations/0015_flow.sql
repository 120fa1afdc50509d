-- Flow control (issue 16): limits, their limiters, and the concurrency slots a running job
-- holds. Times are INTEGER microseconds since the Unix epoch, as everywhere.

-- A limit per name; `spec` is the limit as the API shows it (stoker_core::LimitSpec), JSON.
CREATE TABLE stoker_limits (
    name       TEXT    NOT NULL PRIMARY KEY,
    spec       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- One row per limiter (limit, key), created by the first claim that needs it. Claims run in
-- the single writer's transaction, so admission reads and writes these rows atomically.
-- `throttled_until` (rate) and `running >= cap` (concurrency) let a claim skip the jobs of
-- full limiters.
CREATE TABLE stoker_limit_state (
    name            TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    tat             INTEGER,
    running         INTEGER NOT NULL DEFAULT 0,
    throttled_until INTEGER,
    cap             INTEGER,
    PRIMARY KEY (name, key)
) STRICT, WITHOUT ROWID;

-- The concurrency slots a running job holds, as a JSON array of [name, key] pairs, written by
-- a claim that met a limit (and cleared by every other claim).
ALTER TABLE stoker_jobs ADD COLUMN flow_slots TEXT;

-- Every exit from `running` (completion, failure, snooze, hand-back, cancel, rescue, and any
-- state a later version adds) releases the job's slots in the same transaction, whichever
-- statement made it.
CREATE TRIGGER stoker_flow_release AFTER UPDATE OF state ON stoker_jobs
WHEN OLD.flow_slots IS NOT NULL AND OLD.state = 'running' AND NEW.state <> 'running'
BEGIN
    UPDATE stoker_limit_state SET running = MAX(running - 1, 0)
    WHERE (name, key) IN (SELECT value ->> 0, value ->> 1 FROM json_each(OLD.flow_slots));
END;
