//! Recurring schedules (issue 15): `/v1/cron`. Every route goes through `stoker::Client`,
//! which validates (naming the field) before anything is written.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stoker::cron::{CatchUp, CronRow, CronRun, CronSchedule, Overlap};
use stoker::JobId;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::model::{EnqueueResponse, JobMetadata, PriorityLevel};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// How many upcoming slots a schedule's view shows.
const UPCOMING: usize = 5;

/// A catch-up policy: what happens to slots missed while nothing was firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUpPolicy {
    /// Missed slots are dropped.
    Skip,
    /// The newest missed slot within the window fires once (the default).
    Latest,
    /// Every missed slot within the window fires, at most `catch_up_max`.
    All,
}

impl From<CatchUpPolicy> for CatchUp {
    fn from(policy: CatchUpPolicy) -> Self {
        match policy {
            CatchUpPolicy::Skip => CatchUp::Skip,
            CatchUpPolicy::Latest => CatchUp::Latest,
            CatchUpPolicy::All => CatchUp::All,
        }
    }
}

impl From<CatchUp> for CatchUpPolicy {
    fn from(policy: CatchUp) -> Self {
        match policy {
            CatchUp::Skip => CatchUpPolicy::Skip,
            CatchUp::Latest => CatchUpPolicy::Latest,
            CatchUp::All => CatchUpPolicy::All,
        }
    }
}

/// An overlap policy: whether a slot fires while the previous run is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Fire anyway (the default).
    Allow,
    /// Skip the slot.
    Skip,
}

impl From<OverlapPolicy> for Overlap {
    fn from(policy: OverlapPolicy) -> Self {
        match policy {
            OverlapPolicy::Allow => Overlap::Allow,
            OverlapPolicy::Skip => Overlap::Skip,
        }
    }
}

impl From<Overlap> for OverlapPolicy {
    fn from(policy: Overlap) -> Self {
        match policy {
            Overlap::Allow => OverlapPolicy::Allow,
            Overlap::Skip => OverlapPolicy::Skip,
        }
    }
}

/// `POST /v1/cron`: a new schedule. Everything but `name`, `expr` and `kind` is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CronCreateRequest {
    /// The schedule's name: 1 to 128 letters, digits, `_`, `-` and `.`.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$")]
    pub name: String,
    /// The cron expression: 5 fields (minute hour day month weekday), 6 with seconds first,
    /// or `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`.
    #[schema(min_length = 1, max_length = 256)]
    pub expr: String,
    /// The IANA time zone the expression is read in, e.g. `Europe/London`. Defaults to `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub tz: Option<String>,
    /// The job's kind: 1 to 255 printable ASCII characters without spaces.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub kind: String,
    /// The job's args: a JSON object. Defaults to `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub args: Option<Value>,
    /// The job's queue. Defaults to `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub queue: Option<String>,
    /// The job's priority. Defaults to `NORMAL` (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<PriorityLevel>,
    /// The job's max attempts, at least 1. Defaults to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_attempts: Option<i32>,
    /// The job's tenant: 1 to 255 printable ASCII characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[ -~]+$")]
    pub tenant: Option<String>,
    /// The job's metadata (each job also gets `cron`: the schedule, the slot, catch-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JobMetadata>,
    /// Missed slots: `skip`, `latest` (default) or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUpPolicy>,
    /// How far back `latest` and `all` reach, in seconds: 1 to 604,800 (seven days). Defaults
    /// to 3,600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 604_800)]
    pub catch_up_window_seconds: Option<u32>,
    /// The most missed slots `all` fires at once: 1 to 1,000. Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub catch_up_max: Option<u32>,
    /// `allow` (default) or `skip` a slot while the previous run is unfinished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapPolicy>,
    /// False to create it paused. Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `PATCH /v1/cron/{name}`: the fields to change; the others keep their values. A new `expr`
/// or `tz` takes effect from now, without backfilling the old expression's slots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CronUpdateRequest {
    /// The cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub expr: Option<String>,
    /// The IANA time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub tz: Option<String>,
    /// The job's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub kind: Option<String>,
    /// The job's args: a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub args: Option<Value>,
    /// The job's queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub queue: Option<String>,
    /// The job's priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<PriorityLevel>,
    /// The job's max attempts, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_attempts: Option<i32>,
    /// The job's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[ -~]+$")]
    pub tenant: Option<String>,
    /// The job's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JobMetadata>,
    /// Missed slots: `skip`, `latest` or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUpPolicy>,
    /// How far back `latest` and `all` reach, in seconds: 1 to 604,800.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 604_800)]
    pub catch_up_window_seconds: Option<u32>,
    /// The most missed slots `all` fires at once: 1 to 1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub catch_up_max: Option<u32>,
    /// `allow` or `skip` a slot while the previous run is unfinished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapPolicy>,
}

/// A schedule as stored, with its next five slots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CronView {
    /// The name.
    pub name: String,
    /// The cron expression.
    pub expr: String,
    /// The IANA time zone.
    pub tz: String,
    /// The job's kind.
    pub kind: String,
    /// The job's queue.
    pub queue: String,
    /// The job's args.
    #[schema(value_type = Object)]
    pub args: Value,
    /// The job's priority.
    pub priority: i16,
    /// The job's max attempts.
    pub max_attempts: i32,
    /// The job's tenant.
    pub tenant: Option<String>,
    /// The job's metadata.
    pub metadata: JobMetadata,
    /// Missed slots.
    pub catch_up: CatchUpPolicy,
    /// How far back `latest` and `all` reach, in seconds.
    pub catch_up_window_seconds: u32,
    /// The most missed slots `all` fires at once.
    pub catch_up_max: u32,
    /// Overlapping runs.
    pub overlap: OverlapPolicy,
    /// False while paused.
    pub enabled: bool,
    /// The first slot not yet fired.
    pub next_slot: DateTime<Utc>,
    /// The newest slot fired.
    pub last_slot: Option<DateTime<Utc>>,
    /// The next five slots (none while paused).
    pub upcoming: Vec<DateTime<Utc>>,
    /// Grows with every change.
    pub revision: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl CronView {
    /// The view of `row` at `now` (its upcoming slots are counted from `now`).
    pub(crate) fn new(row: CronRow, now: DateTime<Utc>) -> CronView {
        let s = row.schedule;
        let upcoming = if s.enabled {
            stoker::cron::CronExpr::parse(&s.expr, &s.tz)
                .map(|expr| expr.upcoming(now, UPCOMING))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        CronView {
            name: s.name,
            expr: s.expr,
            tz: s.tz,
            kind: s.kind,
            queue: s.queue,
            args: s.args,
            priority: s.priority.0,
            max_attempts: s.max_attempts,
            tenant: s.tenant,
            metadata: s.metadata.into(),
            catch_up: s.catch_up.into(),
            catch_up_window_seconds: s.catch_up_window_seconds,
            catch_up_max: s.catch_up_max,
            overlap: s.overlap.into(),
            enabled: s.enabled,
            next_slot: row.next_slot,
            last_slot: row.last_slot,
            upcoming,
            revision: row.revision,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Every schedule, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CronList {
    /// The schedules.
    pub schedules: Vec<CronView>,
}

/// One run of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CronRunView {
    /// The slot (the instant of a manual run).
    pub slot: DateTime<Utc>,
    /// When it fired.
    pub fired_at: DateTime<Utc>,
    /// The job, unless the slot was skipped.
    #[schema(value_type = Option<i64>)]
    pub job_id: Option<JobId>,
    /// Fired late by the catch-up policy.
    pub catch_up: bool,
    /// Fired by hand.
    pub run_now: bool,
    /// The outcome: the job's state, `skipped` (the previous run was unfinished) or `pruned`
    /// (the job is gone).
    pub outcome: String,
    /// How long the job's latest attempt ran, once finished.
    pub duration_seconds: Option<f64>,
}

impl From<CronRun> for CronRunView {
    fn from(run: CronRun) -> Self {
        let outcome = if run.skipped {
            "skipped".to_owned()
        } else {
            run.state
                .map_or_else(|| "pruned".to_owned(), |state| state.to_string())
        };
        CronRunView {
            duration_seconds: run
                .duration()
                .map(|d| d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6),
            slot: run.slot,
            fired_at: run.fired_at,
            job_id: run.job_id,
            catch_up: run.catch_up,
            run_now: run.run_now,
            outcome,
        }
    }
}

/// A schedule's recent runs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CronHistory {
    /// The runs.
    pub runs: Vec<CronRunView>,
}

/// `GET /v1/cron/{name}/history`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The most runs to return: 1 to 100. Defaults to 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// `GET /v1/cron-next`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    /// The cron expression.
    #[param(min_length = 1, max_length = 256)]
    pub expr: String,
    /// The IANA time zone. Defaults to `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 64)]
    pub tz: Option<String>,
    /// How many slots: 1 to 100. Defaults to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 100)]
    pub count: Option<u32>,
}

/// The next slots of an expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CronNext {
    /// The slots, as UTC instants.
    pub slots: Vec<DateTime<Utc>>,
}

const NAME_PARAM: &str = "The schedule: 1 to 128 letters, digits, `_`, `-` and `.`";

fn check_name(name: &str) -> Result<(), ApiError> {
    stoker::core::cron::validate_name(name).map_err(|err| ApiError::invalid("name", err.reason))
}

/// The schedule a create request describes, every omitted field at its default.
pub(crate) fn schedule_from(request: CronCreateRequest) -> CronSchedule {
    let mut s = CronSchedule::new(
        request.name,
        request.expr,
        request.kind,
        request
            .args
            .unwrap_or_else(|| Value::Object(Default::default())),
    );
    if let Some(tz) = request.tz {
        s.tz = tz;
    }
    if let Some(queue) = request.queue {
        s.queue = queue;
    }
    if let Some(priority) = request.priority {
        s.priority = priority.0;
    }
    if let Some(max_attempts) = request.max_attempts {
        s.max_attempts = max_attempts;
    }
    s.tenant = request.tenant;
    if let Some(metadata) = request.metadata {
        s.metadata = metadata.into();
    }
    if let Some(catch_up) = request.catch_up {
        s.catch_up = catch_up.into();
    }
    if let Some(window) = request.catch_up_window_seconds {
        s.catch_up_window_seconds = window;
    }
    if let Some(max) = request.catch_up_max {
        s.catch_up_max = max;
    }
    if let Some(overlap) = request.overlap {
        s.overlap = overlap.into();
    }
    if let Some(enabled) = request.enabled {
        s.enabled = enabled;
    }
    s
}

/// Applies the fields an update request gives to `s`.
pub(crate) fn apply_update(s: &mut CronSchedule, request: CronUpdateRequest) {
    if let Some(expr) = request.expr {
        s.expr = expr;
    }
    if let Some(tz) = request.tz {
        s.tz = tz;
    }
    if let Some(kind) = request.kind {
        s.kind = kind;
    }
    if let Some(args) = request.args {
        s.args = args;
    }
    if let Some(queue) = request.queue {
        s.queue = queue;
    }
    if let Some(priority) = request.priority {
        s.priority = priority.0;
    }
    if let Some(max_attempts) = request.max_attempts {
        s.max_attempts = max_attempts;
    }
    if let Some(tenant) = request.tenant {
        s.tenant = Some(tenant);
    }
    if let Some(metadata) = request.metadata {
        s.metadata = metadata.into();
    }
    if let Some(catch_up) = request.catch_up {
        s.catch_up = catch_up.into();
    }
    if let Some(window) = request.catch_up_window_seconds {
        s.catch_up_window_seconds = window;
    }
    if let Some(max) = request.catch_up_max {
        s.catch_up_max = max;
    }
    if let Some(overlap) = request.overlap {
        s.overlap = overlap.into();
    }
}

/// Refuses args that are not a JSON object.
pub(crate) fn check_args(args: &Option<Value>) -> Result<(), ApiError> {
    match args {
        Some(value) if !value.is_object() => {
            Err(ApiError::invalid("args", "must be a JSON object"))
        }
        _ => Ok(()),
    }
}

/// List every schedule, with its next five slots.
#[utoipa::path(
    get,
    path = "/v1/cron",
    tag = "cron",
    responses((status = 200, description = "Every schedule, by name", body = CronList)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<CronList>, ApiError> {
    principal.require(Scope::Read)?;
    let now = state.now();
    let rows = state.client_for(&principal).cron_list().await?;
    Ok(Json(CronList {
        schedules: rows
            .into_iter()
            .map(|row| CronView::new(row, now))
            .collect(),
    }))
}

/// Create a schedule. Its first slot is the first after now.
#[utoipa::path(
    post,
    path = "/v1/cron",
    tag = "cron",
    request_body = CronCreateRequest,
    responses(
        (status = 201, description = "Created", body = CronView),
        (status = 409, description = "`conflict`: a schedule with this name exists", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<CronCreateRequest>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    check_args(&request.args)?;
    let row = state
        .client_for(&principal)
        .cron_create(schedule_from(request))
        .await?;
    tracing::info!(schedule = %row.schedule.name, "cron schedule created");
    let location = format!("/v1/cron/{}", row.schedule.name);
    let view = CronView::new(row, state.now());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// One schedule, with its next five slots.
#[utoipa::path(
    get,
    path = "/v1/cron/{name}",
    tag = "cron",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$")),
    responses(
        (status = 200, description = "The schedule", body = CronView),
        (status = 404, description = "`not_found`: no such schedule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<CronView>, ApiError> {
    principal.require(Scope::Read)?;
    check_name(&name)?;
    let row = state.client_for(&principal).cron_get(&name).await?;
    Ok(Json(CronView::new(row, state.now())))
}

/// Change a schedule: only the fields given. A new `expr` or `tz` takes effect from now.
#[utoipa::path(
    patch,
    path = "/v1/cron/{name}",
    tag = "cron",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$")),
    request_body = CronUpdateRequest,
    responses(
        (status = 200, description = "The schedule, changed", body = CronView),
        (status = 404, description = "`not_found`: no such schedule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<CronUpdateRequest>,
) -> Result<Json<CronView>, ApiError> {
    principal.require(Scope::Admin)?;
    check_name(&name)?;
    check_args(&request.args)?;
    let client = state.client_for(&principal);
    let mut s = client.cron_get(&name).await?.schedule;
    apply_update(&mut s, request);
    let row = client.cron_update(s).await?;
    tracing::info!(schedule = %name, "cron schedule updated");
    Ok(Json(CronView::new(row, state.now())))
}

/// Delete a schedule and its history; its jobs stay.
#[utoipa::path(
    delete,
    path = "/v1/cron/{name}",
    tag = "cron",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$")),
    responses(
        (status = 200, description = "The schedule, as it was", body = CronView),
        (status = 404, description = "`not_found`: no such schedule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<CronView>, ApiError> {
    principal.require(Scope::Admin)?;
    check_name(&name)?;
    let row = state.client_for(&principal).cron_delete(&name).await?;
    tracing::info!(schedule = %name, "cron schedule deleted");
    Ok(Json(CronView::new(row, state.now())))
}

/// Pause a schedule: no slot fires until it is resumed.
#[utoipa::path(
    post,
    path = "/v1/cron/{name}/pause",
    tag = "cron",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$")),
    responses(
        (status = 200, description = "The schedule, paused", body = CronView),
        (status = 404, description = "`not_found`: no such schedule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn pause(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<CronView>, ApiError> {
    principal.require(Scope::Admin)?;
    check_name(&name)?;
    let row = state.client_for(&principal).cron_pause(&name).await?;
    Ok(Json(CronView::new(row, state.now())))
}

/// Resume a paused schedule from now; slots missed while paused do not fire.
#[utoipa::path(
    post,
    path = "/v1/cron/{name}/resume",
    tag = "cron",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$")),
    responses(
        (status = 200, description = "The schedule, resumed", body = CronView),
        (status = 404, description = "`not_found`: no such schedule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<CronView>, ApiError> {
    principal.require(Scope::Admin)?;
    check_name(&name)?;
    let row = state.client_for(&principal).cron_resume(&name).await?;
    Ok(Json(CronView::new(row, state.now())))
}

/// Enqueue the schedule's job now. Its idempotency key never collides with a slot's, and the
/// next slot is unchanged.
#[utoipa::path(
    post,
    path = "/v1/cron/{name}/run-now",
    tag = "cron",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$")),
    responses(
        (status = 201, description = "Enqueued", body = EnqueueResponse),
        (status = 404, description = "`not_found`: no such schedule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn run_now(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    check_name(&name)?;
    let client = state.client_for(&principal);
    let inserted = client.cron_run_now(&name).await?;
    let job = client
        .get(inserted.id)
        .await?
        .ok_or_else(|| ApiError::internal("a manual run's job vanished"))?;
    let location = format!("/v1/jobs/{}", job.id);
    let body = EnqueueResponse {
        id: job.id,
        duplicate: inserted.duplicate,
        kind: job.kind,
        queue: job.queue,
        state: job.state,
        run_at: job.run_at,
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// A schedule's recent runs, newest first, with outcome and duration.
#[utoipa::path(
    get,
    path = "/v1/cron/{name}/history",
    tag = "cron",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$"), HistoryQuery),
    responses(
        (status = 200, description = "The runs", body = CronHistory),
        (status = 404, description = "`not_found`: no such schedule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<CronHistory>, ApiError> {
    principal.require(Scope::Read)?;
    check_name(&name)?;
    let runs = state
        .client_for(&principal)
        .cron_history(&name, query.limit.unwrap_or(20))
        .await?;
    Ok(Json(CronHistory {
        runs: runs.into_iter().map(CronRunView::from).collect(),
    }))
}

/// The next slots of any expression in any time zone, as UTC instants.
#[utoipa::path(
    get,
    path = "/v1/cron-next",
    tag = "cron",
    params(NextQuery),
    responses((status = 200, description = "The slots", body = CronNext)),
    security(("bearer" = []))
)]
pub(crate) async fn next(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<NextQuery>,
) -> Result<Json<CronNext>, ApiError> {
    principal.require(Scope::Read)?;
    let slots = stoker::cron::next_slots(
        &query.expr,
        query.tz.as_deref().unwrap_or("UTC"),
        state.now(),
        query.count.unwrap_or(5) as usize,
    )?;
    Ok(Json(CronNext { slots }))
}
