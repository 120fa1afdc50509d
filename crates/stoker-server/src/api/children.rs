//! Parents that wait for their children (issue 18) over HTTP: a pull worker enqueues
//! children its job waits for and finishes the job so that it completes once they have; and
//! anyone with `read` sees a job's wait.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stoker::{ChildrenWait, JobId, JobState};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath};
use super::jobs::build_insert;
use super::model::{AckResponse, ErrorBody, JobStateSchema};
use super::workflows::{DepPolicySchema, WorkflowCountsView, WorkflowJobSpec};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// `POST /v1/pull/jobs/{id}/children`: children a reserved job waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChildrenRequest {
    /// The fence the job was reserved with.
    pub fence: i64,
    /// The children, 1 to 10,000. Each has the reserved job as its parent, and its tenant
    /// and correlation id, unless its `metadata` says otherwise.
    #[schema(min_items = 1, max_items = 10_000)]
    pub jobs: Vec<WorkflowJobSpec>,
    /// What a child that ends discarded or cancelled does to the parent: `cancel` (the
    /// default) cancels it, `run` lets it complete anyway, `hold` keeps it waiting until the
    /// child is retried and completes.
    #[serde(default)]
    pub on_failure: DepPolicySchema,
}

/// What `POST /v1/pull/jobs/{id}/children` enqueued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChildrenCreated {
    /// The children's ids, in request order (an existing job's for a duplicate).
    pub jobs: Vec<i64>,
}

/// `POST /v1/pull/jobs/{id}/wait-children`: finish a reserved job once its children have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitChildrenRequest {
    /// The fence the job was reserved with.
    pub fence: i64,
    /// The handler's result, kept while the job waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
}

/// A child its parent still waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WaitedChildView {
    /// The child.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its state.
    #[schema(value_type = JobStateSchema)]
    pub state: JobState,
    /// What its failure does to the parent.
    pub policy: DepPolicySchema,
}

/// `GET /v1/jobs/{id}/children`: a job's wait for its children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobChildrenView {
    /// Whether the job ever enqueued a child it waits for (all else is zero when not).
    pub waits_for_children: bool,
    /// Children not yet resolved: a waiting (`blocked`) parent completes when this is 0.
    pub pending: i64,
    /// Children that failed under `cancel`: the parent ends cancelled.
    pub failed: i64,
    /// Every child waited for, by state.
    pub states: WorkflowCountsView,
    /// The unresolved children, lowest id first (at most 100).
    pub unresolved: Vec<WaitedChildView>,
}

impl From<Option<ChildrenWait>> for JobChildrenView {
    fn from(wait: Option<ChildrenWait>) -> Self {
        let Some(wait) = wait else {
            return JobChildrenView {
                waits_for_children: false,
                pending: 0,
                failed: 0,
                states: WorkflowCountsView::default(),
                unresolved: Vec::new(),
            };
        };
        let c = wait.states;
        JobChildrenView {
            waits_for_children: true,
            pending: wait.pending,
            failed: wait.failed,
            states: WorkflowCountsView {
                blocked: c.blocked,
                available: c.available,
                running: c.running,
                retryable: c.retryable,
                completed: c.completed,
                discarded: c.discarded,
                cancelled: c.cancelled,
            },
            unresolved: wait
                .unresolved
                .into_iter()
                .map(|child| WaitedChildView {
                    id: child.id.0,
                    kind: child.kind,
                    state: child.state,
                    policy: child.policy.into(),
                })
                .collect(),
        }
    }
}

fn job_not_found(id: i64) -> impl FnOnce(stoker::Error) -> ApiError {
    move |err| match err {
        stoker::Error::NotFound(_) => ApiError::job_not_found(id),
        other => other.into(),
    }
}

/// Enqueue children a reserved job waits for (as `ctx.enqueue_child` in Rust).
///
/// Fenced like progress. The job, once its worker finishes it with
/// `POST /v1/pull/jobs/{id}/wait-children`, completes only when every child has finished (a
/// failed child acts by `on_failure`). Needs the `enqueue` scope besides `work`.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/children",
    tag = "pull",
    params(("id" = i64, Path, description = "The parent job's id")),
    request_body = ChildrenRequest,
    responses(
        (status = 201, description = "Enqueued", body = ChildrenCreated),
        (status = 403, description = "Missing `work` or `enqueue` scope", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the job is no longer reserved under `fence`", body = ErrorBody),
        (status = 422, description = "A refused field (`jobs[i].…`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<ChildrenRequest>,
) -> Result<(StatusCode, Json<ChildrenCreated>), ApiError> {
    principal.require(Scope::Work)?;
    principal.require(Scope::Enqueue)?;
    if request.jobs.is_empty() || request.jobs.len() > stoker::core::CHILDREN_MAX_PER_CALL {
        return Err(ApiError::invalid(
            "jobs",
            format!(
                "jobs must hold 1 to {} jobs, got {}",
                stoker::core::CHILDREN_MAX_PER_CALL,
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
        .map(|(i, spec)| {
            build_insert(
                &state,
                &client,
                &principal,
                spec.into_request(None),
                now,
                &format!("jobs[{i}]."),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inserted = client
        .enqueue_children_resolved(JobId(id), request.fence, jobs, request.on_failure.into())
        .await
        .map_err(job_not_found(id))?;
    Ok((
        StatusCode::CREATED,
        Json(ChildrenCreated {
            jobs: inserted.into_iter().map(|job| job.id.0).collect(),
        }),
    ))
}

/// Finish a reserved job once its children have (as a Rust handler's `Ok` after
/// `ctx.enqueue_child`).
///
/// Fenced like complete. With no child pending the job completes now (or ends `cancelled` if
/// a child failed under `cancel`); otherwise it is `blocked` with its result kept, is not run
/// again, and completes in the transaction that finishes its last child.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/wait-children",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = WaitChildrenRequest,
    responses(
        (status = 200, description = "`blocked` while children are pending, else `completed` or `cancelled`", body = AckResponse),
        (status = 403, description = "Missing `work` scope", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the lease ended, the job finished, or it was reserved again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn wait(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<WaitChildrenRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    principal.require(Scope::Work)?;
    let job = state
        .client_for(&principal)
        .wait_children_reserved(JobId(id), request.fence, request.result)
        .await
        .map_err(job_not_found(id))?;
    Ok(Json(AckResponse {
        id: job.id,
        state: job.state,
        run_at: None,
    }))
}

/// A job's wait for its children: how many are pending and failed, its children by state,
/// and the unresolved ones.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/children",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Its wait (`waits_for_children` false for a job without one)", body = JobChildrenView),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobChildrenView>, ApiError> {
    principal.require(Scope::Read)?;
    let wait = state
        .client_for(&principal)
        .job_children(JobId(id))
        .await
        .map_err(job_not_found(id))?;
    Ok(Json(wait.into()))
}
