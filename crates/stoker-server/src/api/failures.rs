//! Failure groups, bulk operations by filter and job logs (issue 13): the routes and their
//! bodies. Every route goes through [`stoker::Client`], which validates and applies the
//! token's tenant.
//!
//! | method and path | scope | what |
//! |---|---|---|
//! | `GET /v1/failures` | read | failure groups, most recently seen first, by range and kind |
//! | `GET /v1/failures/{fingerprint}` | read | one group (with `since`: its hours in a range) |
//! | `POST /v1/failures/{fingerprint}/retry`, `/discard` | admin | start a bulk operation over the group |
//! | `POST /v1/ops` | admin | start a bulk operation by filter |
//! | `GET /v1/ops`, `GET /v1/ops/{id}` | read | operations and their progress |
//! | `POST /v1/ops/{id}/abort` | admin | stop a running operation |
//! | `GET /v1/jobs/{id}/logs` | read | a job's log lines |
//! | `POST /v1/pull/jobs/{id}/logs` | work | a pull worker appends log lines to a held job |

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stoker::core::{
    JobLogAppended, BULK_FILTER_MAX_VALUES, BULK_LIST_MAX_LIMIT, FAILURE_LIST_MAX_LIMIT,
    JOB_LOG_LINE_MAX_CHARS, JOB_LOG_MAX_LINES_PER_CALL,
};
use stoker::{
    BulkAction, BulkFilter, BulkOpListParams, BulkOpRow, BulkOpState, BulkRequest, ErrorKind,
    FailureGroup, FailureGroupListParams, JobId, JobLogLine,
};
// --- stream search ---
use stoker::StateView;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::model::{ErrorBody, ErrorCode};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// A failure group: every failed attempt of one kind with the same error class and message
/// once numbers, hex and UUIDs are taken out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FailureGroupView {
    /// The group's id: 16 hex digits of a hash of the kind, class and normalized message.
    pub fingerprint: String,
    /// The jobs' kind.
    pub kind: String,
    /// The error class.
    #[schema(value_type = super::model::ErrorKindSchema)]
    pub error_kind: ErrorKind,
    /// The normalized message (`<n>`, `<hex>`, `<uuid>` stand for what varied).
    pub message: String,
    /// Failed attempts recorded in the group, ever.
    pub count: i64,
    /// When the first was recorded.
    pub first_seen: DateTime<Utc>,
    /// When the latest was recorded.
    pub last_seen: DateTime<Utc>,
    /// The job of the latest failure (it may since have been deleted).
    pub sample_job_id: i64,
    /// The latest failure's message as reported.
    pub sample_message: String,
    // --- stream ops ---
    /// Failed attempts in the request's range (`since` to `until`, or to now), counted by
    /// the hours overlapping it; only when the request gives `since`. Hours are kept as long
    /// as the history's (90 days by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_in_range: Option<i64>,
    /// The range's failed attempts per hour (hours without one left out), oldest first; only
    /// from `GET /v1/failures/{fingerprint}` with `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Vec<FailureHourView>>,
}

// --- stream ops ---
/// A group's failed attempts in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FailureHourView {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// Failed attempts recorded in it.
    pub count: i64,
}

impl From<FailureGroup> for FailureGroupView {
    fn from(group: FailureGroup) -> Self {
        FailureGroupView {
            fingerprint: group.fingerprint,
            kind: group.kind,
            error_kind: group.error_kind,
            message: group.message,
            count: group.count,
            first_seen: group.first_seen,
            last_seen: group.last_seen,
            sample_job_id: group.sample_job_id.0,
            sample_message: group.sample_message,
            count_in_range: None,
            hours: None,
        }
    }
}

/// Failure groups, most recently seen first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FailureGroupList {
    /// The groups.
    pub groups: Vec<FailureGroupView>,
}

/// `GET /v1/failures`: which groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListFailuresQuery {
    /// Only groups seen at or after this instant (RFC 3339). Each group then also has
    /// `count_in_range`: its failed attempts from here to `until` (or now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Only groups first seen before this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Only groups of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub kind: Option<String>,
    /// The most groups, 1 to 500. Defaults to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// What a bulk operation does to each matching job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = BulkAction)]
pub enum BulkActionSchema {
    /// Run again now; running jobs are skipped.
    Retry,
    /// Cancel (a running job gets a cancel request); finished jobs are skipped.
    Cancel,
    /// Delete; running jobs are skipped.
    Delete,
    /// `available` and `retryable` jobs become `discarded`; others are skipped.
    Discard,
    /// Set the priority of `available` and `retryable` jobs (needs `priority`).
    SetPriority,
    /// Set the `run_at` of `available` and `retryable` jobs (needs `run_at`).
    SetRunAt,
}

/// Where a bulk operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = BulkOpState)]
pub enum BulkOpStateSchema {
    /// Batches remain; the leader's bulk runner runs them.
    Running,
    /// Every matching job was visited.
    Done,
    /// Stopped before it was done; batches already run stay applied.
    Aborted,
}

/// Which jobs a bulk operation applies to: those matching every criterion given, as a job
/// search (`GET /v1/jobs`) finds them. An empty filter matches every job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkFilterBody {
    /// Only jobs in these states (`available` is due work, `scheduled` available work not yet
    /// due).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<super::model::StateViewSchema>, max_items = 32)]
    pub states: Vec<StateView>,
    /// Only jobs in these queues.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<super::model::QueueNameSchema>, max_items = 32)]
    pub queues: Vec<String>,
    /// Only jobs of these kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<super::model::KindNameSchema>, max_items = 32)]
    pub kinds: Vec<String>,
    /// Only this tenant's jobs (forced to the token's tenant for tenant-bound tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[ -~]+$")]
    pub tenant: Option<String>,
    /// Only jobs whose latest failure is in this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{16}$", min_length = 16, max_length = 16)]
    pub failure_group: Option<String>,
    /// Only jobs created at or after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    // --- stream search ---
    /// Only these jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<super::model::JobIdSchema>, max_items = 32)]
    pub ids: Vec<JobId>,
    /// Only jobs with this idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub idempotency_key: Option<String>,
    /// Only jobs with this correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub correlation_id: Option<String>,
    /// Only children of this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub parent_id: Option<JobId>,
    /// Only jobs last run (or running) on this worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub worker: Option<String>,
    /// Only jobs finished at or after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_after: Option<DateTime<Utc>>,
    /// Only jobs finished before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_before: Option<DateTime<Utc>>,
    /// Only jobs whose args or metadata contain this text (case-sensitive substring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub text: Option<String>,
}

impl From<BulkFilterBody> for BulkFilter {
    fn from(body: BulkFilterBody) -> Self {
        BulkFilter {
            states: body.states,
            queues: body.queues,
            kinds: body.kinds,
            tenant: body.tenant,
            failure_group: body.failure_group,
            created_after: body.created_after,
            created_before: body.created_before,
            ids: body.ids,
            unique_key: body.idempotency_key,
            correlation_id: body.correlation_id,
            parent_id: body.parent_id,
            worker_id: body.worker,
            finished_after: body.finished_after,
            finished_before: body.finished_before,
            text: body.text,
        }
    }
}

impl From<BulkFilter> for BulkFilterBody {
    fn from(filter: BulkFilter) -> Self {
        BulkFilterBody {
            states: filter.states,
            queues: filter.queues,
            kinds: filter.kinds,
            tenant: filter.tenant,
            failure_group: filter.failure_group,
            created_after: filter.created_after,
            created_before: filter.created_before,
            ids: filter.ids,
            idempotency_key: filter.unique_key,
            correlation_id: filter.correlation_id,
            parent_id: filter.parent_id,
            worker: filter.worker_id,
            finished_after: filter.finished_after,
            finished_before: filter.finished_before,
            text: filter.text,
        }
    }
}

/// `POST /v1/ops`: start a bulk operation. It is recorded at once and run in the background
/// in bounded batches by the leader; follow it at `GET /v1/ops/{id}`. `priority` goes with
/// `set_priority` only and `run_at` with `set_run_at` only (the served document says so
/// with a `oneOf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBulkOpRequest {
    /// What to do to each matching job.
    #[schema(value_type = BulkActionSchema)]
    pub action: BulkAction,
    /// Which jobs (joined with `q`; an empty filter and no `q` match every job).
    #[serde(default)]
    pub filter: BulkFilterBody,
    /// A search-bar query (as `GET /v1/jobs?q=`), joined with `filter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2000)]
    pub q: Option<String>,
    /// The new priority, for `set_priority` only.
    #[serde(
        default,
        deserialize_with = "whole_priority",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = -32768, maximum = 32767)]
    pub priority: Option<i16>,
    /// The new `run_at`, for `set_run_at` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
}

/// A priority, also written with a fraction of zero (`137.0`), which JSON and the document's
/// `integer` do not tell apart. The body's shape check turns such numbers into integers where
/// the document says so, but here the document's `oneOf` of actions gives it no one branch
/// to read `priority` by (the API fuzz sent `137.0` and got 422).
fn whole_priority<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i16>, D::Error> {
    match Option::<f64>::deserialize(deserializer)? {
        None => Ok(None),
        Some(value)
            if value.fract() == 0.0
                && (f64::from(i16::MIN)..=f64::from(i16::MAX)).contains(&value) =>
        {
            Ok(Some(value as i16))
        }
        Some(value) => Err(serde::de::Error::invalid_value(
            serde::de::Unexpected::Float(value),
            &"a whole number from -32768 to 32767",
        )),
    }
}

/// A bulk operation and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BulkOpView {
    /// Assigned by the store.
    pub id: i64,
    /// What it does.
    #[schema(value_type = BulkActionSchema)]
    pub action: BulkAction,
    /// To which jobs.
    pub filter: BulkFilterBody,
    /// The new priority of `set_priority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i16>,
    /// The new `run_at` of `set_run_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Where it is.
    #[schema(value_type = BulkOpStateSchema)]
    pub state: BulkOpState,
    /// Jobs visited so far that matched (the total once `done`).
    pub matched: i64,
    /// Matched jobs the action changed.
    pub done: i64,
    /// Matched jobs it did not apply to (e.g. running jobs for a delete).
    pub skipped: i64,
    /// Every job id up to this one has been visited.
    pub cursor: i64,
    /// The newest job id when it was created: later jobs are left alone.
    pub max_id: i64,
    /// Who started it (the token's name, `cli`).
    pub created_by: Option<String>,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When its last batch ran.
    pub updated_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<BulkOpRow> for BulkOpView {
    fn from(op: BulkOpRow) -> Self {
        BulkOpView {
            id: op.id,
            action: op.action,
            filter: op.filter.into(),
            priority: op.priority.map(|p| p.0),
            run_at: op.run_at,
            state: op.state,
            matched: op.matched,
            done: op.done,
            skipped: op.skipped,
            cursor: op.cursor,
            max_id: op.max_id,
            created_by: op.created_by,
            created_at: op.created_at,
            updated_at: op.updated_at,
            finished_at: op.finished_at,
        }
    }
}

/// Bulk operations, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BulkOpList {
    /// The operations.
    pub ops: Vec<BulkOpView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// `GET /v1/ops`: which operations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListOpsQuery {
    /// Only operations in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<BulkOpStateSchema>)]
    pub state: Option<BulkOpState>,
    /// The keyset cursor: `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
    /// Page size, 1 to 500. Defaults to 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// One log line of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLogView {
    /// Its place among the job's lines, from 1.
    pub seq: i64,
    /// The attempt that wrote it.
    pub attempt: i32,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// The text.
    pub line: String,
}

impl From<JobLogLine> for JobLogView {
    fn from(line: JobLogLine) -> Self {
        JobLogView {
            seq: line.seq,
            attempt: line.attempt,
            at: line.at,
            line: line.line,
        }
    }
}

/// A job's log lines, oldest first. A job keeps at most 1,000 lines and 256 KiB over all its
/// attempts; later lines are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLogList {
    /// The lines.
    pub lines: Vec<JobLogView>,
}

/// `POST /v1/pull/jobs/{id}/logs`: append log lines to a held job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendLogsRequest {
    /// The `fence` the job was reserved with.
    pub fence: i64,
    /// 1 to 100 lines, each at most 4096 characters.
    #[schema(value_type = Vec<LogLineSchema>, min_items = 1, max_items = 100)]
    pub lines: Vec<String>,
}

/// One log line's text in the OpenAPI view: at most 4096 characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLineSchema;

impl utoipa::PartialSchema for LogLineSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .max_length(Some(JOB_LOG_LINE_MAX_CHARS))
            .description(Some("A log line: at most 4096 characters."))
            .into()
    }
}

impl ToSchema for LogLineSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "LogLine".into()
    }
}

/// What an append kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppendLogsResponse {
    /// Lines stored.
    pub accepted: u32,
    /// Lines dropped: the job reached 1,000 lines or 256 KiB.
    pub dropped: u32,
}

impl From<JobLogAppended> for AppendLogsResponse {
    fn from(appended: JobLogAppended) -> Self {
        AppendLogsResponse {
            accepted: appended.accepted,
            dropped: appended.dropped,
        }
    }
}

// The documented limits are the library's.
const _: () = assert!(BULK_FILTER_MAX_VALUES == 32);
const _: () = assert!(BULK_LIST_MAX_LIMIT == 500);
const _: () = assert!(FAILURE_LIST_MAX_LIMIT == 500);
const _: () = assert!(JOB_LOG_LINE_MAX_CHARS == 4096);
const _: () = assert!(JOB_LOG_MAX_LINES_PER_CALL == 100);

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

fn group_not_found(fingerprint: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("failure group {fingerprint} not found"),
    )
}

/// List failure groups, most recently seen first.
///
/// A tenant's failed jobs form groups of their own, so a tenant-bound token lists its
/// tenant's groups only, and another tenant's group answers it 404 (issue 17).
#[utoipa::path(
    get,
    path = "/v1/failures",
    tag = "failures",
    params(ListFailuresQuery),
    responses((status = 200, description = "The groups (for a tenant-bound token: its tenant's)", body = FailureGroupList)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListFailuresQuery>,
) -> Result<Json<FailureGroupList>, ApiError> {
    principal.require(Scope::Read)?;
    if let Some(kind) = &query.kind {
        super::jobs::ascii_text(|| "kind".to_owned(), kind, false)?;
    }
    let client = state.client_for(&principal);
    let groups = client
        .failure_groups(FailureGroupListParams {
            since: query.since,
            until: query.until,
            kind: query.kind,
            limit: query.limit.unwrap_or(100),
            // The client sets a tenant-bound token's own.
            tenant: None,
        })
        .await?;
    let mut views: Vec<FailureGroupView> = groups.into_iter().map(Into::into).collect();
    // --- stream ops ---
    if let Some(since) = query.since {
        let fingerprints: Vec<String> = views.iter().map(|v| v.fingerprint.clone()).collect();
        let hours = client
            .failure_group_hours(fingerprints, since, query.until)
            .await?;
        for view in &mut views {
            view.count_in_range = Some(
                hours
                    .iter()
                    .filter(|h| h.fingerprint == view.fingerprint)
                    .map(|h| h.count)
                    .sum(),
            );
        }
    }
    Ok(Json(FailureGroupList { groups: views }))
}

/// Get one failure group.
#[utoipa::path(
    get,
    path = "/v1/failures/{fingerprint}",
    tag = "failures",
    params(
        ("fingerprint" = String, Path, description = "The group's fingerprint", pattern = "^[0-9a-f]{16}$"),
        GetFailureQuery,
    ),
    responses(
        (status = 200, description = "The group", body = FailureGroupView),
        (status = 404, description = "No such group", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(fingerprint): ApiPath<String>,
    ApiQuery(query): ApiQuery<GetFailureQuery>,
) -> Result<Json<FailureGroupView>, ApiError> {
    principal.require(Scope::Read)?;
    let client = state.client_for(&principal);
    let Some(group) = client.failure_group(&fingerprint).await? else {
        return Err(group_not_found(&fingerprint));
    };
    let mut view = FailureGroupView::from(group);
    // --- stream ops ---
    if let Some(since) = query.since {
        let hours = client
            .failure_group_hours(vec![fingerprint], since, query.until)
            .await?;
        view.count_in_range = Some(hours.iter().map(|h| h.count).sum());
        view.hours = Some(
            hours
                .into_iter()
                .map(|h| FailureHourView {
                    hour: h.hour,
                    count: h.count,
                })
                .collect(),
        );
    }
    Ok(Json(view))
}

// --- stream ops ---
/// `GET /v1/failures/{fingerprint}`: the range to count, if any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetFailureQuery {
    /// Count the group's failed attempts from this instant (RFC 3339): the answer then has
    /// `count_in_range` and `hours`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The range's end (RFC 3339). Defaults to now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// Retry every failed job of a group (discarded, or waiting to retry): starts a bulk
/// operation.
#[utoipa::path(
    post,
    path = "/v1/failures/{fingerprint}/retry",
    tag = "failures",
    params(("fingerprint" = String, Path, description = "The group's fingerprint", pattern = "^[0-9a-f]{16}$")),
    responses(
        (status = 202, description = "The operation, started", body = BulkOpView),
        (status = 404, description = "`not_found`: no such group, or no job of it is left to retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(fingerprint): ApiPath<String>,
) -> Result<(StatusCode, Json<BulkOpView>), ApiError> {
    principal.require(Scope::Operate)?;
    let op = state
        .client_for(&principal)
        .retry_failure_group(&fingerprint, principal.name.clone())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(op.into())))
}

/// Discard every job of a group still waiting to retry: starts a bulk operation.
#[utoipa::path(
    post,
    path = "/v1/failures/{fingerprint}/discard",
    tag = "failures",
    params(("fingerprint" = String, Path, description = "The group's fingerprint", pattern = "^[0-9a-f]{16}$")),
    responses(
        (status = 202, description = "The operation, started", body = BulkOpView),
        (status = 404, description = "`not_found`: no such group, or no job of it is waiting to retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn discard(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(fingerprint): ApiPath<String>,
) -> Result<(StatusCode, Json<BulkOpView>), ApiError> {
    principal.require(Scope::Operate)?;
    let op = state
        .client_for(&principal)
        .discard_failure_group(&fingerprint, principal.name.clone())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(op.into())))
}

/// Start a bulk operation by filter: retry, cancel, delete, discard, or set the priority or
/// `run_at` of every matching job, in the background in bounded batches.
#[utoipa::path(
    post,
    path = "/v1/ops",
    tag = "failures",
    request_body = CreateBulkOpRequest,
    responses(
        (status = 202, description = "The operation, started", body = BulkOpView),
        (status = 404, description = "`not_found`: no job matches the filter; nothing was recorded", body = ErrorBody),
        (status = 422, description = "A refused field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<CreateBulkOpRequest>,
) -> Result<(StatusCode, Json<BulkOpView>), ApiError> {
    // Deleting stays with admin; every other bulk action is an operator's.
    principal.require(if matches!(request.action, stoker::BulkAction::Delete) {
        Scope::Admin
    } else {
        Scope::Operate
    })?;
    // The API's names are printable ASCII, so the document's lengths are the store's.
    for (i, kind) in request.filter.kinds.iter().enumerate() {
        super::jobs::ascii_text(|| format!("filter.kinds[{i}]"), kind, false)?;
    }
    if let Some(tenant) = &request.filter.tenant {
        super::jobs::ascii_text(|| "filter.tenant".to_owned(), tenant, true)?;
    }
    let client = state.client_for(&principal);
    let mut filter: BulkFilter = request.filter.into();
    // Job search (issue 14): the query language, joined with the filter.
    if let Some(q) = request.q.as_deref() {
        let parsed = client.parse_query(q).map_err(|err| match err {
            stoker::Error::Invalid(err) => {
                ApiError::invalid("q", format!("invalid q: {}", err.reason))
            }
            other => other.into(),
        })?;
        filter = stoker::merge_criteria(parsed, filter)
            .map_err(|err| ApiError::invalid(format!("filter.{}", err.field), err.reason))?;
    }
    let mut bulk = BulkRequest::new(request.action, filter);
    bulk.priority = request.priority.map(stoker::Priority);
    bulk.run_at = request.run_at;
    bulk.created_by = principal.name.clone();
    let op = client.bulk_start(bulk).await?;
    tracing::info!(
        op = op.id,
        action = op.action.as_str(),
        "bulk operation started"
    );
    Ok((StatusCode::ACCEPTED, Json(op.into())))
}

/// List bulk operations, newest first.
#[utoipa::path(
    get,
    path = "/v1/ops",
    tag = "failures",
    params(ListOpsQuery),
    responses((status = 200, description = "One page of operations", body = BulkOpList)),
    security(("bearer" = []))
)]
pub(crate) async fn list_ops(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListOpsQuery>,
) -> Result<Json<BulkOpList>, ApiError> {
    principal.require(Scope::Read)?;
    let limit = query.limit.unwrap_or(50);
    let ops = state
        .client_for(&principal)
        .bulk_ops(BulkOpListParams {
            states: query.state.into_iter().collect(),
            before_id: query.cursor,
            limit,
        })
        .await
        .map_err(|err| match err {
            // The client names the cursor as the library does; the query calls it `cursor`.
            stoker::Error::Invalid(invalid) if invalid.field == "before_id" => {
                ApiError::invalid("cursor", format!("invalid cursor: {}", invalid.reason))
            }
            other => other.into(),
        })?;
    let next_cursor = (ops.len() == limit as usize)
        .then(|| ops.last().map(|op| op.id))
        .flatten();
    Ok(Json(BulkOpList {
        ops: ops.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

fn op_not_found(id: i64) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("bulk operation {id} not found"),
    )
}

/// Get a bulk operation and its progress.
#[utoipa::path(
    get,
    path = "/v1/ops/{id}",
    tag = "failures",
    params(("id" = i64, Path, description = "The operation's id")),
    responses(
        (status = 200, description = "The operation", body = BulkOpView),
        (status = 404, description = "No such operation", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_op(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<BulkOpView>, ApiError> {
    principal.require(Scope::Read)?;
    match state.client_for(&principal).bulk_op(id).await? {
        Some(op) => Ok(Json(op.into())),
        None => Err(op_not_found(id)),
    }
}

/// Abort a running bulk operation; batches already run stay applied.
#[utoipa::path(
    post,
    path = "/v1/ops/{id}/abort",
    tag = "failures",
    params(("id" = i64, Path, description = "The operation's id")),
    responses(
        (status = 200, description = "The operation, aborted", body = BulkOpView),
        (status = 404, description = "No such operation", body = ErrorBody),
        (status = 409, description = "`conflict`: the operation already ended", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn abort(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<BulkOpView>, ApiError> {
    principal.require(Scope::Operate)?;
    let op = state
        .client_for(&principal)
        .bulk_abort(id)
        .await
        .map_err(|err| match err {
            stoker::Error::NotFound(_) => op_not_found(id),
            other => other.into(),
        })?;
    Ok(Json(op.into()))
}

/// Get a job's log lines, oldest first.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/logs",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The lines", body = JobLogList),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn job_logs(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobLogList>, ApiError> {
    principal.require(Scope::Read)?;
    let lines = state
        .client_for(&principal)
        .job_logs(JobId(id))
        .await
        .map_err(|err| match err {
            stoker::Error::NotFound(_) => ApiError::job_not_found(id),
            other => other.into(),
        })?;
    Ok(Json(JobLogList {
        lines: lines.into_iter().map(Into::into).collect(),
    }))
}

/// Append log lines to a reserved job.
///
/// Fenced like progress. A job keeps at most 1,000 lines and 256 KiB over all its attempts;
/// lines past that are dropped and counted in `dropped`.
#[utoipa::path(
    post,
    path = "/v1/pull/jobs/{id}/logs",
    tag = "pull",
    params(("id" = i64, Path, description = "The job's id")),
    request_body = AppendLogsRequest,
    responses(
        (status = 200, description = "What was kept", body = AppendLogsResponse),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the lease ended, the job finished, or it was reserved again", body = ErrorBody),
        (status = 422, description = "A refused field: no lines, too many, or one too long", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn pull_logs(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<AppendLogsRequest>,
) -> Result<Json<AppendLogsResponse>, ApiError> {
    principal.require(Scope::Work)?;
    let appended = state
        .client_for(&principal)
        .log_reserved(JobId(id), request.fence, request.lines)
        .await?;
    Ok(Json(appended.into()))
}

/// The create parameters a request becomes, for tests of the conversion.
#[cfg(test)]
fn params_of(request: CreateBulkOpRequest, now: DateTime<Utc>) -> stoker::core::BulkOpCreateParams {
    stoker::core::BulkOpCreateParams {
        action: request.action,
        filter: request.filter.into(),
        priority: request.priority.map(stoker::Priority),
        run_at: request.run_at,
        created_by: None,
        now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_priority_may_be_written_with_a_zero_fraction() {
        let read = |priority: &str| {
            serde_json::from_str::<CreateBulkOpRequest>(&format!(
                r#"{{"action":"set_priority","filter":{{}},"priority":{priority}}}"#
            ))
            .map(|request| request.priority)
        };
        assert_eq!(read("137.0").unwrap(), Some(137));
        assert_eq!(read("-32768").unwrap(), Some(-32768));
        assert!(read("1.5").is_err());
        assert!(read("32768").is_err());
        assert!(read("\"high\"").is_err());
    }

    #[test]
    fn request_names_match_the_library() {
        let request: CreateBulkOpRequest = serde_json::from_value(serde_json::json!({
            "action": "set_priority",
            "filter": {"states": ["retryable"], "failure_group": "0123456789abcdef"},
            "priority": 10,
        }))
        .unwrap();
        let params = params_of(request, Utc::now());
        params.validate().unwrap();
        assert_eq!(params.action, BulkAction::SetPriority);
        assert!(
            serde_json::from_value::<CreateBulkOpRequest>(serde_json::json!({
                "action": "explode", "filter": {"states": ["retryable"]},
            }))
            .is_err()
        );
    }
}
