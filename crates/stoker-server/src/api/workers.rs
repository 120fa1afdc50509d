//! Workers and the built-in handlers.

use axum::extract::State;
use axum::Json;

use super::model::{ErrorBody, HandlerList, HandlerView, WorkerList, WorkerView};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// List worker processes and pull workers, with heartbeats and counters.
///
/// A worker is `alive` while its last heartbeat is no older than the rescuer's `stale_after`:
/// the rescuer's own rule, so a worker shown alive keeps its running jobs. Pull workers (`pull:<name>`) heartbeat with their reserve calls.
#[utoipa::path(
    get,
    path = "/v1/workers",
    tag = "workers",
    responses(
        (status = 200, description = "Every worker row, by id (for a tenant-bound token: only the pull workers reserving with a token bound to its tenant)", body = WorkerList),
        (status = 403, description = "Missing scope", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<WorkerList>, ApiError> {
    principal.require(Scope::Read)?;
    let workers = state
        .client_for(&principal)
        .worker_overview()
        .await?
        .into_iter()
        .map(WorkerView::from)
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
