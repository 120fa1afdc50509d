//! `GET /v1/events/snapshot`: the live snapshot as one JSON answer, for a reader that cannot
//! keep an event stream open. The dashboard polls it when its stream fails (a proxy that
//! buffers or cuts `text/event-stream`, a browser without `EventSource`); it is served from
//! the same per-server snapshot as the stream, so pollers cost the database what one does
//! (see [`stoker::Client::events_snapshot`]).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use stoker::{Snapshot, SnapshotMinute, SnapshotQueue, SnapshotStates};
use utoipa::ToSchema;

use super::model::ErrorBody;
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// Jobs by state. The states are disjoint: every job is in exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct SnapshotStatesView {
    /// Due: waiting to run now.
    pub available: i64,
    /// Available but not yet due (waiting for a `run_at` still ahead).
    pub scheduled: i64,
    /// Running now.
    pub running: i64,
    /// Waiting for a retry.
    pub retryable: i64,
    /// Finished successfully.
    pub completed: i64,
    /// Failed for good (dead letter).
    pub discarded: i64,
    /// Cancelled.
    pub cancelled: i64,
    /// Workflow jobs waiting for their dependencies.
    pub blocked: i64,
}

impl From<SnapshotStates> for SnapshotStatesView {
    fn from(s: SnapshotStates) -> Self {
        SnapshotStatesView {
            available: s.available,
            scheduled: s.scheduled,
            running: s.running,
            retryable: s.retryable,
            completed: s.completed,
            discarded: s.discarded,
            cancelled: s.cancelled,
            blocked: s.blocked,
        }
    }
}

/// One queue in the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SnapshotQueueView {
    /// The queue.
    pub name: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Its jobs by state.
    pub states: SnapshotStatesView,
    /// How long its oldest due job has waited, in seconds (0 when none waits).
    pub oldest_waiting_secs: f64,
}

impl From<&SnapshotQueue> for SnapshotQueueView {
    fn from(q: &SnapshotQueue) -> Self {
        SnapshotQueueView {
            name: q.name.clone(),
            paused: q.paused,
            states: q.states.into(),
            oldest_waiting_secs: q.oldest_waiting_secs,
        }
    }
}

/// The current minute's history, every process's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct SnapshotMinuteView {
    /// Jobs inserted.
    pub enqueued: i64,
    /// Attempts started.
    pub started: i64,
    /// Attempts that completed their job.
    pub completed: i64,
    /// Attempts that failed (retried or discarded).
    pub failed: i64,
    /// Failed attempts that ended their job.
    pub discarded: i64,
}

impl From<SnapshotMinute> for SnapshotMinuteView {
    fn from(m: SnapshotMinute) -> Self {
        SnapshotMinuteView {
            enqueued: m.enqueued,
            started: m.started,
            completed: m.completed,
            failed: m.failed,
            discarded: m.discarded,
        }
    }
}

/// The state of the whole queue system at one instant: the `data` of the event stream's
/// `snapshot` events, field for field.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SnapshotResponse {
    /// When it was computed (at most one snapshot interval, a second by default, ago).
    pub at: DateTime<Utc>,
    /// Every job by state.
    pub states: SnapshotStatesView,
    /// Every queue with jobs or settings, by name.
    pub queues: Vec<SnapshotQueueView>,
    /// The current minute's history.
    pub minute: SnapshotMinuteView,
    /// Worker processes whose heartbeat is fresh.
    pub workers_alive: u64,
}

impl From<&Snapshot> for SnapshotResponse {
    fn from(s: &Snapshot) -> Self {
        SnapshotResponse {
            at: s.at,
            states: s.states.into(),
            queues: s.queues.iter().map(SnapshotQueueView::from).collect(),
            minute: s.minute.into(),
            workers_alive: s.workers_alive,
        }
    }
}

/// The live snapshot, once: counts by state and queue, the current minute's history and
/// workers alive, as the event stream's `snapshot` events carry them.
///
/// For clients that cannot keep `GET /v1/events` open: poll this instead (the dashboard does
/// when its stream fails). It is the server's one shared snapshot, at most a snapshot
/// interval old, however many clients ask. A tenant-bound token gets its tenant's snapshot
/// instead (its jobs' counts, queues and depths, its minute of history, the workers bound to
/// it), computed for the request.
#[utoipa::path(
    get,
    path = "/v1/events/snapshot",
    tag = "stats",
    responses(
        (status = 200, description = "The current snapshot", body = SnapshotResponse),
        (status = 403, description = "Missing scope", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<SnapshotResponse>, ApiError> {
    principal.require(Scope::Read)?;
    let snapshot = state.client_for(&principal).events_snapshot().await?;
    Ok(Json(SnapshotResponse::from(&*snapshot)))
}
