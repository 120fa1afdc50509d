//! The pull protocol: workers in any language reserve jobs over HTTP and report on them.
//!
//! 1. `POST /v1/pull/reserve` claims up to `limit` due jobs of the worker's queues, each
//!    `running` under `pull:<worker>` with a lease. With `wait_seconds` the request waits for
//!    a job (long-poll): it is woken the moment the store announces jobs in one of its queues
//!    (PostgreSQL `LISTEN/NOTIFY`, in-process signals on SQLite), and re-checks every
//!    `pull.poll_interval` only as a fallback for scheduled jobs and inserts by other processes
//!    on stores without cross-process events.
//! 2. While working: `heartbeat` extends the lease (and says whether a cancel was requested),
//!    `progress` records progress (a fraction, a message, JSON details).
//! 3. Then `complete`, `fail` (retried with backoff while attempts remain, else discarded; or
//!    discarded at once with `discard: true`), `snooze`, or `cancel` (the worker stopped the
//!    job, e.g. because a cancel was requested).
//!
//! Every call after reserve carries the `fence` the job was reserved with: a token that no
//! later reservation of the job ever repeats. A call whose fence is no longer current (the
//! lease ended, even before the rescuer returned the job to its queue; the job finished; or it
//! was reserved again) changes nothing and gets 409 `lease_lost`: the worker must drop the
//! job. Each call goes through [`stoker::Client`], so the rules (the fence, the one
//! failed-attempt rule with the job's own backoff) are the library's; this module holds only
//! the HTTP side: auth, parsing, status codes, metrics and the pull workers' rows.
//!
//! Each pull worker gets a worker row (`pull:<name>`), so it shows in `GET /v1/workers`. The
//! row is written when the worker first reserves, then at most once a second while it calls
//! this server (reserves, waits in a long-poll, extends leases, reports), carrying its
//! completed and failed counters. A worker that reserved through one server and reports
//! through another has its row kept by the first.
//! A worker reserving with a token bound to a tenant has that tenant in its row (issue 17):
//! the tenant's tokens list it among the workers, and no other tenant's do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use stoker::core::{StoreEvent, WorkerHeartbeatParams};
use stoker::{AttemptResult, Failure, FinishedJob, InvalidInput, JobId, JobState, Reservation};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::extract::{ApiJson, ApiPath};
use super::jobs::seconds;
use super::model::{
    AckResponse, CancelAckRequest, CompleteRequest, ErrorBody, ExtendLeaseRequest, FailRequest,
    JobView, LeaseResponse, ProgressRequest, ReserveRequest, ReserveResponse, SnoozeRequest,
};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// The prefix of pull workers' ids.
pub(crate) const PULL_PREFIX: &str = "pull:";
/// The longest pull worker name.
const WORKER_NAME_MAX: usize = 128;
/// The longest host name a pull worker may give.
const HOST_MAX: usize = 255;
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
    /// The registry (issue 13): jobs it holds through this server, and the run time of the
    /// attempts it finished, in milliseconds.
    running: std::collections::BTreeSet<JobId>,
    run_ms_total: u64,
    // --- stream tenant ---
    /// The tenant its token is bound to (issue 17): its row says so, and a client limited to
    /// that tenant lists it.
    tenant: Option<String>,
}

impl PullWorkers {
    /// Records a reserve call; returns the heartbeat to write now, if one is due.
    fn touch(
        &self,
        id: &str,
        request: &ReserveRequest,
        tenant: Option<&str>,
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
            running: std::collections::BTreeSet::new(),
            run_ms_total: 0,
            tenant: None,
        });
        worker.seen = Instant::now();
        let host = request.host.clone().unwrap_or_else(|| "unknown".to_owned());
        let pid = request.pid.unwrap_or(0);
        let concurrency = request.limit.unwrap_or(1);
        let changed = worker.host != host
            || worker.pid != pid
            || worker.queues != request.queues
            || worker.concurrency != concurrency
            || worker.tenant.as_deref() != tenant;
        worker.tenant = tenant.map(str::to_owned);
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

    /// Notes jobs a known pull worker reserved, for the registry's in-flight list (issue 13).
    fn reserved(&self, id: &str, jobs: &[JobId]) {
        let mut inner = self.inner.lock().expect("pull workers lock");
        if let Some(worker) = inner.get_mut(id) {
            worker.running.extend(jobs.iter().copied());
        }
    }

    /// Notes that a known pull worker's job ended after `run_ms` (issue 13).
    fn ended(&self, id: Option<&str>, job: JobId, run_ms: u64) {
        let Some(id) = id else { return };
        let mut inner = self.inner.lock().expect("pull workers lock");
        if let Some(worker) = inner.get_mut(id) {
            worker.running.remove(&job);
            worker.run_ms_total += run_ms;
        }
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
        let mut params = WorkerHeartbeatParams {
            details: Default::default(),
            id: id.to_owned(),
            host: worker.host.clone(),
            pid: worker.pid,
            queues: worker.queues.clone(),
            concurrency: worker.concurrency,
            started_at: worker.started_at,
            done_delta: worker.done,
            failed_delta: worker.failed,
            running: worker.running.iter().copied().collect(),
            now,
        };
        params.details.run_ms_total = worker.run_ms_total;
        params.details.tenant = worker.tenant.clone();
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
    if let Err(err) = state.inner.client.record_worker(params.clone()).await {
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

/// Checks the caller may use the pull protocol. A token bound to a tenant may: it reserves
/// only its tenant's jobs, and its reports on another tenant's job are 404 (issue 17).
fn authorize(principal: &Principal) -> Result<(), ApiError> {
    principal.require(Scope::Work)
}

/// A lease from the request, within the server's limits.
fn lease(state: &AppState, requested: Option<f64>) -> Result<Duration, ApiError> {
    let settings = &state.inner.pull;
    let Some(requested) = requested else {
        return Ok(settings.lease);
    };
    // A positive lease too short to count (5e-324 s) is the shortest the stores keep, 1 µs,
    // rather than a refusal of a valid number.
    // A longer one than the server grants is cut to `pull.max_lease`, as a wait is to
    // `pull.max_wait`: the answer's `lease_expires_at` says when it ends.
    let lease = seconds(requested, "lease_seconds", false)?.max(Duration::from_micros(1));
    Ok(lease.min(settings.max_lease))
}

/// The reservation a request asks for, checked before anything is done (the list sizes
/// first, so a request naming thousands of queues costs nothing).
fn reservation(
    request: &ReserveRequest,
    worker_id: String,
    lease: Duration,
) -> Result<Reservation, ApiError> {
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
    if let Some(host) = &request.host {
        if host.len() > HOST_MAX || host.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "host",
                format!("host must be at most {HOST_MAX} bytes without control characters"),
            ));
        }
    }
    let reservation = Reservation {
        worker: worker_id,
        queues: request.queues.clone(),
        kinds: request.kinds.clone(),
        limit: request.limit.unwrap_or(1),
        lease,
    };
    reservation.validate().map_err(|err: InvalidInput| {
        let field = if err.field == "lease" {
            "lease_seconds".to_owned()
        } else {
            err.field
        };
        ApiError::invalid(field.clone(), format!("{field} {}", err.reason))
    })?;
    Ok(reservation)
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
/// Reserves up to `limit` due jobs of the given queues (and kinds), each held by a lease and
/// carrying the `fence` every later call about it must send. With `wait_seconds`, waits up to
/// that long for a job when none is due, answering the moment one is enqueued; an empty list
/// means none arrived in time.
#[utoipa::path(
    post,
    path = "/v1/pull/reserve",
    tag = "pull",
    request_body = ReserveRequest,
    responses(
        (status = 200, description = "The reserved jobs, possibly none", body = ReserveResponse),
        (status = 403, description = "Missing `work` scope", body = ErrorBody),
        (status = 422, description = "A refused field: more than 32 queues or 64 kinds, a limit outside 1 to 100, a duration out of range", body = ErrorBody),
        (status = 503, description = "The store is unreachable, or the server is shutting down", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reserve(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<ReserveRequest>,
) -> Result<Json<ReserveResponse>, ApiError> {
    authorize(&principal)?;
    let lease = lease(&state, request.lease_seconds)?;
    let wait = match request.wait_seconds {
        Some(wait) => seconds(wait, "wait_seconds", true)?.min(state.inner.pull.max_wait),
        None => Duration::ZERO,
    };
    let worker_id = format!("{PULL_PREFIX}{}", request.worker);
    let reservation = reservation(&request, worker_id.clone(), lease)?;
    if let Some(params) = state.inner.pull_workers.touch(
        &worker_id,
        &request,
        principal.tenant.as_deref(),
        state.now(),
    ) {
        write_heartbeat(&state, params).await;
    }

    let client = &state.client_for(&principal);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before the first claim, so a job enqueued in between still wakes us.
    let mut events = if wait.is_zero() {
        None
    } else {
        client.subscribe()
    };
    let jobs = loop {
        let jobs = client.reserve(&reservation).await?;
        if !jobs.is_empty() || tokio::time::Instant::now() >= deadline {
            break jobs;
        }
        // A worker waiting in a long-poll is alive: keep its row fresh.
        beat(&state, Some(&worker_id)).await;
        let recheck = (tokio::time::Instant::now() + state.inner.pull.poll_interval).min(deadline);
        tokio::select! {
            () = jobs_announced(&mut events, &reservation.queues) => {}
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
        // The registry (issue 13): these are in flight until reported.
        let ids: Vec<JobId> = jobs.iter().map(|job| job.id).collect();
        state.inner.pull_workers.reserved(&worker_id, &ids);
        tracing::debug!(worker = %worker_id, jobs = jobs.len(), "pull worker reserved jobs");
    }
    Ok(Json(ReserveResponse {
        jobs: jobs.into_iter().map(JobView::from).collect(),
    }))
}

/// Extend a reserved job's lease.
///
/// Answers when the lease now ends and whether a cancel was requested (then stop, and report
/// with `cancel`). A lease that already ended is never extended: 409 `lease_lost`.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/heartbeat",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = ExtendLeaseRequest,
    responses(
        (status = 200, description = "The lease", body = LeaseResponse),
        (status = 403, description = "Missing `work` scope", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the lease ended, the job finished, or it was reserved again", body = ErrorBody),
        (status = 422, description = "A refused field", body = ErrorBody),
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
    let extended = state
        .client_for(&principal)
        .extend_lease(JobId(id), request.fence, lease)
        .await?;
    // A worker busy with a long job stays alive in the workers list through its extensions.
    beat(&state, extended.worker_id.as_deref()).await;
    Ok(Json(LeaseResponse {
        lease_expires_at: extended.expires_at,
        cancel_requested: extended.cancel_requested,
    }))
}

/// Report a reserved job's progress.
///
/// A fraction from 0 to 1, what it is doing, and optional JSON `details` (at most 64 KiB),
/// replacing the last report.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/progress",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = ProgressRequest,
    responses(
        (status = 204, description = "Recorded"),
        (status = 403, description = "Missing `work` scope", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the lease ended, the job finished, or it was reserved again", body = ErrorBody),
        (status = 422, description = "A refused field: a fraction outside 0 to 1, details over 64 KiB", body = ErrorBody),
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
    state
        .client_for(&principal)
        .progress_reserved(
            JobId(id),
            request.fence,
            request.fraction,
            request.message,
            request.details,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Records what a report did in the metrics and the pull worker's counters, and answers it.
async fn acknowledged(state: &AppState, job: FinishedJob, now: DateTime<Utc>) -> AckResponse {
    let result = match job.state {
        JobState::Completed => Some(AttemptResult::Completed),
        JobState::Retryable => Some(AttemptResult::Retried),
        JobState::Discarded => Some(AttemptResult::Discarded),
        // A snooze uses up nothing; a cancel is no failed attempt to count.
        _ => None,
    };
    if let Some(result) = result {
        let run_time = job
            .attempted_at
            .and_then(|started| (now - started).to_std().ok());
        state
            .inner
            .metrics
            .record_attempt(&job.queue, &job.kind, result, run_time);
        let (done, failed) = match result {
            AttemptResult::Completed => (1, 0),
            _ => (0, 1),
        };
        state
            .inner
            .pull_workers
            .count(job.worker_id.as_deref(), done, failed);
    }
    // The registry (issue 13): the job is no longer in flight.
    let run_ms = job
        .attempted_at
        .and_then(|started| (now - started).to_std().ok())
        .map_or(0, |run| run.as_millis() as u64);
    state
        .inner
        .pull_workers
        .ended(job.worker_id.as_deref(), job.id, run_ms);
    beat(state, job.worker_id.as_deref()).await;
    let run_at =
        matches!(job.state, JobState::Retryable | JobState::Available).then_some(job.run_at);
    AckResponse {
        id: job.id,
        state: job.state,
        run_at,
    }
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
        (status = 403, description = "Missing `work` scope", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the lease ended, the job finished, or it was reserved again", body = ErrorBody),
        (status = 422, description = "A refused field", body = ErrorBody),
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
    let job = state
        .client_for(&principal)
        .complete_reserved(JobId(id), request.fence, request.result)
        .await?;
    Ok(Json(acknowledged(&state, job, state.now()).await))
}

/// Fail a reserved job's attempt.
///
/// The job is retried after backoff (`retry_in_seconds`, else the job's own backoff given at
/// enqueue, else the default exponential one) while attempts remain, then discarded;
/// `discard: true` discards it at once. A job with a cancel requested ends `cancelled`.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/fail",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = FailRequest,
    responses(
        (status = 200, description = "Recorded: `retryable`, `discarded` or `cancelled`", body = AckResponse),
        (status = 403, description = "Missing `work` scope", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the lease ended, the job finished, or it was reserved again", body = ErrorBody),
        (status = 422, description = "A refused field: an empty error, `retry_in_seconds` out of range", body = ErrorBody),
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
    let retry_in = request
        .retry_in_seconds
        .map(|secs| seconds(secs, "retry_in_seconds", true))
        .transpose()?;
    let failure = Failure {
        message: request.error,
        retry_in,
        discard: request.discard,
    };
    let job = state
        .client_for(&principal)
        .fail_reserved(JobId(id), request.fence, failure)
        .await?;
    Ok(Json(acknowledged(&state, job, state.now()).await))
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
        (status = 403, description = "Missing `work` scope", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the lease ended, the job finished, or it was reserved again", body = ErrorBody),
        (status = 422, description = "A refused field: `snooze_seconds` out of range", body = ErrorBody),
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
    let job = state
        .client_for(&principal)
        .snooze_reserved(JobId(id), request.fence, delay)
        .await?;
    Ok(Json(acknowledged(&state, job, state.now()).await))
}

/// Acknowledge a cancel: the worker stopped the reserved job, which ends `cancelled`.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/cancel",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = CancelAckRequest,
    responses(
        (status = 200, description = "Cancelled", body = AckResponse),
        (status = 403, description = "Missing `work` scope", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the lease ended, the job finished, or it was reserved again", body = ErrorBody),
        (status = 422, description = "A refused field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<CancelAckRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    authorize(&principal)?;
    let job = state
        .client_for(&principal)
        .cancel_reserved(JobId(id), request.fence, request.error)
        .await?;
    Ok(Json(acknowledged(&state, job, state.now()).await))
}

// --- Batched acknowledgements and reserve-with-ack (issue 19: the fast pull protocol) ---------

/// One report in `POST /v1/pull/ack`: a job, the `fence` it was reserved with, and what to do,
/// chosen by `op`. Each is what the one-job call of the same name does.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
// Not `deny_unknown_fields`: the document's `oneOf` branches cannot say
// `additionalProperties: false` (utoipa writes none for a tagged enum's variants), and the body
// must take what the document allows; unknown fields of an entry are ignored.
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AckEntry {
    /// The job succeeded (`/complete`).
    Complete {
        /// The job's id.
        #[serde(deserialize_with = "super::model::whole_number")]
        id: i64,
        /// The `fence` the job was reserved with.
        #[serde(deserialize_with = "super::model::whole_number")]
        fence: i64,
        /// The handler's output, stored as the job's result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Value>)]
        result: Option<serde_json::Value>,
    },
    /// The attempt failed (`/fail`).
    Fail {
        /// The job's id.
        #[serde(deserialize_with = "super::model::whole_number")]
        id: i64,
        /// The `fence` the job was reserved with.
        #[serde(deserialize_with = "super::model::whole_number")]
        fence: i64,
        /// What went wrong, recorded in the job's error history.
        #[schema(min_length = 1)]
        error: String,
        /// Retry after this many seconds instead of the backoff.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 0.0, maximum = 315_360_000.0)]
        retry_in_seconds: Option<f64>,
        /// Discard the job now whatever attempts remain.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        discard: bool,
    },
    /// Run again later without using up an attempt (`/snooze`).
    Snooze {
        /// The job's id.
        #[serde(deserialize_with = "super::model::whole_number")]
        id: i64,
        /// The `fence` the job was reserved with.
        #[serde(deserialize_with = "super::model::whole_number")]
        fence: i64,
        /// Run again after this many seconds.
        #[schema(minimum = 0.0, maximum = 315_360_000.0)]
        snooze_seconds: f64,
    },
    /// The worker stopped the job (`/cancel`).
    Cancel {
        /// The job's id.
        #[serde(deserialize_with = "super::model::whole_number")]
        id: i64,
        /// The `fence` the job was reserved with.
        #[serde(deserialize_with = "super::model::whole_number")]
        fence: i64,
        /// Why, recorded in the job's error history (kind `cancelled`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Extend the lease (`/heartbeat`); the answer says whether a cancel was requested.
    Heartbeat {
        /// The job's id.
        #[serde(deserialize_with = "super::model::whole_number")]
        id: i64,
        /// The `fence` the job was reserved with.
        #[serde(deserialize_with = "super::model::whole_number")]
        fence: i64,
        /// The new lease from now, in seconds; defaults to the server's `pull.lease`, a longer
        /// one than `pull.max_lease` is cut to it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(exclusive_minimum = 0.0, maximum = 315_360_000.0)]
        lease_seconds: Option<f64>,
    },
}

/// `POST /v1/pull/ack`: many reports in one request, and optionally a reservation of new jobs
/// after them, so a worker pays one round trip per batch instead of one per job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// The reports, at most 1000, at most one per job; applied each on its own.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub acks: Vec<AckEntry>,
    /// Reserve jobs in the same request (reserve-with-ack), as `POST /v1/pull/reserve` takes;
    /// its `wait_seconds` long-polls as there. The reservation runs beside the reports, not
    /// after them: its `limit` should count the slots the reported jobs free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<ReserveRequest>,
}

/// The answer to one report of `POST /v1/pull/ack`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AckResult {
    /// The job.
    pub id: i64,
    /// Whether the report applied. If not, `error` says why (`lease_lost`: drop the job;
    /// `not_found`), and the job is unchanged.
    pub ok: bool,
    /// The job's state now, for an applied complete, fail, snooze or cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::model::JobStateSchema>)]
    pub state: Option<JobState>,
    /// When it runs again, for `retryable` and `available`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// When the lease now ends, for an applied heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Whether a cancel was requested, for an applied heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<bool>,
    /// Why the report did not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<super::model::ErrorDetail>,
}

/// The answer of `POST /v1/pull/ack`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AckBatchResponse {
    /// One answer per report, in the request's order.
    pub results: Vec<AckResult>,
    /// The jobs the `reserve` part reserved (none without one).
    pub jobs: Vec<JobView>,
    /// Why the `reserve` part reserved nothing although the reports applied (the store became
    /// unreachable, or the server is shutting down): reserve again later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_error: Option<super::model::ErrorDetail>,
}

/// An error as an answer's detail.
fn detail(err: &ApiError) -> super::model::ErrorDetail {
    super::model::ErrorDetail {
        code: err.code(),
        message: err.message().to_owned(),
        field: err.field().map(str::to_owned),
    }
}

/// The same error naming `prefix.field`.
fn prefixed(prefix: &str, err: ApiError) -> ApiError {
    match err.field().map(|field| format!("{prefix}.{field}")) {
        Some(field) => err.with_field(field),
        None => err,
    }
}

/// Returns jobs reserved for a request that failed to their queues (a snooze of zero uses up
/// no attempt). If that fails too, their leases end and the rescuer returns them.
async fn hand_back(state: &AppState, client: &stoker::Client, jobs: &[JobView]) {
    let acks = jobs
        .iter()
        .map(|job| stoker::Ack {
            id: job.id,
            fence: job.fence,
            op: stoker::AckOp::Snooze {
                delay: Duration::ZERO,
            },
        })
        .collect::<Vec<_>>();
    if acks.is_empty() {
        return;
    }
    match client.ack_reserved(acks).await {
        Ok(answers) => {
            let now = state.now();
            for answer in answers {
                // The worker's registry forgets them as for any report.
                if let Ok(stoker::Acked::Finished(job)) = answer {
                    acknowledged(state, job, now).await;
                }
            }
        }
        Err(err) => tracing::warn!(
            %err,
            jobs = jobs.len(),
            "could not hand back jobs reserved for a failed request; they return when their leases end"
        ),
    }
}

/// One report as the client takes it, its durations checked.
fn client_ack(state: &AppState, index: usize, entry: AckEntry) -> Result<stoker::Ack, ApiError> {
    let field = |name: &str| format!("acks[{index}].{name}");
    let (id, fence, op) = match entry {
        AckEntry::Complete { id, fence, result } => (id, fence, stoker::AckOp::Complete { result }),
        AckEntry::Fail {
            id,
            fence,
            error,
            retry_in_seconds,
            discard,
        } => {
            let retry_in = retry_in_seconds
                .map(|secs| seconds(secs, &field("retry_in_seconds"), true))
                .transpose()?;
            let failure = Failure {
                message: error,
                retry_in,
                discard,
            };
            (id, fence, stoker::AckOp::Fail(failure))
        }
        AckEntry::Snooze {
            id,
            fence,
            snooze_seconds,
        } => {
            let delay = seconds(snooze_seconds, &field("snooze_seconds"), true)?;
            (id, fence, stoker::AckOp::Snooze { delay })
        }
        AckEntry::Cancel { id, fence, error } => {
            (id, fence, stoker::AckOp::Cancel { message: error })
        }
        AckEntry::Heartbeat {
            id,
            fence,
            lease_seconds,
        } => {
            let lease = lease(state, lease_seconds)
                .map_err(|err| err.with_field(field("lease_seconds")))?;
            (id, fence, stoker::AckOp::Heartbeat { lease })
        }
    };
    Ok(stoker::Ack {
        id: JobId(id),
        fence,
        op,
    })
}

/// Acknowledge many reserved jobs, and reserve more, in one request.
///
/// Applies each report (`complete`, `fail`, `snooze`, `cancel`, `heartbeat`) with its own
/// fence and answers each on its own: a stale fence fails only its entry (`ok: false`,
/// `lease_lost`), never the others. The completes, fails, snoozes and cancels are written in
/// one statement. With `reserve`, it also reserves new jobs as `POST /v1/pull/reserve` does,
/// beside the reports (their writes share the store's commit), and returns them in `jobs`;
/// if the reports cannot be written at all (503), jobs reserved beside them are handed back.
/// A refused field (in any entry or the reserve part) refuses the whole
/// request before anything is written.
#[utoipa::path(
    post,
    path = "/v1/pull/ack",
    tag = "pull",
    request_body = AckRequest,
    responses(
        (status = 200, description = "Each report's answer, and the reserved jobs", body = AckBatchResponse),
        (status = 403, description = "Missing `work` scope", body = ErrorBody),
        (status = 422, description = "A refused field: more than 1000 reports, an empty error, a duration out of range, a refused reserve part", body = ErrorBody),
        (status = 503, description = "The store is unreachable, or the server is shutting down", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn ack(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<AckRequest>,
) -> Result<Json<AckBatchResponse>, ApiError> {
    authorize(&principal)?;
    // The reserve part is checked before any report is written.
    if let Some(reserve) = &request.reserve {
        let checked = lease(&state, reserve.lease_seconds).and_then(|lease| {
            if let Some(wait) = reserve.wait_seconds {
                seconds(wait, "wait_seconds", true)?;
            }
            reservation(reserve, format!("{PULL_PREFIX}{}", reserve.worker), lease)
        });
        checked.map_err(|err| prefixed("reserve", err))?;
    }
    let acks = request
        .acks
        .into_iter()
        .enumerate()
        .map(|(index, entry)| client_ack(&state, index, entry))
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<i64> = acks.iter().map(|ack| ack.id.0).collect();
    let client = state.client_for(&principal);
    // The reports and the reservation go to the store side by side, on two connections: on
    // PostgreSQL each is a commit that waits for its WAL flush, and two commits in flight
    // together share one flush, so a round trip costs one wait instead of two. Neither needs
    // the other: the reservation takes only due jobs, and the caller asked for as many as it
    // has slots, the reported ones' included.
    let applying = async {
        if acks.is_empty() {
            Ok(Vec::new())
        } else {
            client.ack_reserved(acks).await
        }
    };
    let reserving = async {
        match request.reserve {
            None => None,
            Some(reserve) => {
                Some(self::reserve(State(state.clone()), principal.clone(), ApiJson(reserve)).await)
            }
        }
    };
    let (answers, reserved) = tokio::join!(applying, reserving);
    let answers = match answers {
        Ok(answers) => answers,
        Err(err) => {
            // The reports were not applied: the caller sends them again. Jobs reserved beside
            // them would never reach it, so they go back to their queues now rather than when
            // their leases end.
            if let Some(Ok(Json(reserved))) = reserved {
                hand_back(&state, &client, &reserved.jobs).await;
            }
            return Err(err.into());
        }
    };
    let now = state.now();
    let mut results = Vec::with_capacity(answers.len());
    for (id, answer) in ids.into_iter().zip(answers) {
        let result = match answer {
            Ok(stoker::Acked::Finished(job)) => {
                let acked = acknowledged(&state, job, now).await;
                AckResult {
                    id,
                    ok: true,
                    state: Some(acked.state),
                    run_at: acked.run_at,
                    lease_expires_at: None,
                    cancel_requested: None,
                    error: None,
                }
            }
            Ok(stoker::Acked::Lease(extended)) => {
                beat(&state, extended.worker_id.as_deref()).await;
                AckResult {
                    id,
                    ok: true,
                    state: None,
                    run_at: None,
                    lease_expires_at: Some(extended.expires_at),
                    cancel_requested: Some(extended.cancel_requested),
                    error: None,
                }
            }
            Err(err) => AckResult {
                id,
                ok: false,
                state: None,
                run_at: None,
                lease_expires_at: None,
                cancel_requested: None,
                error: Some(detail(&ApiError::from(err))),
            },
        };
        results.push(result);
    }
    let (jobs, reserve_error) = match reserved {
        None => (Vec::new(), None),
        Some(Ok(Json(reserved))) => (reserved.jobs, None),
        // The reports applied: answer them, and say why nothing was reserved.
        Some(Err(err)) => (Vec::new(), Some(detail(&prefixed("reserve", err)))),
    };
    Ok(Json(AckBatchResponse {
        results,
        jobs,
        reserve_error,
    }))
}
