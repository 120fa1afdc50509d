-- Flow control (issue 16): limits, their limiters, and the concurrency slots a running job
-- holds.

-- A limit per name; `spec` is the limit as the API shows it (stoker_core::LimitSpec).
CREATE TABLE stoker_limits (
    name       text        PRIMARY KEY,
    spec       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL
);

-- One row per limiter (limit, key), created by the first claim that needs it. A claim locks
-- the rows it needs in (name, key) order, so claims never deadlock each other, and the
-- conditional admission runs on the latest committed values: N processes never together
-- exceed a limit. `throttled_until` (rate) and `running >= cap` (concurrency) let a claim
-- skip the jobs of full limiters without locking anything.
CREATE TABLE stoker_limit_state (
    name            text        NOT NULL,
    key             text        NOT NULL,
    tat             timestamptz,
    running         bigint      NOT NULL DEFAULT 0,
    throttled_until timestamptz,
    cap             bigint,
    PRIMARY KEY (name, key)
);

-- The concurrency slots a running job holds, as [[name, key], ...], written by a claim that
-- met a limit (and cleared by every other claim).
ALTER TABLE stoker_jobs ADD COLUMN flow_slots jsonb;

-- Every exit from `running` (completion, failure, snooze, hand-back, cancel, rescue, and any
-- state a later version adds) releases the job's slots in the same transaction, whichever
-- statement made it. One statement-level trigger: the update's transition tables exist
-- already for the counts, and an update with no slot-holding running row costs one scan of
-- them. Limiter rows are locked in (name, key) order, as claims lock them.
CREATE FUNCTION stoker_flow_release() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
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
    RETURN NULL;
END
$$;

CREATE TRIGGER stoker_flow_release AFTER UPDATE ON stoker_jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stoker_flow_release();
