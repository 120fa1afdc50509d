//! Jobs: enqueue one or many, get, list, cancel, retry, delete, and retry in bulk.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use stoker::core::{
    validate_kind, validate_queue, JobCancelParams, JobInsert, JobInsertParams, JobListParams,
    JobRetryManyParams, JobRetryParams, StateCount,
};
use stoker::{
    InvalidInput, JobFilter, JobId, JobRow, JobState, StoreError, MAX_ARGS_BYTES_DEFAULT,
    MAX_ATTEMPTS_DEFAULT, QUEUE_DEFAULT,
};

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::model::{
    EnqueueBulkRequest, EnqueueBulkResponse, EnqueueRequest, EnqueueResponse, ErrorBody, ErrorCode,
    JobList, JobView, ListJobsQuery, RetryJobsRequest, RetryJobsResponse,
};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// The most jobs one bulk enqueue takes.
pub(crate) const BULK_MAX: usize = 10_000;
/// The most jobs one `job_retry_many` call retries; a bulk retry repeats it.
const RETRY_BATCH: u32 = 1000;

/// Prefixes a field name with where it sits in the request (`jobs[3].`).
fn at(prefix: &str, field: &str) -> String {
    format!("{prefix}{field}")
}

/// Turns one enqueue request into a job to insert, applying defaults and the caller's tenant,
/// and checks it, naming the field at fault with `prefix`.
fn build_insert(
    state: &AppState,
    principal: &Principal,
    request: EnqueueRequest,
    now: DateTime<Utc>,
    prefix: &str,
) -> Result<JobInsert, ApiError> {
    let EnqueueRequest {
        kind,
        args,
        queue,
        priority,
        run_at,
        delay_seconds,
        max_attempts,
        unique_key,
        tenant,
        metadata,
        timeout_seconds,
        backoff,
    } = request;
    let reprefix = |err: InvalidInput| {
        let field = match err.field.as_str() {
            "timeout" => "timeout_seconds",
            other => other,
        };
        ApiError::invalid(
            at(prefix, field),
            format!("invalid {field}: {}", err.reason),
        )
    };
    validate_kind(&kind).map_err(reprefix)?;
    let queue = queue.unwrap_or_else(|| QUEUE_DEFAULT.to_owned());
    validate_queue(&queue).map_err(reprefix)?;
    let run_at = match (run_at, delay_seconds) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                at(prefix, "delay_seconds"),
                "set either run_at or delay_seconds, not both",
            ))
        }
        (Some(at), None) => Some(at),
        (None, Some(delay)) => {
            let delay = seconds(delay, &at(prefix, "delay_seconds"), true)?;
            let delay = chrono::Duration::from_std(delay).map_err(|_| {
                ApiError::invalid(at(prefix, "delay_seconds"), "delay_seconds is too long")
            })?;
            Some(now + delay)
        }
        (None, None) => None,
    };
    let timeout_ms = match timeout_seconds {
        Some(timeout) => {
            let timeout = seconds(timeout, &at(prefix, "timeout_seconds"), false)?;
            Some(i64::try_from(timeout.as_millis()).map_err(|_| {
                ApiError::invalid(at(prefix, "timeout_seconds"), "timeout_seconds is too long")
            })?)
        }
        None => None,
    };
    let tenant = principal.tenant_for(tenant, &at(prefix, "tenant"))?;
    let mut metadata: stoker::Metadata = metadata.unwrap_or_default().into();
    if metadata.source.is_none() {
        metadata.source = principal.name.clone();
    }
    if let Some(handler) = state.inner.registry.get(&kind) {
        handler.validate(&args).map_err(|err| {
            let field = if err.field == "args" || err.field.starts_with("args.") {
                err.field.clone()
            } else {
                format!("args.{}", err.field)
            };
            ApiError::invalid(
                at(prefix, &field),
                format!("invalid args for kind {kind:?}: {}", err),
            )
        })?;
    }
    let job = JobInsert {
        kind,
        queue,
        args,
        priority: priority.map(|level| level.0).unwrap_or_default(),
        max_attempts: max_attempts.unwrap_or(MAX_ATTEMPTS_DEFAULT),
        run_at,
        unique_key,
        tenant,
        metadata,
        timeout_ms,
        backoff: backoff.map(Into::into),
    };
    job.validate(MAX_ARGS_BYTES_DEFAULT).map_err(reprefix)?;
    Ok(job)
}

/// The longest duration the API takes in any `*_seconds` field: ten years. Anything longer is
/// a mistake, and far enough from the calendar's end that adding it to any instant the API
/// accepts never overflows.
pub(crate) const MAX_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// A non-negative (or, with `zero_ok` false, positive) finite number of seconds, at most
/// [`MAX_SECONDS`].
pub(crate) fn seconds(
    value: f64,
    field: &str,
    zero_ok: bool,
) -> Result<std::time::Duration, ApiError> {
    let valid =
        value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0)) && value <= MAX_SECONDS;
    if !valid {
        let what = if zero_ok {
            "zero or more"
        } else {
            "more than zero"
        };
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} must be {what} seconds and at most {MAX_SECONDS} (ten years), got {value}"
            ),
        ));
    }
    Ok(std::time::Duration::from_secs_f64(value))
}

async fn insert(
    state: &AppState,
    jobs: Vec<JobInsert>,
    now: DateTime<Utc>,
) -> Result<Vec<stoker::InsertedJob>, ApiError> {
    let labels: Vec<(String, String)> = jobs
        .iter()
        .map(|job| (job.queue.clone(), job.kind.clone()))
        .collect();
    let inserted = state
        .inner
        .store
        .job_insert_many(JobInsertParams {
            jobs,
            now,
            max_args_bytes: MAX_ARGS_BYTES_DEFAULT,
        })
        .await?;
    for (job, (queue, kind)) in inserted.iter().zip(&labels) {
        if !job.duplicate {
            state.inner.metrics.record_enqueued(queue, kind);
        }
    }
    Ok(inserted)
}

/// Enqueue a job.
///
/// Answers 201 with the new job's id, or 200 with the existing job's id when the idempotency
/// key matched one (nothing is written then).
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = EnqueueRequest,
    responses(
        (status = 201, description = "Enqueued", body = EnqueueResponse),
        (status = 200, description = "A job with this idempotency key exists; its id", body = EnqueueResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A field is refused (`field` names it)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn enqueue(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<EnqueueRequest>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Enqueue)?;
    let now = state.now();
    let job = build_insert(&state, &principal, request, now, "")?;
    let inserted = insert(&state, vec![job], now).await?;
    let job = inserted
        .first()
        .copied()
        .ok_or_else(|| ApiError::internal("the store inserted no job for one request"))?;
    let status = if job.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = EnqueueResponse {
        id: job.id,
        duplicate: job.duplicate,
    };
    Ok((
        status,
        [(header::LOCATION, format!("/v1/jobs/{}", job.id))],
        Json(body),
    )
        .into_response())
}

/// Enqueue many jobs at once.
///
/// Written in a handful of statements. If any job is invalid none is written, and the error's
/// `field` names it (`jobs[3].queue`). Answers 201 if any job is new, 200 if all were
/// duplicates.
#[utoipa::path(
    post,
    path = "/v1/jobs/bulk",
    tag = "jobs",
    request_body = EnqueueBulkRequest,
    responses(
        (status = 201, description = "At least one job is new", body = EnqueueBulkResponse),
        (status = 200, description = "Every job was a duplicate", body = EnqueueBulkResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A job is refused (`field` names it)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn enqueue_bulk(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<EnqueueBulkRequest>,
) -> Result<(StatusCode, Json<EnqueueBulkResponse>), ApiError> {
    principal.require(Scope::Enqueue)?;
    if request.jobs.is_empty() || request.jobs.len() > BULK_MAX {
        return Err(ApiError::invalid(
            "jobs",
            format!(
                "send 1 to {BULK_MAX} jobs per request, got {}",
                request.jobs.len()
            ),
        ));
    }
    let now = state.now();
    let jobs = request
        .jobs
        .into_iter()
        .enumerate()
        .map(|(index, job)| build_insert(&state, &principal, job, now, &format!("jobs[{index}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let inserted = insert(&state, jobs, now).await?;
    let duplicates = inserted.iter().filter(|job| job.duplicate).count() as u64;
    let total = inserted.len() as u64;
    let status = if duplicates < total {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(EnqueueBulkResponse {
            jobs: inserted
                .into_iter()
                .map(|job| EnqueueResponse {
                    id: job.id,
                    duplicate: job.duplicate,
                })
                .collect(),
            inserted: total - duplicates,
            duplicates,
        }),
    ))
}

/// Fetches a job the caller may see.
async fn visible_job(state: &AppState, principal: &Principal, id: i64) -> Result<JobRow, ApiError> {
    match state.inner.store.job_get(JobId(id)).await? {
        Some(job) if principal.sees(job.tenant.as_deref()) => Ok(job),
        _ => Err(ApiError::job_not_found(id)),
    }
}

/// Maps the store's "not found" for job `id` to the API's.
fn job_error(id: i64) -> impl Fn(StoreError) -> ApiError {
    move |err| match err {
        StoreError::NotFound(_) => ApiError::job_not_found(id),
        StoreError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
        other => other.into(),
    }
}

/// Get a job: state, attempts, error history, result and progress.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobView>, ApiError> {
    principal.require(Scope::Read)?;
    Ok(Json(visible_job(&state, &principal, id).await?.into()))
}

/// Splits a comma-separated filter into its non-empty parts.
fn list_param(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses a list of state names, naming `field` when one is unknown.
pub(crate) fn parse_states(names: &[String], field: &str) -> Result<Vec<JobState>, ApiError> {
    names
        .iter()
        .map(|name| {
            name.parse::<JobState>().map_err(|_| {
                ApiError::new(
                    ErrorCode::UnknownState,
                    format!(
                        "unknown job state {name:?} in `{field}`: expected one of available, \
                         running, retryable, completed, discarded, cancelled"
                    ),
                )
                .with_field(field)
            })
        })
        .collect()
}

/// List jobs, newest first, with keyset pagination.
///
/// Filters are comma-separated lists. Pass `next_cursor` of a page as `cursor` for the next.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(ListJobsQuery),
    responses(
        (status = 200, description = "One page of jobs", body = JobList),
        (status = 422, description = "An unknown state or a bad parameter", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListJobsQuery>,
) -> Result<Json<JobList>, ApiError> {
    principal.require(Scope::Read)?;
    let states = parse_states(&list_param(query.state.as_deref()), "state")?;
    let kinds = list_param(query.kind.as_deref());
    let queues = list_param(query.queue.as_deref());
    for queue in &queues {
        validate_queue(queue).map_err(|err| ApiError::invalid("queue", err.to_string()))?;
    }
    let tenant = principal.tenant_for(query.tenant, "tenant")?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=JobFilter::LIMIT_MAX).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!(
                "limit must be between 1 and {}, got {limit}",
                JobFilter::LIMIT_MAX
            ),
        ));
    }
    let jobs = state
        .inner
        .store
        .job_list(JobListParams {
            states,
            kinds,
            queues,
            tenant,
            before_id: query.cursor.map(JobId),
            limit,
        })
        .await?;
    let next_cursor = if jobs.len() == limit as usize {
        jobs.last().map(|job| job.id)
    } else {
        None
    };
    Ok(Json(JobList {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

/// Cancel a job.
///
/// A waiting job becomes `cancelled` at once; a running one is signalled to stop and ends
/// `cancelled` when its worker reports; a finished one is returned unchanged.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job as it is now", body = JobView),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobView>, ApiError> {
    principal.require(Scope::Admin)?;
    if principal.tenant.is_some() {
        visible_job(&state, &principal, id).await?;
    }
    let job = state
        .inner
        .store
        .job_cancel(JobCancelParams {
            id: JobId(id),
            now: state.now(),
        })
        .await
        .map_err(job_error(id))?;
    Ok(Json(job.into()))
}

/// Retry a job now.
///
/// Works on discarded, cancelled, completed, retryable and available jobs; keeps the error
/// history and gives one more attempt if none was left. A running job is returned unchanged.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/retry",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job as it is now", body = JobView),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobView>, ApiError> {
    principal.require(Scope::Admin)?;
    if principal.tenant.is_some() {
        visible_job(&state, &principal, id).await?;
    }
    let job = state
        .inner
        .store
        .job_retry(JobRetryParams {
            id: JobId(id),
            now: state.now(),
        })
        .await
        .map_err(job_error(id))?;
    Ok(Json(job.into()))
}

/// Delete a job that is not running.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job as it was", body = JobView),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is running: cancel it first", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobView>, ApiError> {
    principal.require(Scope::Admin)?;
    if principal.tenant.is_some() {
        visible_job(&state, &principal, id).await?;
    }
    let job = state
        .inner
        .store
        .job_delete(JobId(id))
        .await
        .map_err(job_error(id))?;
    Ok(Json(job.into()))
}

/// Retry finished jobs in bulk.
///
/// Retries every job in the given finished states (default: discarded) of a queue and/or
/// kind, in batches, and answers how many.
#[utoipa::path(
    post,
    path = "/v1/jobs/retry",
    tag = "jobs",
    request_body = RetryJobsRequest,
    responses(
        (status = 200, description = "How many jobs were retried", body = RetryJobsResponse),
        (status = 422, description = "A refused field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry_many(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<RetryJobsRequest>,
) -> Result<Json<RetryJobsResponse>, ApiError> {
    principal.require(Scope::Admin)?;
    let states = request.states.unwrap_or_else(|| vec![JobState::Discarded]);
    if states.is_empty() {
        return Err(ApiError::invalid(
            "states",
            "name at least one of discarded, cancelled, completed",
        ));
    }
    if let Some(state) = states.iter().find(|state| !state.is_finished()) {
        return Err(ApiError::invalid(
            "states",
            format!(
                "{state} jobs cannot be retried in bulk: name discarded, cancelled or completed"
            ),
        ));
    }
    if let Some(queue) = &request.queue {
        validate_queue(queue).map_err(|err| ApiError::invalid("queue", err.to_string()))?;
    }
    if let Some(kind) = &request.kind {
        validate_kind(kind).map_err(|err| ApiError::invalid("kind", err.to_string()))?;
    }
    let tenant = principal.tenant_for(request.tenant, "tenant")?;
    if request.limit == Some(0) {
        return Err(ApiError::invalid("limit", "must be at least 1"));
    }
    let queues: Vec<String> = request.queue.iter().cloned().collect();
    let kinds: Vec<String> = request.kind.iter().cloned().collect();
    // Bound the loop by what matched at the start, so jobs that fail straight back into a
    // retried state while it runs are not retried again and again.
    let counts = state.inner.store.job_stats().await?;
    let matching = matching_count(&counts, &states, &queues, &kinds);
    let bound = request.limit.map_or(matching, |limit| limit.min(matching));
    let mut retried = 0;
    while retried < bound {
        let limit = (bound - retried).min(u64::from(RETRY_BATCH)) as u32;
        let count = state
            .inner
            .store
            .job_retry_many(JobRetryManyParams {
                states: states.clone(),
                queues: queues.clone(),
                kinds: kinds.clone(),
                tenant: tenant.clone(),
                limit,
                now: state.now(),
            })
            .await?;
        retried += count;
        if count == 0 {
            break;
        }
    }
    tracing::info!(retried, ?states, queue = ?request.queue, kind = ?request.kind, "bulk retry");
    let remaining = matching.saturating_sub(retried);
    Ok(Json(RetryJobsResponse { retried, remaining }))
}

/// How many jobs the counts hold in `states`, of `queues` and `kinds` (empty means any): the
/// bound of a bulk retry, so one never outruns the jobs that matched when it started.
pub(crate) fn matching_count(
    counts: &[StateCount],
    states: &[JobState],
    queues: &[String],
    kinds: &[String],
) -> u64 {
    let total: i64 = counts
        .iter()
        .filter(|count| states.contains(&count.state))
        .filter(|count| queues.is_empty() || queues.contains(&count.queue))
        .filter(|count| kinds.is_empty() || kinds.contains(&count.kind))
        .map(|count| count.count)
        .sum();
    u64::try_from(total).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_jobs_the_filters_match() {
        let count = |queue: &str, kind: &str, state, count| StateCount {
            queue: queue.into(),
            kind: kind.into(),
            state,
            count,
        };
        let counts = [
            count("a", "k", JobState::Discarded, 4),
            count("a", "j", JobState::Discarded, 2),
            count("b", "k", JobState::Discarded, 3),
            count("a", "k", JobState::Completed, 9),
        ];
        assert_eq!(matching_count(&counts, &[JobState::Discarded], &[], &[]), 9);
        assert_eq!(
            matching_count(&counts, &[JobState::Discarded], &["a".into()], &[]),
            6
        );
        assert_eq!(
            matching_count(
                &counts,
                &[JobState::Discarded],
                &["a".into()],
                &["k".into()]
            ),
            4
        );
        assert_eq!(
            matching_count(&counts, &[JobState::Discarded], &[], &["k".into()]),
            7
        );
        assert_eq!(
            matching_count(&counts, &[JobState::Discarded], &["zzz".into()], &[]),
            0
        );
        assert_eq!(
            matching_count(
                &counts,
                &[JobState::Discarded, JobState::Completed],
                &[],
                &[]
            ),
            18
        );
    }
}
