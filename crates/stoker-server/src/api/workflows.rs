//! Workflows (issue 18): enqueue a graph of jobs in one request, add to it, read its state,
//! result and graph, cancel it; and the pull protocol's read of a job's dependency results.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stoker::core::{JobInsert, WORKFLOW_MAX_JOBS_DEFAULT};
use stoker::{
    Client, DepPolicy, Dependency, JobId, JobState, WorkflowId, WorkflowJob, WorkflowRow,
    WorkflowState,
};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath};
use super::jobs::build_insert;
use super::model::{
    BackoffSpec, EnqueueRequest, ErrorBody, ErrorCode, JobMetadata, JobStateSchema, PriorityLevel,
};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// `POST /v1/workflows`: a named graph of jobs, enqueued all or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRequest {
    /// The workflow's name: 1 to 128 letters, digits, `_`, `-`, `.` and `:`.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub name: String,
    /// The tenant every job belongs to: 1 to 255 printable ASCII characters. A tenant-bound
    /// token may leave it out (its tenant is used) or name its own tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[ -~]+$")]
    pub tenant: Option<String>,
    /// The jobs, 1 to 10,000, in any order. Names are unique within the workflow, and the
    /// dependencies between them form no cycle (a request breaking either is refused with
    /// `field` naming the job).
    #[schema(min_items = 1, max_items = 10_000)]
    pub jobs: Vec<WorkflowJobRequest>,
}

/// `POST /v1/workflows/{id}/jobs`: jobs to add to a running workflow (dynamic fan-out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowAddRequest {
    /// The jobs, 1 to 10,000; their dependencies may name the workflow's existing jobs.
    #[schema(min_items = 1, max_items = 10_000)]
    pub jobs: Vec<WorkflowJobRequest>,
}

/// One job of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowJobRequest {
    /// Its name in the workflow: 1 to 128 letters, digits, `_`, `-`, `.` and `:`.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub name: String,
    /// The job.
    pub job: WorkflowJobSpec,
    /// What it waits for, at most 10,000: other jobs of the workflow by name, or existing
    /// jobs of the same tenant by id. Empty: it is available at once.
    #[serde(default)]
    #[schema(max_items = 10_000)]
    pub depends_on: Vec<DependencyRequest>,
}

/// A workflow's job: as `POST /v1/jobs` takes it, without `idempotency_key` (a duplicate
/// would be a job outside the workflow) and `tenant` (the workflow's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowJobSpec {
    /// The handler's name: 1 to 255 printable ASCII characters without spaces.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub kind: String,
    /// The handler's input: a JSON object, at most 1 MiB. Defaults to `{}`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub args: Value,
    /// The queue: 1 to 128 letters, digits, `_`, `-`, `.` and `:`. Defaults to `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub queue: Option<String>,
    /// Higher runs first. Defaults to `NORMAL` (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<PriorityLevel>,
    /// Run no earlier than this instant (once its dependencies allow): an RFC 3339
    /// date-time, years 1 to 9999. Not together with `delay_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Run no earlier than this many seconds from now: 0 to 315,360,000. Not together with
    /// `run_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 315_360_000)]
    pub delay_seconds: Option<f64>,
    /// The most attempts the job gets, at least 1. Defaults to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_attempts: Option<i32>,
    /// Lineage and tracing data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JobMetadata>,
    /// How long one attempt may run, in seconds (one millisecond to ten years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.001, maximum = 315_360_000)]
    pub timeout_seconds: Option<f64>,
    /// The job's own retry backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffSpec>,
}

impl WorkflowJobSpec {
    /// The enqueue request this job stands for, as the workflow's or batch's job of
    /// `tenant`: no idempotency key and no completion callback of its own.
    pub(crate) fn into_request(self, tenant: Option<String>) -> EnqueueRequest {
        let WorkflowJobSpec {
            kind,
            args,
            queue,
            priority,
            run_at,
            delay_seconds,
            max_attempts,
            metadata,
            timeout_seconds,
            backoff,
        } = self;
        EnqueueRequest {
            kind,
            args,
            queue,
            priority,
            run_at,
            delay_seconds,
            max_attempts,
            idempotency_key: None,
            tenant,
            metadata,
            timeout_seconds,
            backoff,
            on_finish: None,
        }
    }
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A dependency: a job of the workflow by `node` name, or an existing job by `job` id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DependencyRequest {
    /// A job of the workflow by name.
    Node(NodeDependency),
    /// An existing job by id.
    Job(JobDependency),
}

/// A dependency on a job of the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeDependency {
    /// The job's name in the workflow.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub node: String,
    /// What its failure does. Defaults to `cancel`.
    #[serde(default)]
    pub policy: DepPolicySchema,
}

/// A dependency on an existing job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDependency {
    /// The job's id.
    #[schema(minimum = 1)]
    pub job: i64,
    /// What its failure does. Defaults to `cancel`.
    #[serde(default)]
    pub policy: DepPolicySchema,
}

/// What a dependency that ends discarded or cancelled does to the job waiting for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DepPolicy)]
pub enum DepPolicySchema {
    /// The waiting job is cancelled, and so are the jobs waiting for it.
    #[default]
    Cancel,
    /// The waiting job runs anyway and sees the failure among its dependency results.
    Run,
    /// The waiting job stays blocked (the workflow is `held`) until the failed job is
    /// retried and completes, or the workflow is cancelled.
    Hold,
}

impl From<DepPolicySchema> for DepPolicy {
    fn from(policy: DepPolicySchema) -> Self {
        match policy {
            DepPolicySchema::Cancel => DepPolicy::Cancel,
            DepPolicySchema::Run => DepPolicy::Run,
            DepPolicySchema::Hold => DepPolicy::Hold,
        }
    }
}

impl From<DepPolicy> for DepPolicySchema {
    fn from(policy: DepPolicy) -> Self {
        match policy {
            DepPolicy::Cancel => DepPolicySchema::Cancel,
            DepPolicy::Run => DepPolicySchema::Run,
            DepPolicy::Hold => DepPolicySchema::Hold,
        }
    }
}

/// A workflow's state, derived from its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = WorkflowState)]
pub enum WorkflowStateSchema {
    /// A job is waiting, running, or blocked on a job that may still complete.
    Running,
    /// Nothing can move: a job waits on a failed dependency under `hold`.
    Held,
    /// Every job completed.
    Completed,
    /// Every job finished, and some did not complete.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl From<WorkflowState> for WorkflowStateSchema {
    fn from(state: WorkflowState) -> Self {
        match state {
            WorkflowState::Running => WorkflowStateSchema::Running,
            WorkflowState::Held => WorkflowStateSchema::Held,
            WorkflowState::Completed => WorkflowStateSchema::Completed,
            WorkflowState::Failed => WorkflowStateSchema::Failed,
            WorkflowState::Cancelled => WorkflowStateSchema::Cancelled,
        }
    }
}

/// What `POST /v1/workflows` (and `/v1/workflows/{id}/jobs`) wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowCreated {
    /// The workflow's id.
    pub id: i64,
    /// Each job's name and id, in request order.
    pub jobs: Vec<WorkflowJobCreated>,
}

/// One job written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowJobCreated {
    /// Its name in the workflow.
    pub name: String,
    /// Its id.
    pub id: i64,
}

/// A workflow's jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowCountsView {
    /// Waiting for dependencies.
    pub blocked: i64,
    /// Waiting to run.
    pub available: i64,
    /// Running.
    pub running: i64,
    /// Waiting for a retry.
    pub retryable: i64,
    /// Completed.
    pub completed: i64,
    /// Discarded.
    pub discarded: i64,
    /// Cancelled.
    pub cancelled: i64,
}

/// A workflow: state, counts, result and graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowView {
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
    /// Once completed: each final job's result (one no other job of the workflow waits
    /// for), by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Its jobs with their edges, by id.
    pub jobs: Vec<WorkflowJobView>,
}

/// One job of a workflow, with what it waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowJobView {
    /// The job's id.
    pub id: i64,
    /// Its name in the workflow.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its state.
    #[schema(value_type = JobStateSchema)]
    pub state: JobState,
    /// Its dependencies.
    pub depends_on: Vec<DependencyEdgeView>,
}

/// An edge: the job depended on, its policy, and whether it has been resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DependencyEdgeView {
    /// The job depended on.
    pub id: i64,
    /// Its policy.
    pub policy: DepPolicySchema,
    /// Resolved: the job completed, or failed under `cancel` or `run`.
    pub resolved: bool,
}

/// A job's dependencies with their outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DependencyResults {
    /// One per dependency, by id.
    pub dependencies: Vec<DependencyResultView>,
}

/// One dependency's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DependencyResultView {
    /// The job depended on.
    pub id: i64,
    /// Its name, if it is in a workflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its state.
    #[schema(value_type = JobStateSchema)]
    pub state: JobState,
    /// Its result, if it completed with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// The edge's policy.
    pub policy: DepPolicySchema,
}

/// The API's view of a workflow and its jobs (the CLI prints the same).
pub(crate) fn view(row: WorkflowRow, jobs: Vec<WorkflowJob>) -> WorkflowView {
    let c = row.counts;
    WorkflowView {
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
        result: row.result,
        created_at: row.created_at,
        cancelled_at: row.cancelled_at,
        jobs: jobs
            .into_iter()
            .map(|job| WorkflowJobView {
                id: job.id.0,
                name: job.node,
                kind: job.kind,
                state: job.state,
                depends_on: job
                    .depends_on
                    .into_iter()
                    .map(|edge| DependencyEdgeView {
                        id: edge.id.0,
                        policy: edge.policy.into(),
                        resolved: edge.resolved,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The store names a workflow's jobs `nodes[i]`; the API calls them `jobs[i]`.
fn renamed(err: stoker::Error) -> ApiError {
    match err {
        stoker::Error::Invalid(mut invalid) => {
            if let Some(rest) = invalid.field.strip_prefix("nodes") {
                invalid.field = format!("jobs{rest}");
            }
            invalid.into()
        }
        other => other.into(),
    }
}

fn workflow_not_found(id: i64) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("workflow {id} not found")).with_field("id")
}

/// Builds the store's nodes from the request's jobs.
fn nodes(
    state: &AppState,
    client: &Client,
    principal: &Principal,
    tenant: Option<String>,
    jobs: Vec<WorkflowJobRequest>,
) -> Result<Vec<(String, JobInsert, Vec<Dependency>)>, ApiError> {
    let now = state.now();
    jobs.into_iter()
        .enumerate()
        .map(|(i, job)| {
            let request = job.job.into_request(tenant.clone());
            let insert = build_insert(
                state,
                client,
                principal,
                request,
                now,
                &format!("jobs[{i}].job."),
            )?;
            let deps = job
                .depends_on
                .into_iter()
                .map(|dep| match dep {
                    DependencyRequest::Node(node) => {
                        Dependency::node(node.node).policy(node.policy.into())
                    }
                    DependencyRequest::Job(on) => {
                        Dependency::job(JobId(on.job)).policy(on.policy.into())
                    }
                })
                .collect();
            Ok((job.name, insert, deps))
        })
        .collect()
}

fn created(inserted: stoker::WorkflowInserted) -> WorkflowCreated {
    WorkflowCreated {
        id: inserted.workflow.0,
        jobs: inserted
            .jobs
            .into_iter()
            .map(|(name, id)| WorkflowJobCreated { name, id: id.0 })
            .collect(),
    }
}

/// Enqueue a workflow.
///
/// Every job and dependency is written in one transaction, or (on any error) nothing. Jobs
/// with dependencies wait `blocked` until the last one finishes. A cycle, a duplicate name,
/// a dependency on an unknown job, on another tenant's job, or on a job that already failed
/// under `cancel` is refused with `field` naming the job (`jobs[3].depends_on[0]`).
#[utoipa::path(
    post,
    path = "/v1/workflows",
    tag = "workflows",
    request_body = WorkflowRequest,
    responses(
        (status = 201, description = "Enqueued", body = WorkflowCreated),
        (status = 422, description = "A field is refused (`field` names it)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<WorkflowRequest>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Enqueue)?;
    let client = state.client_for(&principal);
    let tenant = client.tenant_for(request.tenant, "tenant")?;
    let nodes = nodes(&state, &client, &principal, tenant.clone(), request.jobs)?;
    let inserted = client
        .enqueue_workflow_resolved(None, request.name, tenant, nodes)
        .await
        .map_err(renamed)?;
    let location = format!("/v1/workflows/{}", inserted.workflow);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created(inserted)),
    )
        .into_response())
}

/// Add jobs to a workflow (dynamic fan-out).
///
/// Their dependencies may name the workflow's existing jobs. Refused with 409 once the
/// workflow is cancelled.
#[utoipa::path(
    post,
    path = "/v1/workflows/{id}/jobs",
    tag = "workflows",
    params(("id" = i64, Path, description = "The workflow's id")),
    request_body = WorkflowAddRequest,
    responses(
        (status = 201, description = "Added", body = WorkflowCreated),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 409, description = "The workflow is cancelled", body = ErrorBody),
        (status = 422, description = "A field is refused (`field` names it)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn add(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<WorkflowAddRequest>,
) -> Result<(StatusCode, Json<WorkflowCreated>), ApiError> {
    principal.require(Scope::Enqueue)?;
    let client = state.client_for(&principal);
    let Some(row) = client.workflow(WorkflowId(id)).await? else {
        return Err(workflow_not_found(id));
    };
    let nodes = nodes(
        &state,
        &client,
        &principal,
        row.tenant.clone(),
        request.jobs,
    )?;
    let inserted = client
        .enqueue_workflow_resolved(Some(row.id), String::new(), row.tenant, nodes)
        .await
        .map_err(|err| match err {
            stoker::Error::NotFound(_) => workflow_not_found(id),
            other => renamed(other),
        })?;
    Ok((StatusCode::CREATED, Json(created(inserted))))
}

/// Get a workflow: state, counts, result, and its jobs with their dependencies.
#[utoipa::path(
    get,
    path = "/v1/workflows/{id}",
    tag = "workflows",
    params(("id" = i64, Path, description = "The workflow's id")),
    responses(
        (status = 200, description = "The workflow", body = WorkflowView),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WorkflowView>, ApiError> {
    principal.require(Scope::Read)?;
    let client = state.client_for(&principal);
    let Some(row) = client.workflow(WorkflowId(id)).await? else {
        return Err(workflow_not_found(id));
    };
    let jobs = client.workflow_jobs(WorkflowId(id)).await?;
    Ok(Json(view(row, jobs)))
}

/// Cancel a workflow.
///
/// Its waiting jobs (blocked, available, retryable) end cancelled, its running jobs are asked
/// to stop, and no job can be added to it. Cancelling it again changes nothing.
#[utoipa::path(
    post,
    path = "/v1/workflows/{id}/cancel",
    tag = "workflows",
    params(("id" = i64, Path, description = "The workflow's id")),
    responses(
        (status = 200, description = "The workflow, cancelled", body = WorkflowView),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WorkflowView>, ApiError> {
    principal.require(Scope::Operate)?;
    let client = state.client_for(&principal);
    let row = client
        .cancel_workflow(WorkflowId(id))
        .await
        .map_err(|err| match err {
            stoker::Error::NotFound(_) => workflow_not_found(id),
            other => other.into(),
        })?;
    let jobs = client.workflow_jobs(WorkflowId(id)).await?;
    Ok(Json(view(row, jobs)))
}

/// A reserved job's dependencies with their states and results: what a pull worker reads
/// before it runs a workflow job (as `ctx.dependency_results()` in Rust).
#[utoipa::path(
    get,
    path = "/v1/pull/jobs/{id}/dependencies",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Its dependencies, by id", body = DependencyResults),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn dependencies(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DependencyResults>, ApiError> {
    principal.require(Scope::Work)?;
    let client = state.client_for(&principal);
    let results = client
        .dependency_results(JobId(id))
        .await
        .map_err(|err| match err {
            stoker::Error::NotFound(_) => ApiError::job_not_found(id),
            other => other.into(),
        })?;
    Ok(Json(DependencyResults {
        dependencies: results
            .into_iter()
            .map(|result| DependencyResultView {
                id: result.id.0,
                node: result.node,
                state: result.state,
                result: result.result,
                policy: result.policy.into(),
            })
            .collect(),
    }))
}

/// The most jobs a workflow request may hold, as the schema states it.
const _: () = assert!(WORKFLOW_MAX_JOBS_DEFAULT == 10_000);
