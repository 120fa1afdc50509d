//! The job model: what a job is, as every store keeps it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JobBackoff;

/// A job's id, assigned by the store on insert. Ids only grow, so they double as a keyset
/// pagination cursor and as the tie-breaker in fetch order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for JobId {
    fn from(id: i64) -> Self {
        JobId(id)
    }
}

/// Where a job is in its life.
///
/// ```text
/// available ──claim──▶ running ──ok──────────────▶ completed
///     ▲                  │ ├──error, attempts left──▶ retryable ──(run_at passes)──▶ claimed again
///     │                  │ ├──error, no attempts left / discard──▶ discarded (dead letter)
///     └──snooze, hand back┘ └──cancel requested──▶ cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to run: now, or at `run_at` if that is in the future (scheduled).
    Available,
    /// Claimed by a worker, which holds it until it acknowledges an outcome.
    Running,
    /// Failed an attempt and waits for its backoff (`run_at`) before it runs again.
    Retryable,
    /// Finished successfully; `result` holds the handler's output.
    Completed,
    /// Failed for good (attempts used up, or discarded by its handler): the dead-letter state.
    Discarded,
    /// Cancelled before or while it ran.
    Cancelled,
    /// Waiting for its dependencies (a workflow job): invisible to claims until the last one
    /// finishes, which makes it `available` (or `cancelled`, by its edge's policy) in the same
    /// transaction.
    Blocked,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        JobState::Blocked,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
    ];

    /// The states a job never leaves on its own: only a retry or a delete moves it.
    pub const FINISHED: [JobState; 3] = [
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
    ];

    /// The lowercase name used in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
            JobState::Blocked => "blocked",
        }
    }

    /// True for `completed`, `discarded` and `cancelled`.
    pub fn is_finished(self) -> bool {
        JobState::FINISHED.contains(&self)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string names no job state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state {0:?}: expected one of blocked, available, running, retryable, completed, discarded, cancelled")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// A job's priority: higher runs first. Any `i16` works; the named levels are conventions.
///
/// ```
/// use stoker_core::Priority;
/// assert!(Priority::CRITICAL > Priority::HIGH);
/// assert_eq!(Priority::default(), Priority::NORMAL);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub i16);

impl Priority {
    /// Background work that may wait behind everything else.
    pub const LOW: Priority = Priority(-10);
    /// The default.
    pub const NORMAL: Priority = Priority(0);
    /// Runs before normal work.
    pub const HIGH: Priority = Priority(10);
    /// Runs before everything else.
    pub const CRITICAL: Priority = Priority(20);
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

impl From<i16> for Priority {
    fn from(value: i16) -> Self {
        Priority(value)
    }
}

/// Tracing and lineage data carried by a job and passed on to the jobs it enqueues.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Ties together every job started by one request or workflow; inherited by child jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The job that enqueued this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<JobId>,
    /// Who enqueued the job: a service name, an API token's name, `cli`, `cron`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Free-form labels for searching and grouping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Set on a job fired by a recurring schedule: the schedule, the slot, and whether it was
    /// a catch-up (issue 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<crate::cron::CronJobMeta>,
    /// Where to post the job's outcome when it reaches a final state (issue 13, item 8). Kept
    /// with the job, never passed on to the jobs it enqueues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_finish: Option<OnFinish>,
}

/// A job-completion callback: when the job reaches a final state (completed, discarded,
/// cancelled), the store inserts, in the same transaction, one job of the built-in `webhook`
/// kind ([`ON_FINISH_KIND`]) that posts the outcome to `url`. Being a job, the delivery is
/// retried and never lost.
///
/// The body posted is `{"type": "job.finished", "id", "kind", "queue", "tenant", "state",
/// "attempt", "finished_at", "result", "error"}`: `result` is the job's result (completed
/// jobs), `error` the last failed attempt's message (or `null`). A job of an encrypted kind
/// (its args sealed) posts neither: its body has `"sealed": true` and `result` and `error`
/// `null`, so no unsealed payload is written by the callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnFinish {
    /// Where to post: an absolute `http://` or `https://` URL of at most
    /// [`ON_FINISH_URL_MAX_LEN`] bytes.
    pub url: String,
    /// The queue the delivery job waits in (some worker must serve the `webhook` kind there;
    /// `stoker serve` does on its queues). Defaults to `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// The kind of a completion callback's delivery job: the built-in webhook handler's.
pub const ON_FINISH_KIND: &str = "webhook";
/// The attempts a completion callback's delivery job gets: 10.
pub const ON_FINISH_MAX_ATTEMPTS: i32 = 10;
/// The longest completion callback URL, in bytes: 2048.
pub const ON_FINISH_URL_MAX_LEN: usize = 2048;

impl OnFinish {
    /// A callback posting to `url`, delivered from the `default` queue.
    pub fn new(url: impl Into<String>) -> Self {
        OnFinish {
            url: url.into(),
            queue: None,
        }
    }

    /// Checks the URL (absolute, `http` or `https`, with a host, at most
    /// [`ON_FINISH_URL_MAX_LEN`] bytes) and the queue name.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](crate::InvalidInput) naming `on_finish.url` or `on_finish.queue`.
    pub fn validate(&self) -> Result<(), crate::InvalidInput> {
        if self.url.len() > ON_FINISH_URL_MAX_LEN {
            return Err(crate::InvalidInput::new(
                "on_finish.url",
                format!(
                    "is {} bytes, over the limit of {ON_FINISH_URL_MAX_LEN}",
                    self.url.len()
                ),
            ));
        }
        crate::alert::validate_url(&self.url)
            .map_err(|err| crate::InvalidInput::new("on_finish.url", err.reason))?;
        if let Some(queue) = &self.queue {
            crate::validate_queue(queue)
                .map_err(|err| crate::InvalidInput::new("on_finish.queue", err.reason))?;
        }
        Ok(())
    }
}

/// Why an attempt failed, as recorded in a job's error history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The handler returned an error.
    Error,
    /// The handler panicked.
    Panic,
    /// The attempt ran past its timeout.
    Timeout,
    /// The worker running it stopped heartbeating (crash, kill -9, partition) or its lease lapsed.
    WorkerLost,
    /// No running worker had a handler for the job's kind.
    NoHandler,
    /// The job's args could not be decoded for its handler.
    InvalidArgs,
    /// The attempt was cancelled.
    Cancelled,
}

/// One failed attempt in a job's error history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt that failed (1 for the first).
    pub attempt: i32,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// What went wrong.
    pub kind: ErrorKind,
    /// The error's message.
    pub message: String,
    /// A backtrace, recorded for panics when one was captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtrace: Option<String>,
}

/// The last progress a running job reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// How far along, from 0.0 to 1.0.
    pub fraction: f64,
    /// What it is doing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Structured details the handler attached (any JSON), at most
    /// [`MAX_PROGRESS_DETAILS_BYTES`](crate::MAX_PROGRESS_DETAILS_BYTES) of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// When it was reported.
    pub at: DateTime<Utc>,
}

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    /// Assigned by the store.
    pub id: JobId,
    /// The handler's name.
    pub kind: String,
    /// The queue it waits in.
    pub queue: String,
    /// The handler's input.
    pub args: Value,
    /// Where it is in its life.
    pub state: JobState,
    /// Higher runs first.
    pub priority: Priority,
    /// Attempts started so far (0 before the first claim).
    pub attempt: i32,
    /// The fencing token of its latest claim: every claim adds one, and nothing else ever
    /// changes it (a snooze or hand-back gives the attempt back, never the fence). An
    /// acknowledgement carries the fence it was claimed with, so it can only ever apply to
    /// that one claim (0 before the first claim).
    pub fence: i64,
    /// The most attempts it gets before it is discarded.
    pub max_attempts: i32,
    /// Not before this instant.
    pub run_at: DateTime<Utc>,
    /// The idempotency key, if any.
    pub unique_key: Option<String>,
    /// The tenant it belongs to, if any.
    pub tenant: Option<String>,
    /// Lineage and tracing data.
    pub metadata: Metadata,
    /// One entry per failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// The handler's output once completed.
    pub result: Option<Value>,
    /// The last progress report.
    pub progress: Option<Progress>,
    /// How long one attempt may run, in milliseconds, if the job sets its own limit.
    pub timeout_ms: Option<i64>,
    /// Its own retry backoff, if it was enqueued with one (else its kind's applies).
    pub backoff: Option<JobBackoff>,
    /// When it was inserted.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it reached a finished state.
    pub finished_at: Option<DateTime<Utc>>,
    /// The worker running it (or that ran its latest attempt).
    pub worker_id: Option<String>,
    /// Set when a cancel was requested while it was running.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// While it runs under a lease (a pull worker's claim), when the lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
}
