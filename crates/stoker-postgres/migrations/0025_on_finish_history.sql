-- Stoker's PostgreSQL schema, version 25: a completion callback counts in the history
-- (issue 13).
--
-- The `webhook` job that the `on_finish` trigger of version 20 inserts never passes through a
-- client, so no process's history recorder saw it: the per-minute `enqueued` missed every
-- callback. The trigger function now also adds one to its minute's `enqueued` for the
-- callback's queue, kind and tenant, in the same transaction as the insert. This is a
-- history write per callback (one per finished job that asked for one), never per ordinary
-- job: the trigger and its WHEN are unchanged, so finishing a job without the option costs
-- what it did. The counters need nothing: the table's statement triggers count the
-- callback's insert like any other.

DO $migration$
DECLARE
    channel text := 'stoker_' || current_schema();
BEGIN
    IF octet_length(channel) > 63 THEN
        channel := NULL;
    END IF;
    EXECUTE format($function$
CREATE OR REPLACE FUNCTION stoker_jobs_on_finish() RETURNS trigger
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
    -- The callback is a new job: count it in its minute's `enqueued`, as an insert through
    -- the client is (the process that finished the job never sees this insert).
    INSERT INTO stoker_history AS h (grain, bucket, queue, kind, tenant, metric, value)
    VALUES ('minute', floor(extract(epoch FROM finished) / 60)::bigint * 60, target,
            'webhook', COALESCE(NEW.tenant, ''), 'enqueued', 1)
    ON CONFLICT (grain, bucket, queue, kind, tenant, metric)
    DO UPDATE SET value = h.value + 1;
    IF channel IS NOT NULL THEN
        PERFORM pg_notify(channel, 'a:' || target);
    END IF;
    RETURN NULL;
END
$body$
$function$, channel);
END
$migration$;
