//! The core of [Stoker](https://example.invalid/stoker), a durable background job queue: the job
//! model and the [`Store`] trait that every storage backend implements.
//!
//! Applications use the `stoker` crate, which builds the worker runtime and client on top of
//! this one. Store crates (`stoker-sqlite`, `stoker-postgres`) depend only on this crate.
//!
//! # Quick start
//!
//! ```
//! use stoker_core::{JobInsert, JobState, Priority};
//!
//! let mut job = JobInsert::new("email", serde_json::json!({"to": "ada@example.com"}));
//! job.priority = Priority::HIGH;
//! job.validate(stoker_core::MAX_ARGS_BYTES_DEFAULT).expect("a valid job");
//! assert_eq!("discarded".parse::<JobState>().unwrap(), JobState::Discarded);
//! ```

// --- stream alerts ---
pub mod alert;
mod clock;
// Recurring schedules (issue 15).
pub mod cron;
mod error;
// Failure groups, bulk operations and job logs (issue 13).
mod failures;
// History (issue 13).
mod history;
mod insert;
mod job;
// --- stream search ---
mod search;
mod store;
// --- stream tokens ---
mod token;
// --- stream flow ---
mod flow;
// --- stream wf ---
pub mod workflow;
// --- stream tenancy ---
mod audit;

pub use clock::{Clock, StubClock, SystemClock};
pub use error::{StoreError, StoreErrorKind, StoreResult};
// Failure groups, bulk operations and job logs (issue 13).
pub use failures::{
    error_class, fingerprint, fingerprint_normalized, log_lines_that_fit, normalize_message,
    validate_fingerprint, BulkAction, BulkFilter, BulkOpCreateParams, BulkOpListParams, BulkOpRow,
    BulkOpState, BulkOpStepParams, FailureGroup, FailureGroupListParams, FailureRecord,
    JobLogAppended, JobLogLine, JobLogParams, BULK_CREATED_BY_MAX_LEN, BULK_FILTER_MAX_VALUES,
    BULK_LIST_MAX_LIMIT, FAILURE_LIST_MAX_LIMIT, FAILURE_MESSAGE_MAX_CHARS, FINGERPRINT_LEN,
    JOB_LOG_LINE_MAX_CHARS, JOB_LOG_MAX_BYTES, JOB_LOG_MAX_LINES, JOB_LOG_MAX_LINES_PER_CALL,
};
// --- stream ops ---
pub use failures::{
    FailureCountParams, FailureHour, FAILURE_COUNT_MAX_GROUPS, FAILURE_COUNT_MAX_RANGE_SECS,
};
// --- stream tenant ---
pub use failures::fingerprint_of_tenant;
// --- stream history ---
pub use failures::{BulkOpStep, ChangedJob};
// History (issue 13).
pub use history::{
    histogram_bucket, histogram_bucket_upper, HistoryDelta, HistoryGrain, HistoryMetric,
    HistoryQueryParams, HistoryRecordParams, HistoryRetention, HistoryRollupParams,
    HistoryRollupReport, HistoryScope, HistoryValue, QueueDepth, WorkerDetails, GAUGE_NAMES_SQL,
    HISTOGRAM_BUCKETS,
};
pub use insert::{
    args_size, validate_kind, validate_queue, InsertedJob, InvalidInput, JobBackoff, JobInsert,
    BACKOFF_MAX_SECONDS, KIND_MAX_LEN, MAX_ARGS_BYTES_DEFAULT, MAX_ATTEMPTS_DEFAULT,
    MAX_PROGRESS_DETAILS_BYTES, QUEUE_DEFAULT, QUEUE_MAX_LEN, TENANT_MAX_LEN, UNIQUE_KEY_MAX_LEN,
};
pub use job::{
    AttemptError, ErrorKind, JobId, JobRow, JobState, Metadata, Priority, Progress, UnknownState,
};
// --- stream history ---
pub use job::{OnFinish, ON_FINISH_KIND, ON_FINISH_MAX_ATTEMPTS, ON_FINISH_URL_MAX_LEN};
pub use store::{
    Capabilities, FinishedJob, JobCancelParams, JobClaimParams, JobFinish, JobFinishParams,
    JobInsertParams, JobLeaseParams, JobListParams, JobProgressParams, JobPruneParams,
    JobRetryManyParams, JobRetryParams, JobStageParams, JobStuckParams, LeaderElectParams,
    LeaderRow, LeaseExtended, Outcome, QueueParams, QueueRow, StateCount, Store, StoreEvent,
    StoreTx, WorkerHeartbeatParams, WorkerHeartbeatReply, WorkerRow,
};
// --- stream search ---
pub use search::{
    search_cursors, JobCount, JobCriteria, JobSearchPage, JobSearchParams, ScanDriver,
    SearchDirection, StateView, JOB_COUNT_CAP, JOB_COUNT_SCAN_MAX, JOB_CRITERIA_MAX_VALUES,
    JOB_LABEL_MAX_LEN, JOB_SEARCH_MAX_LIMIT, JOB_SEARCH_SCAN_MAX, JOB_TEXT_MAX_CHARS,
};
// --- stream counts ---
pub use store::QueuePruneRule;
// --- stream tokens ---
pub use token::{
    validate_token_fields, validate_token_id, TokenCreateParams, TokenRow, TOKEN_ID_LEN,
    TOKEN_NAME_MAX_LEN, TOKEN_SCOPES, TOKEN_TOUCH_EVERY_SECONDS,
};
// --- stream flow ---
pub use flow::{
    fair_of,
    // --- stream flow ---
    fair_walk_complete,
    gcra_next,
    gcra_push_back,
    limits_for_queue,
    quota_demand,
    quota_take,
    validate_limit_name,
    Fair,
    FairScheduler,
    FlowGate,
    LimitCache,
    LimitKey,
    LimitPushBackParams,
    LimitRow,
    LimitSetParams,
    LimitSpec,
    LimitUsage,
    LimiterChange,
    LimiterRef,
    LimiterState,
    QuotaDemand,
    Rate,
    FAIR_DISCOVER_PER_CLAIM,
    FAIR_NO_TENANT,
    FAIR_PAGE_EXTRA,
    FAIR_WEIGHTS_MAX,
    FAIR_WEIGHT_MAX,
    HELD_BACK_LIMITERS_MAX,
    HELD_BACK_READ_MAX,
    LIMIT_CACHE_TTL,
    LIMIT_KEY_MAX_SEGMENTS,
    LIMIT_NAME_MAX_LEN,
    LIMIT_PERIOD_MAX_MS,
};
// --- stream wf ---
pub use workflow::{
    DepPolicy, DepTarget, Dependency, DependencyEdge, DependencyResult, WorkflowCancelParams,
    WorkflowCounts, WorkflowId, WorkflowInsertParams, WorkflowInserted, WorkflowJob, WorkflowNode,
    WorkflowRow, WorkflowState, WORKFLOW_MAX_JOBS_DEFAULT, WORKFLOW_NAME_MAX_LEN,
};
// --- stream tenancy ---
pub use audit::{
    AuditEntry, AuditListParams, AuditRow, AuditedAction, AuditedOutcome, AUDIT_LIST_MAX_LIMIT,
    AUDIT_TEXT_MAX_LEN, AUDIT_VIAS,
};

// --- stream crypt ---
mod sealed;
pub use sealed::{JobSealedListParams, SealedJob, SealedRewrite};

// --- stream workflows ---
pub mod batch;
pub use batch::{
    BatchId, BatchInsertParams, BatchInserted, BatchListParams, BatchRow, BatchState,
    BATCH_ARGS_KEY, BATCH_LIST_MAX_LIMIT, BATCH_MAX_JOBS_PER_CALL,
};
pub use workflow::{WorkflowListParams, WORKFLOW_LIST_MAX_LIMIT};
pub mod children;
pub use children::{
    ChildrenInsertParams, ChildrenWait, WaitChildrenParams, WaitedChild, CHILDREN_LIST_MAX,
    CHILDREN_MAX_PER_CALL,
};
