//! Stoker: a durable background job queue for Rust services, on an embedded SQLite file or on
//! PostgreSQL shared by any number of workers.
//!
//! Define a job as a serde struct implementing [`Job`], register it on a [`Worker`], and
//! enqueue it from anywhere with a [`Client`]. Jobs are retried with exponential backoff,
//! deduplicated by idempotency key, scheduled, prioritised, and never lost when a worker
//! crashes: a job a dead worker was running is rescued and runs again elsewhere.
//!
//! # Quick start
//!
//! ```
//! use std::sync::Arc;
//! use serde::{Deserialize, Serialize};
//! use stoker::{sqlite::SqliteStore, Client, Job, JobContext, JobError, Worker};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Greet {
//!     name: String,
//! }
//!
//! impl Job for Greet {
//!     const KIND: &'static str = "greet";
//!     type Output = String;
//!
//!     async fn perform(self, _ctx: JobContext) -> Result<String, JobError> {
//!         Ok(format!("Hello, {}!", self.name))
//!     }
//! }
//!
//! # async fn demo() -> Result<(), stoker::Error> {
//! let store = Arc::new(SqliteStore::connect("sqlite::memory:").await?);
//! let client = Client::new(store.clone());
//! client.migrate().await?;
//!
//! let worker = Worker::builder(store).queue("default", 10).register::<Greet>().build()?;
//! let handle = worker.start().await?;
//! let mut events = handle.events();
//!
//! let job = client.enqueue(Greet { name: "Ada".into() }).await?;
//! while events.recv().await.unwrap().id != job.id {}
//! let done = client.get(job.id).await?.unwrap();
//! assert_eq!(done.result, Some(serde_json::json!("Hello, Ada!")));
//! handle.shutdown().await;
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! # Stores
//!
//! - [`sqlite::SqliteStore`] (feature `sqlite`): one file, no set-up; workers in other
//!   processes on the same file see new jobs at their next poll.
//! - [`postgres::PgStore`] (feature `postgres`): any number of worker processes on any number
//!   of machines; `LISTEN/NOTIFY` for instant pickup, `FOR UPDATE SKIP LOCKED` claims.
//!
//! [`connect`] picks one from a URL.

mod backoff;
mod client;
mod context;
// Recurring schedules (issue 15).
pub mod cron;
mod error;
// Failure groups, bulk operations and job logs (issue 13).
mod failures;
// History (issue 13).
mod clean;
mod history;
mod job;
mod lease;
pub mod maintenance;
mod options;
mod overview;
mod registry;
// --- stream search ---
pub mod search;
pub mod testing;
mod worker;
// --- stream wf ---
mod workflow;
// --- stream events ---
mod events;
// --- stream alerts ---
pub mod alerts;
// --- stream tokens ---
mod token;
// --- stream flow ---
mod flow;
// --- stream tenancy ---
mod audit;
// --- stream crypt ---
mod crypt;
mod redact;

use std::sync::Arc;

pub use backoff::Backoff;
pub use client::{
    check_run_at, Client, Enqueued, JobFilter, JobPage, RetryFilter, RetryProgress, RetryReport,
    StateCounts, Stats, FILTER_MAX, SCHEDULE_MAX,
};
pub use context::JobContext;
pub use error::{Error, JobError, Result, ResultExt};
pub use failures::BulkRequest;
// History (issue 13).
pub use clean::{CleanRequest, CLEAN_MAX_AGE, CLEAN_MAX_BATCH};
pub use history::{
    History, HistoryKeeper, HistoryKeeperConfig, HistoryKeeperReport, Labels, Latency, Series,
    SeriesPoint, SeriesRequest, HISTORY_FLUSH_INTERVAL_DEFAULT, SERIES_MAX_POINTS,
    SERIES_MAX_RANGE,
};
pub use job::Job;
pub use lease::{Failure, Reservation, RESERVE_MAX_KINDS, RESERVE_MAX_LIMIT, RESERVE_MAX_QUEUES};
// Batched acknowledgements of the pull protocol (issue 19).
pub use lease::{Ack, AckOp, Acked, ACK_MAX_ITEMS};
pub use options::{EnqueueOptions, NewJob};
pub use overview::WorkerState;
pub use overview::{worker_alive, QueueOverview, QueueWorker, WorkerStatus, STALE_AFTER_DEFAULT};
pub use registry::{Handler, Registry};
// --- stream tokens ---
pub use stoker_core::{TokenRow, TOKEN_SCOPES, TOKEN_TOUCH_EVERY_SECONDS};
pub use token::{
    parse_token, token_secret_matches, CreatedToken, NewToken, TOKEN_PREFIX, TOKEN_SECRET_LEN,
};
// --- stream tenancy ---
pub use audit::{Actor, AUDIT_RETENTION_DEFAULT};
pub use stoker_core::{AuditEntry, AuditListParams, AuditRow, AUDIT_LIST_MAX_LIMIT};
pub use worker::{
    shutdown_signal, AttemptResult, ShutdownReport, Worker, WorkerBuilder, WorkerEvent,
    WorkerHandle, CANCEL_GRACE_DEFAULT, FETCH_COOLDOWN_DEFAULT, HEARTBEAT_INTERVAL_DEFAULT,
    POLL_INTERVAL_DEFAULT, SHUTDOWN_GRACE_DEFAULT,
};

// --- stream crypt ---
pub use crypt::{
    sealed_with, CryptError, Encryption, Field, KeyRing, KeyStatus, RotateReport, ENVELOPE_MARKER,
    ENVELOPE_VERSION, KEYS_ENV, KEY_MISSING_RETRY, ROTATE_BATCH_DEFAULT,
};
pub use redact::{KindRedaction, Redaction, HIDDEN, REDACTED};
// --- stream history ---
pub use redact::redact_callback_url;

pub use stoker_core::{
    AttemptError, Clock, ErrorKind, FinishedJob, InsertedJob, InvalidInput, JobBackoff, JobId,
    JobRow, JobState, LeaderRow, LeaseExtended, Metadata, Priority, Progress, QueueRow, Store,
    StoreError, StoreErrorKind, StubClock, SystemClock, WorkerRow, MAX_ARGS_BYTES_DEFAULT,
    MAX_ATTEMPTS_DEFAULT, QUEUE_DEFAULT,
};
// The limits of a job's labels, for documents that state them (the OpenAPI schemas).
pub use stoker_core::{KIND_MAX_LEN, QUEUE_MAX_LEN, TENANT_MAX_LEN};
// --- stream history ---
// Job-completion callbacks (issue 13, item 8).
pub use stoker_core::{OnFinish, ON_FINISH_KIND, ON_FINISH_MAX_ATTEMPTS, ON_FINISH_URL_MAX_LEN};
// History (issue 13).
pub use stoker_core::{HistoryGrain, HistoryRetention, HistoryScope, QueueDepth, WorkerDetails};

// Failure groups, bulk operations and job logs (issue 13).
// --- stream events ---
pub use events::{
    Event, EventFilter, EventHub, EventStream, JobEvent, Snapshot, SnapshotMinute, SnapshotQueue,
    SnapshotStates, EVENTS_INTERVAL_DEFAULT, EVENTS_MAX_JOBS,
};

pub use stoker_core::{
    BulkAction, BulkFilter, BulkOpListParams, BulkOpRow, BulkOpState, FailureGroup,
    FailureGroupListParams, JobLogAppended, JobLogLine,
};

// --- stream search ---
pub use search::{
    attempt_timeline, format_query, merge_criteria, parse_query, AttemptEntry, AttemptOutcome,
    JobLineage, LINEAGE_CHILDREN_MAX, QUALIFIERS, QUERY_FIELD, QUERY_MAX_CHARS,
};
pub use stoker_core::{
    JobCount, JobCriteria, JobSearchPage, JobSearchParams, SearchDirection, StateView,
    JOB_COUNT_CAP, JOB_COUNT_SCAN_MAX, JOB_SEARCH_MAX_LIMIT, JOB_SEARCH_SCAN_MAX,
};

// --- stream flow ---
pub use stoker_core::{Fair, LimitKey, LimitRow, LimitSpec, LimitUsage, Rate};
// --- stream ops ---
pub use stoker_core::{FailureCountParams, FailureHour};

/// The store crate's types, for code that works at the store level.
pub use stoker_core as core;
// --- stream wf ---
pub use stoker_core::{
    DepPolicy, DepTarget, Dependency, DependencyEdge, DependencyResult, WorkflowCounts, WorkflowId,
    WorkflowInserted, WorkflowJob, WorkflowRow, WorkflowState,
};
pub use workflow::Workflow;
// --- stream workflows ---
mod batch;
pub use batch::Batch;
mod children;
pub use stoker_core::{
    BatchId, BatchInserted, BatchListParams, BatchRow, BatchState, WorkflowListParams,
};
pub use stoker_core::{ChildrenWait, WaitedChild};

/// The SQLite store.
#[cfg(feature = "sqlite")]
pub use stoker_sqlite as sqlite;

/// The PostgreSQL store.
#[cfg(feature = "postgres")]
pub use stoker_postgres as postgres;

/// Opens the store a URL names: `sqlite://path`, `sqlite::memory:` or `postgres://...`
/// (also `postgresql://`). The store is not migrated; call [`Client::migrate`].
///
/// # Errors
///
/// [`Error::Config`] for a URL of no known (or no compiled-in) store; a store error if the
/// database cannot be opened.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Arc::new(sqlite::SqliteStore::connect(url).await?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Arc::new(postgres::PgStore::connect(url).await?)),
        _ => Err(Error::Config(format!(
            "unsupported database URL {:?}: expected sqlite://PATH or postgres://...",
            redact_url(url)
        ))),
    }
}

/// A database URL without its password, for logs and error messages.
///
/// ```
/// assert_eq!(stoker::redact_url("postgres://app:s3cret@db/jobs"), "postgres://app:***@db/jobs");
/// assert_eq!(stoker::redact_url("sqlite://stoker.sqlite3"), "sqlite://stoker.sqlite3");
/// ```
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let credentials = &url[start + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..start + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("mysql://u:secret@h/db"),
            "mysql://u:***@h/db"
        );
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
