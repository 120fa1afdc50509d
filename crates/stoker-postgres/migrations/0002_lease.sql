-- Stoker's PostgreSQL schema, version 2: leases.
--
-- A pull worker (a process that takes jobs from a server over HTTP) has no heartbeat row, so
-- it holds each job it claims by a lease: `lease_expires_at` is set by a claim made with a
-- lease, moved by `job_extend_lease`, and cleared when the attempt is acknowledged. A running
-- job whose lease has ended is stuck whatever its worker's row says; a running job without a
-- lease is stuck by the heartbeat rule, as before.
--
-- A nullable column without a default: adding it rewrites nothing and holds the table's lock
-- only for a moment. No index: the rescuer reads every running job through
-- `stoker_jobs_running_idx` (running jobs are few, at most the workers' total concurrency), and
-- leaving the column out of every index keeps lease extensions HOT updates.

ALTER TABLE stoker_jobs ADD COLUMN lease_expires_at timestamptz;
