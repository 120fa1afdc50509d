//! The `Store` trait: the one seam between Stoker's runtime and a database.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::cron::{CronDue, CronFireOutcome, CronFireParams, CronRow, CronRun, CronWriteParams};
// --- stream wf ---
use crate::{
    DependencyResult, WorkflowCancelParams, WorkflowId, WorkflowInsertParams, WorkflowInserted,
    WorkflowJob, WorkflowRow,
};
// --- stream search ---
use crate::{
    args_size, AttemptError, InsertedJob, InvalidInput, JobId, JobInsert, JobRow, JobState,
    Progress, StoreResult, MAX_ARGS_BYTES_DEFAULT, MAX_PROGRESS_DETAILS_BYTES,
};
use crate::{
    BulkOpCreateParams, BulkOpListParams, BulkOpRow, BulkOpStepParams, FailureGroup,
    FailureGroupListParams, JobLogAppended, JobLogLine, JobLogParams,
};
// --- stream alerts ---
use crate::alert::{AlertEvent, AlertRow, AlertTransitionParams, AlertWriteParams};
use crate::{JobCount, JobCriteria, JobSearchPage, JobSearchParams};
// History (issue 13).
use crate::{
    HistoryQueryParams, HistoryRecordParams, HistoryRollupParams, HistoryRollupReport,
    HistoryValue, QueueDepth, WorkerDetails,
};

/// What a store can do beyond the required methods. The runtime asks instead of guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Store::subscribe`] delivers events from other processes too (PostgreSQL
    /// `LISTEN/NOTIFY`). When false, events come only from this process and workers rely on
    /// polling to see other processes' inserts.
    pub cross_process_events: bool,
}

impl Capabilities {
    /// A store whose events reach only the process that caused them (or none at all).
    pub const LOCAL: Capabilities = Capabilities {
        cross_process_events: false,
    };
    /// A store whose events reach every process sharing the database.
    pub const SHARED: Capabilities = Capabilities {
        cross_process_events: true,
    };
}

/// Something that happened in the store that a worker may want to react to at once.
///
/// Events are hints that save a poll, never the source of truth: a worker that misses one
/// still finds the work on its next poll.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// Jobs became available in `queue` (inserted, retried, or the queue was resumed).
    JobsAvailable {
        /// The queue.
        queue: String,
    },
    /// A cancel was requested for a running job.
    JobCancelRequested {
        /// The job.
        id: JobId,
    },
    /// Events may have been lost (a listener reconnected, a receiver lagged): re-check
    /// everything.
    Resync,
}

/// Parameters of [`Store::job_insert_many`].
#[derive(Debug, Clone)]
pub struct JobInsertParams {
    /// The jobs, in order; the result has one entry per job in the same order.
    pub jobs: Vec<JobInsert>,
    /// The insert time: `created_at`, and `run_at` for jobs without one.
    pub now: DateTime<Utc>,
    /// Args larger than this (as compact JSON) are refused.
    pub max_args_bytes: usize,
}

impl JobInsertParams {
    /// Parameters to insert `jobs` at `now` with the default args size limit.
    pub fn new(jobs: Vec<JobInsert>, now: DateTime<Utc>) -> Self {
        JobInsertParams {
            jobs,
            now,
            max_args_bytes: MAX_ARGS_BYTES_DEFAULT,
        }
    }
}

/// Parameters of [`Store::job_claim`].
#[derive(Debug, Clone)]
pub struct JobClaimParams {
    /// The queue to claim from.
    pub queue: String,
    /// Only these kinds; empty means every kind.
    pub kinds: Vec<String>,
    /// The most jobs to claim.
    pub limit: u32,
    /// The claiming worker's id, written to each claimed job.
    pub worker_id: String,
    /// The claim time: jobs with `run_at <= now` are due; `attempted_at` is set to it.
    pub now: DateTime<Utc>,
    /// A lease for each claimed job: `lease_expires_at = now + lease`. Pull workers (another
    /// process talking to a server) hold their jobs by lease instead of by heartbeat row; a
    /// job whose lease lapses is stuck. `None` leaves the job to its worker's heartbeat.
    pub lease: Option<Duration>,
}

/// Parameters of [`Store::job_extend_lease`].
#[derive(Debug, Clone)]
pub struct JobLeaseParams {
    /// The job.
    pub id: JobId,
    /// The fencing token, as in [`JobFinish::fence`].
    pub fence: i64,
    /// The new lease, from `now`.
    pub lease: Duration,
    /// When.
    pub now: DateTime<Utc>,
}

/// A lease that [`Store::job_extend_lease`] extended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseExtended {
    /// When the lease now ends.
    pub expires_at: DateTime<Utc>,
    /// Whether a cancel was requested for the job: the holder should stop and report it.
    pub cancel_requested: bool,
    /// The worker holding the job (as claimed), so the caller can keep that worker's row fresh
    /// without reading the job.
    pub worker_id: Option<String>,
}

/// The outcome of one attempt, as acknowledged by the worker (or decided by the rescuer).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler succeeded: `completed`, with its output as the result.
    Completed {
        /// The handler's output.
        result: Option<Value>,
    },
    /// The attempt failed and the job will run again at `run_at`: `retryable`.
    Retry {
        /// The failure, appended to the error history.
        error: AttemptError,
        /// When to run again (now + backoff).
        run_at: DateTime<Utc>,
    },
    /// The attempt failed and the job will not run again: `discarded` (dead letter).
    Discard {
        /// The failure, appended to the error history.
        error: AttemptError,
    },
    /// Run again at `run_at` without using up an attempt: `available`, `attempt - 1` (the
    /// fence stays: the next claim takes a new one).
    Snooze {
        /// When to run again.
        run_at: DateTime<Utc>,
    },
    /// Stop for good: `cancelled`. The error, if given, is appended to the history.
    Cancel {
        /// Why, if there was an error.
        error: Option<AttemptError>,
    },
    /// Give the job back unrun (shutdown): `available` at its old `run_at`, `attempt - 1`.
    HandBack,
}

/// One acknowledgement in [`Store::job_finish_many`].
#[derive(Debug, Clone, PartialEq)]
pub struct JobFinish {
    /// The job.
    pub id: JobId,
    /// The fencing token: the [`JobRow::fence`] the worker claimed the job with. The finish
    /// applies only if the job is still `running` with exactly this fence. Every claim takes a
    /// new fence and nothing gives one back, so a worker whose job was snoozed, handed back,
    /// rescued or retried and then claimed again can never overwrite the newer claim's outcome,
    /// and a duplicated acknowledgement applies at most once.
    pub fence: i64,
    /// What happened.
    pub outcome: Outcome,
}

/// Parameters of [`Store::job_finish_many`].
#[derive(Debug, Clone)]
pub struct JobFinishParams {
    /// The acknowledgements, at most one per job.
    pub finishes: Vec<JobFinish>,
    /// When: `finished_at` for finished states, and the instant against which leases are
    /// checked.
    pub now: DateTime<Utc>,
    /// A rescue: finish jobs whose lease has lapsed. Only the rescuer sets this. Without it, a
    /// finish for a job whose `lease_expires_at <= now` is refused, so a worker that reports
    /// after its lease ended cannot finish a job the rescuer is about to hand to another.
    pub rescue: bool,
}

impl JobFinishParams {
    /// Workers' acknowledgements (not a rescue) at `now`.
    pub fn new(finishes: Vec<JobFinish>, now: DateTime<Utc>) -> Self {
        JobFinishParams {
            finishes,
            now,
            rescue: false,
        }
    }
}

/// A finish that [`Store::job_finish_many`] applied: the job as the finish left it, with what
/// a caller needs for metrics and an answer, so it need not read the job again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedJob {
    /// The job.
    pub id: JobId,
    /// Its state now: the outcome's, or `cancelled` when a cancel was requested.
    pub state: JobState,
    /// When it runs again (for `available` and `retryable`); its last `run_at` otherwise.
    pub run_at: DateTime<Utc>,
    /// Its attempt count now (given back by a snooze or hand-back).
    pub attempt: i32,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// When the attempt that finished started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// The worker that held it.
    pub worker_id: Option<String>,
    /// Its tenant, for the history's labels (issue 13).
    pub tenant: Option<String>,
}

/// Parameters of [`Store::job_list`].
#[derive(Debug, Clone, Default)]
pub struct JobListParams {
    /// Only jobs in these states; empty means any.
    pub states: Vec<JobState>,
    /// Only these kinds; empty means any.
    pub kinds: Vec<String>,
    /// Only these queues; empty means any.
    pub queues: Vec<String>,
    /// Only this tenant's jobs.
    pub tenant: Option<String>,
    /// Keyset cursor: only jobs with an id below this one (the list runs newest first).
    pub before_id: Option<JobId>,
    /// The most jobs to return.
    pub limit: u32,
}

/// Parameters of [`Store::job_list_stuck`].
#[derive(Debug, Clone)]
pub struct JobStuckParams {
    /// Running jobs without a lease whose worker's last heartbeat is older than this (or whose
    /// worker row is gone) are stuck.
    pub stale_before: DateTime<Utc>,
    /// Running jobs with a lease that ended at or before this instant are stuck, whatever
    /// their worker's row says.
    pub now: DateTime<Utc>,
    /// The most jobs to return.
    pub limit: u32,
}

/// Parameters of [`Store::job_cancel`].
#[derive(Debug, Clone)]
pub struct JobCancelParams {
    /// The job.
    pub id: JobId,
    /// When.
    pub now: DateTime<Utc>,
}

/// Parameters of [`Store::job_retry`].
#[derive(Debug, Clone)]
pub struct JobRetryParams {
    /// The job.
    pub id: JobId,
    /// When: the job's new `run_at`.
    pub now: DateTime<Utc>,
}

/// Parameters of [`Store::job_retry_many`]: which finished jobs to run again.
#[derive(Debug, Clone)]
pub struct JobRetryManyParams {
    /// The finished states to retry (`discarded`, `cancelled`, `completed`); at least one.
    pub states: Vec<JobState>,
    /// Only these queues; empty means any.
    pub queues: Vec<String>,
    /// Only these kinds; empty means any.
    pub kinds: Vec<String>,
    /// Only this tenant's jobs.
    pub tenant: Option<String>,
    /// The most jobs one call retries, so no single statement holds locks for long.
    pub limit: u32,
    /// When: the jobs' new `run_at`.
    pub now: DateTime<Utc>,
}

/// Parameters of [`Store::job_progress`].
#[derive(Debug, Clone)]
pub struct JobProgressParams {
    /// The job.
    pub id: JobId,
    /// The fencing token, as in [`JobFinish::fence`].
    pub fence: i64,
    /// From 0.0 to 1.0.
    pub fraction: f64,
    /// What it is doing now.
    pub message: Option<String>,
    /// Structured details (any JSON), at most [`MAX_PROGRESS_DETAILS_BYTES`] as compact JSON.
    pub details: Option<Value>,
    /// When.
    pub now: DateTime<Utc>,
}

impl JobProgressParams {
    /// Checks the report: a fraction from 0.0 to 1.0, details within the size limit.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `fraction` or `details`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if !(0.0..=1.0).contains(&self.fraction) {
            return Err(InvalidInput::new(
                "fraction",
                format!("must be a number from 0.0 to 1.0, got {}", self.fraction),
            ));
        }
        if let Some(details) = &self.details {
            let size = args_size(details);
            if size > MAX_PROGRESS_DETAILS_BYTES {
                return Err(InvalidInput::new(
                    "details",
                    format!(
                        "is {size} bytes of JSON, over the limit of \
                         {MAX_PROGRESS_DETAILS_BYTES} bytes"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The progress record this report stores.
    pub fn to_progress(&self) -> Progress {
        Progress {
            fraction: self.fraction,
            message: self.message.clone(),
            details: self.details.clone(),
            at: self.now,
        }
    }
}

/// Parameters of [`Store::job_prune`]. `None` leaves that rule off.
#[derive(Debug, Clone, Default)]
pub struct JobPruneParams {
    /// Delete `completed` jobs finished before this.
    pub completed_before: Option<DateTime<Utc>>,
    /// Delete `cancelled` jobs finished before this.
    pub cancelled_before: Option<DateTime<Utc>>,
    /// Delete `discarded` jobs finished before this.
    pub discarded_before: Option<DateTime<Utc>>,
    /// Per queue, keep only the newest N finished jobs (of any finished state).
    pub keep_last: Option<u32>,
    /// The most rows one call deletes, so no single statement holds locks for long.
    pub limit: u32,
    // --- stream counts ---
    /// Per-queue, per-state rules (issue 13, item 9), applied besides the rules above: a job
    /// goes when any rule says so. Empty by default.
    pub queue_rules: Vec<QueuePruneRule>,
}

// --- stream counts ---
/// A retention rule for one queue's jobs in one finished state, in
/// [`JobPruneParams::queue_rules`]: BullMQ's `removeOnComplete: 100` is
/// `keep_last: Some(100)` for `completed`. `None` leaves that half of the rule off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePruneRule {
    /// The queue.
    pub queue: String,
    /// The finished state (`completed`, `cancelled` or `discarded`).
    pub state: JobState,
    /// Delete those jobs finished before this.
    pub finished_before: Option<DateTime<Utc>>,
    /// Keep only the newest N of those jobs (by finish time, then id).
    pub keep_last: Option<u32>,
}

impl QueuePruneRule {
    /// Checks the rule: a finished state.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `state`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if !self.state.is_finished() {
            return Err(InvalidInput::new(
                "state",
                format!(
                    "{} is not a finished state: retention applies to completed, cancelled and \
                     discarded jobs",
                    self.state
                ),
            ));
        }
        Ok(())
    }
}

/// Parameters of [`Store::job_stage`].
#[derive(Debug, Clone)]
pub struct JobStageParams {
    /// Jobs whose `run_at` is at or before this become due.
    pub now: DateTime<Utc>,
    /// The most jobs one call stages, so no single statement holds locks for long.
    pub limit: u32,
}

/// Parameters of [`Store::queue_pause`] and [`Store::queue_resume`].
#[derive(Debug, Clone)]
pub struct QueueParams {
    /// The queue.
    pub queue: String,
    /// When.
    pub now: DateTime<Utc>,
}

/// A queue the store knows settings for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueRow {
    /// The queue's name.
    pub name: String,
    /// Whether workers skip it.
    pub paused: bool,
    /// When it was last paused or resumed.
    pub updated_at: DateTime<Utc>,
}

/// One row of [`Store::job_stats`]: how many jobs of a kind in a queue are in a state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    /// The queue.
    pub queue: String,
    /// The kind.
    pub kind: String,
    /// The state.
    pub state: JobState,
    /// How many.
    pub count: i64,
    // --- stream counts ---
    /// The tenant, `None` for jobs without one: counts are kept per (queue, kind, tenant,
    /// state), so a tenant's numbers never need a count of its rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Of `count`, how many `available` jobs wait in the schedule (their `run_at` is still
    /// ahead: not yet due). Always 0 for other states.
    #[serde(default)]
    pub scheduled: i64,
}

/// Parameters of [`Store::worker_heartbeat`].
#[derive(Debug, Clone)]
pub struct WorkerHeartbeatParams {
    /// The worker's id, unique per process.
    pub id: String,
    /// The machine's host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// Its total concurrency across queues.
    pub concurrency: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Jobs it completed since its previous heartbeat (added to the row's counter).
    pub done_delta: u64,
    /// Attempts that failed since its previous heartbeat (added to the row's counter).
    pub failed_delta: u64,
    /// Jobs it is running now; the reply lists those among them with a cancel requested.
    pub running: Vec<JobId>,
    /// When: the new `heartbeat_at`, and the instant against which jobs are due.
    pub now: DateTime<Utc>,
    /// What it reports for the registry (issue 13); its `running` is replaced by
    /// [`WorkerHeartbeatParams::running`].
    pub details: WorkerDetails,
}

/// What [`Store::worker_heartbeat`] tells the worker back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerHeartbeatReply {
    /// The jobs among [`WorkerHeartbeatParams::running`] that have a cancel requested.
    pub cancel_requested: Vec<JobId>,
    /// The queues among [`WorkerHeartbeatParams::queues`] that are not paused and hold at
    /// least one due job (`available` or `retryable` with `run_at <= now`), by name.
    pub due_queues: Vec<String>,
    /// True when no leader holds an unexpired term at `now`, so followers need not ask for
    /// the lease until the seat is free.
    pub leader_vacant: bool,
}

/// A worker process, as seen through its heartbeat row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    /// Unique per process.
    pub id: String,
    /// The machine's host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// Its total concurrency.
    pub concurrency: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its latest heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Jobs it completed.
    pub jobs_done: i64,
    /// Attempts of its that failed.
    pub jobs_failed: i64,
    /// What it reported with its latest heartbeat (issue 13); `None` for a row written by a
    /// build that did not report it.
    #[serde(default)]
    pub details: Option<WorkerDetails>,
}

/// Parameters of [`Store::leader_attempt_elect`].
#[derive(Debug, Clone)]
pub struct LeaderElectParams {
    /// Who wants to lead (a worker id).
    pub leader_id: String,
    /// When.
    pub now: DateTime<Utc>,
    /// How long the term lasts unless renewed.
    pub ttl: Duration,
}

/// The current leader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderRow {
    /// Who leads.
    pub leader_id: String,
    /// When its term started.
    pub elected_at: DateTime<Utc>,
    /// When its term ends unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// Storage for jobs, queues, workers and the leader lease.
///
/// The worker runtime, the client and the server speak only to this trait; each database has
/// its own crate that implements it, and every implementation passes the conformance suite in
/// `stoker-storetest`. The trait is internal to Stoker for now and may change in any release:
/// implement it outside this repository at your own risk.
///
/// Every method that depends on time takes `now` in its params, so the runtime's clock (and a
/// test's stub clock) decides, never the database's.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs: `sqlite`, `postgres`.
    fn name(&self) -> &'static str;

    /// What this store can do beyond the required methods.
    fn capabilities(&self) -> Capabilities;

    /// Creates or upgrades the schema. Safe to call from several processes at once, and a
    /// no-op when the schema is current.
    async fn migrate(&self) -> StoreResult<()>;

    /// Whether every migration this build knows of has been applied.
    async fn migrations_current(&self) -> StoreResult<bool>;

    /// Subscribes to events from this store, or `None` when it cannot deliver any (e.g.
    /// PostgreSQL in poll-only mode behind a transaction-pooling proxy).
    fn subscribe(&self) -> Option<broadcast::Receiver<StoreEvent>>;

    /// Cancels a job.
    ///
    /// - `available` or `retryable`: becomes `cancelled` with `finished_at = now`.
    /// - `running`: stays `running` with `cancel_requested_at = now`, and a
    ///   [`StoreEvent::JobCancelRequested`] is sent so the worker holding it can stop it; the
    ///   worker's acknowledgement then ends it `cancelled` (see [`Store::job_finish_many`]).
    /// - finished: returned unchanged.
    ///
    /// Returns the job as it is after the call.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) if there is no such job.
    async fn job_cancel(&self, params: JobCancelParams) -> StoreResult<JobRow>;

    /// Claims up to `limit` due jobs of `queue` for `worker_id`, and returns them.
    ///
    /// Due means state `available` or `retryable` with `run_at <= now`, and staged: a job
    /// whose `run_at` was later than the `now` of the call that set it (an insert, a retry
    /// outcome, a snooze) waits in the schedule, outside the claim's index, until
    /// [`Store::job_stage`] runs at or after its `run_at`. So a table of millions of scheduled
    /// jobs costs a claim nothing. They are taken in
    /// order of priority (highest first), then `run_at`, then id. Each claimed job becomes
    /// `running`, with `attempt + 1`, `fence + 1`, `attempted_at = now`, `worker_id` set and
    /// `lease_expires_at = now + lease` (or none without a lease). A job is never
    /// handed to two claimers, however many claim at once. A paused queue yields nothing.
    async fn job_claim(&self, params: JobClaimParams) -> StoreResult<Vec<JobRow>>;

    /// Deletes a job that is not running, and returns it as it was.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such job; `Conflict` if it is running (cancel it first).
    async fn job_delete(&self, id: JobId) -> StoreResult<JobRow>;

    /// Applies attempt outcomes in one round trip, and returns the jobs it applied them to, as
    /// the finishes left them, in input order.
    ///
    /// A finish applies only to a job that is `running` with the given fence (the fencing
    /// token, see [`JobFinish::fence`]) and whose lease, if it has one, ends after `now`
    /// (unless [`JobFinishParams::rescue`]); others are skipped and left out of the result.
    /// No outcome changes the fence. Per [`Outcome`]:
    ///
    /// | outcome | state | also |
    /// |---|---|---|
    /// | `Completed` | `completed` | `result`, `finished_at = now` |
    /// | `Retry` | `retryable` | `run_at`, error appended |
    /// | `Discard` | `discarded` | `finished_at = now`, error appended |
    /// | `Snooze` | `available` | `run_at`, `attempt - 1` |
    /// | `Cancel` | `cancelled` | `finished_at = now`, error appended if any |
    /// | `HandBack` | `available` | `attempt - 1`, `run_at` unchanged |
    ///
    /// For a job with a cancel requested, every outcome but `Completed` ends it `cancelled`
    /// with `finished_at = now` (an outcome's error is still appended, and `attempt` is not
    /// decremented). `worker_id` is kept for the record in every case; `lease_expires_at` is
    /// cleared in every case.
    async fn job_finish_many(&self, params: JobFinishParams) -> StoreResult<Vec<FinishedJob>>;

    /// Fetches one job.
    async fn job_get(&self, id: JobId) -> StoreResult<Option<JobRow>>;

    /// Inserts jobs, in as few statements as the database allows (never one round trip per
    /// job), and returns one [`InsertedJob`] per input job, in order.
    ///
    /// Every job is validated first with [`JobInsert::validate`]; if any is invalid, nothing is
    /// inserted. A job whose `(tenant, unique_key)` matches an existing job is not inserted:
    /// its result carries the existing job's id and `duplicate: true` (also when two inserts
    /// with the same key race, and when the same key appears twice in one batch). Sends a
    /// [`StoreEvent::JobsAvailable`] per queue that got new jobs, coalescing bursts.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field at fault.
    async fn job_insert_many(&self, params: JobInsertParams) -> StoreResult<Vec<InsertedJob>>;

    /// Lists jobs matching every given filter, newest (highest id) first, at most `limit`.
    async fn job_list(&self, params: JobListParams) -> StoreResult<Vec<JobRow>>;

    /// Extends the lease of a job that is `running` with the given fence to `now + lease`.
    /// Returns `None` (and changes nothing) if the job is not running with that fence (it
    /// finished, or was claimed again), or if its lease already ended at or before `now` (a
    /// lapsed lease is never revived: the rescuer owns the job).
    async fn job_extend_lease(&self, params: JobLeaseParams) -> StoreResult<Option<LeaseExtended>>;

    /// Lists running jobs whose worker is gone or silent, or whose lease lapsed (see
    /// [`JobStuckParams`]), oldest attempt first. The rescuer finishes them with the fencing
    /// token they carry.
    async fn job_list_stuck(&self, params: JobStuckParams) -> StoreResult<Vec<JobRow>>;

    /// Records progress of a running job. Returns false (and changes nothing) if the job is
    /// not running with the given fence, or its lease ended at or before `now`.
    ///
    /// # Errors
    ///
    /// `Invalid` naming `fraction` or `details` (see [`JobProgressParams::validate`]).
    async fn job_progress(&self, params: JobProgressParams) -> StoreResult<bool>;

    /// Deletes finished jobs by the given rules, at most `limit`, and returns how many.
    /// Never touches jobs that are not finished. Each rule deletes oldest first through an
    /// index of the finished jobs, so a call costs in proportion to what it deletes.
    ///
    /// # Errors
    ///
    /// `Invalid` naming `state` for a queue rule of a state that is not finished.
    async fn job_prune(&self, params: JobPruneParams) -> StoreResult<u64>;

    /// Moves up to `limit` scheduled jobs whose `run_at` is at or before `now` out of the
    /// schedule, earliest first, so claims see them (see [`Store::job_claim`]); their state
    /// and every other field stay as they are. Returns how many it moved; callers repeat it
    /// while it returns `limit`. Sends [`StoreEvent::JobsAvailable`] for each queue that got
    /// jobs.
    async fn job_stage(&self, params: JobStageParams) -> StoreResult<u64>;

    /// Makes a job run again now: `available` with `run_at = now`, `finished_at` and any
    /// cancel request cleared, and `max_attempts` raised to `attempt + 1` if it had no
    /// attempts left. Its error history is kept. Works on `discarded`, `cancelled`,
    /// `completed`, `retryable` and `available` jobs; a running job is returned unchanged.
    /// Sends [`StoreEvent::JobsAvailable`] for its queue.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such job.
    async fn job_retry(&self, params: JobRetryParams) -> StoreResult<JobRow>;

    /// Retries up to `limit` finished jobs matching the params, lowest id first, each as
    /// [`Store::job_retry`] would, and returns how many. Callers repeat it until it returns 0,
    /// reporting progress between calls (a call may return fewer than `limit` while matches
    /// remain, when other transactions hold some of them). Sends
    /// [`StoreEvent::JobsAvailable`] for each queue that got jobs back.
    ///
    /// # Errors
    ///
    /// `Invalid` if `states` is empty or names a state that is not finished.
    async fn job_retry_many(&self, params: JobRetryManyParams) -> StoreResult<u64> {
        Ok(self.job_retry_many_jobs(params).await?.len() as u64)
    }

    // --- stream history ---
    /// [`Store::job_retry_many`], answering the jobs it retried (each now `available`), so
    /// live events can show each one move (issue 13, item 7).
    ///
    /// # Errors
    ///
    /// As [`Store::job_retry_many`].
    async fn job_retry_many_jobs(
        &self,
        params: JobRetryManyParams,
    ) -> StoreResult<Vec<crate::ChangedJob>>;

    /// Counts jobs by queue, kind, tenant and state, with the scheduled share of `available`
    /// ([`StateCount::scheduled`]); only non-zero counts are returned, one row per key.
    ///
    /// Must stay fast (milliseconds) however many finished jobs the table holds: finished
    /// counts come from counters the store keeps up to date in the same transactions as the
    /// state changes, never from a full-table count.
    async fn job_stats(&self) -> StoreResult<Vec<StateCount>>;

    /// The current leader, if its term has not expired at `now`.
    async fn leader_get(&self, now: DateTime<Utc>) -> StoreResult<Option<LeaderRow>>;

    /// Becomes leader if there is none (or the last one's term expired at `now`), or renews
    /// the term if `leader_id` already leads. Returns whether `leader_id` leads now. At most
    /// one leader holds an unexpired term at any instant, across every process.
    async fn leader_attempt_elect(&self, params: LeaderElectParams) -> StoreResult<bool>;

    /// Gives up leadership if `leader_id` holds it, so another can take over at once.
    async fn leader_resign(&self, leader_id: &str) -> StoreResult<()>;

    /// Lists queues that have settings (ever paused or resumed), by name.
    async fn queue_list(&self) -> StoreResult<Vec<QueueRow>>;

    /// Pauses a queue: [`Store::job_claim`] returns nothing from it until it is resumed. Jobs
    /// can still be inserted. Pausing a paused queue is a no-op.
    ///
    /// # Errors
    ///
    /// `Invalid` if the queue name is not valid.
    async fn queue_pause(&self, params: QueueParams) -> StoreResult<()>;

    /// Resumes a paused queue and sends [`StoreEvent::JobsAvailable`] for it.
    ///
    /// # Errors
    ///
    /// `Invalid` if the queue name is not valid.
    async fn queue_resume(&self, params: QueueParams) -> StoreResult<()>;

    /// Records a worker's heartbeat (creating its row on the first) and adds its counter
    /// deltas; replies with the running jobs that have a cancel requested, the queues that
    /// have due jobs, and whether the leader's seat is vacant.
    ///
    /// This is the one statement an idle worker sends per interval: it keeps the worker from
    /// being rescued, and stands in for polling every queue (so stores should answer it in one
    /// round trip, with one index probe per queue).
    async fn worker_heartbeat(
        &self,
        params: WorkerHeartbeatParams,
    ) -> StoreResult<WorkerHeartbeatReply>;

    /// Lists worker rows, by id.
    async fn worker_list(&self) -> StoreResult<Vec<WorkerRow>>;

    /// Deletes worker rows whose last heartbeat is older than `before`; returns how many.
    async fn worker_prune(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// Deletes a worker's row (on clean shutdown).
    async fn worker_remove(&self, id: &str) -> StoreResult<()>;

    // Recurring schedules (issue 15); see `stoker_core::cron`.

    /// Creates, updates or upserts a schedule (see [`CronWriteParams`]) and returns it. Every
    /// write adds one to its revision, so a fire planned on the old definition loses its
    /// compare-and-set. The caller has validated the schedule.
    ///
    /// # Errors
    ///
    /// `Conflict` when creating a name that exists; `NotFound` when updating one that does
    /// not.
    async fn cron_write(&self, params: CronWriteParams) -> StoreResult<CronRow>;

    /// Fetches one schedule.
    async fn cron_get(&self, name: &str) -> StoreResult<Option<CronRow>>;

    /// Lists every schedule, by name.
    async fn cron_list(&self) -> StoreResult<Vec<CronRow>>;

    /// Deletes a schedule and its history, and returns it as it was. Its jobs stay.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such schedule.
    async fn cron_delete(&self, name: &str) -> StoreResult<CronRow>;

    /// Enabled schedules with `next_slot <= now`, earliest first, at most `limit`, and the
    /// earliest `next_slot` among the others. This is what an idle firer asks each tick: one
    /// indexed read.
    async fn cron_due(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<CronDue>;

    /// Fires slots of a schedule in one transaction.
    ///
    /// With [`CronFireParams::advance`], first moves the schedule's `next_slot` from
    /// `advance.from` to `advance.to` only if it is still enabled, at revision
    /// `advance.revision` and at `next_slot = advance.from` (a compare-and-set); if not,
    /// writes nothing and returns [`CronFireOutcome::Lost`]. So among any number of callers
    /// racing for one slot, exactly one fires it. Then, under [`Overlap::Skip`] with the
    /// schedule's latest run's job still unfinished, records the newest slot as skipped and
    /// returns [`CronFireOutcome::SkippedOverlap`]. Otherwise inserts each slot's job (their
    /// idempotency keys make a slot's job unique even past the compare-and-set), sets
    /// `last_slot`, records one run per slot (keeping the newest
    /// [`CRON_HISTORY_KEEP`](crate::cron::CRON_HISTORY_KEEP)), and returns the jobs.
    ///
    /// Without `advance` (a manual run), inserts and records the jobs only.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such schedule (for a manual run); `Invalid` for a bad job.
    ///
    /// [`Overlap::Skip`]: crate::cron::Overlap::Skip
    async fn cron_fire(&self, params: CronFireParams) -> StoreResult<CronFireOutcome>;

    /// The newest `limit` runs of a schedule, newest first, with their jobs' states.
    async fn cron_history(&self, name: &str, limit: u32) -> StoreResult<Vec<CronRun>>;
    // --- Failure groups, bulk operations and job logs (issue 13, items 3, 4, 6). ---
    //
    // Failed attempts are grouped by `job_finish_many` itself: for each applied `Retry` or
    // `Discard` outcome (and a cancel-requested job's failed attempt), in the same
    // transaction, it upserts the attempt's `FailureRecord` into its group and marks the job
    // with the group's fingerprint. Batches of completions alone run exactly as before.

    /// Lists failure groups, most recently seen first (see [`FailureGroupListParams`]).
    ///
    /// # Errors
    ///
    /// `Invalid` naming `limit`, `kind` or `until`.
    async fn failure_group_list(
        &self,
        params: FailureGroupListParams,
    ) -> StoreResult<Vec<FailureGroup>>;

    /// Fetches one failure group by fingerprint.
    async fn failure_group_get(&self, fingerprint: &str) -> StoreResult<Option<FailureGroup>>;

    /// Creates a bulk operation in state `running` and returns it. Only checks that at least
    /// one job matches (one bounded index probe): the work is done by
    /// [`Store::bulk_op_step`]. Jobs inserted after it was created are never visited.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field at fault, or `filter` if no job matches it.
    async fn bulk_op_create(&self, params: BulkOpCreateParams) -> StoreResult<BulkOpRow>;

    /// Fetches one bulk operation.
    async fn bulk_op_get(&self, id: i64) -> StoreResult<Option<BulkOpRow>>;

    /// Lists bulk operations, newest first.
    ///
    /// # Errors
    ///
    /// `Invalid` naming `limit`.
    async fn bulk_op_list(&self, params: BulkOpListParams) -> StoreResult<Vec<BulkOpRow>>;

    /// Stops a running bulk operation: it becomes `aborted` and no further batch runs.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such operation; `Conflict` if it already ended.
    async fn bulk_op_abort(&self, id: i64, now: DateTime<Utc>) -> StoreResult<BulkOpRow>;

    /// Runs one batch of the oldest running bulk operation, in one transaction with its
    /// progress: visits the next matching jobs after its cursor (at most `limit`, among at
    /// most ten times as many ids), applies the action to those it applies to, adds to
    /// `matched`, `done` and `skipped`, and moves the cursor; at `max_id` it is `done`.
    /// Returns the operation as the batch left it, or `None` when none is running.
    async fn bulk_op_step(&self, params: BulkOpStepParams) -> StoreResult<Option<BulkOpRow>> {
        Ok(self.bulk_op_step_jobs(params).await?.map(|step| step.op))
    }

    // --- stream history ---
    /// [`Store::bulk_op_step`], answering also the jobs the batch changed (or deleted), so
    /// live events can show each one move (issue 13, item 7). A batch changes at most
    /// `limit` jobs, so the answer is bounded too.
    async fn bulk_op_step_jobs(
        &self,
        params: BulkOpStepParams,
    ) -> StoreResult<Option<crate::BulkOpStep>>;

    /// Appends log lines to a running job, fenced like [`Store::job_progress`]. Returns `None`
    /// (and stores nothing) if the job is not running with that fence or its lease ended.
    /// Lines beyond the job's limits ([`crate::JOB_LOG_MAX_LINES`],
    /// [`crate::JOB_LOG_MAX_BYTES`]) are dropped and counted.
    ///
    /// # Errors
    ///
    /// `Invalid` naming `lines` (see [`JobLogParams::validate`]).
    async fn job_log_append(&self, params: JobLogParams) -> StoreResult<Option<JobLogAppended>>;

    /// A job's log lines, oldest first (empty for a job without any, or no such job). Deleting
    /// or pruning a job deletes its lines.
    async fn job_logs(&self, id: JobId) -> StoreResult<Vec<JobLogLine>>;
    // --- History (issue 13) ---

    /// Adds per-minute deltas to the history, in one statement however many there are:
    /// counters add, gauges keep the highest sample of their minute. Rows are keyed by
    /// `(minute, queue, kind, tenant, metric)`; a delta for a minute already rolled up is still
    /// added, and the next [`Store::history_rollup`] folds it in.
    async fn history_record(&self, params: HistoryRecordParams) -> StoreResult<()>;

    /// Reads the history of one grain for buckets in `[from, to)`, merged over the labels in
    /// scope, by bucket then metric. Reads a range of the history's key: never the jobs.
    async fn history_query(&self, params: HistoryQueryParams) -> StoreResult<Vec<HistoryValue>>;

    /// Folds minutes into hours and hours into days, from the latest bucket already rolled up
    /// to the one holding `now` (a partial bucket is recomputed on the next call), and
    /// deletes rows past each grain's retention. Idempotent: calling it twice writes the same
    /// rows.
    async fn history_rollup(&self, params: HistoryRollupParams)
        -> StoreResult<HistoryRollupReport>;

    /// Per queue with waiting jobs: how many are due, how many scheduled, and the `run_at` of
    /// the oldest due one (sampled into the history each minute, and exported as gauges).
    /// Reads the fetch and schedule indexes, not finished jobs.
    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>>;
    // --- stream alerts ---
    // Alert rules (issue 13, item 8); see `stoker_core::alert`.

    /// Creates, updates or upserts a rule (see [`AlertWriteParams`]) and returns it. An update
    /// keeps the rule's status; every write that changes it adds one to its `version`, so an
    /// evaluation of the old definition loses its compare-and-set.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field at fault (see [`AlertRule::validate`](crate::alert::AlertRule::validate));
    /// `Conflict` when creating a name that exists; `NotFound` when updating one that does not.
    async fn alert_write(&self, params: AlertWriteParams) -> StoreResult<AlertRow>;

    /// Fetches one rule.
    async fn alert_get(&self, name: &str) -> StoreResult<Option<AlertRow>>;

    /// Lists every rule, by name.
    async fn alert_list(&self) -> StoreResult<Vec<AlertRow>>;

    /// Deletes a rule and its events, and returns it as it was. Delivery jobs already
    /// inserted stay.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such rule.
    async fn alert_delete(&self, name: &str) -> StoreResult<AlertRow>;

    /// Moves a rule to a new status in one transaction, only if it is still at
    /// `params.version` (a compare-and-set): writes the status, adds one to the version,
    /// inserts `params.jobs` and, with `params.event`, records the event with the first job's
    /// id (keeping the newest [`ALERT_EVENTS_KEEP`](crate::alert::ALERT_EVENTS_KEEP) per rule).
    /// Returns the rule as it is now, or `None` (having written nothing) when the rule is gone
    /// or its version moved: another evaluator, or an edit, got there first. So however many
    /// processes evaluate, each change is sent once.
    ///
    /// # Errors
    ///
    /// `Invalid` for a bad job.
    async fn alert_transition(
        &self,
        params: AlertTransitionParams,
    ) -> StoreResult<Option<AlertRow>>;

    /// A rule's newest `limit` events, newest first (empty for an unknown rule).
    async fn alert_events(&self, name: &str, limit: u32) -> StoreResult<Vec<AlertEvent>>;
    // --- stream search ---

    /// One page of jobs matching [`JobSearchParams::criteria`], walking from the cursor in
    /// its direction along the criteria's [driver](crate::JobCriteria::driver) index and
    /// reading at most `scan_max` rows of it (see [`crate::search_cursors`] for the cursors
    /// and `partial`). Never reads more: a sparse criterion yields a short page with a cursor
    /// to go on.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field (see [`JobSearchParams::validate`]).
    async fn job_search(&self, params: JobSearchParams) -> StoreResult<JobSearchPage>;

    /// Counts jobs matching `criteria`, newest first along its driver: exact when at most
    /// [`crate::JOB_COUNT_CAP`] match within [`crate::JOB_COUNT_SCAN_MAX`] rows of the driver
    /// and the driver holds no more; otherwise a lower bound (`exact: false`).
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field (see [`JobCriteria::validate_as`]).
    async fn job_count(&self, criteria: JobCriteria) -> StoreResult<JobCount>;
    // --- stream tokens ---

    /// Stores a new API token (see [`crate::TokenRow`]); the caller has validated it and
    /// hashed its secret.
    ///
    /// # Errors
    ///
    /// `Conflict` if a token with that id exists.
    async fn token_create(&self, params: crate::TokenCreateParams) -> StoreResult<crate::TokenRow>;

    /// Fetches one token by id, revoked and expired ones included.
    async fn token_get(&self, id: &str) -> StoreResult<Option<crate::TokenRow>>;

    /// Lists every token, revoked and expired ones included, oldest first.
    async fn token_list(&self) -> StoreResult<Vec<crate::TokenRow>>;

    /// Revokes a token at `now` and returns it; revoking a revoked token keeps its first
    /// revocation time.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such token.
    async fn token_revoke(&self, id: &str, now: DateTime<Utc>) -> StoreResult<crate::TokenRow>;

    /// Sets a token's last use to `now` unless it was set less than
    /// [`crate::TOKEN_TOUCH_EVERY_SECONDS`] before; returns whether it wrote.
    async fn token_touch(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool>;

    // --- stream flow ---
    /// Creates or replaces a limit by name (issue 16). It applies to claims at once on this
    /// node and within [`crate::LIMIT_CACHE_TTL`] on every other; limiters it already has
    /// keep their token-bucket time and running count.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field ([`crate::LimitSpec::validate`]); nothing is written.
    async fn limit_set(&self, params: crate::LimitSetParams) -> StoreResult<crate::LimitRow>;

    /// Every limit, by name.
    async fn limit_list(&self) -> StoreResult<Vec<crate::LimitRow>>;

    /// Deletes a limit and its limiters; its jobs run unlimited from then on.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such limit.
    async fn limit_delete(&self, name: &str) -> StoreResult<crate::LimitRow>;

    /// Every limiter that holds a running job or is throttled at `now`, by limit and key.
    async fn limit_usage(&self, now: DateTime<Utc>) -> StoreResult<Vec<crate::LimitUsage>>;

    /// Holds a limiter back until `params.until` (a provider answered HTTP 429): its jobs are
    /// not claimed before then.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such limit; `Invalid` naming `name`.
    async fn limit_push_back(&self, params: crate::LimitPushBackParams) -> StoreResult<()>;

    /// Recounts every limiter's running jobs from the jobs themselves, fixing any drift (which
    /// only a bug could cause: every exit from `running` releases its slots in the same
    /// transaction). Returns how many limiters it corrected.
    async fn limit_reconcile(&self) -> StoreResult<u64>;

    /// When a limiter that refused jobs in the last claim of `queue` on this handle admits one
    /// again, so a worker whose claim came back short sleeps until then, not a poll interval.
    fn limit_wake_at(&self, queue: &str) -> Option<DateTime<Utc>> {
        let _ = queue;
        None
    }
    // --- stream wf ---
    // Workflows (issue 18); see `stoker_core::workflow` for the model. A job that others
    // depend on resolves its edges in the same transaction as whatever moves it into a
    // finished state; a job without dependents pays nothing for it.

    /// Inserts a workflow's jobs and edges in one transaction (all or none): jobs with
    /// dependencies `blocked` with their count of unresolved edges, the others `available`.
    /// With [`WorkflowInsertParams::workflow`], adds them to an existing workflow (dynamic
    /// fan-out); node dependencies may then name its existing nodes. A dependency on a job
    /// that already completed (or failed, under [`DepPolicy::Run`](crate::DepPolicy::Run))
    /// counts as resolved; on one that failed under `Hold`, the job waits until it is retried
    /// and completes.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field and node (see [`WorkflowInsertParams::validate`]), or a
    /// dependency on a missing job, another tenant's job, or a failed job under
    /// [`DepPolicy::Cancel`](crate::DepPolicy::Cancel); `NotFound` for an unknown workflow
    /// (or another tenant's); `Conflict` for a cancelled one.
    async fn workflow_insert(&self, params: WorkflowInsertParams) -> StoreResult<WorkflowInserted>;

    /// A workflow with its state, counts and (once completed) result: one read of its jobs
    /// through the workflow index.
    async fn workflow_get(&self, id: WorkflowId) -> StoreResult<Option<WorkflowRow>>;

    /// A workflow's jobs with their edges, by id: what a graph is drawn from.
    async fn workflow_jobs(&self, id: WorkflowId) -> StoreResult<Vec<WorkflowJob>>;

    /// Cancels a workflow in one transaction: marks it cancelled (no job can be added to it),
    /// cancels its waiting jobs (blocked, available, retryable) and requests the cancel of its
    /// running ones. Returns it as it is now.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such workflow.
    async fn workflow_cancel(&self, params: WorkflowCancelParams) -> StoreResult<WorkflowRow>;

    /// The dependencies of a job with their states and results, in the order of their ids
    /// (empty for a job without any).
    async fn job_dependency_results(&self, id: JobId) -> StoreResult<Vec<DependencyResult>>;

    /// The workflow a job belongs to and its node name there, if it is in one: what a handler
    /// adds its workflow's next jobs to.
    async fn job_workflow(&self, id: JobId) -> StoreResult<Option<(WorkflowId, String)>>;
    // --- stream tenancy ---

    /// [`Store::job_claim`] limited to the jobs of `tenant` (issue 17): a pull worker bound to
    /// a tenant reserves only that tenant's jobs, by the same rules (due, staged, priority
    /// order, never twice, nothing from a paused queue).
    async fn job_claim_tenant(
        &self,
        params: JobClaimParams,
        tenant: &str,
    ) -> StoreResult<Vec<JobRow>>;

    /// Appends one row to the audit log (issue 17) and returns it with its id. Ids ascend in
    /// the order rows are written. There is no way to change a row.
    async fn audit_append(&self, entry: crate::AuditEntry) -> StoreResult<crate::AuditRow>;

    /// Audit rows matching `params`, newest (highest id) first.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field (see [`crate::AuditListParams::validate`]).
    async fn audit_list(&self, params: crate::AuditListParams)
        -> StoreResult<Vec<crate::AuditRow>>;

    /// Deletes up to `limit` audit rows written before `before`, oldest first, and returns how
    /// many it deleted (call again while it deletes `limit`).
    async fn audit_prune(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<u64>;

    /// Applies a management action and appends `entry` to the audit log in one transaction
    /// (issue 17): the row exists if and only if the change committed. The action behaves,
    /// fails and notifies as its plain operation does (see [`crate::AuditedAction`]); a
    /// failed action, and one that changed nothing, writes no row. For actions over many
    /// jobs the store sets the row's `affected` to the count it changed.
    async fn audited(
        &self,
        action: crate::AuditedAction,
        entry: crate::AuditEntry,
    ) -> StoreResult<crate::AuditedOutcome>;
    // --- stream ops ---

    /// The failed attempts of the given groups per hour, for the hours overlapping
    /// `[from, to)` (see [`crate::FailureCountParams`]), by fingerprint then hour; hours
    /// without a failure are left out. [`Store::job_finish_many`] adds each failed attempt to
    /// its group's hour in the same transaction as the group; [`Store::history_rollup`]
    /// deletes hours past the history's hour retention. Reads a range of one index per group,
    /// never the jobs.
    ///
    /// # Errors
    ///
    /// `Invalid` naming `fingerprints` or `to` (see [`crate::FailureCountParams::validate`]).
    async fn failure_group_counts(
        &self,
        params: crate::FailureCountParams,
    ) -> StoreResult<Vec<crate::FailureHour>>;
    // --- stream crypt ---

    /// Jobs whose args or result are sealed (a JSON object with a `$enc` key, see
    /// [`crate::SealedJob`]) under a key id other than `except_kid`, by id ascending after
    /// `after`: the walk of a key rotation. Reads no index but the primary key.
    async fn job_sealed_list(
        &self,
        params: crate::JobSealedListParams,
    ) -> StoreResult<Vec<crate::SealedJob>>;

    /// Replaces sealed args or results, each only if the stored value still carries the
    /// nonce it was read with (see [`crate::SealedRewrite`]), in one transaction; returns how
    /// many were replaced. Nothing else of the job changes.
    async fn job_sealed_rewrite(&self, rewrites: Vec<crate::SealedRewrite>) -> StoreResult<u64>;
    // --- stream workflows ---
    // Batches (issue 18); see `stoker_core::batch` for the model.

    /// Creates a batch, or adds jobs to an open one, in one transaction (all or none): the
    /// jobs, the batch's counters, and on create its callback, inserted `blocked`. With
    /// [`BatchInsertParams::close`](crate::BatchInsertParams::close) the batch is closed in the same transaction, and if
    /// nothing is pending its callback is released at once.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field (see [`BatchInsertParams::validate`](crate::BatchInsertParams::validate)); `NotFound` for an
    /// unknown batch (or another tenant's); `Conflict` for one closed or cancelled.
    async fn batch_insert(
        &self,
        params: crate::BatchInsertParams,
    ) -> StoreResult<crate::BatchInserted>;

    /// A batch with its counters: one row's read, whatever its size.
    async fn batch_get(&self, id: crate::BatchId) -> StoreResult<Option<crate::BatchRow>>;

    /// Batches matching `params`, newest (highest id) first.
    ///
    /// # Errors
    ///
    /// `Invalid` naming `limit`.
    async fn batch_list(&self, params: crate::BatchListParams)
        -> StoreResult<Vec<crate::BatchRow>>;

    /// Cancels a batch in one transaction: marks it cancelled and closed (no job can be added
    /// to it), cancels its callback and its waiting jobs (blocked, available, retryable) and
    /// requests the cancel of its running ones. Returns it as it is now; a batch already
    /// finished or cancelled is returned unchanged.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such batch.
    async fn batch_cancel(
        &self,
        id: crate::BatchId,
        now: DateTime<Utc>,
    ) -> StoreResult<crate::BatchRow>;

    /// The batch a job belongs to, if any: what a handler adds its siblings to.
    async fn job_batch(&self, id: JobId) -> StoreResult<Option<crate::BatchId>>;

    /// Workflows matching `params`, newest (highest id) first, each with its state and counts.
    ///
    /// # Errors
    ///
    /// `Invalid` naming `limit`.
    async fn workflow_list(
        &self,
        params: crate::WorkflowListParams,
    ) -> StoreResult<Vec<crate::WorkflowRow>>;

    /// Enqueues children that the running job `params.parent` waits for (see
    /// [`crate::children`]), in one transaction: the jobs, each one's link to the parent and
    /// policy, and the parent's count of pending children. A duplicate (matched idempotency
    /// key) is linked if it is unfinished and waited for by no other job. Returns `None`,
    /// writing nothing, if the parent is not running under `params.fence` with a live lease.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the field (see [`crate::ChildrenInsertParams::validate`]).
    async fn job_children_insert(
        &self,
        params: crate::ChildrenInsertParams,
    ) -> StoreResult<Option<Vec<InsertedJob>>>;

    /// Finishes the running job `params.id` as a parent that waits for its children: with
    /// none pending it completes (or, if a child failed under `cancel`, ends cancelled) as any
    /// finish would; else it moves to `blocked` with its result kept, and the transaction that
    /// resolves its last child completes it. Returns the job as it is now, or `None` if it is
    /// not running under `params.fence` with a live lease.
    async fn job_wait_children(
        &self,
        params: crate::WaitChildrenParams,
    ) -> StoreResult<Option<FinishedJob>>;

    /// A job's wait for its children; `None` if it never enqueued a child it waits for.
    async fn job_children(&self, id: JobId) -> StoreResult<Option<crate::ChildrenWait>>;
    // --- stream tenant ---

    /// [`Store::queue_depths`] counting only the jobs of `tenant` (issue 17): each queue
    /// holding a waiting job of the tenant, with its due and scheduled jobs and the `run_at`
    /// of its longest-waiting due one.
    async fn queue_depths_tenant(&self, tenant: &str) -> StoreResult<Vec<crate::QueueDepth>>;

    /// [`Store::job_prune`] limited to the finished jobs of `tenant` (issue 17): deletes up to
    /// `params.limit` of them by the age rules (`completed_before`, `cancelled_before`,
    /// `discarded_before`), oldest first, sparing what a workflow still needs, and moves the
    /// tenant's finished counts with them in the same transaction. Returns how many it deleted.
    ///
    /// # Errors
    ///
    /// `Invalid` naming `keep_last` or `queue_rules` when either is given: those rules count
    /// every tenant's jobs of a queue, so they do not apply to one tenant.
    async fn job_prune_tenant(&self, params: JobPruneParams, tenant: &str) -> StoreResult<u64>;
}

/// A store that can insert jobs on a caller's own connection, inside the caller's own
/// transaction, so the jobs exist only if that transaction commits (the outbox pattern).
///
/// `C` is the driver's connection type, e.g. `sqlx::PgConnection`; a `sqlx::Transaction`
/// derefs to it.
#[async_trait]
pub trait StoreTx<C: ?Sized + Send>: Store {
    /// Like [`Store::job_insert_many`], but on `conn`. Events about the new jobs are delivered
    /// only if and when the caller's transaction commits (PostgreSQL `NOTIFY` is
    /// transactional); stores that cannot tie events to the commit send none, and workers see
    /// the jobs on their next poll.
    async fn job_insert_many_tx(
        &self,
        conn: &mut C,
        params: JobInsertParams,
    ) -> StoreResult<Vec<InsertedJob>>;
}

// --- stream tenant ---
impl JobPruneParams {
    /// Checks the rules [`Store::job_prune_tenant`] applies: only the age rules, since
    /// `keep_last` and `queue_rules` count every tenant's jobs of a queue.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `keep_last` or `queue_rules`.
    pub fn validate_for_tenant(&self) -> Result<(), InvalidInput> {
        if self.keep_last.is_some() {
            return Err(InvalidInput::new(
                "keep_last",
                "keeps the newest jobs of every tenant, so it does not apply to one tenant",
            ));
        }
        if !self.queue_rules.is_empty() {
            return Err(InvalidInput::new(
                "queue_rules",
                "count every tenant's jobs of a queue, so they do not apply to one tenant",
            ));
        }
        Ok(())
    }
}
