-- Stoker's PostgreSQL schema, version 19: batches (issue 18).
--
-- A batch row counts its jobs by outcome. The trigger below moves the counters in the
-- transaction that moves a member into a finished state (or, on a retry, out of one), so a
-- batch's progress is one row's read and never a scan of its jobs; its WHEN is tested as the
-- row is written, so a job outside any batch queues no trigger event. The callback job is
-- inserted with the batch, `blocked` (outside every claim), and the transaction that leaves a
-- closed batch with nothing pending releases it with the counts merged into its args under
-- "batch". `stoker_batch_fire` sets `finished_at` under the batch row's lock and only where it
-- was unset, so the callback is released exactly once, whatever retries follow.

ALTER TABLE stoker_jobs ADD COLUMN batch_id bigint;

-- A batch's jobs (its cancel).
CREATE INDEX stoker_jobs_batch_idx ON stoker_jobs (batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE stoker_batches (
    id           bigserial   PRIMARY KEY,
    name         text        NOT NULL,
    tenant       text,
    callback_id  bigint,
    total        bigint      NOT NULL DEFAULT 0,
    pending      bigint      NOT NULL DEFAULT 0,
    completed    bigint      NOT NULL DEFAULT 0,
    discarded    bigint      NOT NULL DEFAULT 0,
    cancelled    bigint      NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    closed_at    timestamptz,
    finished_at  timestamptz,
    cancelled_at timestamptz
);

-- A tenant's batches, newest first.
CREATE INDEX stoker_batches_tenant_idx ON stoker_batches (tenant, id);

DO $migration$
DECLARE
    channel text := 'stoker_' || current_schema();
BEGIN
    IF octet_length(channel) > 63 THEN
        channel := NULL;
    END IF;
    EXECUTE format($function$
CREATE FUNCTION stoker_batch_fire(batch bigint, at timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $body$
DECLARE
    channel text := %L;
    b stoker_batches%%ROWTYPE;
    announced bigint;
BEGIN
    UPDATE stoker_batches SET finished_at = at
    WHERE id = batch AND closed_at IS NOT NULL AND pending = 0 AND finished_at IS NULL
    RETURNING * INTO b;
    IF NOT FOUND OR b.cancelled_at IS NOT NULL OR b.callback_id IS NULL THEN
        RETURN;
    END IF;
    WITH released AS (
        UPDATE stoker_jobs
        SET state = 'available',
            scheduled = run_at > at,
            args = args || jsonb_build_object('batch', jsonb_build_object(
                'id', b.id, 'total', b.total, 'completed', b.completed,
                'discarded', b.discarded, 'cancelled', b.cancelled))
        WHERE id = b.callback_id AND state = 'blocked'
        RETURNING queue, scheduled
    )
    SELECT count(pg_notify(channel, 'a:' || queue)) INTO announced
    FROM released WHERE NOT scheduled AND channel IS NOT NULL;
END
$body$
$function$, channel);
END
$migration$;

CREATE FUNCTION stoker_jobs_batch_count() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $body$
DECLARE
    was_finished boolean := OLD.state IN ('completed', 'discarded', 'cancelled');
    is_finished boolean := NEW.state IN ('completed', 'discarded', 'cancelled');
    left_pending bigint;
BEGIN
    UPDATE stoker_batches
    SET pending = pending + was_finished::int - is_finished::int,
        completed = completed + (NEW.state = 'completed')::int - (OLD.state = 'completed')::int,
        discarded = discarded + (NEW.state = 'discarded')::int - (OLD.state = 'discarded')::int,
        cancelled = cancelled + (NEW.state = 'cancelled')::int - (OLD.state = 'cancelled')::int
    WHERE id = NEW.batch_id
    RETURNING pending INTO left_pending;
    IF left_pending = 0 THEN
        PERFORM stoker_batch_fire(NEW.batch_id, COALESCE(NEW.finished_at, NEW.run_at));
    END IF;
    RETURN NULL;
END
$body$;

CREATE TRIGGER stoker_jobs_batch_count
AFTER UPDATE OF state ON stoker_jobs
FOR EACH ROW
WHEN (NEW.batch_id IS NOT NULL
      AND OLD.state IS DISTINCT FROM NEW.state
      AND (OLD.state IN ('completed', 'discarded', 'cancelled')
           OR NEW.state IN ('completed', 'discarded', 'cancelled')))
EXECUTE FUNCTION stoker_jobs_batch_count();
