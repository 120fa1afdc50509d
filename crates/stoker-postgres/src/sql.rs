//! Every runtime statement, built once per store for its schema.
//!
//! sqlx caches prepared statements by SQL text, so building the strings once (rather than per
//! call) lets every connection prepare each statement once. Every table is qualified with the
//! quoted schema: `job_insert_many_tx` runs on the caller's connection, whose `search_path` is
//! theirs.

use stoker_core::JobState;

use crate::row::job_columns;

/// The finished states, as a SQL list.
const FINISHED: &str = "('completed', 'discarded', 'cancelled')";

/// Skips an insert whose (tenant, key) pair is taken, with the unique index as arbiter.
const ON_KEY_CONFLICT: &str = " ON CONFLICT ((COALESCE(tenant, '')), unique_key) \
                               WHERE unique_key IS NOT NULL DO NOTHING";

/// The statements of one store.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) job_insert: String,
    pub(crate) job_insert_keyless: String,
    pub(crate) job_insert_one: String,
    pub(crate) job_insert_one_keyed: String,
    pub(crate) job_insert_resolve: String,
    pub(crate) job_claim: String,
    pub(crate) job_claim_kinds: String,
    pub(crate) job_finish: String,
    pub(crate) job_finish_async: String,
    pub(crate) job_cancel: String,
    pub(crate) job_get: String,
    pub(crate) job_delete: String,
    pub(crate) job_progress: String,
    pub(crate) job_prune: String,
    pub(crate) job_retry: String,
    pub(crate) job_retry_many: String,
    pub(crate) job_stage: String,
    pub(crate) job_extend_lease: String,
    pub(crate) job_list: String,
    pub(crate) job_list_states: String,
    pub(crate) job_list_stuck: String,
    pub(crate) job_stats: String,
    pub(crate) job_counts_fold: String,
    pub(crate) job_prune_queue_age: String,
    pub(crate) job_prune_queue_keep: String,
    pub(crate) queue_pause: String,
    pub(crate) queue_resume: String,
    pub(crate) queue_list: String,
    pub(crate) worker_heartbeat: String,
    pub(crate) worker_list: String,
    pub(crate) worker_prune: String,
    pub(crate) worker_remove: String,
    pub(crate) leader_elect: String,
    pub(crate) leader_resign: String,
    pub(crate) leader_get: String,
    pub(crate) migrations_applied: String,
    pub(crate) notify: String,
}

impl Sql {
    /// The statements for tables in `schema` (already validated, so quoting cannot fail),
    /// notifying on `channel`.
    pub(crate) fn new(schema: &str, channel: &str) -> Sql {
        let s = format!("\"{schema}\"");
        let jobs = format!("{s}.stoker_jobs");
        let queues = format!("{s}.stoker_queues");
        let workers = format!("{s}.stoker_workers");
        let leader = format!("{s}.stoker_leader");
        let counts = format!("{s}.stoker_job_counts");
        let deltas = format!("{s}.stoker_job_count_deltas");
        let cols = job_columns(None);
        let j_cols = job_columns(Some("j"));
        let notify_available = format!("pg_notify('{channel}', 'a:' || queue)");
        // --- stream wf ---
        // The prune spares the jobs a workflow still needs (issue 18): any job of a workflow
        // with an unfinished job, and any job with an unfinished dependent. Ordinary jobs pass
        // on two column tests. `t` names the candidate row's table (or alias). `OFFSET 0`
        // keeps each EXISTS a probe per candidate (through the workflow index and the edges'
        // key): without it the planner may hash the subquery, reading every unfinished job.
        let deps = format!("{s}.stoker_deps");
        let needed_of = |t: &str| {
            format!(
                "({t}.workflow_id IS NULL OR NOT EXISTS ( \
                     SELECT 1 FROM {jobs} w WHERE w.workflow_id = {t}.workflow_id \
                       AND w.state NOT IN {FINISHED} OFFSET 0)) \
                 AND (NOT {t}.has_dependents OR NOT EXISTS ( \
                     SELECT 1 FROM {deps} d JOIN {jobs} c ON c.id = d.child_id \
                     WHERE d.parent_id = {t}.id AND c.state NOT IN {FINISHED} OFFSET 0))"
            )
        };
        let needed = needed_of("stoker_jobs");
        let needed_j = needed_of("j");

        // The claim: lock due rows in fetch order, skipping rows other claimers hold, and mark
        // them running in the same statement, with their lease ending at $5 (null for no
        // lease). `{kinds}` is empty or a kind filter.
        //
        // The ids come from an ARRAY() sub-select (an InitPlan), not a join, so the update
        // fetches its rows by primary key even under a generic plan: a generic plan cannot see
        // LIMIT $4 and would otherwise hash-join against a sequential scan of the table.
        let claim = |kinds: &str| {
            format!(
                "UPDATE {jobs} j \
                 SET state = 'running', attempt = j.attempt + 1, fence = j.fence + 1, \
                     attempted_at = $1, worker_id = $2, lease_expires_at = $5, flow_slots = NULL \
                 WHERE j.id = ANY(ARRAY( \
                     SELECT id FROM {jobs} \
                     WHERE state IN ('available', 'retryable') AND NOT scheduled \
                       AND queue = $3 AND run_at <= $1{kinds} \
                       AND NOT EXISTS (SELECT 1 FROM {queues} WHERE name = $3 AND paused) \
                     ORDER BY priority DESC, run_at, id \
                     LIMIT $4 \
                     FOR UPDATE SKIP LOCKED \
                 )) \
                 RETURNING {j_cols}"
            )
        };
        let insert_one = |conflict: &str| {
            format!(
                "WITH ins AS ( \
                     INSERT INTO {jobs} (kind, queue, args, priority, max_attempts, run_at, \
                                         unique_key, tenant, metadata, timeout_ms, backoff, \
                                         created_at, scheduled) \
                     VALUES (($1::text[])[1], ($2::text[])[1], ($3::jsonb[])[1], \
                             ($4::int2[])[1], ($5::int4[])[1], ($6::timestamptz[])[1], \
                             ($7::text[])[1], ($8::text[])[1], ($9::jsonb[])[1], \
                             ($10::int8[])[1], ($13::jsonb[])[1], $11::timestamptz, \
                             ($6::timestamptz[])[1] > $11::timestamptz){conflict} \
                     RETURNING id, queue, scheduled \
                 ), notified AS ( \
                     SELECT {notify_available} FROM ins \
                     WHERE queue = ANY($12::text[]) AND NOT scheduled \
                 ) \
                 SELECT id, (SELECT count(*) FROM notified) AS notified FROM ins"
            )
        };
        // Lists newest first. Without a state filter it walks the primary key backwards. With
        // one, it has one branch per state, each with the state as a constant (so the planner
        // knows how rare it is, even in a generic plan) and switched on or off by a one-time
        // filter, merged by id: listing a rare state (the dead letters) walks the (state, id)
        // index instead of wading through millions of completed rows. The cursor is an index
        // condition, so deep pages cost no more than the first.
        let list_filters = "($2::text[] IS NULL OR kind = ANY($2)) \
                            AND ($3::text[] IS NULL OR queue = ANY($3)) \
                            AND ($4::text IS NULL OR tenant = $4) \
                            AND id < COALESCE($5::int8, 9223372036854775807)";
        let list_states = JobState::ALL
            .iter()
            .map(|state| {
                format!(
                    "(SELECT {cols} FROM {jobs} \
                      WHERE '{state}' = ANY($1::text[]) AND state = '{state}' AND {list_filters} \
                      ORDER BY id DESC LIMIT $6)"
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");

        // One statement per batch. `c` in the comments below is "a cancel was requested
        // and the outcome is not Completed", which ends the job cancelled whatever the
        // outcome said. `u.state` is the outcome's own target state. `{commit}` is empty or
        // the join that makes the commit asynchronous (`job_finish_async`).
        let finish = |commit: &str| {
            format!(
                "UPDATE {jobs} j SET \
                         state = CASE WHEN j.cancel_requested_at IS NOT NULL AND u.state <> 'completed' \
                                      THEN 'cancelled' ELSE u.state END, \
                         attempt = CASE WHEN u.state = 'available' AND j.cancel_requested_at IS NULL \
                                        THEN j.attempt - 1 ELSE j.attempt END, \
                         run_at = CASE WHEN j.cancel_requested_at IS NOT NULL AND u.state <> 'completed' \
                                       THEN j.run_at ELSE COALESCE(u.run_at, j.run_at) END, \
                         result = CASE WHEN u.state = 'completed' THEN u.result ELSE j.result END, \
                         errors = CASE WHEN u.error IS NULL THEN j.errors \
                                       ELSE j.errors || jsonb_build_array(u.error) END, \
                         finished_at = CASE WHEN u.state IN {FINISHED} \
                                              OR (j.cancel_requested_at IS NOT NULL AND u.state <> 'completed') \
                                            THEN $7 ELSE j.finished_at END, \
                         scheduled = CASE WHEN j.cancel_requested_at IS NOT NULL AND u.state <> 'completed' \
                                          THEN false \
                                          ELSE u.state IN ('available', 'retryable') \
                                               AND COALESCE(u.run_at, j.run_at) > $7 END, \
                         lease_expires_at = NULL \
                     FROM unnest($1::int8[], $2::int8[], $3::text[], $4::jsonb[], $5::timestamptz[], \
                                 $6::jsonb[]) AS u(id, fence, state, result, run_at, error){commit} \
                     WHERE j.id = u.id AND j.state = 'running' AND j.fence = u.fence \
                       AND (j.lease_expires_at IS NULL OR j.lease_expires_at > $7 OR $8) \
                     RETURNING j.id, j.state, j.run_at, j.attempt, j.queue, j.kind, j.attempted_at, \
                               j.worker_id, j.tenant"
            )
        };

        Sql {
            // One statement for the whole batch. `input` draws each job's id up front, so every
            // job's id is known in input order with no reliance on RETURNING order. Jobs without
            // a key go through a plain insert; `keyed` skips key conflicts (waiting for a
            // concurrent inserter of the same key to commit or roll back). An `ON CONFLICT`
            // insert is a speculative one, which costs every row an extra step and WAL record,
            // so keyless jobs stay out of it. `notified` sends the leading-edge notification
            // for the queues the coalescer picked, if they got new rows. The result is one
            // row: every input job's id in input order, and the ids inserted (null if none);
            // the caller looks up the jobs duplicates matched with a second statement, run only
            // when there are duplicates. A row per job would cost the server and the client
            // more than the insert's own work. There are no joins: sqlx prepares the statement
            // once per connection and PostgreSQL soon caches a generic plan, made for a guessed
            // batch of 10 rows and often a new, nearly empty table, and joins in it took
            // strategies the real sizes punish (a duplicate lookup hashing the whole table on
            // every insert, which slowed one-at-a-time inserts from 900/s to 200/s over the
            // first 20,000 jobs; a nested loop over the inserted rows, quadratic in a bulk
            // insert).
            job_insert: {
                let insert = |filter: &str, conflict: &str| {
                    format!(
                        "INSERT INTO {jobs} (id, kind, queue, args, priority, max_attempts, \
                                             run_at, unique_key, tenant, metadata, timeout_ms, \
                                             backoff, created_at, scheduled) \
                         SELECT id, kind, queue, args, priority, max_attempts, run_at, \
                                unique_key, tenant, metadata, timeout_ms, backoff, $11, \
                                run_at > $11 \
                         FROM input WHERE {filter} ORDER BY ord{conflict} \
                         RETURNING id, queue, scheduled"
                    )
                };
                let plain = insert("unique_key IS NULL", "");
                let keyed = insert("unique_key IS NOT NULL", ON_KEY_CONFLICT);
                format!(
                    "WITH input AS ( \
                         SELECT nextval('{s}.stoker_jobs_id_seq') AS id, u.* \
                         FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int2[], \
                                     $5::int4[], $6::timestamptz[], $7::text[], $8::text[], \
                                     $9::jsonb[], $10::int8[], $13::jsonb[]) \
                              WITH ORDINALITY AS u(kind, queue, args, priority, max_attempts, \
                                                   run_at, unique_key, tenant, metadata, \
                                                   timeout_ms, backoff, ord) \
                     ), plain AS ({plain}), keyed AS ({keyed}), \
                     ins AS (SELECT * FROM plain UNION ALL SELECT * FROM keyed), \
                     notified AS ( \
                         SELECT {notify_available} \
                         FROM (SELECT DISTINCT queue FROM ins \
                               WHERE queue = ANY($12::text[]) AND NOT scheduled) q \
                     ) \
                     SELECT (SELECT array_agg(id ORDER BY ord) FROM input) AS ids, \
                            (SELECT array_agg(id) FROM ins) AS inserted, \
                            (SELECT count(*) FROM notified) AS notified"
                )
            },
            // `job_insert` for a batch in which no job has a key, the common bulk insert:
            // with no duplicates to tell apart, the ids need not be drawn up front, and the
            // input goes straight from the arrays into the table. Measured as server CPU time
            // per 10,000 jobs, the batch statement's `input` CTE (materialized, then scanned
            // once for each insert and once for the ids) and the empty keyed insert cost a
            // tenth more than this. The column default draws each id as the insert reads the
            // sorted input, so the ids ascend in input order: the caller sorts the returned
            // ids to put them back in it. Returns one row: the ids and the notification count.
            job_insert_keyless: format!(
                "WITH ins AS ( \
                     INSERT INTO {jobs} (kind, queue, args, priority, max_attempts, run_at, \
                                         unique_key, tenant, metadata, timeout_ms, backoff, \
                                         created_at, scheduled) \
                     SELECT kind, queue, args, priority, max_attempts, run_at, unique_key, \
                            tenant, metadata, timeout_ms, backoff, $11, run_at > $11 \
                     FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int2[], $5::int4[], \
                                 $6::timestamptz[], $7::text[], $8::text[], $9::jsonb[], \
                                 $10::int8[], $13::jsonb[]) \
                          WITH ORDINALITY AS u(kind, queue, args, priority, max_attempts, \
                                               run_at, unique_key, tenant, metadata, \
                                               timeout_ms, backoff, ord) \
                     ORDER BY ord \
                     RETURNING id, queue, scheduled \
                 ), notified AS ( \
                     SELECT {notify_available} \
                     FROM (SELECT DISTINCT queue FROM ins \
                           WHERE queue = ANY($12::text[]) AND NOT scheduled) q \
                 ) \
                 SELECT (SELECT array_agg(id) FROM ins) AS ids, \
                        (SELECT count(*) FROM notified) AS notified"
            ),
            // `job_insert` for a batch of one job without a key: a single-row insert is
            // most of what enqueuing one job at a time costs, and the batch statement's CTEs,
            // sort and aggregates cost it a fifth more server time (counted with callgrind).
            // The parameters are the batch statement's, one element each; the id comes from the
            // column's default. Returns the id (one row).
            job_insert_one: insert_one(""),
            // The same for a job with a key: no row when the key is taken.
            job_insert_one_keyed: insert_one(ON_KEY_CONFLICT),
            // The jobs holding the given (tenant or '', key) pairs: one unique-index lookup
            // per pair, as a sub-select rather than a join for the reason given above.
            job_insert_resolve: format!(
                "SELECT r.id, r.tenant, r.unique_key FROM ( \
                     SELECT (SELECT j.id FROM {jobs} j \
                             WHERE j.unique_key IS NOT NULL \
                               AND COALESCE(j.tenant, '') = k.tenant \
                               AND j.unique_key = k.unique_key) AS id, \
                            k.tenant, k.unique_key \
                     FROM unnest($1::text[], $2::text[]) AS k(tenant, unique_key) \
                 ) r \
                 WHERE r.id IS NOT NULL"
            ),
            job_claim: claim(""),
            job_claim_kinds: claim(" AND kind = ANY($6)"),
            job_finish: finish(""),
            // --- stream perf ---
            // The same, committed without waiting for the WAL flush (the builder's
            // `async_ack_commit`): `set_config(..., true)` lasts until the end of the
            // statement's own transaction, so it changes that commit only. A database crash can
            // then forget an acknowledgement, and the job runs again, as after a worker crash;
            // nothing committed before it is lost.
            job_finish_async: finish(
                " CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit",
            ),
            // Cancels a waiting job, or flags a running one and tells its worker. Finished jobs
            // (and missing ones) match nothing; the caller then reads the row afresh.
            job_cancel: format!(
                "WITH upd AS ( \
                     UPDATE {jobs} SET \
                         state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END, \
                         finished_at = CASE WHEN state = 'running' THEN finished_at ELSE $2 END, \
                         scheduled = false, \
                         cancel_requested_at = CASE WHEN state = 'running' \
                                                    THEN COALESCE(cancel_requested_at, $2) \
                                                    ELSE cancel_requested_at END \
                     WHERE id = $1 AND state IN ('blocked', 'available', 'retryable', 'running') \
                     RETURNING {cols} \
                 ), notified AS ( \
                     SELECT pg_notify('{channel}', 'c:' || id) FROM upd WHERE state = 'running' \
                 ) \
                 SELECT upd.*, (SELECT count(*) FROM notified) AS notified FROM upd"
            ),
            job_get: format!("SELECT {cols} FROM {jobs} WHERE id = $1"),
            // --- stream workflows ---
            // A job others wait for, an unfinished batch member and an unfired batch
            // callback are kept (issue 18): the caller reads why and refuses.
            job_delete: format!(
                "DELETE FROM {jobs} WHERE id = $1 AND state <> 'running' \
                 AND NOT (batch_id IS NOT NULL \
                          AND state IN ('blocked', 'available', 'retryable')) \
                 AND NOT (has_dependents AND EXISTS ( \
                     SELECT 1 FROM {deps} AS d JOIN {jobs} AS c ON c.id = d.child_id \
                     WHERE d.parent_id = $1 AND NOT d.resolved AND c.state = 'blocked')) \
                 AND NOT (state = 'blocked' AND EXISTS ( \
                     SELECT 1 FROM {s}.stoker_batches WHERE callback_id = $1)) \
                 RETURNING {cols}"
            ),
            // Fenced like a finish, lease included.
            job_progress: format!(
                "UPDATE {jobs} SET progress = $3 \
                 WHERE id = $1 AND state = 'running' AND fence = $2 \
                   AND (lease_expires_at IS NULL OR lease_expires_at > $4)"
            ),
            // Age rules and the keep-last rule in one delete of at most $5 rows. Each rule is a
            // branch gated by a one-time "is this rule on" filter, so rules that are off cost
            // nothing even under a generic plan. The keep-last branch only visits queues whose
            // finished count (from the counters) exceeds the limit, and there keeps a bounded
            // top-N sort rather than ranking every finished row.
            job_prune: format!(
                "DELETE FROM {jobs} WHERE id IN ( \
                     SELECT id FROM ( \
                         SELECT id FROM {jobs} \
                         WHERE $1::timestamptz IS NOT NULL AND state = 'completed' \
                           AND finished_at < $1 AND {needed} \
                         UNION ALL \
                         SELECT id FROM {jobs} \
                         WHERE $2::timestamptz IS NOT NULL AND state = 'cancelled' \
                           AND finished_at < $2 AND {needed} \
                         UNION ALL \
                         SELECT id FROM {jobs} \
                         WHERE $3::timestamptz IS NOT NULL AND state = 'discarded' \
                           AND finished_at < $3 AND {needed} \
                         UNION ALL \
                         SELECT kept.id FROM ( \
                             SELECT queue FROM ( \
                                 SELECT queue, state, count FROM {counts} \
                                 UNION ALL \
                                 SELECT queue, state, delta FROM {deltas} \
                             ) c \
                             WHERE $4::int8 IS NOT NULL AND state IN {FINISHED} \
                             GROUP BY queue HAVING sum(count) > $4 \
                         ) over_limit \
                         CROSS JOIN LATERAL ( \
                             SELECT id FROM {jobs} \
                             WHERE queue = over_limit.queue AND state IN {FINISHED} AND {needed} \
                             ORDER BY finished_at DESC, id DESC \
                             OFFSET $4 LIMIT $5 \
                         ) kept \
                     ) doomed \
                     LIMIT $5 \
                 ) AND state IN {FINISHED}"
            ),
            job_retry: format!(
                "WITH upd AS ( \
                     UPDATE {jobs} SET \
                         state = 'available', run_at = $2, finished_at = NULL, \
                         cancel_requested_at = NULL, lease_expires_at = NULL, scheduled = false, \
                         max_attempts = GREATEST(max_attempts, attempt + 1) \
                     WHERE id = $1 AND state NOT IN ('running', 'blocked') \
                     RETURNING {cols} \
                 ), notified AS ( \
                     SELECT {notify_available} FROM upd \
                 ) \
                 SELECT upd.*, (SELECT count(*) FROM notified) AS notified FROM upd"
            ),
            // Up to $5 finished jobs in the states $1 (checked to be finished ones by the
            // caller), filtered like a list, oldest first, each retried as `job_retry` does one,
            // with one notification per queue that got jobs back. Rows another statement holds
            // (a concurrent bulk retry, a prune) are skipped rather than waited for.
            // Takes up to $2 due jobs out of the schedule, earliest first, through the schedule
            // index (which holds nothing else), with one notification per queue that got jobs.
            // Rows a claim or a finish holds are skipped: the next pass takes them. ARRAY()
            // keeps the update on primary-key lookups under a generic plan, as in the claim.
            job_stage: format!(
                "WITH upd AS ( \
                     UPDATE {jobs} SET scheduled = false \
                     WHERE id = ANY(ARRAY( \
                         SELECT id FROM {jobs} \
                         WHERE scheduled AND run_at <= $1 \
                         ORDER BY run_at, id \
                         LIMIT $2 \
                         FOR UPDATE SKIP LOCKED \
                     )) AND scheduled \
                     RETURNING queue \
                 ), notified AS ( \
                     SELECT {notify_available} FROM (SELECT DISTINCT queue FROM upd) q \
                 ) \
                 SELECT (SELECT count(*) FROM upd) AS staged, \
                        (SELECT count(*) FROM notified) AS notified"
            ),
            job_retry_many: format!(
                "WITH upd AS ( \
                     UPDATE {jobs} SET \
                         state = 'available', run_at = $6, finished_at = NULL, \
                         cancel_requested_at = NULL, lease_expires_at = NULL, scheduled = false, \
                         max_attempts = GREATEST(max_attempts, attempt + 1) \
                     WHERE id IN ( \
                         SELECT id FROM {jobs} \
                         WHERE state = ANY($1::text[]) \
                           AND ($2::text[] IS NULL OR queue = ANY($2)) \
                           AND ($3::text[] IS NULL OR kind = ANY($3)) \
                           AND ($4::text IS NULL OR tenant = $4) \
                         ORDER BY id \
                         LIMIT $5 \
                         FOR UPDATE SKIP LOCKED \
                     ) \
                     RETURNING id, queue, kind, tenant, attempt, metadata ->> 'correlation_id' AS corr \
                 ), notified AS ( \
                     SELECT {notify_available} FROM (SELECT DISTINCT queue FROM upd) q \
                 ) \
                 SELECT id, queue, kind, tenant, attempt, corr, \
                        (SELECT count(*) FROM notified) AS notified \
                 FROM upd ORDER BY id"
            ),
            // Fenced like a finish, and never reviving a lapsed lease; a HOT update (the
            // column is in no index).
            job_extend_lease: format!(
                "UPDATE {jobs} SET lease_expires_at = $3 \
                 WHERE id = $1 AND state = 'running' AND fence = $2 \
                   AND (lease_expires_at IS NULL OR lease_expires_at > $4) \
                 RETURNING lease_expires_at, cancel_requested_at IS NOT NULL AS cancel_requested, \
                           worker_id"
            ),
            job_list: format!(
                "SELECT {cols} FROM {jobs} \
                 WHERE {list_filters} \
                 ORDER BY id DESC \
                 LIMIT $6"
            ),
            job_list_states: format!(
                "SELECT * FROM ({list_states}) listed ORDER BY id DESC LIMIT $6"
            ),
            // A leased job is stuck once its lease ends ($2), whatever its worker's row says (a
            // pull worker has none); a job without a lease once its worker's row is gone or its
            // heartbeat older than $1. Reads the running rows through the `(state, id)` index.
            job_list_stuck: format!(
                "SELECT {j_cols} FROM {jobs} j \
                 LEFT JOIN {workers} w ON w.id = j.worker_id \
                 WHERE j.state = 'running' \
                   AND (j.lease_expires_at <= $2 \
                        OR (j.lease_expires_at IS NULL \
                            AND (w.id IS NULL OR w.heartbeat_at < $1))) \
                 ORDER BY j.attempted_at, j.id \
                 LIMIT $3"
            ),
            // The counters and the deltas not yet folded, in one snapshot (migration 10): exact
            // whether or not a fold ran. `scheduled` is a key of its own there, returned as a
            // share of `available`; `active` holds due available and running jobs together
            // (so a claim writes no delta), split here by counting the running rows through
            // the `(state, id)` index: never more than the cluster's concurrency. Retryable jobs
            // in the schedule have a key of their own (migration 21), summed into `retryable`.
            job_stats: format!(
                "WITH running AS ( \
                     SELECT queue, kind, COALESCE(tenant, '') AS tenant, count(*) AS n \
                     FROM {jobs} WHERE state = 'running' GROUP BY 1, 2, 3 \
                 ) \
                 SELECT queue, kind, NULLIF(tenant, '') AS tenant, \
                        CASE WHEN state IN ('scheduled', 'active') THEN 'available' \
                             WHEN state = 'retryable_scheduled' THEN 'retryable' \
                             ELSE state END AS state, \
                        sum(count)::int8 AS count, \
                        sum(count) FILTER (WHERE state = 'scheduled')::int8 AS scheduled \
                 FROM ( \
                     SELECT queue, kind, tenant, state, count FROM {counts} \
                     UNION ALL \
                     SELECT queue, kind, tenant, state, delta FROM {deltas} \
                     UNION ALL \
                     SELECT queue, kind, tenant, 'active', -n FROM running \
                     UNION ALL \
                     SELECT queue, kind, tenant, 'running', n FROM running \
                 ) c \
                 GROUP BY 1, 2, 3, 4 \
                 HAVING sum(count) > 0 \
                 ORDER BY 1, 2, 3 NULLS FIRST, 4"
            ),
            job_counts_fold: format!("SELECT {s}.stoker_job_counts_fold($1)"),
            // Per-queue retention (migration 10): at most $4 of queue $1's jobs in finished
            // state $2 that finished before $3, oldest first, through the finished index (the
            // literal state list lets a generic plan use the partial index).
            job_prune_queue_age: format!(
                "DELETE FROM {jobs} WHERE id = ANY(ARRAY( \
                     SELECT id FROM {jobs} \
                     WHERE queue = $1 AND state = $2 AND state IN {FINISHED} \
                       AND finished_at < $3 AND {needed} \
                     ORDER BY finished_at, id \
                     LIMIT $4)) \
                 AND state IN {FINISHED}"
            ),
            // At most $4 of queue $1's jobs in finished state $2 beyond the newest $3, oldest
            // first: the cutoff is the index entry $3 steps back from the newest.
            job_prune_queue_keep: format!(
                "DELETE FROM {jobs} WHERE id = ANY(ARRAY( \
                     SELECT j.id FROM {jobs} j, ( \
                         SELECT finished_at, id FROM {jobs} \
                         WHERE queue = $1 AND state = $2 AND state IN {FINISHED} \
                         ORDER BY finished_at DESC, id DESC \
                         OFFSET $3 LIMIT 1 \
                     ) cut \
                     WHERE j.queue = $1 AND j.state = $2 AND j.state IN {FINISHED} \
                       AND (j.finished_at, j.id) <= (cut.finished_at, cut.id) AND {needed_j} \
                     ORDER BY j.finished_at, j.id \
                     LIMIT $4)) \
                 AND state IN {FINISHED}"
            ),
            queue_pause: format!(
                "INSERT INTO {queues} AS q (name, paused, updated_at) VALUES ($1, true, $2) \
                 ON CONFLICT (name) DO UPDATE SET paused = true, updated_at = $2 \
                 WHERE NOT q.paused"
            ),
            queue_resume: format!(
                "WITH upsert AS ( \
                     INSERT INTO {queues} AS q (name, paused, updated_at) VALUES ($1, false, $2) \
                     ON CONFLICT (name) DO UPDATE SET paused = false, updated_at = $2 \
                     WHERE q.paused \
                 ) \
                 SELECT pg_notify('{channel}', 'a:' || $1)"
            ),
            queue_list: format!("SELECT name, paused, updated_at FROM {queues} ORDER BY name"),
            // The heartbeat, the cancel check, the poll of every queue and a look at the leader's
            // seat in one round trip: the only statement an idle follower sends. The poll is a
            // LATERAL ... LIMIT 1 in fetch order, not an EXISTS: the planner drops an EXISTS's
            // LIMIT and may answer it with a bitmap scan of the queue's whole index range
            // (31 ms with 500k scheduled jobs, against 0.1 ms walking the index to the first
            // due job). With no running jobs the cancel check
            // is an empty `= ANY('{{}}')`; each queue costs one probe of the fetch index.
            worker_heartbeat: format!(
                "WITH beat AS ( \
                     INSERT INTO {workers} AS w (id, host, pid, queues, concurrency, started_at, \
                                                 heartbeat_at, jobs_done, jobs_failed, details) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11) \
                     ON CONFLICT (id) DO UPDATE SET \
                         host = EXCLUDED.host, pid = EXCLUDED.pid, queues = EXCLUDED.queues, \
                         concurrency = EXCLUDED.concurrency, started_at = EXCLUDED.started_at, \
                         heartbeat_at = EXCLUDED.heartbeat_at, \
                         jobs_done = w.jobs_done + EXCLUDED.jobs_done, \
                         jobs_failed = w.jobs_failed + EXCLUDED.jobs_failed, \
                         details = EXCLUDED.details \
                 ) \
                 SELECT 'cancel' AS what, id, NULL::text AS queue FROM {jobs} \
                 WHERE id = ANY($10::int8[]) AND state = 'running' \
                   AND cancel_requested_at IS NOT NULL \
                 UNION ALL \
                 SELECT 'due', NULL::int8, q.name FROM unnest($4::text[]) AS q(name) \
                 CROSS JOIN LATERAL (SELECT 1 FROM {jobs} j \
                     WHERE j.queue = q.name AND j.state IN ('available', 'retryable') \
                       AND NOT j.scheduled AND j.run_at <= $7 \
                     ORDER BY j.priority DESC, j.run_at, j.id LIMIT 1) due \
                 WHERE NOT EXISTS (SELECT 1 FROM {queues} p WHERE p.name = q.name AND p.paused) \
                 UNION ALL \
                 SELECT 'vacant', NULL::int8, NULL::text \
                 WHERE NOT EXISTS (SELECT 1 FROM {leader} WHERE name = 'default' AND expires_at > $7) \
                 ORDER BY 1, 2, 3"
            ),
            worker_list: format!(
                "SELECT id, host, pid, queues, concurrency, started_at, heartbeat_at, jobs_done, \
                        jobs_failed, details \
                 FROM {workers} ORDER BY id"
            ),
            worker_prune: format!("DELETE FROM {workers} WHERE heartbeat_at < $1"),
            worker_remove: format!("DELETE FROM {workers} WHERE id = $1"),
            // Take the lease if it is free or expired, or renew our own; a renewal keeps the
            // term's start unless the term had lapsed.
            leader_elect: format!(
                "INSERT INTO {leader} AS l (name, leader_id, elected_at, expires_at) \
                 VALUES ('default', $1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET \
                     leader_id = EXCLUDED.leader_id, \
                     elected_at = CASE WHEN l.leader_id = EXCLUDED.leader_id \
                                        AND l.expires_at > EXCLUDED.elected_at \
                                       THEN l.elected_at ELSE EXCLUDED.elected_at END, \
                     expires_at = EXCLUDED.expires_at \
                 WHERE l.expires_at <= EXCLUDED.elected_at OR l.leader_id = EXCLUDED.leader_id \
                 RETURNING leader_id"
            ),
            leader_resign: format!(
                "DELETE FROM {leader} WHERE name = 'default' AND leader_id = $1"
            ),
            leader_get: format!(
                "SELECT leader_id, elected_at, expires_at FROM {leader} \
                 WHERE name = 'default' AND expires_at > $1"
            ),
            migrations_applied: format!("SELECT version FROM {s}.stoker_migrations"),
            notify: format!("SELECT pg_notify('{channel}', $1)"),
        }
    }
}
