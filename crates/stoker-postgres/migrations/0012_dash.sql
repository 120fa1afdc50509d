-- Job search (issue 14): indexes for the criteria a search walks by, each yielding jobs in id
-- order for keyset pages (see stoker_core::JobCriteria::driver). Partial, so jobs without the
-- value cost nothing: only jobs with a correlation id, a parent or an idempotency key are in
-- them. Queue, kind, tenant, worker, time and text criteria filter the rows of the state index
-- or the primary key within a scan budget instead: an index each would cost every state change
-- of every job an index entry more.
CREATE INDEX stoker_jobs_correlation_idx ON stoker_jobs ((metadata ->> 'correlation_id'), id)
    WHERE (metadata ->> 'correlation_id') IS NOT NULL;

CREATE INDEX stoker_jobs_parent_idx ON stoker_jobs ((metadata ->> 'parent_id'), id)
    WHERE (metadata ->> 'parent_id') IS NOT NULL;

CREATE INDEX stoker_jobs_key_idx ON stoker_jobs (unique_key, id)
    WHERE unique_key IS NOT NULL;
