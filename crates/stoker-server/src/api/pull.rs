//! The pull protocol: workers in any language reserve jobs over HTTP and report on them.
//!
//! 1. `POST /v1/pull/reserve` claims up to `max_jobs` due jobs of the worker's queues, each
//!    `running` under `pull:<worker>` with a lease. With `wait_seconds` the request waits for
//!    a job (long-poll): it is woken the moment the store announces jobs in one of its queues
//!    (PostgreSQL `LISTEN/NOTIFY`, in-process signals on SQLite), and re-checks every
//!    `pull.poll_interval` only as a fallback for scheduled jobs and inserts by other processes
//!    on stores without cross-process events.
//! 2. While working: `heartbeat` extends the lease (and says whether a cancel was requested),
//!    `progress` records progress.
//! 3. Then `complete`, `fail` (retried with backoff while attempts remain, else discarded; or
//!    discarded at once with `discard: true`) or `snooze`.
//!
//! Every call after reserve carries the `attempt` the job was reserved with. A worker whose
//! lease lapsed (the rescuer returned the job to its queue, counting a failed attempt "worker
//! lost") or whose job already finished gets 409 `stale_attempt`, and must drop the job.
//!
//! Each pull worker gets a worker row (`pull:<name>`), so it shows in `GET /v1/workers`. The
//! row is written when the worker first reserves, then at most once a second while it calls
//! this server (reserves, waits in a long-poll, extends leases, reports), carrying its
//! completed and failed counters. A worker that reserved through one server and reports
//! through another has its row kept by the first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use stoker::core::{
    validate_kind, validate_queue, JobClaimParams, JobFinish, JobFinishParams, JobLeaseParams,
    JobProgressParams, Outcome, StoreEvent, WorkerHeartbeatParams,
};
use stoker::{AttemptError, AttemptResult, Backoff, ErrorKind, JobId, JobRow, JobState};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::extract::{ApiJson, ApiPath};
use super::jobs::seconds;
use super::model::{
    AckResponse, CompleteRequest, ErrorBody, ExtendLeaseRequest, FailRequest, JobView,
    LeaseResponse, ProgressRequest, ReserveRequest, ReserveResponse, SnoozeRequest,
};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// The prefix of pull workers' ids.
pub(crate) const PULL_PREFIX: &str = "pull:";
/// The most jobs one reserve request takes.
pub(crate) const RESERVE_MAX: u32 = 100;
/// The longest pull worker name.
const WORKER_NAME_MAX: usize = 128;
/// A pull worker's row is rewritten at most this often by its calls.
const HEARTBEAT_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// A pull worker this server has not heard from for this long is forgotten (its row stays
/// until the pruner deletes it).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The pull workers this server has seen, with counters not yet written to their rows.
#[derive(Debug, Default)]
pub(crate) struct PullWorkers {
    inner: Mutex<HashMap<String, PullWorker>>,
}

#[derive(Debug, Clone)]
struct PullWorker {
    host: String,
    pid: u32,
    queues: Vec<String>,
    concurrency: u32,
    started_at: DateTime<Utc>,
    done: u64,
    failed: u64,
    /// When its row was last written; `None` forces a write.
    written: Option<Instant>,
    /// When this server last heard from it.
    seen: Instant,
}

impl PullWorkers {
    /// Records a reserve call; returns the heartbeat to write now, if one is due.
    fn touch(
        &self,
        id: &str,
        request: &ReserveRequest,
        now: DateTime<Utc>,
    ) -> Option<WorkerHeartbeatParams> {
        let mut inner = self.inner.lock().expect("pull workers lock");
        let worker = inner.entry(id.to_owned()).or_insert_with(|| PullWorker {
            host: String::new(),
            pid: 0,
            queues: Vec::new(),
            concurrency: 0,
            started_at: now,
            done: 0,
            failed: 0,
            written: None,
            seen: Instant::now(),
        });
        worker.seen = Instant::now();
        let host = request.host.clone().unwrap_or_else(|| "unknown".to_owned());
        let pid = request.pid.unwrap_or(0);
        let concurrency = request.max_jobs.unwrap_or(1);
        let changed = worker.host != host
            || worker.pid != pid
            || worker.queues != request.queues
            || worker.concurrency != concurrency;
        worker.host = host;
        worker.pid = pid;
        worker.queues = request.queues.clone();
        worker.concurrency = concurrency;
        let due = changed
            || worker
                .written
                .is_none_or(|written| written.elapsed() >= HEARTBEAT_MIN_INTERVAL);
        due.then(|| Self::take(id, worker, now))
    }

    /// Records a call of a known pull worker (one that reserved through this server); returns
    /// the heartbeat to write now, if one is due.
    fn beat(&self, id: Option<&str>, now: DateTime<Utc>) -> Option<WorkerHeartbeatParams> {
        let id = id?;
        let mut inner = self.inner.lock().expect("pull workers lock");
        let worker = inner.get_mut(id)?;
        worker.seen = Instant::now();
        let due = worker
            .written
            .is_none_or(|written| written.elapsed() >= HEARTBEAT_MIN_INTERVAL);
        due.then(|| Self::take(id, worker, now))
    }

    /// Adds to a known pull worker's counters (unknown ones were reserved through another
    /// server, which keeps their row).
    fn count(&self, id: Option<&str>, done: u64, failed: u64) {
        let Some(id) = id else { return };
        let mut inner = self.inner.lock().expect("pull workers lock");
        if let Some(worker) = inner.get_mut(id) {
            worker.done += done;
            worker.failed += failed;
        }
    }

    /// The heartbeats of workers with unwritten counters; forgets long-silent workers.
    fn pending(&self, now: DateTime<Utc>) -> Vec<WorkerHeartbeatParams> {
        let mut inner = self.inner.lock().expect("pull workers lock");
        inner.retain(|_, worker| {
            worker.seen.elapsed() < FORGET_AFTER || worker.done > 0 || worker.failed > 0
        });
        inner
            .iter_mut()
            .filter(|(_, worker)| worker.done > 0 || worker.failed > 0)
            .map(|(id, worker)| Self::take(id, worker, now))
            .collect()
    }

    fn take(id: &str, worker: &mut PullWorker, now: DateTime<Utc>) -> WorkerHeartbeatParams {
        let params = WorkerHeartbeatParams {
            id: id.to_owned(),
            host: worker.host.clone(),
            pid: worker.pid,
            queues: worker.queues.clone(),
            concurrency: worker.concurrency,
            started_at: worker.started_at,
            done_delta: worker.done,
            failed_delta: worker.failed,
            running: Vec::new(),
            now,
        };
        worker.done = 0;
        worker.failed = 0;
        worker.written = Some(Instant::now());
        params
    }

    /// Puts counters back after a failed write.
    fn restore(&self, params: &WorkerHeartbeatParams) {
        let mut inner = self.inner.lock().expect("pull workers lock");
        if let Some(worker) = inner.get_mut(&params.id) {
            worker.done += params.done_delta;
            worker.failed += params.failed_delta;
            worker.written = None;
        }
    }
}

async fn write_heartbeat(state: &AppState, params: WorkerHeartbeatParams) {
    if let Err(err) = state.inner.store.worker_heartbeat(params.clone()).await {
        tracing::warn!(worker = %params.id, %err, "could not write a pull worker's heartbeat");
        state.inner.pull_workers.restore(&params);
    }
}

/// Refreshes the row of the pull worker holding a job, at most once a second.
async fn beat(state: &AppState, worker_id: Option<&str>) {
    if let Some(params) = state.inner.pull_workers.beat(worker_id, state.now()) {
        write_heartbeat(state, params).await;
    }
}

/// Writes pull workers' counters every `interval` until `stop`, then once more.
pub(crate) async fn run_flusher(state: AppState, interval: Duration, stop: CancellationToken) {
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(interval) => false,
            () = stop.cancelled() => true,
        };
        for params in state.inner.pull_workers.pending(state.now()) {
            write_heartbeat(&state, params).await;
        }
        if stopping {
            return;
        }
    }
}

/// Checks the caller may use the pull protocol.
fn authorize(principal: &Principal) -> Result<(), ApiError> {
    principal.require(Scope::Work)?;
    principal.require_cluster("the pull protocol")
}

/// A lease from the request, within the server's limits.
fn lease(state: &AppState, requested: Option<f64>) -> Result<Duration, ApiError> {
    let settings = &state.inner.pull;
    let Some(requested) = requested else {
        return Ok(settings.lease);
    };
    let lease = seconds(requested, "lease_seconds", false)?;
    if lease > settings.max_lease {
        return Err(ApiError::invalid(
            "lease_seconds",
            format!(
                "lease_seconds must be at most {} (the server's pull.max_lease), got {requested}",
                settings.max_lease.as_secs_f64()
            ),
        ));
    }
    Ok(lease)
}

fn check_reserve(request: &ReserveRequest) -> Result<(), ApiError> {
    let name = &request.worker;
    if name.is_empty()
        || name.len() > WORKER_NAME_MAX
        || name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ApiError::invalid(
            "worker",
            format!(
                "worker must be a name of 1 to {WORKER_NAME_MAX} characters without spaces, \
                 unique per worker process"
            ),
        ));
    }
    if request.queues.is_empty() {
        return Err(ApiError::invalid("queues", "name at least one queue"));
    }
    for (index, queue) in request.queues.iter().enumerate() {
        validate_queue(queue)
            .map_err(|err| ApiError::invalid(format!("queues[{index}]"), err.to_string()))?;
    }
    for (index, kind) in request.kinds.iter().enumerate() {
        validate_kind(kind)
            .map_err(|err| ApiError::invalid(format!("kinds[{index}]"), err.to_string()))?;
    }
    let max_jobs = request.max_jobs.unwrap_or(1);
    if !(1..=RESERVE_MAX).contains(&max_jobs) {
        return Err(ApiError::invalid(
            "max_jobs",
            format!("max_jobs must be between 1 and {RESERVE_MAX}, got {max_jobs}"),
        ));
    }
    Ok(())
}

/// Claims up to `limit` jobs from the queues, in order.
async fn claim(
    state: &AppState,
    request: &ReserveRequest,
    worker_id: &str,
    lease: Duration,
) -> Result<Vec<JobRow>, ApiError> {
    let mut limit = request.max_jobs.unwrap_or(1);
    let mut jobs = Vec::new();
    for queue in &request.queues {
        if limit == 0 {
            break;
        }
        let claimed = state
            .inner
            .store
            .job_claim(JobClaimParams {
                queue: queue.clone(),
                kinds: request.kinds.clone(),
                limit,
                worker_id: worker_id.to_owned(),
                now: state.now(),
                lease: Some(lease),
            })
            .await?;
        limit -= u32::try_from(claimed.len()).unwrap_or(limit).min(limit);
        jobs.extend(claimed);
    }
    Ok(jobs)
}

/// Waits until the store announces jobs in one of `queues` (or may have lost events).
async fn jobs_announced(events: &mut Option<broadcast::Receiver<StoreEvent>>, queues: &[String]) {
    let Some(receiver) = events.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match receiver.recv().await {
            Ok(StoreEvent::JobsAvailable { queue }) if queues.contains(&queue) => return,
            Ok(StoreEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Closed) => {
                *events = None;
                return std::future::pending().await;
            }
        }
    }
}

/// Reserve jobs.
///
/// Claims up to `max_jobs` due jobs of the given queues (and kinds), each held by a lease.
/// With `wait_seconds`, waits up to that long for a job when none is due, answering the
/// moment one is enqueued; an empty list means none arrived in time.
#[utoipa::path(
    post,
    path = "/v1/pull/reserve",
    tag = "pull",
    request_body = ReserveRequest,
    responses(
        (status = 200, description = "The reserved jobs, possibly none", body = ReserveResponse),
        (status = 403, description = "Missing `work` scope, or a tenant-bound token", body = ErrorBody),
        (status = 422, description = "A refused field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reserve(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<ReserveRequest>,
) -> Result<Json<ReserveResponse>, ApiError> {
    authorize(&principal)?;
    check_reserve(&request)?;
    let lease = lease(&state, request.lease_seconds)?;
    let wait = match request.wait_seconds {
        Some(wait) => seconds(wait, "wait_seconds", true)?.min(state.inner.pull.max_wait),
        None => Duration::ZERO,
    };
    let worker_id = format!("{PULL_PREFIX}{}", request.worker);
    if let Some(params) = state
        .inner
        .pull_workers
        .touch(&worker_id, &request, state.now())
    {
        write_heartbeat(&state, params).await;
    }

    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before the first claim, so a job enqueued in between still wakes us.
    let mut events = if wait.is_zero() {
        None
    } else {
        state.inner.store.subscribe()
    };
    let jobs = loop {
        let jobs = claim(&state, &request, &worker_id, lease).await?;
        if !jobs.is_empty() || tokio::time::Instant::now() >= deadline {
            break jobs;
        }
        // A worker waiting in a long-poll is alive: keep its row fresh.
        beat(&state, Some(&worker_id)).await;
        let recheck = (tokio::time::Instant::now() + state.inner.pull.poll_interval).min(deadline);
        tokio::select! {
            () = jobs_announced(&mut events, &request.queues) => {}
            () = tokio::time::sleep_until(recheck) => {}
            () = state.inner.shutdown.cancelled() => break Vec::new(),
        }
    };

    for job in &jobs {
        if let Some(started) = job.attempted_at {
            let latency = (started - job.run_at).to_std().unwrap_or_default();
            state
                .inner
                .metrics
                .record_pickup(&job.queue, &job.kind, latency);
        }
    }
    if !jobs.is_empty() {
        tracing::debug!(worker = %worker_id, jobs = jobs.len(), "pull worker reserved jobs");
    }
    Ok(Json(ReserveResponse {
        jobs: jobs.into_iter().map(JobView::from).collect(),
    }))
}

/// 404 if the job does not exist, else 409: the answer to a fenced call that changed nothing.
async fn refused(state: &AppState, id: i64, attempt: i32) -> ApiError {
    match state.inner.store.job_get(JobId(id)).await {
        Ok(Some(_)) => ApiError::stale_attempt(id, attempt),
        Ok(None) => ApiError::job_not_found(id),
        Err(err) => err.into(),
    }
}

/// The job, if it is running the given attempt.
async fn held_job(state: &AppState, id: i64, attempt: i32) -> Result<JobRow, ApiError> {
    match state.inner.store.job_get(JobId(id)).await? {
        None => Err(ApiError::job_not_found(id)),
        Some(job) if job.state == JobState::Running && job.attempt == attempt => Ok(job),
        Some(_) => Err(ApiError::stale_attempt(id, attempt)),
    }
}

/// Extend a reserved job's lease.
///
/// Answers when the lease now ends and whether a cancel was requested (then stop, and report
/// with `fail`).
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/heartbeat",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = ExtendLeaseRequest,
    responses(
        (status = 200, description = "The lease", body = LeaseResponse),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`stale_attempt`: the lease lapsed or the job finished", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<ExtendLeaseRequest>,
) -> Result<Json<LeaseResponse>, ApiError> {
    authorize(&principal)?;
    let lease = lease(&state, request.lease_seconds)?;
    let job = held_job(&state, id, request.attempt).await?;
    let extended = state
        .inner
        .store
        .job_extend_lease(JobLeaseParams {
            id: JobId(id),
            fence: job.fence,
            lease,
            now: state.now(),
        })
        .await?;
    match extended {
        Some(extended) => {
            // A worker busy with a long job stays alive in the workers list through its
            // lease extensions.
            if let Ok(Some(job)) = state.inner.store.job_get(JobId(id)).await {
                beat(&state, job.worker_id.as_deref()).await;
            }
            Ok(Json(LeaseResponse {
                lease_expires_at: extended.expires_at,
                cancel_requested: extended.cancel_requested,
            }))
        }
        None => Err(refused(&state, id, request.attempt).await),
    }
}

/// Report a reserved job's progress.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/progress",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = ProgressRequest,
    responses(
        (status = 204, description = "Recorded"),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`stale_attempt`: the lease lapsed or the job finished", body = ErrorBody),
        (status = 422, description = "A refused field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn progress(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<ProgressRequest>,
) -> Result<StatusCode, ApiError> {
    authorize(&principal)?;
    if !(0.0..=1.0).contains(&request.fraction) {
        return Err(ApiError::invalid(
            "fraction",
            format!(
                "fraction must be between 0.0 and 1.0, got {}",
                request.fraction
            ),
        ));
    }
    let job = held_job(&state, id, request.attempt).await?;
    let recorded = state
        .inner
        .store
        .job_progress(JobProgressParams {
            id: JobId(id),
            fence: job.fence,
            fraction: request.fraction,
            message: request.message,
            details: None,
            now: state.now(),
        })
        .await?;
    if recorded {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(refused(&state, id, request.attempt).await)
    }
}

/// Applies one outcome to a held job; 409 if it was not applied (a rescue won the race).
async fn finish(
    state: &AppState,
    job: &JobRow,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let applied = state
        .inner
        .store
        .job_finish_many(JobFinishParams::new(
            vec![JobFinish {
                id: job.id,
                fence: job.fence,
                outcome,
            }],
            now,
        ))
        .await?;
    if applied.iter().any(|applied| applied.id == job.id) {
        Ok(())
    } else {
        Err(ApiError::stale_attempt(job.id, job.attempt))
    }
}

fn run_time(job: &JobRow, now: DateTime<Utc>) -> Option<Duration> {
    job.attempted_at
        .and_then(|started| (now - started).to_std().ok())
}

/// Complete a reserved job, storing its result.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/complete",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Completed", body = AckResponse),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`stale_attempt`: the lease lapsed or the job finished", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn complete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<CompleteRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    authorize(&principal)?;
    let job = held_job(&state, id, request.attempt).await?;
    let now = state.now();
    let result = request.result.filter(|value| !value.is_null());
    finish(&state, &job, Outcome::Completed { result }, now).await?;
    state.inner.metrics.record_attempt(
        &job.queue,
        &job.kind,
        AttemptResult::Completed,
        run_time(&job, now),
    );
    state
        .inner
        .pull_workers
        .count(job.worker_id.as_deref(), 1, 0);
    beat(&state, job.worker_id.as_deref()).await;
    Ok(Json(AckResponse {
        id: job.id,
        state: JobState::Completed,
        run_at: None,
    }))
}

/// Fail a reserved job's attempt.
///
/// The job is retried after backoff (the default exponential one, or `retry_in_seconds`) while
/// attempts remain, then discarded; `discard: true` discards it at once. A job with a cancel
/// requested ends `cancelled`.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/fail",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = FailRequest,
    responses(
        (status = 200, description = "Recorded: `retryable`, `discarded` or `cancelled`", body = AckResponse),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`stale_attempt`: the lease lapsed or the job finished", body = ErrorBody),
        (status = 422, description = "A refused field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn fail(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<FailRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    authorize(&principal)?;
    if request.error.trim().is_empty() {
        return Err(ApiError::invalid(
            "error",
            "say what went wrong: error must not be empty",
        ));
    }
    let retry_in = request
        .retry_in_seconds
        .map(|secs| seconds(secs, "retry_in_seconds", true))
        .transpose()?;
    let job = held_job(&state, id, request.attempt).await?;
    let now = state.now();
    let error = AttemptError {
        attempt: job.attempt,
        at: now,
        kind: ErrorKind::Error,
        message: request.error,
        backtrace: None,
    };
    let discard = request.discard || job.attempt >= job.max_attempts;
    let (outcome, result, run_at) = if discard {
        (Outcome::Discard { error }, AttemptResult::Discarded, None)
    } else {
        let delay = retry_in.unwrap_or_else(|| Backoff::default().delay(job.attempt));
        let run_at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        (
            Outcome::Retry { error, run_at },
            AttemptResult::Retried,
            Some(run_at),
        )
    };
    finish(&state, &job, outcome, now).await?;
    // A cancel request turns any failure into `cancelled`: that is no failed attempt to count.
    let (state_now, run_at) = if job.cancel_requested_at.is_some() {
        (JobState::Cancelled, None)
    } else {
        state
            .inner
            .metrics
            .record_attempt(&job.queue, &job.kind, result, run_time(&job, now));
        state
            .inner
            .pull_workers
            .count(job.worker_id.as_deref(), 0, 1);
        beat(&state, job.worker_id.as_deref()).await;
        if discard {
            (JobState::Discarded, None)
        } else {
            (JobState::Retryable, run_at)
        }
    };
    Ok(Json(AckResponse {
        id: job.id,
        state: state_now,
        run_at,
    }))
}

/// Snooze a reserved job: run it again later without using up an attempt.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/snooze",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = SnoozeRequest,
    responses(
        (status = 200, description = "Snoozed (`available`), or `cancelled`", body = AckResponse),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`stale_attempt`: the lease lapsed or the job finished", body = ErrorBody),
        (status = 422, description = "A refused field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn snooze(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<SnoozeRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    authorize(&principal)?;
    let delay = seconds(request.snooze_seconds, "snooze_seconds", true)?;
    let job = held_job(&state, id, request.attempt).await?;
    let now = state.now();
    let run_at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    finish(&state, &job, Outcome::Snooze { run_at }, now).await?;
    beat(&state, job.worker_id.as_deref()).await;
    let (state_now, run_at) = if job.cancel_requested_at.is_some() {
        (JobState::Cancelled, None)
    } else {
        (JobState::Available, Some(run_at))
    };
    Ok(Json(AckResponse {
        id: job.id,
        state: state_now,
        run_at,
    }))
}
