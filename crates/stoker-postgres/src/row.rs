//! Decoding rows into the core model.

use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use stoker_core::{
    AttemptError, FinishedJob, JobBackoff, JobId, JobRow, JobState, LeaderRow, Metadata, Priority,
    Progress, QueueRow, StoreError, StoreResult, WorkerRow,
};

use crate::error::store_error;

/// The columns every job query selects, in table order; [`job_row`] reads them by name.
pub(crate) const JOB_COLUMNS: &[&str] = &[
    "id",
    "kind",
    "queue",
    "args",
    "state",
    "priority",
    "attempt",
    "max_attempts",
    "run_at",
    "unique_key",
    "tenant",
    "metadata",
    "errors",
    "result",
    "progress",
    "timeout_ms",
    "created_at",
    "attempted_at",
    "finished_at",
    "worker_id",
    "cancel_requested_at",
    "lease_expires_at",
    "fence",
    "backoff",
];

/// The job columns as a select list, each prefixed with `alias.` when an alias is given.
pub(crate) fn job_columns(alias: Option<&str>) -> String {
    JOB_COLUMNS
        .iter()
        .map(|column| match alias {
            Some(alias) => format!("{alias}.{column}"),
            None => (*column).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a column, turning a failure to decode it into [`StoreError::Corrupt`].
fn get<'r, T>(row: &'r PgRow, column: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(|err| match err {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(format!("column {column}: {err}"))
        }
        other => store_error(other),
    })
}

/// Decodes a job selected with [`JOB_COLUMNS`].
///
/// # Errors
///
/// [`StoreError::Corrupt`] for an unknown state or JSON that does not fit the model.
pub(crate) fn job_row(row: &PgRow) -> StoreResult<JobRow> {
    let state: String = get(row, "state")?;
    let state = state
        .parse::<JobState>()
        .map_err(|err| StoreError::Corrupt(err.to_string()))?;
    let Json(metadata): Json<Metadata> = get(row, "metadata")?;
    let Json(errors): Json<Vec<AttemptError>> = get(row, "errors")?;
    let progress: Option<Json<Progress>> = get(row, "progress")?;
    let backoff: Option<Json<JobBackoff>> = get(row, "backoff")?;
    Ok(JobRow {
        id: JobId(get(row, "id")?),
        kind: get(row, "kind")?,
        queue: get(row, "queue")?,
        args: get(row, "args")?,
        state,
        priority: Priority(get(row, "priority")?),
        attempt: get(row, "attempt")?,
        max_attempts: get(row, "max_attempts")?,
        run_at: get(row, "run_at")?,
        unique_key: get(row, "unique_key")?,
        tenant: get(row, "tenant")?,
        metadata,
        errors,
        result: get(row, "result")?,
        progress: progress.map(|Json(progress)| progress),
        timeout_ms: get(row, "timeout_ms")?,
        created_at: get(row, "created_at")?,
        attempted_at: get(row, "attempted_at")?,
        finished_at: get(row, "finished_at")?,
        worker_id: get(row, "worker_id")?,
        cancel_requested_at: get(row, "cancel_requested_at")?,
        lease_expires_at: get(row, "lease_expires_at")?,
        fence: get(row, "fence")?,
        backoff: backoff.map(|Json(backoff)| backoff),
    })
}

/// Decodes a row returned by the finish statement: `id, state, run_at, attempt, queue, kind,
/// attempted_at, worker_id, tenant`.
pub(crate) fn finished_row(row: &PgRow) -> StoreResult<FinishedJob> {
    let state: String = get(row, "state")?;
    Ok(FinishedJob {
        id: JobId(get(row, "id")?),
        state: state
            .parse::<JobState>()
            .map_err(|err| StoreError::Corrupt(err.to_string()))?,
        run_at: get(row, "run_at")?,
        attempt: get(row, "attempt")?,
        queue: get(row, "queue")?,
        kind: get(row, "kind")?,
        attempted_at: get(row, "attempted_at")?,
        worker_id: get(row, "worker_id")?,
        tenant: get(row, "tenant")?,
    })
}

/// Decodes a row of `stoker_queues`.
pub(crate) fn queue_row(row: &PgRow) -> StoreResult<QueueRow> {
    Ok(QueueRow {
        name: get(row, "name")?,
        paused: get(row, "paused")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// Decodes a row of `stoker_workers`.
pub(crate) fn worker_row(row: &PgRow) -> StoreResult<WorkerRow> {
    let pid: i64 = get(row, "pid")?;
    let concurrency: i64 = get(row, "concurrency")?;
    Ok(WorkerRow {
        id: get(row, "id")?,
        host: get(row, "host")?,
        pid: u32::try_from(pid)
            .map_err(|_| StoreError::Corrupt(format!("worker pid {pid} is out of range")))?,
        queues: get(row, "queues")?,
        concurrency: u32::try_from(concurrency).map_err(|_| {
            StoreError::Corrupt(format!("worker concurrency {concurrency} is out of range"))
        })?,
        started_at: get(row, "started_at")?,
        heartbeat_at: get(row, "heartbeat_at")?,
        jobs_done: get(row, "jobs_done")?,
        jobs_failed: get(row, "jobs_failed")?,
        details: get::<Option<Json<stoker_core::WorkerDetails>>>(row, "details")?
            .map(|Json(details)| details),
    })
}

/// Decodes a row of `stoker_leader`.
pub(crate) fn leader_row(row: &PgRow) -> StoreResult<LeaderRow> {
    Ok(LeaderRow {
        leader_id: get(row, "leader_id")?,
        elected_at: get(row, "elected_at")?,
        expires_at: get(row, "expires_at")?,
    })
}
