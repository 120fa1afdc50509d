//! Workers and the built-in handlers.

use axum::extract::State;
use axum::Json;

use super::model::{ErrorBody, HandlerList, HandlerView, WorkerList, WorkerView};
use super::pull::PULL_PREFIX;
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// List worker processes and pull workers, with heartbeats and counters.
///
/// A worker is `alive` while its last heartbeat is more recent than the rescuer's
/// `stale_after`. Pull workers (`pull:<name>`) heartbeat with their reserve calls.
#[utoipa::path(
    get,
    path = "/v1/workers",
    tag = "workers",
    responses(
        (status = 200, description = "Every worker row, by id", body = WorkerList),
        (status = 403, description = "Missing scope, or a tenant-bound token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<WorkerList>, ApiError> {
    principal.require(Scope::Read)?;
    principal.require_cluster("the worker list")?;
    let now = state.now();
    let stale_before =
        now - chrono::Duration::from_std(state.inner.stale_after).unwrap_or(chrono::Duration::MAX);
    let workers = state
        .inner
        .store
        .worker_list()
        .await?
        .into_iter()
        .map(|row| WorkerView {
            pull: row.id.starts_with(PULL_PREFIX),
            alive: row.heartbeat_at > stale_before,
            id: row.id,
            host: row.host,
            pid: row.pid,
            queues: row.queues,
            concurrency: row.concurrency,
            started_at: row.started_at,
            heartbeat_at: row.heartbeat_at,
            jobs_done: row.jobs_done,
            jobs_failed: row.jobs_failed,
        })
        .collect();
    Ok(Json(WorkerList { workers }))
}

/// List the handlers built into the server, and the queues it runs them on.
#[utoipa::path(
    get,
    path = "/v1/handlers",
    tag = "workers",
    responses((status = 200, description = "The built-in handlers", body = HandlerList)),
    security(("bearer" = []))
)]
pub(crate) async fn handlers(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<HandlerList>, ApiError> {
    principal.require(Scope::Read)?;
    Ok(Json(HandlerList {
        handlers: state
            .inner
            .handlers
            .iter()
            .map(|info| HandlerView {
                kind: info.kind.to_string(),
                description: info.description.to_string(),
            })
            .collect(),
        queues: state.inner.worker_queues.clone(),
    }))
}
