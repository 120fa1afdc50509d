-- Stoker's PostgreSQL schema, version 20: job-completion callbacks (issue 13, item 8).
--
-- A job enqueued with `on_finish: {url}` keeps the option in its metadata. When it moves into
-- a final state (completed, discarded, cancelled) the trigger below inserts one job of the
-- built-in `webhook` kind that posts the outcome to the URL, in the transaction of the state
-- change: the callback is retried like any job, and it is written if and only if the change
-- is. A trigger rather than a statement in each path covers every path that finishes a job
-- (acknowledgement, cancel, rescue, bulk operation, a workflow's cascade) alike. Its WHEN is
-- tested as the row is written, so a job without the option queues no trigger event at all.
--
-- The body holds the job's id, kind, queue, tenant, state, attempt, finished_at, result and
-- last error message. A job of an encrypted kind (its args sealed, an object with a `$enc`
-- key) posts neither result nor error, and says `"sealed": true`: the database only holds
-- its result sealed, and the callback writes nothing more of it.
--
-- The new job is announced on the store's channel like an insert (for a schema whose channel
-- name is hashed, past 56 bytes, workers find it by their poll).

DO $migration$
DECLARE
    channel text := 'stoker_' || current_schema();
BEGIN
    IF octet_length(channel) > 63 THEN
        channel := NULL;
    END IF;
    EXECUTE format($function$
CREATE FUNCTION stoker_jobs_on_finish() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $body$
DECLARE
    channel text := %L;
    finished timestamptz := COALESCE(NEW.finished_at, NEW.run_at);
    sealed boolean := jsonb_typeof(NEW.args) = 'object' AND NEW.args ? '$enc';
    target text := COALESCE(NEW.metadata -> 'on_finish' ->> 'queue', 'default');
    metadata jsonb := jsonb_build_object(
        'parent_id', NEW.id, 'source', 'on_finish', 'tags', jsonb_build_array('on_finish'));
    body jsonb;
BEGIN
    body := jsonb_build_object(
        'type', 'job.finished',
        'id', NEW.id,
        'kind', NEW.kind,
        'queue', NEW.queue,
        'tenant', NEW.tenant,
        'state', NEW.state,
        'attempt', NEW.attempt,
        'finished_at', to_char(finished AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'result', CASE WHEN sealed THEN NULL ELSE NEW.result END,
        'error', CASE WHEN sealed THEN NULL
                      ELSE NEW.errors -> (jsonb_array_length(NEW.errors) - 1) -> 'message' END);
    IF sealed THEN
        body := body || jsonb_build_object('sealed', true);
    END IF;
    IF NEW.metadata ? 'correlation_id' THEN
        metadata := metadata || jsonb_build_object(
            'correlation_id', NEW.metadata -> 'correlation_id');
    END IF;
    INSERT INTO stoker_jobs (kind, queue, args, state, priority, attempt, max_attempts, run_at,
                             tenant, metadata, created_at, scheduled)
    VALUES ('webhook', target,
            jsonb_build_object('url', NEW.metadata -> 'on_finish' ->> 'url',
                               'method', 'POST', 'body', body),
            'available', 0, 0, 10, finished, NEW.tenant, metadata, finished, false);
    IF channel IS NOT NULL THEN
        PERFORM pg_notify(channel, 'a:' || target);
    END IF;
    RETURN NULL;
END
$body$
$function$, channel);
END
$migration$;

CREATE TRIGGER stoker_jobs_on_finish
AFTER UPDATE OF state ON stoker_jobs
FOR EACH ROW
WHEN (NEW.metadata ? 'on_finish'
      AND NEW.state IN ('completed', 'discarded', 'cancelled')
      AND OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION stoker_jobs_on_finish();
