-- Stoker's SQLite schema, version 27: a completion callback counts in the history (issue 13).
--
-- The `webhook` job that the `on_finish` trigger of version 22 inserts never passes through a
-- client, so no process's history recorder saw it: the per-minute `enqueued` missed every
-- callback. The trigger now also adds one to its minute's `enqueued` for the callback's
-- queue, kind and tenant, in the same transaction as the insert. This is a history write per
-- callback (one per finished job that asked for one), never per ordinary job: the trigger's
-- WHEN is unchanged, so finishing a job without the option costs what it did.
--
-- The store now also wakes the workers waiting on the callback's queue when a statement it
-- runs finishes a job with the option (acknowledgements, cancels, bulk operations): their
-- RETURNING clauses name the callback's queue, so the callback starts at once rather than at
-- the next poll.
--
-- The counters (`stoker_job_counts`) need nothing: the callback is `available`, and SQLite
-- counts unfinished states live.

DROP TRIGGER stoker_jobs_on_finish;

CREATE TRIGGER stoker_jobs_on_finish
AFTER UPDATE OF finished_at ON stoker_jobs
WHEN instr(NEW.metadata, '"on_finish"') > 0
 AND (NEW.state = 'completed' OR NEW.state = 'discarded' OR NEW.state = 'cancelled')
 AND OLD.state <> NEW.state
 AND json_extract(NEW.metadata, '$.on_finish.url') IS NOT NULL
BEGIN
    INSERT INTO stoker_jobs (kind, queue, args, state, priority, attempt, max_attempts, run_at,
                             tenant, metadata, created_at, scheduled)
    SELECT 'webhook',
           COALESCE(json_extract(NEW.metadata, '$.on_finish.queue'), 'default'),
           json_object(
               'url', json_extract(NEW.metadata, '$.on_finish.url'),
               'method', 'POST',
               'body', json_patch(
                   json_object(
                       'type', 'job.finished',
                       'id', NEW.id,
                       'kind', NEW.kind,
                       'queue', NEW.queue,
                       'tenant', NEW.tenant,
                       'state', NEW.state,
                       'attempt', NEW.attempt,
                       'finished_at',
                           strftime('%Y-%m-%dT%H:%M:%S', f.at / 1000000, 'unixepoch')
                           || printf('.%06dZ', f.at % 1000000),
                       'result', CASE WHEN f.sealed THEN NULL ELSE json(NEW.result) END,
                       'error', CASE WHEN f.sealed THEN NULL
                                     ELSE json_extract(NEW.errors, '$[#-1].message') END),
                   -- json_patch drops a key whose patch value is null.
                   json_object('sealed', CASE WHEN f.sealed THEN json('true') END))),
           'available', 0, 0, 10, f.at, NEW.tenant,
           json_patch(
               json_object('parent_id', NEW.id, 'source', 'on_finish',
                           'tags', json_array('on_finish')),
               json_object('correlation_id', json_extract(NEW.metadata, '$.correlation_id'))),
           f.at, 0
    FROM (SELECT COALESCE(NEW.finished_at, NEW.run_at) AS at,
                 json_type(NEW.args, '$."$enc"') IS NOT NULL AS sealed) AS f;
    -- The callback is a new job: count it in its minute's `enqueued`, as an insert through
    -- the client is (the process that finished the job never sees this insert).
    INSERT INTO stoker_history (grain, bucket, queue, kind, tenant, metric, value)
    SELECT 'minute', (COALESCE(NEW.finished_at, NEW.run_at) / 60000000) * 60,
           COALESCE(json_extract(NEW.metadata, '$.on_finish.queue'), 'default'),
           'webhook', COALESCE(NEW.tenant, ''), 'enqueued', 1
    WHERE true
    ON CONFLICT (grain, bucket, queue, kind, tenant, metric) DO UPDATE SET value = value + 1;
END;
