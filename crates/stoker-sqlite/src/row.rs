//! Decoding rows into the core model, and the time and JSON encodings the schema uses.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use stoker_core::{JobId, JobRow, JobState, Priority, StoreError, StoreResult, WorkerRow};

/// The columns of `stoker_jobs` that [`job_from_row`] decodes, in its order. A macro rather than
/// a constant so `concat!` can build whole statements at compile time.
macro_rules! job_columns {
    () => {
        "id, kind, queue, args, state, priority, attempt, max_attempts, run_at, unique_key, \
         tenant, metadata, errors, result, progress, timeout_ms, created_at, attempted_at, \
         finished_at, worker_id, cancel_requested_at, lease_expires_at, fence, backoff"
    };
}
pub(crate) use job_columns;

/// A time as stored: microseconds since the Unix epoch, UTC.
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A stored time back as a `DateTime`; `name` names its column in the error.
pub(crate) fn from_micros(name: &str, micros: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("{name} {micros} is out of range")))
}

/// Encodes a value as JSON text for a TEXT column.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|error| StoreError::Database {
        message: format!("cannot encode JSON: {error}"),
        source: Some(Box::new(error)),
    })
}

/// Decodes the JSON text of column `name`.
pub(crate) fn from_json<T: DeserializeOwned>(name: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("{name} is not valid: {error}")))
}

/// Reads column `index` (named `name` in errors) as `T`.
pub(crate) fn column<'r, T>(row: &'r SqliteRow, index: usize, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(index)
        .map_err(|error| StoreError::Corrupt(format!("cannot read {name}: {error}")))
}

/// Reads a time column.
pub(crate) fn time_column(row: &SqliteRow, index: usize, name: &str) -> StoreResult<DateTime<Utc>> {
    from_micros(name, column(row, index, name)?)
}

/// Reads a nullable time column.
pub(crate) fn time_column_opt(
    row: &SqliteRow,
    index: usize,
    name: &str,
) -> StoreResult<Option<DateTime<Utc>>> {
    column::<Option<i64>>(row, index, name)?
        .map(|micros| from_micros(name, micros))
        .transpose()
}

/// Reads a nullable JSON column.
fn json_column_opt<T: DeserializeOwned>(
    row: &SqliteRow,
    index: usize,
    name: &str,
) -> StoreResult<Option<T>> {
    column::<Option<&str>>(row, index, name)?
        .map(|text| from_json(name, text))
        .transpose()
}

/// Decodes a state column.
///
/// # Errors
///
/// [`StoreError::Corrupt`] for a state this build does not know.
pub(crate) fn parse_state(text: &str) -> StoreResult<JobState> {
    text.parse()
        .map_err(|error| StoreError::Corrupt(format!("{error}")))
}

/// Decodes a row selected with [`job_columns!`].
///
/// # Errors
///
/// [`StoreError::Corrupt`] if a value cannot be decoded, e.g. an unknown state.
pub(crate) fn job_from_row(row: &SqliteRow) -> StoreResult<JobRow> {
    let state = parse_state(column(row, 4, "state")?)?;
    let priority: i64 = column(row, 5, "priority")?;
    let priority = i16::try_from(priority)
        .map_err(|_| StoreError::Corrupt(format!("priority {priority} is out of range")))?;
    Ok(JobRow {
        id: JobId(column(row, 0, "id")?),
        kind: column(row, 1, "kind")?,
        queue: column(row, 2, "queue")?,
        args: from_json("args", column(row, 3, "args")?)?,
        state,
        priority: Priority(priority),
        attempt: column(row, 6, "attempt")?,
        max_attempts: column(row, 7, "max_attempts")?,
        run_at: time_column(row, 8, "run_at")?,
        unique_key: column(row, 9, "unique_key")?,
        tenant: column(row, 10, "tenant")?,
        metadata: from_json("metadata", column(row, 11, "metadata")?)?,
        errors: from_json("errors", column(row, 12, "errors")?)?,
        result: json_column_opt(row, 13, "result")?,
        progress: json_column_opt(row, 14, "progress")?,
        timeout_ms: column(row, 15, "timeout_ms")?,
        created_at: time_column(row, 16, "created_at")?,
        attempted_at: time_column_opt(row, 17, "attempted_at")?,
        finished_at: time_column_opt(row, 18, "finished_at")?,
        worker_id: column(row, 19, "worker_id")?,
        cancel_requested_at: time_column_opt(row, 20, "cancel_requested_at")?,
        lease_expires_at: time_column_opt(row, 21, "lease_expires_at")?,
        fence: column(row, 22, "fence")?,
        backoff: json_column_opt(row, 23, "backoff")?,
    })
}

/// The columns of `stoker_workers` that [`worker_from_row`] decodes, in its order.
macro_rules! worker_columns {
    () => {
        "id, host, pid, queues, concurrency, started_at, heartbeat_at, jobs_done, jobs_failed, \
         details"
    };
}
pub(crate) use worker_columns;

/// Decodes a row selected with [`worker_columns!`].
pub(crate) fn worker_from_row(row: &SqliteRow) -> StoreResult<WorkerRow> {
    let pid: i64 = column(row, 2, "pid")?;
    let concurrency: i64 = column(row, 4, "concurrency")?;
    Ok(WorkerRow {
        id: column(row, 0, "id")?,
        host: column(row, 1, "host")?,
        pid: u32::try_from(pid)
            .map_err(|_| StoreError::Corrupt(format!("worker pid {pid} is out of range")))?,
        queues: from_json("queues", column(row, 3, "queues")?)?,
        concurrency: u32::try_from(concurrency).map_err(|_| {
            StoreError::Corrupt(format!("worker concurrency {concurrency} is out of range"))
        })?,
        started_at: time_column(row, 5, "started_at")?,
        heartbeat_at: time_column(row, 6, "heartbeat_at")?,
        jobs_done: column(row, 7, "jobs_done")?,
        jobs_failed: column(row, 8, "jobs_failed")?,
        details: column::<Option<String>>(row, 9, "details")?
            .map(|text| from_json("details", &text))
            .transpose()?,
    })
}
