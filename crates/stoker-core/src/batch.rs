//! Batches (issue 18): a group of jobs with one callback job, enqueued exactly once when the
//! batch is closed and every one of its jobs has finished, its args carrying the counts by
//! outcome.
//!
//! A batch row keeps its counters (`total`, `pending`, `completed`, `discarded`,
//! `cancelled`), and a trigger in each store moves them in the transaction that moves a
//! member into a finished state (or, on a retry, out of one), so a batch's progress is one
//! row's read, never a scan of its jobs. The callback is inserted with the batch, `blocked`
//! and outside any claim, and the transaction that leaves a closed batch with nothing pending
//! makes it available with the counts merged into its args under [`BATCH_ARGS_KEY`]; the
//! batch row's lock and its `finished_at` make that happen once. Jobs may be added to an open
//! batch (from inside one of its jobs, too) in the same transaction that counts them, and a
//! batch fires only once closed, so a member that adds a sibling can never see the callback
//! fire early.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{InvalidInput, JobId, JobInsert, MAX_ARGS_BYTES_DEFAULT};

/// The most jobs one call may add to a batch (a batch itself may grow past it over calls).
pub const BATCH_MAX_JOBS_PER_CALL: usize = 10_000;
/// The longest batch name.
pub const BATCH_NAME_MAX_LEN: usize = 128;
/// The key of the callback's args that receives the batch's counts:
/// `{"id", "total", "completed", "discarded", "cancelled"}`.
pub const BATCH_ARGS_KEY: &str = "batch";
/// The most batches one list returns.
pub const BATCH_LIST_MAX_LIMIT: u32 = 500;

/// A batch's id, assigned by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(pub i64);

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parameters of [`Store::batch_insert`](crate::Store::batch_insert): a new batch, or jobs
/// added to an open one.
#[derive(Debug, Clone)]
pub struct BatchInsertParams {
    /// `None` creates a batch; `Some` adds the jobs to an open batch of the same tenant.
    pub batch: Option<BatchId>,
    /// The new batch's name (ignored when adding).
    pub name: String,
    /// The tenant; every job (and the callback) must carry the same.
    pub tenant: Option<String>,
    /// The new batch's callback (refused when adding): enqueued once when the batch is closed
    /// and all its jobs have finished. Its args must be a JSON object; the counts are added
    /// under [`BATCH_ARGS_KEY`], which it may not carry itself.
    pub callback: Option<JobInsert>,
    /// The jobs to add.
    pub jobs: Vec<JobInsert>,
    /// Close the batch after adding them: no job can be added any more, and the callback
    /// fires as soon as nothing is pending (at once, if nothing is).
    pub close: bool,
    /// The insert time.
    pub now: DateTime<Utc>,
    /// Args larger than this (as compact JSON) are refused.
    pub max_args_bytes: usize,
}

impl BatchInsertParams {
    /// Parameters to create the batch `name` of `jobs` at `now`, closed at once, with no
    /// callback and the default limits.
    pub fn new(name: impl Into<String>, jobs: Vec<JobInsert>, now: DateTime<Utc>) -> Self {
        BatchInsertParams {
            batch: None,
            name: name.into(),
            tenant: None,
            callback: None,
            jobs,
            close: true,
            now,
            max_args_bytes: MAX_ARGS_BYTES_DEFAULT,
        }
    }

    /// Checks everything that needs no database: the name, every job and the callback, their
    /// tenants, that no job carries an idempotency key (a duplicate would be a job outside
    /// the batch), and the count.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the field, e.g. `jobs[3].kind`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.batch.is_none() {
            validate_batch_name("name", &self.name)?;
        } else if self.callback.is_some() {
            return Err(InvalidInput::new(
                "callback",
                "a callback is set when the batch is created, not when jobs are added",
            ));
        }
        if self.jobs.len() > BATCH_MAX_JOBS_PER_CALL {
            return Err(InvalidInput::new(
                "jobs",
                format!(
                    "at most {BATCH_MAX_JOBS_PER_CALL} jobs per call, got {}; add the rest in \
                     further calls before closing the batch",
                    self.jobs.len()
                ),
            ));
        }
        if self.batch.is_some() && self.jobs.is_empty() && !self.close {
            return Err(InvalidInput::new("jobs", "must hold at least one job"));
        }
        for (i, job) in self.jobs.iter().enumerate() {
            let at = |field: &str, reason: String| {
                InvalidInput::new(format!("jobs[{i}].{field}"), reason)
            };
            job.validate(self.max_args_bytes)
                .map_err(|error| at(&error.field, error.reason))?;
            if job.tenant != self.tenant {
                return Err(at("tenant", "must be the batch's tenant".into()));
            }
            if job.unique_key.is_some() {
                return Err(at(
                    "unique_key",
                    "a batch's jobs cannot carry an idempotency key".into(),
                ));
            }
        }
        if let Some(callback) = &self.callback {
            let at = |field: &str, reason: String| {
                InvalidInput::new(format!("callback.{field}"), reason)
            };
            callback
                .validate(self.max_args_bytes)
                .map_err(|error| at(&error.field, error.reason))?;
            if callback.tenant != self.tenant {
                return Err(at("tenant", "must be the batch's tenant".into()));
            }
            if callback.unique_key.is_some() {
                return Err(at(
                    "unique_key",
                    "a batch's callback cannot carry an idempotency key".into(),
                ));
            }
            match callback.args.as_object() {
                None => {
                    return Err(at(
                        "args",
                        format!(
                            "must be a JSON object: the batch's counts are added to it under \
                             {BATCH_ARGS_KEY:?}"
                        ),
                    ))
                }
                Some(args) if args.contains_key(BATCH_ARGS_KEY) => {
                    return Err(at(
                        "args",
                        format!(
                            "may not carry the key {BATCH_ARGS_KEY:?}: the batch's counts go there"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Checks a batch name: 1 to 128 characters from `A-Z a-z 0-9 _ - . :`.
///
/// # Errors
///
/// [`InvalidInput`] for `field`.
pub fn validate_batch_name(field: &str, name: &str) -> Result<(), InvalidInput> {
    crate::workflow::validate_name(field, name)
}

/// What [`Store::batch_insert`](crate::Store::batch_insert) inserted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchInserted {
    /// The batch.
    pub batch: BatchId,
    /// The jobs added, in input order.
    pub jobs: Vec<JobId>,
    /// The callback job (blocked until the batch fires), if the batch has one.
    pub callback: Option<JobId>,
}

/// A batch's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Jobs can still be added; it does not fire until closed.
    Open,
    /// Closed, with jobs still pending.
    Running,
    /// Closed and every job finished: the callback was enqueued.
    Finished,
    /// Cancelled: its unfinished jobs were cancelled and its callback never runs.
    Cancelled,
}

impl BatchState {
    /// Every state.
    pub const ALL: [BatchState; 4] = [
        BatchState::Open,
        BatchState::Running,
        BatchState::Finished,
        BatchState::Cancelled,
    ];

    /// The lowercase name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Open => "open",
            BatchState::Running => "running",
            BatchState::Finished => "finished",
            BatchState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for BatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BatchState {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BatchState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                InvalidInput::new(
                    "state",
                    format!("must be open, running, finished or cancelled, got {s:?}"),
                )
            })
    }
}

/// A batch as the store keeps it: its counters are maintained with its jobs' states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRow {
    /// Its id.
    pub id: BatchId,
    /// Its name.
    pub name: String,
    /// Its tenant.
    pub tenant: Option<String>,
    /// Its state.
    pub state: BatchState,
    /// Jobs added.
    pub total: i64,
    /// Jobs not finished yet.
    pub pending: i64,
    /// Jobs that completed.
    pub completed: i64,
    /// Jobs that were discarded.
    pub discarded: i64,
    /// Jobs that were cancelled.
    pub cancelled: i64,
    /// The callback job, if it has one.
    pub callback: Option<JobId>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// When it finished (closed with nothing pending), which is when the callback was
    /// enqueued.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl BatchRow {
    /// The state its timestamps give.
    pub fn derive_state(
        closed_at: Option<DateTime<Utc>>,
        finished_at: Option<DateTime<Utc>>,
        cancelled_at: Option<DateTime<Utc>>,
    ) -> BatchState {
        if cancelled_at.is_some() {
            BatchState::Cancelled
        } else if finished_at.is_some() {
            BatchState::Finished
        } else if closed_at.is_some() {
            BatchState::Running
        } else {
            BatchState::Open
        }
    }
}

/// Parameters of [`Store::batch_list`](crate::Store::batch_list).
#[derive(Debug, Clone, Default)]
pub struct BatchListParams {
    /// Only this tenant's batches.
    pub tenant: Option<String>,
    /// Only batches in this state.
    pub state: Option<BatchState>,
    /// Only batches with an id below this (the next page).
    pub before: Option<BatchId>,
    /// At most this many, 1 to [`BATCH_LIST_MAX_LIMIT`].
    pub limit: u32,
}

impl BatchListParams {
    /// Checks the limit.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `limit`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.limit == 0 || self.limit > BATCH_LIST_MAX_LIMIT {
            return Err(InvalidInput::new(
                "limit",
                format!("must be 1 to {BATCH_LIST_MAX_LIMIT}, got {}", self.limit),
            ));
        }
        Ok(())
    }
}

/// Why a job that is not running may not be deleted, if it may not (both stores word it the
/// same): `waiting` lists (up to 10) jobs blocked on it, `batch` is the batch it belongs to,
/// `callback_of` the batch whose callback it is. A delete would leave the waiting jobs
/// blocked, or the batch pending, forever; a cancel applies each edge's policy and counts
/// the member, so the error says to cancel instead.
pub fn delete_refusal(
    id: JobId,
    state: &str,
    batch: Option<BatchId>,
    waiting: &[i64],
    callback_of: Option<BatchId>,
) -> Option<String> {
    let unfinished = matches!(state, "blocked" | "available" | "retryable");
    if !waiting.is_empty() {
        let ids: Vec<String> = waiting.iter().map(i64::to_string).collect();
        return Some(format!(
            "job {id} cannot be deleted: jobs wait for it ({}); cancel it instead, which applies \
             each dependency's policy, or cancel the jobs that wait first",
            ids.join(", ")
        ));
    }
    if let (Some(batch), true) = (callback_of, state == "blocked") {
        return Some(format!(
            "job {id} cannot be deleted: it is the callback of batch {batch}, which has not \
             fired; cancel the batch instead"
        ));
    }
    if let (Some(batch), true) = (batch, unfinished) {
        return Some(format!(
            "job {id} cannot be deleted: it is an unfinished job of batch {batch}; cancel it \
             instead, so the batch counts it"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_callback_must_take_an_object_without_the_counts_key() {
        let mut params =
            BatchInsertParams::new("b", vec![JobInsert::new("k", json!({}))], Utc::now());
        params.callback = Some(JobInsert::new("done", json!([1])));
        assert_eq!(params.validate().unwrap_err().field, "callback.args");
        params.callback = Some(JobInsert::new("done", json!({"batch": 1})));
        assert_eq!(params.validate().unwrap_err().field, "callback.args");
        params.callback = Some(JobInsert::new("done", json!({"campaign": 7})));
        params.validate().unwrap();
    }

    #[test]
    fn jobs_are_checked_by_index_and_keys_refused() {
        let mut job = JobInsert::new("k", json!({}));
        job.unique_key = Some("x".into());
        let params =
            BatchInsertParams::new("b", vec![JobInsert::new("k", json!({})), job], Utc::now());
        assert_eq!(params.validate().unwrap_err().field, "jobs[1].unique_key");
        let params = BatchInsertParams::new("bad name", vec![], Utc::now());
        assert_eq!(params.validate().unwrap_err().field, "name");
    }

    #[test]
    fn state_follows_the_timestamps() {
        let now = Some(Utc::now());
        assert_eq!(BatchRow::derive_state(None, None, None), BatchState::Open);
        assert_eq!(BatchRow::derive_state(now, None, None), BatchState::Running);
        assert_eq!(BatchRow::derive_state(now, now, None), BatchState::Finished);
        assert_eq!(BatchRow::derive_state(now, now, now), BatchState::Cancelled);
    }
}
