//! History (issue 13): time series from the durable history, queue depths, and cleaning
//! finished jobs.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stoker::{CleanRequest, HistoryScope, JobState, SeriesRequest};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery};
use super::model::{ErrorBody, FinishedStateSchema};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// The longest range and step, in seconds: two years.
const RANGE_MAX_SECONDS: u64 = 730 * 86_400;

/// `GET /v1/stats/series`: which range, at which step, for which labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// How far back from `end`, in seconds (60 to two years). Defaults to 86,400 (a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 60, maximum = 63_072_000)]
    pub range_seconds: Option<u64>,
    /// Each point's width in seconds, whole minutes; whole hours read the hour rows, whole
    /// days the day rows. Widened when the range would take more than 1,440 points. Minutes
    /// are kept 7 days and hours 90 by default: finer steps further back read as zeros.
    /// Defaults to the finest of a minute, 5 minutes, an hour or a day that gives at most
    /// 1,440 points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 60, maximum = 63_072_000, multiple_of = 60)]
    pub step_seconds: Option<u64>,
    /// The end of the range (RFC 3339). Defaults to now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// Only this queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub queue: Option<String>,
    /// Only this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[!-~]{1,255}$")]
    pub kind: Option<String>,
    /// Only this tenant (forced to the token's tenant for tenant-bound tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[ -~]{1,255}$")]
    pub tenant: Option<String>,
    /// Also total the period of the same length just before. Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<bool>,
}

/// Percentiles of a merged histogram, exact to its log-spaced bucket (each is the bucket's
/// upper bound, in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LatencyView {
    /// How many durations.
    pub count: i64,
    /// Median, ms.
    pub p50_ms: Option<u64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<u64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<u64>,
}

impl From<stoker::Latency> for LatencyView {
    fn from(l: stoker::Latency) -> Self {
        LatencyView {
            count: l.count,
            p50_ms: l.p50_ms,
            p95_ms: l.p95_ms,
            p99_ms: l.p99_ms,
        }
    }
}

/// The counts of one interval `[at, at + step)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SeriesPointView {
    /// The interval's start.
    pub at: DateTime<Utc>,
    /// Jobs inserted.
    pub enqueued: i64,
    /// Attempts started.
    pub started: i64,
    /// Attempts that completed their job.
    pub completed: i64,
    /// Failed attempts (retried + discarded).
    pub failed: i64,
    /// Failed attempts that will run again.
    pub retried: i64,
    /// Failed attempts that ended their job.
    pub discarded: i64,
    /// Attempts that ended cancelled.
    pub cancelled: i64,
    /// Attempts snoozed.
    pub snoozed: i64,
    /// Wait time (due → started).
    pub wait: LatencyView,
    /// Run time.
    pub run: LatencyView,
    /// The highest sampled number of due jobs (summed over queues), if sampled.
    pub depth: Option<i64>,
    /// The highest sampled age of the oldest due job, ms, if sampled.
    pub oldest_age_ms: Option<i64>,
}

impl From<stoker::SeriesPoint> for SeriesPointView {
    fn from(p: stoker::SeriesPoint) -> Self {
        SeriesPointView {
            at: p.at,
            enqueued: p.enqueued,
            started: p.started,
            completed: p.completed,
            failed: p.failed,
            retried: p.retried,
            discarded: p.discarded,
            cancelled: p.cancelled,
            snoozed: p.snoozed,
            wait: p.wait.into(),
            run: p.run.into(),
            depth: p.depth,
            oldest_age_ms: p.oldest_age_ms,
        }
    }
}

/// A time series from the durable history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SeriesResponse {
    /// The first point's start.
    pub from: DateTime<Utc>,
    /// The last point's end (exclusive).
    pub to: DateTime<Utc>,
    /// Each point's width, in seconds.
    pub step_seconds: u64,
    /// The stored grain read: `minute`, `hour` or `day`.
    #[schema(value_type = String)]
    pub grain: stoker::HistoryGrain,
    /// One point per step, oldest first.
    pub points: Vec<SeriesPointView>,
    /// The whole range as one point.
    pub total: SeriesPointView,
    /// The period of the same length before `from`, as one point, when `compare` is on.
    pub previous: Option<SeriesPointView>,
}

/// The finest usual step that keeps a range within the point limit.
fn default_step(range: u64) -> u64 {
    [60, 300, 3600, 86_400]
        .into_iter()
        .find(|step| range.div_ceil(*step) <= stoker::SERIES_MAX_POINTS)
        .unwrap_or(86_400)
}

/// Time series of throughput, failures and latency percentiles.
///
/// Read from the durable history (per-minute rows rolled up to hours and days), never from
/// the jobs, so it answers as fast with ten million jobs as with none. Counts come from every
/// process that keeps history: embedded workers and pull workers alike.
#[utoipa::path(
    get,
    path = "/v1/stats/series",
    tag = "stats",
    params(SeriesQuery),
    responses(
        (status = 200, description = "The series", body = SeriesResponse),
        (status = 422, description = "A bad parameter", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn series(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<SeriesQuery>,
) -> Result<Json<SeriesResponse>, ApiError> {
    principal.require(Scope::Read)?;
    let range = query.range_seconds.unwrap_or(86_400);
    if !(60..=RANGE_MAX_SECONDS).contains(&range) {
        return Err(ApiError::invalid(
            "range_seconds",
            format!("range_seconds must be from 60 to {RANGE_MAX_SECONDS}, got {range}"),
        ));
    }
    let step = query.step_seconds.unwrap_or_else(|| default_step(range));
    let series = state
        .client_for(&principal)
        .series(&SeriesRequest {
            range: Duration::from_secs(range),
            step: Duration::from_secs(step),
            end: query.end,
            scope: HistoryScope {
                queue: query.queue,
                kind: query.kind,
                tenant: query.tenant,
            },
            compare: query.compare.unwrap_or(true),
        })
        .await
        .map_err(|err| rename(err, &[("range", "range_seconds"), ("step", "step_seconds")]))?;
    Ok(Json(SeriesResponse {
        from: series.from,
        to: series.to,
        step_seconds: series.step_seconds,
        grain: series.grain,
        points: series.points.into_iter().map(Into::into).collect(),
        total: series.total.into(),
        previous: series.previous.map(Into::into),
    }))
}

/// An error naming the client's field by the API's name for it.
fn rename(err: stoker::Error, names: &[(&str, &str)]) -> ApiError {
    match err {
        stoker::Error::Invalid(mut invalid) => {
            if let Some((_, api)) = names.iter().find(|(own, _)| *own == invalid.field) {
                invalid.field = (*api).to_owned();
            }
            stoker::Error::Invalid(invalid).into()
        }
        other => other.into(),
    }
}

/// One queue's waiting work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueDepthView {
    /// The queue.
    pub queue: String,
    /// Due jobs waiting (not scheduled for later).
    pub due: i64,
    /// Jobs waiting for a future `run_at`.
    pub scheduled: i64,
    /// When the oldest due job became due.
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// How long it has waited, in seconds.
    pub oldest_due_age_seconds: Option<f64>,
}

/// Waiting work per queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueDepthList {
    /// Queues with waiting jobs, by name.
    pub queues: Vec<QueueDepthView>,
}

/// Each queue's due and scheduled jobs, and how long the oldest due job has waited.
#[utoipa::path(
    get,
    path = "/v1/queues/depths",
    tag = "queues",
    responses(
        (status = 200, description = "Queues with waiting jobs (for a tenant-bound token: its tenant's waiting jobs only)", body = QueueDepthList),
        (status = 403, description = "Missing scope", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn depths(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<QueueDepthList>, ApiError> {
    principal.require(Scope::Read)?;
    let now = state.now();
    let queues = state
        .client_for(&principal)
        .queue_depths()
        .await?
        .into_iter()
        .map(|d| QueueDepthView {
            queue: d.queue,
            due: d.due,
            scheduled: d.scheduled,
            oldest_due_at: d.oldest_due_at,
            oldest_due_age_seconds: d
                .oldest_due_at
                .map(|at| (now - at).to_std().unwrap_or_default().as_secs_f64()),
        })
        .collect();
    Ok(Json(QueueDepthList { queues }))
}

/// `POST /v1/jobs/clean`: delete finished jobs older than a given age.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanJobsRequest {
    /// Only jobs that finished more than this many seconds ago (0 to ten years).
    #[schema(minimum = 0, maximum = 315_360_000)]
    pub older_than_seconds: u64,
    /// The finished states to delete. Defaults to `["completed"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FinishedStateSchema>>, min_items = 1, max_items = 3)]
    pub states: Option<Vec<JobState>>,
    /// The most jobs to delete in this request (1 to 10,000); repeat while `more` is true.
    /// Defaults to 1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub limit: Option<u32>,
}

/// How many jobs a clean deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CleanJobsResponse {
    /// Jobs deleted.
    pub deleted: u64,
    /// Whether the request deleted its whole `limit`, so more may match: repeat it.
    pub more: bool,
}

/// Delete finished jobs older than a given age.
///
/// Deletes at most `limit` jobs per request (oldest first) so no request does unbounded work;
/// the job counts move with the rows. Needs the admin scope; a tenant-bound token deletes only
/// its tenant's finished jobs.
#[utoipa::path(
    post,
    path = "/v1/jobs/clean",
    tag = "jobs",
    request_body = CleanJobsRequest,
    responses(
        (status = 200, description = "How many jobs were deleted", body = CleanJobsResponse),
        (status = 422, description = "A refused field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn clean(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<CleanJobsRequest>,
) -> Result<Json<CleanJobsResponse>, ApiError> {
    principal.require(Scope::Admin)?;
    let limit = request.limit.unwrap_or(1000);
    let deleted = state
        .client_for(&principal)
        .clean(&CleanRequest {
            states: request.states.unwrap_or_else(|| vec![JobState::Completed]),
            older_than: Duration::from_secs(request.older_than_seconds),
            limit,
        })
        .await
        .map_err(|err| rename(err, &[("older_than", "older_than_seconds")]))?;
    Ok(Json(CleanJobsResponse {
        deleted,
        more: deleted == u64::from(limit),
    }))
}
