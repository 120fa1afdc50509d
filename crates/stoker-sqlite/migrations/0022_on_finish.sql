-- Stoker's SQLite schema, version 22: job-completion callbacks (issue 13, item 8).
--
-- A job enqueued with `on_finish: {url}` keeps the option in its metadata. When it moves into
-- a final state (completed, discarded, cancelled) the trigger below inserts one job of the
-- built-in `webhook` kind that posts the outcome to the URL, in the transaction of the state
-- change: the callback is retried like any job, and it is written if and only if the change
-- is. A trigger rather than a statement in each path covers every path that finishes a job
-- (acknowledgement, cancel, rescue, bulk operation, a workflow's cascade) alike.
--
-- Like `stoker_jobs_resolve_deps` it watches `finished_at`, which every path into a finished
-- state writes and a claim never does; its WHEN looks for the option's name in the metadata
-- text before it parses any JSON, so finishing a job without the option costs a substring
-- search.
--
-- The body holds the job's id, kind, queue, tenant, state, attempt, finished_at, result and
-- last error message. A job of an encrypted kind (its args sealed, an object with a `$enc`
-- key) posts neither result nor error, and says `"sealed": true`: the database only holds
-- its result sealed, and the callback writes nothing more of it.
--
-- A trigger cannot reach the process's event channel, so the delivery job is found by the
-- workers' next poll.

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
END;
