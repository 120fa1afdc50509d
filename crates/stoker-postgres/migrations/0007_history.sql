-- Stoker's PostgreSQL schema, version 7: durable history.
--
-- One narrow table for every grain: a row is one metric of one bucket (a minute, an hour or a
-- UTC day, as seconds since the Unix epoch) for one (queue, kind, tenant). Rows grow with
-- time and labels, never with jobs: a busy queue with one kind writes a few dozen rows a
-- minute however many jobs it runs. Processes add their deltas once every few seconds in one
-- statement; the leader folds minutes into hours and hours into days and deletes rows past
-- retention. Every read is a range of the primary key, which starts with (grain, bucket).
--
-- `tenant` is '' for jobs without one (tenants are never empty), and `kind` is '' for the
-- per-queue gauges (`depth`, `oldest_age_ms`).

CREATE TABLE stoker_history (
    grain  text   NOT NULL CHECK (grain IN ('minute', 'hour', 'day')),
    bucket bigint NOT NULL,
    queue  text   NOT NULL,
    kind   text   NOT NULL,
    tenant text   NOT NULL,
    metric text   NOT NULL,
    value  bigint NOT NULL,
    PRIMARY KEY (grain, bucket, queue, kind, tenant, metric)
);

-- The worker registry (issue 13): what a worker reports beyond its heartbeat, as JSON
-- (version, stopping, in-flight job ids, total run time, RSS, CPU); null for rows of older
-- builds. A nullable column without a default rewrites nothing.
ALTER TABLE stoker_workers ADD COLUMN details jsonb;
