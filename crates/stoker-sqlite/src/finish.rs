//! Acknowledging attempts in bulk: one statement applies every outcome of a batch.

use std::collections::HashSet;

use sqlx::SqlitePool;
use stoker_core::{JobFinish, JobFinishParams, JobId, JobState, Outcome, StoreResult};

use crate::error::{db_error, invariant};
use crate::row::{micros, to_json};

/// Applies outcomes: `?1` is the finish time, `?2` a JSON array with one array per finish,
/// encoded by [`push_finish`]. The fence (`running` with the claimed attempt) skips stale
/// finishes. A job with a cancel requested ends `cancelled` unless it completed, keeping its
/// attempt and `run_at`. A job left waiting for a `run_at` after `?1` goes into the schedule.
/// Every outcome ends the attempt's lease. `+stoker_jobs.state` keeps
/// the planner from scanning the state index: each finish is a primary-key lookup.
pub(crate) const FINISH_SQL: &str = "
UPDATE stoker_jobs
SET state = CASE WHEN cancel_requested_at IS NOT NULL AND NOT f.completed
                 THEN 'cancelled' ELSE f.new_state END,
    attempt = CASE WHEN cancel_requested_at IS NOT NULL AND NOT f.completed
                   THEN attempt ELSE attempt - f.give_back END,
    run_at = CASE WHEN cancel_requested_at IS NOT NULL AND NOT f.completed
                  THEN run_at ELSE COALESCE(f.new_run_at, run_at) END,
    finished_at = CASE WHEN (cancel_requested_at IS NOT NULL AND NOT f.completed) OR f.finished
                       THEN ?1 ELSE finished_at END,
    result = CASE WHEN f.completed THEN f.new_result ELSE result END,
    errors = CASE WHEN f.error IS NULL THEN errors
                  ELSE json_insert(errors, '$[#]', json(f.error)) END,
    scheduled = CASE WHEN cancel_requested_at IS NOT NULL AND NOT f.completed THEN 0
                     ELSE f.new_state IN ('available', 'retryable')
                          AND COALESCE(f.new_run_at, run_at) > ?1 END,
    lease_expires_at = NULL
FROM (
    SELECT value ->> 0 AS job_id, value ->> 1 AS fence, value ->> 2 AS new_state,
           value ->> 3 AS completed, value ->> 4 AS finished, value ->> 5 AS give_back,
           value ->> 6 AS new_run_at, value ->> 7 AS new_result, value ->> 8 AS error
    FROM json_each(?2)
) AS f
WHERE stoker_jobs.id = f.job_id AND +stoker_jobs.state = 'running' AND stoker_jobs.attempt = f.fence
RETURNING stoker_jobs.id";

/// Applies `params.finishes` and returns the ids applied, in input order.
pub(crate) async fn finish_many(
    pool: &SqlitePool,
    params: &JobFinishParams,
) -> StoreResult<Vec<JobId>> {
    if params.finishes.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::with_capacity(params.finishes.len());
    for finish in &params.finishes {
        rows.push(encode(finish)?);
    }
    let applied: HashSet<i64> = sqlx::query_scalar(FINISH_SQL)
        .bind(micros(params.now))
        .bind(to_json(&rows)?)
        .fetch_all(pool)
        .await
        .map_err(db_error)?
        .into_iter()
        .collect();
    Ok(params
        .finishes
        .iter()
        .map(|finish| finish.id)
        .filter(|id| applied.contains(&id.0))
        .collect())
}

/// One finish as [`FINISH_SQL`] reads it: `[id, attempt, state, completed, finished,
/// give_back, run_at, result, error]`, where `result` and `error` are JSON text (or null) and
/// `run_at` is null to keep the job's.
type FinishRow = (
    i64,
    i32,
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
        finish.attempt,
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
