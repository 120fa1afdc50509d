-- Stoker's PostgreSQL schema, version 6: recurring schedules (issue 15).
--
-- `stoker_cron` holds one row per schedule, by name. `definition` is the whole schedule
-- (kind, queue, args, options, policies); `expr`, `tz` and `enabled` are copied out so a
-- write can tell whether the slots changed (a new expression or zone, or a resume, restarts
-- `next_slot` from now instead of backfilling). `next_slot` is the first slot not yet fired:
-- every process may fire, and each moves it with a compare-and-set on (`next_slot`,
-- `revision`); the row lock the UPDATE takes makes concurrent firers of one slot wait and then
-- find it moved, so each slot is fired by exactly one of them. The partial index is what an
-- idle firer reads each tick.
--
-- `stoker_cron_runs` is each schedule's recent history (the newest 100 runs), with the job
-- each slot got; the job's own row gives the outcome and duration.

CREATE TABLE stoker_cron (
    name text PRIMARY KEY,
    expr text NOT NULL,
    tz text NOT NULL,
    enabled boolean NOT NULL,
    definition jsonb NOT NULL,
    next_slot timestamptz NOT NULL,
    last_slot timestamptz,
    revision bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX stoker_cron_due ON stoker_cron (next_slot) WHERE enabled;

CREATE TABLE stoker_cron_runs (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    slot timestamptz NOT NULL,
    fired_at timestamptz NOT NULL,
    job_id bigint,
    catch_up boolean NOT NULL,
    run_now boolean NOT NULL,
    skipped boolean NOT NULL
);

CREATE INDEX stoker_cron_runs_name ON stoker_cron_runs (name, id);
