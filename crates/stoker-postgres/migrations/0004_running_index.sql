-- Stoker's PostgreSQL schema, version 4: no separate index of running jobs.
--
-- `stoker_jobs_running_idx` held running jobs by worker. Every claim wrote an entry in it for
-- each job it took, and the acknowledgement took it out again, yet no statement looks running
-- jobs up by worker: the rescuer reads every running job (few, at most the workers' total
-- concurrency) and checks its worker or lease, which the `(state, id)` index serves as well
-- with `state = 'running'` as its condition. Counted with callgrind in a single-user backend,
-- a drain of 5,000 jobs through the claim and acknowledgement statements executed 4.4% fewer
-- instructions without it (parsing, planning and printing included), all of it in the claims.

DROP INDEX stoker_jobs_running_idx;
