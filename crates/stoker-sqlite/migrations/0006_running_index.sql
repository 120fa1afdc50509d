-- Stoker's SQLite schema, version 6: no separate index of running jobs.
--
-- `stoker_jobs_running_idx` held running jobs by worker. Every claim wrote an entry in it for
-- each job it took, and the acknowledgement took it out again, yet no statement looks running
-- jobs up by worker: the rescuer reads every running job (few, at most the workers' total
-- concurrency) and checks its worker or lease, which the `(state, id)` index serves as well
-- with `state = 'running'` as its condition.

DROP INDEX stoker_jobs_running_idx;
