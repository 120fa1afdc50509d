//! Errors of the client API, and the error a job handler returns.

use std::fmt;
use std::time::Duration;

use stoker_core::{InvalidInput, JobId, StoreError, StoreErrorKind};

/// An error from the [`Client`](crate::Client) or the [`Worker`](crate::Worker).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input was refused before anything was written; names the field at fault.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The job (or other row) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The operation does not apply to the job's current state (e.g. deleting a running job).
    #[error("{0}")]
    Conflict(String),
    /// A report on a reserved job carried a fence that is no longer current: its lease lapsed
    /// (and it may have been rescued), it finished, or it was reserved again. Nothing was
    /// changed; stop working on the job.
    #[error(
        "job {id} is no longer held under fence {fence}: its lease ended, it finished, or it \
         was reserved again"
    )]
    LeaseLost {
        /// The job.
        id: JobId,
        /// The fence the report carried.
        fence: i64,
    },
    /// Encoding a job's args or a handler's output as JSON failed.
    #[error("could not encode {what} as JSON: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: serde_json::Error,
    },
    /// A worker was configured wrongly (no queues, zero concurrency, a duplicate queue...).
    #[error("invalid worker configuration: {0}")]
    Config(String),
    /// A client scoped to a tenant (see [`Client::for_tenant`](crate::Client::for_tenant)) was
    /// asked to act for another tenant, or for every tenant at once (queues, workers, stats).
    /// Nothing was read or written. A job of another tenant asked for by id is
    /// [`Error::NotFound`] instead, so a tenant learns nothing about other tenants' jobs.
    #[error("{message}")]
    TenantForbidden {
        /// The input field that names another tenant, if one does.
        field: Option<String>,
        /// What was refused, for people.
        message: String,
    },
    /// An enqueue would exceed an enqueue quota (issue 16, item 4): nothing was written. Try
    /// again after `retry_after`.
    #[error("enqueue quota {limit:?} exceeded for {key:?}: retry in {retry_after:?}")]
    QuotaExceeded {
        /// The limit whose quota it is.
        limit: String,
        /// The limiter's key: the tenant, for a quota per tenant.
        key: String,
        /// How long until the submissions would fit.
        retry_after: std::time::Duration,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid(invalid) => Error::Invalid(invalid),
            StoreError::NotFound(what) => Error::NotFound(what),
            StoreError::Conflict(message) => Error::Conflict(message),
            StoreError::QuotaExceeded {
                limit,
                key,
                retry_after,
            } => Error::QuotaExceeded {
                limit,
                key,
                retry_after,
            },
            other => Error::Store(other),
        }
    }
}

impl Error {
    /// The store error category this error falls in, for callers that branch on it.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            Error::Invalid(_)
            | Error::Encode { .. }
            | Error::Config(_)
            | Error::TenantForbidden { .. } => StoreErrorKind::Invalid,
            Error::NotFound(_) => StoreErrorKind::NotFound,
            Error::QuotaExceeded { .. } => StoreErrorKind::Limited,
            Error::Conflict(_) | Error::LeaseLost { .. } => StoreErrorKind::Conflict,
            Error::Store(err) => err.kind(),
        }
    }
}

/// `Result<T, stoker::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a handler returns when an attempt does not succeed, and what should happen next.
///
/// Any error converts into a retryable `JobError` with `?`, so handlers can use their own error
/// types freely; use the constructors (or [`ResultExt`]) to discard, snooze or cancel instead.
///
/// ```
/// use std::time::Duration;
/// use stoker::JobError;
///
/// fn check(status: u16) -> Result<(), JobError> {
///     match status {
///         200 => Ok(()),
///         429 => Err(JobError::snooze(Duration::from_secs(30))),
///         400..=499 => Err(JobError::fatal(format!("rejected with {status}"))),
///         _ => Err(JobError::retryable(format!("server error {status}"))),
///     }
/// }
/// assert!(check(200).is_ok());
/// ```
pub struct JobError {
    pub(crate) action: JobErrorAction,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobErrorAction {
    /// Counts as a failed attempt; retried after backoff (or the given delay) while attempts
    /// remain.
    Retry(Option<Duration>),
    /// Counts as a failed attempt; discarded at once (dead letter).
    Discard,
    /// Runs again after the delay without using up an attempt.
    Snooze(Duration),
    /// Ends the job cancelled.
    Cancel,
}

impl JobError {
    /// A failed attempt that will be retried after backoff while attempts remain.
    pub fn retryable(message: impl fmt::Display) -> Self {
        JobError {
            action: JobErrorAction::Retry(None),
            message: message.to_string(),
        }
    }

    /// A failed attempt that will be retried after `delay` instead of the kind's backoff, e.g.
    /// when a server answered 429 with `Retry-After`. After the last attempt the job is
    /// discarded as usual.
    pub fn retry_in(message: impl fmt::Display, delay: Duration) -> Self {
        JobError {
            action: JobErrorAction::Retry(Some(delay)),
            message: message.to_string(),
        }
    }

    /// A failure that no retry can fix: the job is discarded at once, with this error recorded.
    pub fn fatal(message: impl fmt::Display) -> Self {
        JobError {
            action: JobErrorAction::Discard,
            message: message.to_string(),
        }
    }

    /// Not now: run again after `delay` without using up an attempt.
    pub fn snooze(delay: Duration) -> Self {
        JobError {
            action: JobErrorAction::Snooze(delay),
            message: format!("snoozed for {delay:?}"),
        }
    }

    /// Stop for good: the job ends `cancelled`, with this reason recorded.
    pub fn cancel(message: impl fmt::Display) -> Self {
        JobError {
            action: JobErrorAction::Cancel,
            message: message.to_string(),
        }
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobError({:?}: {})", self.action, self.message)
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(err: E) -> Self {
        // Keep the whole chain: "connect failed: connection refused" beats "connect failed".
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        JobError::retryable(message)
    }
}

/// Says what a failed `Result` means for the job: `.retryable()` or `.fatal()`.
///
/// ```
/// use stoker::{JobError, ResultExt};
///
/// fn parse(input: &str) -> Result<u32, JobError> {
///     input.parse::<u32>().fatal()
/// }
/// assert!(parse("12").is_ok());
/// ```
pub trait ResultExt<T> {
    /// On error, a failed attempt that will be retried.
    fn retryable(self) -> Result<T, JobError>;
    /// On error, discard the job for good.
    fn fatal(self) -> Result<T, JobError>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, JobError> {
        self.map_err(JobError::retryable)
    }

    fn fatal(self) -> Result<T, JobError> {
        self.map_err(JobError::fatal)
    }
}
