//! Acknowledging attempts in bulk: one statement applies every outcome of a batch, and one
//! more keeps the finished counts.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use stoker_core::{
    ErrorKind, FailureRecord, FinishedJob, JobFinish, JobFinishParams, JobId, JobState, Outcome,
    StoreResult,
};

use crate::connection::Writer;
use crate::error::{db_error, invariant};
use crate::failures;
use crate::row::{from_micros, micros, parse_state, to_json};

/// The batch of finishes in `?2`, a JSON array with one array per finish, encoded by
/// [`encode`], as rows.
macro_rules! finishes {
    () => {
        "(
    SELECT value ->> 0 AS job_id, value ->> 1 AS fence, value ->> 2 AS new_state,
           value ->> 3 AS completed, value ->> 4 AS finished, value ->> 5 AS give_back,
           value ->> 6 AS new_run_at, value ->> 7 AS new_result, value ->> 8 AS error
    FROM json_each(?2)
) AS f"
    };
}

/// A job with a cancel requested ends `cancelled` unless it completed, keeping its attempt
/// and `run_at`.
macro_rules! cancelled {
    () => {
        "cancel_requested_at IS NOT NULL AND NOT f.completed"
    };
}

/// The state a finish leaves its job in.
macro_rules! new_state {
    () => {
        concat!(
            "CASE WHEN ",
            cancelled!(),
            " THEN 'cancelled' ELSE f.new_state END"
        )
    };
}

/// The fence: a finish applies to a job still `running` under the claim it names (its
/// `fence`), whose lease, if any, has not ended by the finish time `?1` (unless `?3`, a
/// rescue); stale finishes are skipped. `+stoker_jobs.state` keeps the planner from scanning
/// the state index: each finish is a primary-key lookup.
macro_rules! fence {
    () => {
        "stoker_jobs.id = f.job_id AND +stoker_jobs.state = 'running' \
         AND stoker_jobs.fence = f.fence \
         AND (stoker_jobs.lease_expires_at IS NULL OR stoker_jobs.lease_expires_at > ?1 OR ?3)"
    };
}

/// Adds the jobs a batch of finishes is about to finish to the finished counts: `?2` holds
/// the finishes (see [`finishes!`]), matched by the same fence as [`apply_finishes!`].
macro_rules! count_finishes {
    () => {
        concat!(
            "INSERT INTO stoker_job_counts (queue, kind, tenant, state, count)
SELECT stoker_jobs.queue, stoker_jobs.kind, COALESCE(stoker_jobs.tenant, ''), ",
            new_state!(),
            " AS state, COUNT(*)
FROM ",
            finishes!(),
            "
JOIN stoker_jobs ON ",
            fence!(),
            "
WHERE ",
            new_state!(),
            " IN ('completed', 'discarded', 'cancelled')
GROUP BY 1, 2, 3, 4
ON CONFLICT (queue, kind, tenant, state) DO UPDATE SET count = count + excluded.count"
        )
    };
}

/// Releases the concurrency slots (issue 16) held by the jobs a batch of finishes is about to
/// move out of `running`: `?2` holds the finishes (see [`finishes!`]), matched by the same
/// fence as [`apply_finishes!`], and every finish leaves `running`. It runs before the change,
/// while the rows are still `running`, in the same transaction.
///
/// A drain without limits pays one probe of the (empty) partial index of limiters with a slot
/// taken: the finishes are read from `?2` only if some limiter has a slot taken (the `CASE`
/// is a constant, evaluated once before the loop; as a `WHERE` term SQLite would test it per
/// finish), else from an empty array (migration 26, which replaced the per-row trigger).
macro_rules! release_slots {
    () => {
        concat!(
            "UPDATE stoker_limit_state SET running = MAX(running - r.n, 0)
FROM (
    SELECT slot.value ->> 0 AS name, slot.value ->> 1 AS key, COUNT(*) AS n
    FROM (
        SELECT value ->> 0 AS job_id, value ->> 1 AS fence
        FROM json_each(CASE WHEN EXISTS (SELECT 1 FROM stoker_limit_state WHERE running > 0)
                            THEN ?2 ELSE '[]' END)
    ) AS f
    JOIN stoker_jobs ON ",
            fence!(),
            "
    JOIN json_each(stoker_jobs.flow_slots) AS slot
    WHERE stoker_jobs.flow_slots IS NOT NULL
    GROUP BY 1, 2
) AS r
WHERE stoker_limit_state.name = r.name AND stoker_limit_state.key = r.key"
        )
    };
}

/// Applies the outcomes in `?2` (see [`finishes!`]) at the finish time `?1` (`?3`: a rescue,
/// which ignores leases); returns each job applied as the finish left it. A job left waiting for a `run_at` after `?1` goes into the schedule. Every outcome
/// ends the attempt's lease.
macro_rules! apply_finishes {
    () => {
        concat!(
            "UPDATE stoker_jobs
SET state = ",
            new_state!(),
            ",
    attempt = CASE WHEN ",
            cancelled!(),
            " THEN attempt ELSE attempt - f.give_back END,
    run_at = CASE WHEN ",
            cancelled!(),
            " THEN run_at ELSE COALESCE(f.new_run_at, run_at) END,
    finished_at = CASE WHEN (",
            cancelled!(),
            ") OR f.finished THEN ?1 ELSE finished_at END,
    result = CASE WHEN f.completed THEN f.new_result ELSE result END,
    errors = CASE WHEN f.error IS NULL THEN errors
                  ELSE json_insert(errors, '$[#]', json(f.error)) END,
    scheduled = CASE WHEN ",
            cancelled!(),
            " THEN 0
                     ELSE f.new_state IN ('available', 'retryable')
                          AND COALESCE(f.new_run_at, run_at) > ?1 END,
    lease_expires_at = NULL
FROM ",
            finishes!(),
            "
WHERE ",
            fence!(),
            "
RETURNING stoker_jobs.id, stoker_jobs.state, stoker_jobs.run_at, stoker_jobs.attempt,
          stoker_jobs.queue, stoker_jobs.kind, stoker_jobs.attempted_at, stoker_jobs.worker_id,
          stoker_jobs.tenant, stoker_jobs.has_dependents OR stoker_jobs.batch_id IS NOT NULL,
          CASE WHEN instr(stoker_jobs.metadata, '\"on_finish\"') > 0
                AND stoker_jobs.state IN ('completed', 'discarded', 'cancelled')
               THEN COALESCE(json_extract(stoker_jobs.metadata, '$.on_finish.queue'), 'default')
          END,
          stoker_jobs.flow_slots IS NOT NULL"
        )
    };
}

/// [`count_finishes!`] alone, for plan tests.
#[cfg(test)]
pub(crate) const COUNT_SQL: &str = count_finishes!();

/// [`release_slots!`] alone, for plan tests.
#[cfg(test)]
pub(crate) const RELEASE_SQL: &str = release_slots!();

/// [`apply_finishes!`] alone, for plan tests.
#[cfg(test)]
pub(crate) const APPLY_SQL: &str = apply_finishes!();

/// A batch of finishes: the count, the release of concurrency slots, then the change, in one
/// transaction that the text itself opens and commits. The caller passes each attempt at most
/// once.
///
/// Counting before the change, from the same fence, is what keeps it a single trip to the
/// database (SQLite cannot read an `UPDATE`'s returned rows in another statement): a
/// transaction opened and committed by the driver costs two more trips, which cut the drain
/// at concurrency 1 and 8 by a third when measured.
pub(crate) const FINISH_SQL: &str = concat!(
    "BEGIN IMMEDIATE;\n",
    count_finishes!(),
    ";\n",
    release_slots!(),
    ";\n",
    apply_finishes!(),
    ";\nCOMMIT"
);

/// A job [`FINISH_SQL`] applied a finish to, as it returns it: id, state, run_at, attempt,
/// queue, kind, attempted_at, worker_id, tenant, has_dependents (true for a batch member too,
/// whose finish may release its batch's callback: issue 18), the queue of the completion
/// callback that the `on_finish` trigger inserted for it, if it did (issue 13: the same
/// substring test as the trigger's WHEN, so a job without the option costs one `instr`), and
/// held_slots (it gave concurrency slots back: issue 16).
pub(crate) type AppliedRow = (
    i64,
    String,
    i64,
    i32,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    bool,
    Option<String>,
    bool,
);

/// What a batch of finishes did: the jobs applied, in input order, and those of them that
/// finished with dependents (issue 18), whose edges the trigger resolved in the same
/// transaction and so may have released blocked jobs.
#[derive(Debug, Default)]
pub(crate) struct Finished {
    pub(crate) jobs: Vec<FinishedJob>,
    pub(crate) parents: Vec<i64>,
    // --- stream history ---
    /// The queues that got a completion callback (issue 13): a trigger inserted it, so the
    /// store announces it to waiting workers itself.
    pub(crate) callbacks: Vec<String>,
    /// The queues of the jobs that gave concurrency slots back (issue 16), whose limited
    /// workers may claim again now.
    pub(crate) freed: Vec<String>,
}

/// Applies `params.finishes` and returns the jobs applied, in input order.
pub(crate) async fn finish_many(
    writer: &Writer,
    params: &JobFinishParams,
) -> StoreResult<Finished> {
    if params.finishes.is_empty() {
        return Ok(Finished::default());
    }
    // One finish per claim, so the count of jobs finishing matches the jobs changed (of two
    // finishes for one claim, the statement would apply either).
    let mut seen = HashSet::with_capacity(params.finishes.len());
    let mut rows = Vec::with_capacity(params.finishes.len());
    for finish in &params.finishes {
        if seen.insert((finish.id, finish.fence)) {
            rows.push(encode(finish)?);
        }
    }
    let failed = failed_attempts(params);
    let applied = if failed.is_empty() {
        run(writer, micros(params.now), to_json(&rows)?, params.rescue).await?
    } else {
        run_failing(writer, params.now, to_json(&rows)?, params.rescue, failed).await?
    };
    let mut applied: HashMap<i64, AppliedRow> =
        applied.into_iter().map(|row| (row.0, row)).collect();
    let mut finished = Vec::with_capacity(applied.len());
    let mut parents = Vec::new();
    let mut callbacks = Vec::new();
    let mut freed: Vec<String> = Vec::new();
    for finish in &params.finishes {
        if let Some((
            id,
            state,
            run_at,
            attempt,
            queue,
            kind,
            attempted_at,
            worker_id,
            tenant,
            has_dependents,
            callback,
            held_slots,
        )) = applied.remove(&finish.id.0)
        {
            let state = parse_state(&state)?;
            callbacks.extend(callback);
            if held_slots && !freed.contains(&queue) {
                freed.push(queue.clone());
            }
            if has_dependents && state.is_finished() {
                parents.push(id);
            }
            finished.push(FinishedJob {
                id: JobId(id),
                state,
                run_at: from_micros("run_at", run_at)?,
                attempt,
                queue,
                kind,
                attempted_at: attempted_at
                    .map(|at| from_micros("attempted_at", at))
                    .transpose()?,
                worker_id,
                tenant,
            });
        }
    }
    Ok(Finished {
        jobs: finished,
        parents,
        callbacks,
        freed,
    })
}

/// Runs [`FINISH_SQL`] on the writer with the finish time `now`, the encoded finishes `rows`
/// and whether this is a rescue; returns the jobs applied. The transaction is never left
/// open: on an error it is rolled back.
pub(crate) async fn run(
    writer: &Writer,
    now: i64,
    rows: String,
    rescue: bool,
) -> StoreResult<Vec<AppliedRow>> {
    let mut conn = writer.acquire().await?;
    // A task of its own, so a caller that gives up mid-way cannot stop the statements between
    // the transaction's begin and its end, leaving it open on the writer connection.
    tokio::spawn(async move {
        let applied = sqlx::query_as::<_, AppliedRow>(FINISH_SQL)
            .bind(now)
            .bind(rows)
            .bind(rescue)
            .fetch_all(&mut *conn)
            .await;
        if applied.is_err() {
            // The statements stop at the first error, which may come after the transaction
            // began. With none open, SQLite refuses the rollback: there is nothing to undo.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        applied
    })
    .await
    .map_err(|error| invariant(format!("acknowledging jobs failed: {error}")))?
    .map_err(db_error)
}

/// [`FINISH_SQL`] without its transaction, for batches with failed attempts: the caller
/// opens the transaction, records the failures' groups after it, then commits.
const FINISH_FAILING_SQL: &str = concat!(
    "BEGIN IMMEDIATE;\n",
    count_finishes!(),
    ";\n",
    release_slots!(),
    ";\n",
    apply_finishes!()
);

/// The failed attempts among the finishes (retries and discards), by job: what their failure
/// groups are made of once the statement says which applied and of what kind.
fn failed_attempts(params: &JobFinishParams) -> HashMap<i64, (ErrorKind, String)> {
    params
        .finishes
        .iter()
        .filter_map(|finish| match &finish.outcome {
            Outcome::Retry { error, .. } | Outcome::Discard { error } => {
                Some((finish.id.0, (error.kind, error.message.clone())))
            }
            _ => None,
        })
        .collect()
}

/// Like [`run`], for a batch with failed attempts: in the same transaction, each applied
/// failure is added to its group and its job marked with the group. Batches of completions
/// never come here, so the drain's one-trip acknowledgement is unchanged.
async fn run_failing(
    writer: &Writer,
    now: DateTime<Utc>,
    rows: String,
    rescue: bool,
    failed: HashMap<i64, (ErrorKind, String)>,
) -> StoreResult<Vec<AppliedRow>> {
    let mut conn = writer.acquire().await?;
    // A task of its own, as in `run`: the transaction must end whatever the caller does.
    tokio::spawn(async move {
        let result = async {
            let applied = sqlx::query_as::<_, AppliedRow>(FINISH_FAILING_SQL)
                .bind(micros(now))
                .bind(rows)
                .bind(rescue)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_error)?;
            let records: Vec<FailureRecord> = applied
                .iter()
                .filter_map(|row| {
                    let (kind, message) = failed.get(&row.0)?;
                    // Its tenant's own group (issue 17).
                    Some(
                        FailureRecord::new(JobId(row.0), &row.5, *kind, message)
                            .of_tenant(row.8.as_deref()),
                    )
                })
                .collect();
            failures::record_failures(&mut conn, &records, now).await?;
            sqlx::query("COMMIT")
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            Ok::<_, stoker_core::StoreError>(applied)
        }
        .await;
        if result.is_err() {
            // With no transaction open, SQLite refuses the rollback: nothing to undo.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        result
    })
    .await
    .map_err(|error| invariant(format!("acknowledging jobs failed: {error}")))?
}

/// One finish as [`FINISH_SQL`] reads it: `[id, fence, state, completed, finished,
/// give_back, run_at, result, error]`, where `result` and `error` are JSON text (or null) and
/// `run_at` is null to keep the job's.
type FinishRow = (
    i64,
    i64,
    &'static str,
    bool,
    bool,
    i32,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn encode(finish: &JobFinish) -> StoreResult<FinishRow> {
    let (state, run_at, result, error) = match &finish.outcome {
        Outcome::Completed { result } => (JobState::Completed, None, result.as_ref(), None),
        Outcome::Retry { error, run_at } => (JobState::Retryable, Some(*run_at), None, Some(error)),
        Outcome::Discard { error } => (JobState::Discarded, None, None, Some(error)),
        Outcome::Snooze { run_at } => (JobState::Available, Some(*run_at), None, None),
        Outcome::Cancel { error } => (JobState::Cancelled, None, None, error.as_ref()),
        Outcome::HandBack => (JobState::Available, None, None, None),
        // `Outcome` is non-exhaustive: a new outcome must be taught to this store first.
        other => {
            return Err(invariant(format!(
                "outcome {other:?} is not supported by the SQLite store"
            )))
        }
    };
    Ok((
        finish.id.0,
        finish.fence,
        state.as_str(),
        state == JobState::Completed,
        state.is_finished(),
        // Snooze and hand back return the job unrun: the attempt is given back.
        i32::from(state == JobState::Available),
        run_at.map(micros),
        result.map(to_json).transpose()?,
        error.map(to_json).transpose()?,
    ))
}
