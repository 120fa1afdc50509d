//! Batches (issue 18): a group of jobs with a callback enqueued exactly once when the batch
//! is closed and all of them have finished; create, add, close, read (counters, no scan),
//! list, cancel. And the list of workflows.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stoker::core::{BatchListParams, JobInsert, BATCH_MAX_JOBS_PER_CALL, TENANT_MAX_LEN};
use stoker::{BatchId, BatchRow, BatchState, Client, JobId, WorkflowListParams, WorkflowRow};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::jobs::{ascii_text, build_insert};
use super::model::{ErrorBody, ErrorCode};
use super::workflows::{WorkflowCountsView, WorkflowJobSpec, WorkflowStateSchema};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// `POST /v1/batches`: a batch of jobs and its callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The batch's name: 1 to 128 letters, digits, `_`, `-`, `.` and `:`.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub name: String,
    /// The tenant every job belongs to: 1 to 255 printable ASCII characters. A tenant-bound
    /// token may leave it out (its tenant is used) or name its own tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[ -~]+$")]
    pub tenant: Option<String>,
    /// The job enqueued once the batch is closed and all its jobs have finished. Its `args`
    /// (an object, without a `batch` key) receive `"batch": {"id", "total", "completed",
    /// "discarded", "cancelled"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<WorkflowJobSpec>,
    /// The jobs, at most 10,000 per request (add more with `POST /v1/batches/{id}/jobs`).
    #[serde(default)]
    #[schema(max_items = 10_000)]
    pub jobs: Vec<WorkflowJobSpec>,
    /// Keep the batch open for more jobs; it fires only once closed. Defaults to false: the
    /// batch is closed by this request.
    #[serde(default)]
    pub open: bool,
}

/// `POST /v1/batches/{id}/jobs`: jobs to add to an open batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchAddRequest {
    /// The jobs, 1 to 10,000.
    #[schema(min_items = 1, max_items = 10_000)]
    pub jobs: Vec<WorkflowJobSpec>,
    /// Close the batch after adding them. Defaults to false.
    #[serde(default)]
    pub close: bool,
}

/// What `POST /v1/batches` (and `/v1/batches/{id}/jobs`) wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchCreated {
    /// The batch's id.
    pub id: i64,
    /// The jobs' ids, in request order.
    pub jobs: Vec<i64>,
    /// The callback job's id (blocked until the batch fires).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_id: Option<i64>,
}

/// A batch's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = BatchState)]
pub enum BatchStateSchema {
    /// Jobs can be added; it does not fire until closed.
    Open,
    /// Closed, with jobs pending.
    Running,
    /// Closed and every job finished: the callback was enqueued.
    Finished,
    /// Cancelled: its unfinished jobs and its callback were cancelled.
    Cancelled,
}

impl From<BatchState> for BatchStateSchema {
    fn from(state: BatchState) -> Self {
        match state {
            BatchState::Open => BatchStateSchema::Open,
            BatchState::Running => BatchStateSchema::Running,
            BatchState::Finished => BatchStateSchema::Finished,
            BatchState::Cancelled => BatchStateSchema::Cancelled,
        }
    }
}

impl From<BatchStateSchema> for BatchState {
    fn from(state: BatchStateSchema) -> Self {
        match state {
            BatchStateSchema::Open => BatchState::Open,
            BatchStateSchema::Running => BatchState::Running,
            BatchStateSchema::Finished => BatchState::Finished,
            BatchStateSchema::Cancelled => BatchState::Cancelled,
        }
    }
}

/// A batch with its counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Its state.
    pub state: BatchStateSchema,
    /// Jobs added.
    pub total: i64,
    /// Jobs not finished.
    pub pending: i64,
    /// Jobs completed.
    pub completed: i64,
    /// Jobs discarded.
    pub discarded: i64,
    /// Jobs cancelled.
    pub cancelled: i64,
    /// The callback job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_id: Option<i64>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    /// When it finished (and its callback was enqueued).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// When it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl From<BatchRow> for BatchView {
    fn from(row: BatchRow) -> Self {
        BatchView {
            id: row.id.0,
            name: row.name,
            tenant: row.tenant,
            state: row.state.into(),
            total: row.total,
            pending: row.pending,
            completed: row.completed,
            discarded: row.discarded,
            cancelled: row.cancelled,
            callback_id: row.callback.map(|id| id.0),
            created_at: row.created_at,
            closed_at: row.closed_at,
            finished_at: row.finished_at,
            cancelled_at: row.cancelled_at,
        }
    }
}

/// One page of batches, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchList {
    /// The batches.
    pub batches: Vec<BatchView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// Filters of `GET /v1/batches`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BatchQuery {
    /// Only this tenant's batches (a tenant-bound token always reads only its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub tenant: Option<String>,
    /// Only batches in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<BatchStateSchema>)]
    pub state: Option<BatchStateSchema>,
    /// The keyset cursor: `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
    /// Page size, 1 to 500. Defaults to 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A workflow in a list: its state and counts, without its graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowSummary {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Its state.
    pub state: WorkflowStateSchema,
    /// Its jobs by state.
    pub counts: WorkflowCountsView,
    /// Jobs held by a failed dependency under `hold`.
    pub held: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl From<WorkflowRow> for WorkflowSummary {
    fn from(row: WorkflowRow) -> Self {
        let c = row.counts;
        WorkflowSummary {
            id: row.id.0,
            name: row.name,
            tenant: row.tenant,
            state: row.state.into(),
            counts: WorkflowCountsView {
                blocked: c.blocked,
                available: c.available,
                running: c.running,
                retryable: c.retryable,
                completed: c.completed,
                discarded: c.discarded,
                cancelled: c.cancelled,
            },
            held: row.held,
            created_at: row.created_at,
            cancelled_at: row.cancelled_at,
        }
    }
}

/// One page of workflows, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowList {
    /// The workflows.
    pub workflows: Vec<WorkflowSummary>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// Filters of `GET /v1/workflows`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WorkflowQuery {
    /// Only this tenant's workflows (a tenant-bound token always reads only its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub tenant: Option<String>,
    /// The keyset cursor: `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
    /// Page size, 1 to 200. Defaults to 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Checks a tenant as the document states it: 1 to 255 printable ASCII characters (spaces
/// allowed in a body, not in a query filter). A batch created without jobs has no job whose
/// checks would catch a bad one.
fn check_tenant(tenant: &str, spaces: bool) -> Result<(), ApiError> {
    if tenant.is_empty() || tenant.len() > TENANT_MAX_LEN {
        return Err(ApiError::invalid(
            "tenant",
            format!(
                "tenant must be 1 to {TENANT_MAX_LEN} characters, got {} characters",
                tenant.len()
            ),
        ));
    }
    ascii_text(|| "tenant".to_owned(), tenant, spaces)
}

/// Checks a list's cursor: an id, so at least 1 as the document states.
fn check_cursor(cursor: Option<i64>) -> Result<(), ApiError> {
    match cursor {
        Some(cursor) if cursor < 1 => Err(ApiError::invalid(
            "cursor",
            format!("cursor must be at least 1, got {cursor}"),
        )),
        _ => Ok(()),
    }
}

fn batch_not_found(id: i64) -> ApiError {
    ApiError::new(
        super::model::ErrorCode::NotFound,
        format!("batch {id} not found"),
    )
    .with_field("id")
}

fn not_found_as_batch(id: i64) -> impl FnOnce(stoker::Error) -> ApiError {
    move |err| match err {
        stoker::Error::NotFound(_) => batch_not_found(id),
        other => other.into(),
    }
}

/// Builds one job of a batch; `prefix` names its field (`jobs[3].`).
fn insert(
    state: &AppState,
    client: &Client,
    principal: &Principal,
    tenant: Option<String>,
    spec: WorkflowJobSpec,
    prefix: &str,
) -> Result<JobInsert, ApiError> {
    let request = spec.into_request(tenant);
    build_insert(state, client, principal, request, state.now(), prefix)
}

fn inserts(
    state: &AppState,
    client: &Client,
    principal: &Principal,
    tenant: &Option<String>,
    jobs: Vec<WorkflowJobSpec>,
) -> Result<Vec<JobInsert>, ApiError> {
    jobs.into_iter()
        .enumerate()
        .map(|(i, spec)| {
            insert(
                state,
                client,
                principal,
                tenant.clone(),
                spec,
                &format!("jobs[{i}]."),
            )
        })
        .collect()
}

fn created(inserted: stoker::BatchInserted) -> BatchCreated {
    BatchCreated {
        id: inserted.batch.0,
        jobs: inserted.jobs.into_iter().map(|id| id.0).collect(),
        callback_id: inserted.callback.map(|id| id.0),
    }
}

/// Enqueue a batch.
///
/// Its jobs, its counters and its callback are written in one transaction, or (on any error)
/// nothing. The callback waits, blocked, until the batch is closed (by this request unless
/// `open`) and every job has finished, and is then enqueued exactly once with the counts in
/// its args.
#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "batches",
    request_body = BatchRequest,
    responses(
        (status = 201, description = "Enqueued", body = BatchCreated),
        (status = 422, description = "A field is refused (`field` names it)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<BatchRequest>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Enqueue)?;
    if let Some(tenant) = &request.tenant {
        check_tenant(tenant, true)?;
    }
    let client = state.client_for(&principal);
    let tenant = client.tenant_for(request.tenant, "tenant")?;
    let callback = request
        .callback
        .map(|spec| {
            insert(
                &state,
                &client,
                &principal,
                tenant.clone(),
                spec,
                "callback.",
            )
        })
        .transpose()?;
    let jobs = inserts(&state, &client, &principal, &tenant, request.jobs)?;
    let inserted = client
        .enqueue_batch_resolved(None, request.name, tenant, callback, jobs, !request.open)
        .await?;
    let location = format!("/v1/batches/{}", inserted.batch);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created(inserted)),
    )
        .into_response())
}

/// Add jobs to an open batch.
///
/// Counted in the same transaction as their insert, so the batch cannot fire before they
/// finish. Refused with 409 once the batch is closed or cancelled.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/jobs",
    tag = "batches",
    params(("id" = i64, Path, description = "The batch's id")),
    request_body = BatchAddRequest,
    responses(
        (status = 201, description = "Added", body = BatchCreated),
        (status = 404, description = "No such batch", body = ErrorBody),
        (status = 409, description = "The batch is closed or cancelled", body = ErrorBody),
        (status = 422, description = "A field is refused (`field` names it)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn add(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<BatchAddRequest>,
) -> Result<(StatusCode, Json<BatchCreated>), ApiError> {
    principal.require(Scope::Enqueue)?;
    let client = state.client_for(&principal);
    let Some(row) = client.batch(BatchId(id)).await? else {
        return Err(batch_not_found(id));
    };
    let jobs = inserts(&state, &client, &principal, &row.tenant, request.jobs)?;
    let inserted = client
        .enqueue_batch_resolved(
            Some(row.id),
            String::new(),
            row.tenant,
            None,
            jobs,
            request.close,
        )
        .await
        .map_err(not_found_as_batch(id))?;
    Ok((StatusCode::CREATED, Json(created(inserted))))
}

/// Close a batch.
///
/// No job can be added any more, and the callback is enqueued as soon as nothing is pending
/// (at once, if nothing is). Closing it again changes nothing; a cancelled batch gets 409.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/close",
    tag = "batches",
    params(("id" = i64, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch, closed", body = BatchView),
        (status = 404, description = "No such batch", body = ErrorBody),
        (status = 409, description = "The batch is cancelled", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn close(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<BatchView>, ApiError> {
    principal.require(Scope::Enqueue)?;
    let client = state.client_for(&principal);
    let row = client
        .batch_close(BatchId(id))
        .await
        .map_err(not_found_as_batch(id))?;
    Ok(Json(row.into()))
}

/// Get a batch: its state and counters by outcome, read from one row.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "batches",
    params(("id" = i64, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        (status = 404, description = "No such batch", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<BatchView>, ApiError> {
    principal.require(Scope::Read)?;
    let client = state.client_for(&principal);
    match client.batch(BatchId(id)).await? {
        Some(row) => Ok(Json(row.into())),
        None => Err(batch_not_found(id)),
    }
}

/// Cancel a batch.
///
/// Its waiting jobs and its callback end cancelled, its running jobs are asked to stop, and
/// no job can be added to it. A finished batch is returned unchanged.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/cancel",
    tag = "batches",
    params(("id" = i64, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch, cancelled", body = BatchView),
        (status = 404, description = "No such batch", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<BatchView>, ApiError> {
    principal.require(Scope::Operate)?;
    let client = state.client_for(&principal);
    let row = client
        .cancel_batch(BatchId(id))
        .await
        .map_err(not_found_as_batch(id))?;
    Ok(Json(row.into()))
}

/// A reserved job's batch, as `GET /v1/pull/jobs/{id}/batch` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobBatchView {
    /// The batch with its counters; null if the job is in no batch.
    pub batch: Option<BatchView>,
}

/// `POST /v1/pull/jobs/{id}/batch/jobs`: jobs a pull worker adds to its job's batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullBatchAddRequest {
    /// The fence the job was reserved with.
    pub fence: i64,
    /// The jobs, 1 to 10,000. Each inherits the reserved job as its parent and its
    /// correlation id unless its `metadata` sets them.
    #[schema(min_items = 1, max_items = 10_000)]
    pub jobs: Vec<WorkflowJobSpec>,
}

/// The batch of a reserved job, with its counters: what a pull worker reads to learn its
/// job's batch (one row's read). `batch` is null for a job in no batch.
#[utoipa::path(
    get,
    path = "/v1/pull/jobs/{id}/batch",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job's batch, or null", body = JobBatchView),
        (status = 403, description = "Missing `work` scope", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn job_batch(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobBatchView>, ApiError> {
    principal.require(Scope::Work)?;
    let batch = state
        .client_for(&principal)
        .job_batch(JobId(id))
        .await
        .map_err(|err| match err {
            stoker::Error::NotFound(_) => ApiError::job_not_found(id),
            other => other.into(),
        })?;
    Ok(Json(JobBatchView {
        batch: batch.map(Into::into),
    }))
}

/// Add jobs to a reserved job's batch (as `ctx.add_to_batch` in Rust).
///
/// Fenced like progress: the job must still be reserved under `fence`. The batch must be
/// open; the jobs are counted in the same transaction as their insert, so the batch cannot
/// fire before they finish. Needs the `enqueue` scope besides `work`: it enqueues jobs.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/batch/jobs",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = PullBatchAddRequest,
    responses(
        (status = 201, description = "Added", body = BatchCreated),
        (status = 403, description = "Missing `work` or `enqueue` scope", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the job is no longer reserved under `fence`; or `conflict`: the job is in no batch, or the batch is closed or cancelled", body = ErrorBody),
        (status = 422, description = "A refused field: a bad job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn pull_add(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<PullBatchAddRequest>,
) -> Result<(StatusCode, Json<BatchCreated>), ApiError> {
    principal.require(Scope::Work)?;
    principal.require(Scope::Enqueue)?;
    if request.jobs.is_empty() {
        return Err(ApiError::invalid("jobs", "jobs must hold at least one job"));
    }
    let client = state.client_for(&principal);
    let job_not_found = |err| match err {
        stoker::Error::NotFound(_) => ApiError::job_not_found(id),
        other => other.into(),
    };
    // The jobs are built as the batch's tenant's, as `POST /v1/batches/{id}/jobs` builds them.
    let Some(batch) = client.job_batch(JobId(id)).await.map_err(job_not_found)? else {
        // A state of the job, not a fault of the request: the same body is valid for a job
        // in a batch, so the answer is a conflict, as for a closed batch.
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("job {id} is in no batch"),
        ));
    };
    let jobs = inserts(&state, &client, &principal, &batch.tenant, request.jobs)?;
    let inserted = client
        .batch_add_reserved(JobId(id), request.fence, jobs)
        .await
        .map_err(job_not_found)?;
    Ok((StatusCode::CREATED, Json(created(inserted))))
}

/// List batches, newest first, by tenant and state, paged by `cursor`.
#[utoipa::path(
    get,
    path = "/v1/batches",
    tag = "batches",
    params(BatchQuery),
    responses(
        (status = 200, description = "One page of batches", body = BatchList),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<BatchQuery>,
) -> Result<Json<BatchList>, ApiError> {
    principal.require(Scope::Read)?;
    if let Some(tenant) = &query.tenant {
        check_tenant(tenant, false)?;
    }
    check_cursor(query.cursor)?;
    let limit = query.limit.unwrap_or(50);
    let rows = state
        .client_for(&principal)
        .batches(BatchListParams {
            tenant: query.tenant,
            state: query.state.map(Into::into),
            before: query.cursor.map(BatchId),
            limit,
        })
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|row| row.id.0))
        .flatten();
    Ok(Json(BatchList {
        batches: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// List workflows, newest first, each with its state and counts, paged by `cursor`.
#[utoipa::path(
    get,
    path = "/v1/workflows",
    tag = "workflows",
    params(WorkflowQuery),
    responses(
        (status = 200, description = "One page of workflows", body = WorkflowList),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn workflows(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<WorkflowQuery>,
) -> Result<Json<WorkflowList>, ApiError> {
    principal.require(Scope::Read)?;
    if let Some(tenant) = &query.tenant {
        check_tenant(tenant, false)?;
    }
    check_cursor(query.cursor)?;
    let limit = query.limit.unwrap_or(50);
    let rows = state
        .client_for(&principal)
        .workflows(WorkflowListParams {
            tenant: query.tenant,
            before: query.cursor.map(stoker::WorkflowId),
            limit,
        })
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|row| row.id.0))
        .flatten();
    Ok(Json(WorkflowList {
        workflows: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// The most jobs a batch request may hold, as the schema states it.
const _: () = assert!(BATCH_MAX_JOBS_PER_CALL == 10_000);
