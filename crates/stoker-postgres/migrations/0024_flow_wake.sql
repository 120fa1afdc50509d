-- Flow control (issue 16): a freed concurrency slot wakes the workers of its job's queue.
--
-- The slot release is the same statement-level trigger as before (migration 13); it now also
-- announces the queues whose jobs gave a slot back, as an insert does ('a:' || queue), so a
-- worker held back by a full concurrency limit claims again at once instead of at its next
-- poll. NOTIFY is sent at commit and folded per transaction, so a batch of finishes sends one
-- per queue. An update with no slot-holding running row returns before any of it.
DO $migration$
DECLARE
    channel text := 'stoker_' || current_schema();
BEGIN
    IF octet_length(channel) > 63 THEN
        channel := NULL;
    END IF;
    EXECUTE format($function$
CREATE OR REPLACE FUNCTION stoker_flow_release() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $body$
DECLARE
    channel text := %L;
    announced bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_rows WHERE state = 'running' AND flow_slots IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM stoker_limit_state s
    WHERE (s.name, s.key) IN (
        SELECT slot ->> 0, slot ->> 1
        FROM old_rows o
        JOIN new_rows nw ON nw.id = o.id AND nw.state <> 'running'
        CROSS JOIN LATERAL jsonb_array_elements(o.flow_slots) AS slot
        WHERE o.state = 'running' AND o.flow_slots IS NOT NULL)
    ORDER BY s.name, s.key
    FOR UPDATE;
    UPDATE stoker_limit_state s SET running = GREATEST(s.running - r.n, 0)
    FROM (
        SELECT slot ->> 0 AS name, slot ->> 1 AS key, count(*) AS n
        FROM old_rows o
        JOIN new_rows nw ON nw.id = o.id AND nw.state <> 'running'
        CROSS JOIN LATERAL jsonb_array_elements(o.flow_slots) AS slot
        WHERE o.state = 'running' AND o.flow_slots IS NOT NULL
        GROUP BY 1, 2
    ) r
    WHERE s.name = r.name AND s.key = r.key;
    SELECT count(pg_notify(channel, 'a:' || q.queue)) INTO announced
    FROM (SELECT DISTINCT o.queue
          FROM old_rows o
          JOIN new_rows nw ON nw.id = o.id AND nw.state <> 'running'
          WHERE o.state = 'running' AND o.flow_slots IS NOT NULL AND channel IS NOT NULL) AS q;
    RETURN NULL;
END
$body$
$function$, channel);
END
$migration$;

-- Fair queuing with many tenants (issue 16): a claim no longer walks every tenant with ready
-- jobs. `ready` marks the tenants known to have jobs in the fair index (set by an insert, or
-- by a claim's bounded discovery walk; cleared by a claim that finds a tenant empty), and a
-- claim reads them in virtual-time order from this index, as few as its places need.
ALTER TABLE stoker_fair_tenants ADD COLUMN ready boolean NOT NULL DEFAULT false;
CREATE INDEX stoker_fair_tenants_ready_idx ON stoker_fair_tenants (queue, vtime, tenant)
    WHERE ready;
