//! Jobs: enqueue one or many, get, list, cancel, retry, delete, and retry in bulk.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use stoker::core::{validate_kind, validate_queue, JobInsert};
use stoker::{
    Client, Enqueued, InvalidInput, JobId, JobState, RetryFilter, MAX_ARGS_BYTES_DEFAULT,
    MAX_ATTEMPTS_DEFAULT, QUEUE_DEFAULT,
};

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::model::{
    EnqueueBulkRequest, EnqueueBulkResponse, EnqueueRequest, EnqueueResponse, EnqueuedItem,
    ErrorBody, ErrorCode, JobList, JobView, ListJobsQuery, RetryJobsRequest, RetryJobsResponse,
    BULK_MAX,
};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// Prefixes a field name with where it sits in the request (`jobs[3].`).
fn at(prefix: &str, field: &str) -> String {
    format!("{prefix}{field}")
}

/// Turns one enqueue request into a job to insert, applying defaults and the caller's tenant,
/// and checks it, naming the field at fault with `prefix`.
pub(super) fn build_insert(
    state: &AppState,
    client: &Client,
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
        idempotency_key,
        tenant,
        metadata,
        timeout_seconds,
        backoff,
        on_finish,
    } = request;
    let reprefix = |err: InvalidInput| {
        let field = match err.field.as_str() {
            "timeout" => "timeout_seconds",
            "unique_key" => "idempotency_key",
            other => other,
        };
        ApiError::invalid(
            at(prefix, field),
            format!("invalid {field}: {}", err.reason),
        )
    };
    validate_kind(&kind).map_err(reprefix)?;
    ascii_text(|| at(prefix, "kind"), &kind, false)?;
    if let Some(tenant) = &tenant {
        ascii_text(|| at(prefix, "tenant"), tenant, true)?;
    }
    if let Some(key) = &idempotency_key {
        ascii_text(|| at(prefix, "idempotency_key"), key, true)?;
    }
    let queue = queue.unwrap_or_else(|| QUEUE_DEFAULT.to_owned());
    validate_queue(&queue).map_err(reprefix)?;
    let run_at = match (run_at, delay_seconds) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                at(prefix, "delay_seconds"),
                "set either run_at or delay_seconds, not both",
            ))
        }
        (Some(run_at), None) => {
            stoker::check_run_at(run_at)
                .map_err(|err| ApiError::invalid(at(prefix, "run_at"), err.to_string()))?;
            Some(run_at)
        }
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
            if timeout.as_millis() == 0 {
                return Err(ApiError::invalid(
                    at(prefix, "timeout_seconds"),
                    "timeout_seconds must be at least 0.001 (one millisecond)",
                ));
            }
            Some(i64::try_from(timeout.as_millis()).map_err(|_| {
                ApiError::invalid(at(prefix, "timeout_seconds"), "timeout_seconds is too long")
            })?)
        }
        None => None,
    };
    let tenant = client.tenant_for(tenant, &at(prefix, "tenant"))?;
    let mut metadata: stoker::Metadata = metadata.unwrap_or_default().into();
    if metadata.source.is_none() {
        metadata.source = principal.name.clone();
    }
    metadata.on_finish = on_finish.map(Into::into);
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
        unique_key: idempotency_key,
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
pub(crate) const MAX_SECONDS: f64 = stoker::SCHEDULE_MAX.as_secs_f64();

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

/// The API's names (kinds, tenants, idempotency keys) are printable ASCII, so the lengths the
/// OpenAPI document gives (in characters) are exactly the store's (in bytes).
///
/// `field` names the value for an error only, so a bulk request builds no name per job.
pub(crate) fn ascii_text(
    field: impl FnOnce() -> String,
    value: &str,
    spaces: bool,
) -> Result<(), ApiError> {
    if value
        .chars()
        .all(|c| c.is_ascii_graphic() || (spaces && c == ' '))
    {
        return Ok(());
    }
    let rule = if spaces {
        "printable ASCII characters"
    } else {
        "printable ASCII characters without spaces"
    };
    let field = field();
    Err(ApiError::invalid(
        &field,
        format!("{field} must be {rule}, got {value:?}"),
    ))
}

async fn insert(
    state: &AppState,
    client: &Client,
    jobs: Vec<JobInsert>,
) -> Result<Vec<Enqueued>, ApiError> {
    let enqueued = client.enqueue_resolved_returning(jobs).await?;
    // One counter update per queue and kind, not per job: a bulk request is mostly one pair.
    let mut new_jobs: Vec<(&str, &str, u64)> = Vec::new();
    for job in enqueued.iter().filter(|job| !job.duplicate) {
        match new_jobs.last_mut() {
            Some((queue, kind, count)) if *queue == job.queue && *kind == job.kind => *count += 1,
            _ => new_jobs.push((&job.queue, &job.kind, 1)),
        }
    }
    for (queue, kind, count) in new_jobs {
        state.inner.metrics.record_enqueued(queue, kind, count);
    }
    Ok(enqueued)
}

/// Enqueue a job.
///
/// Answers 201 with the new job (id, kind, queue, state, run_at), or 200 with the existing job
/// as it is now when the idempotency key matched one (nothing is written then).
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = EnqueueRequest,
    responses(
        (status = 201, description = "Enqueued", body = EnqueueResponse),
        (status = 200, description = "A job with this idempotency key exists: that job, as it is now", body = EnqueueResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A field is refused (`field` names it)", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`: over an enqueue quota (a tenant's, or a key's); nothing was written", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the submissions would fit"))),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn enqueue(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<EnqueueRequest>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Enqueue)?;
    let client = state.client_for(&principal);
    let now = state.now();
    let job = build_insert(&state, &client, &principal, request, now, "")?;
    let job = insert(&state, &client, vec![job])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("the store inserted no job for one request"))?;
    let status = if job.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = format!("/v1/jobs/{}", job.id);
    let body = EnqueueResponse::from(job);
    Ok((status, [(header::LOCATION, location)], Json(body)).into_response())
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
        (status = 429, description = "`quota_exceeded`: over an enqueue quota (a tenant's, or a key's); nothing was written", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the submissions would fit"))),
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
    let client = state.client_for(&principal);
    let now = state.now();
    let jobs = request
        .jobs
        .into_iter()
        .enumerate()
        .map(|(index, job)| {
            build_insert(
                &state,
                &client,
                &principal,
                job,
                now,
                &format!("jobs[{index}]."),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Which kinds and queues a bulk enqueue wrote, for the audit log (issue 17).
    let mut kinds: Vec<String> = jobs.iter().map(|job| job.kind.clone()).collect();
    kinds.sort();
    kinds.dedup();
    let mut queues: Vec<String> = jobs.iter().map(|job| job.queue.clone()).collect();
    queues.sort();
    queues.dedup();
    let inserted = insert(&state, &client, jobs).await?;
    let duplicates = inserted.iter().filter(|job| job.duplicate).count() as u64;
    let total = inserted.len() as u64;
    client
        .audit_record(
            "job.enqueue_bulk",
            None,
            Some(serde_json::json!({"kinds": kinds, "queues": queues})),
            Some(i64::try_from(total - duplicates).unwrap_or(i64::MAX)),
        )
        .await;
    let status = if duplicates < total {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(EnqueueBulkResponse {
            jobs: inserted.into_iter().map(EnqueuedItem::from).collect(),
            inserted: total - duplicates,
            duplicates,
        }),
    ))
}

/// Maps the client's "not found" and "conflict" for job `id` to the API's.
fn job_error(id: i64) -> impl Fn(stoker::Error) -> ApiError {
    move |err| match err {
        stoker::Error::NotFound(_) => ApiError::job_not_found(id),
        stoker::Error::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
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
    let client = state.client_for(&principal);
    match client.get(JobId(id)).await? {
        Some(job) => {
            let mut view = JobView::from(job);
            // Its log lines (issue 13), bounded per job, so the answer stays small.
            view.logs = client
                .job_logs(JobId(id))
                .await
                .map_err(job_error(id))?
                .into_iter()
                .map(Into::into)
                .collect();
            Ok(Json(view))
        }
        None => Err(ApiError::job_not_found(id)),
    }
}

/// List and search jobs, newest first, with keyset pagination.
///
/// Filters are query parameters (lists comma-separated) and `q`, a search-bar query
/// (`state:failed queue:mail after:1h "ada@example.com"`); both combine. Pass `next_cursor`
/// of a page as `cursor` for older jobs, or `prev_cursor` with `direction=newer` for newer
/// ones. Each page reads at most 10,000 rows of one index: a sparse filter (a text search, a
/// queue among millions of jobs) can give a short or empty page with `partial: true` and a
/// `next_cursor` to go on. `count=true` adds a count, exact up to 10,000.
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
    let client = state.client_for(&principal);
    let criteria = super::search::criteria_from_query(&client, &query)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=stoker::JOB_SEARCH_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!(
                "invalid limit: must be from 1 to {}, got {limit}",
                stoker::JOB_SEARCH_MAX_LIMIT
            ),
        ));
    }
    if let Some(cursor) = query.cursor.filter(|cursor| *cursor < 1) {
        return Err(ApiError::invalid(
            "cursor",
            format!("invalid cursor: must be a job id (1 or more), got {cursor}"),
        ));
    }
    let count = if query.count == Some(true) {
        Some(client.count(criteria.clone()).await?.into())
    } else {
        None
    };
    let mut params = stoker::JobSearchParams::new(criteria, limit);
    params.cursor = query.cursor.map(JobId);
    params.direction = query.direction.unwrap_or_default();
    let page = client.search(params).await?;
    Ok(Json(JobList {
        jobs: page.jobs.into_iter().map(JobView::from).collect(),
        next_cursor: page.older,
        prev_cursor: page.newer,
        partial: page.partial,
        scanned: page.scanned,
        count,
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
    principal.require(Scope::Operate)?;
    let job = state
        .client_for(&principal)
        .cancel(JobId(id))
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
    principal.require(Scope::Operate)?;
    let job = state
        .client_for(&principal)
        .retry(JobId(id))
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
    let job = state
        .client_for(&principal)
        .delete(JobId(id))
        .await
        .map_err(job_error(id))?;
    Ok(Json(job.into()))
}

/// Retry finished jobs in bulk.
///
/// Retries every job in the given finished states (default: discarded) of the given queues
/// and kinds, in batches, and answers how many, and how many matching jobs remain (beyond
/// `limit`), counted in the caller's scope: a tenant-bound token counts only its own jobs.
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
    principal.require(Scope::Operate)?;
    if request
        .limit
        .is_some_and(|limit| i64::try_from(limit).is_err())
    {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be at most {}", i64::MAX),
        ));
    }
    for (index, kind) in request.kinds.iter().enumerate() {
        ascii_text(|| format!("kinds[{index}]"), kind, false)?;
    }
    let filter = RetryFilter {
        states: request.states.unwrap_or_else(|| vec![JobState::Discarded]),
        queues: request.queues,
        kinds: request.kinds,
        tenant: request.tenant,
        limit: request.limit,
        batch: RetryFilter::BATCH_DEFAULT,
    };
    let report = state
        .client_for(&principal)
        .retry_many(&filter, |_| {})
        .await?;
    tracing::info!(
        retried = report.retried,
        remaining = report.remaining,
        states = ?filter.states,
        queues = ?filter.queues,
        kinds = ?filter.kinds,
        "bulk retry"
    );
    Ok(Json(RetryJobsResponse {
        retried: report.retried,
        remaining: report.remaining,
    }))
}
