-- Stoker's SQLite schema, version 8: recurring schedules (issue 15).
--
-- `stoker_cron` holds one row per schedule, by name. `definition` is the whole schedule as
-- JSON (kind, queue, args, options, policies); `expr`, `tz` and `enabled` are copied out so
-- a write can tell whether the slots changed (a new expression or zone, or a resume, restarts
-- `next_slot` from now instead of backfilling). `next_slot` is the first slot not yet fired:
-- firers move it with a compare-and-set on (`next_slot`, `revision`), so each slot is fired
-- by exactly one of them. The partial index is what an idle firer reads each tick.
--
-- `stoker_cron_runs` is each schedule's recent history (the newest 100 runs), with the job
-- each slot got; the job's own row gives the outcome and duration.

CREATE TABLE stoker_cron (
    name TEXT PRIMARY KEY NOT NULL,
    expr TEXT NOT NULL,
    tz TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    definition TEXT NOT NULL,
    next_slot INTEGER NOT NULL,
    last_slot INTEGER,
    revision INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX stoker_cron_due ON stoker_cron (next_slot) WHERE enabled;

CREATE TABLE stoker_cron_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    slot INTEGER NOT NULL,
    fired_at INTEGER NOT NULL,
    job_id INTEGER,
    catch_up INTEGER NOT NULL,
    run_now INTEGER NOT NULL,
    skipped INTEGER NOT NULL
);

CREATE INDEX stoker_cron_runs_name ON stoker_cron_runs (name, id);
