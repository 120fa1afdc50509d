//! Queues: list with counts by state, pause, resume.

use axum::extract::State;
use axum::Json;
use stoker::core::validate_queue;

use super::extract::ApiPath;
use super::model::{ErrorBody, QueueList, QueueView};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// List queues with their jobs by state and whether they are paused.
#[utoipa::path(
    get,
    path = "/v1/queues",
    tag = "queues",
    responses(
        (status = 200, description = "Every queue, by name (for a tenant-bound token: the queues holding its tenant's jobs, with their counts only, and no workers)", body = QueueList),
        (status = 403, description = "Missing scope", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<QueueList>, ApiError> {
    principal.require(Scope::Read)?;
    let queues = state.client_for(&principal).queue_overview().await?;
    Ok(Json(QueueList {
        queues: queues.into_iter().map(QueueView::from).collect(),
    }))
}

async fn set_paused(
    state: &AppState,
    principal: &Principal,
    name: String,
    paused: bool,
) -> Result<QueueView, ApiError> {
    principal.require(Scope::Operate)?;
    validate_queue(&name).map_err(|err| ApiError::invalid("name", err.to_string()))?;
    let client = state.client_for(principal);
    if paused {
        client.pause(&name).await?;
    } else {
        client.resume(&name).await?;
    }
    tracing::info!(queue = %name, paused, "queue updated");
    let queue = client
        .queue_overview()
        .await?
        .into_iter()
        .find(|queue| queue.name == name)
        .ok_or_else(|| ApiError::internal(format!("queue {name:?} has no row after an update")))?;
    Ok(queue.into())
}

/// Pause a queue: no worker (nor pull worker) takes its jobs until it is resumed. Jobs can
/// still be enqueued.
#[utoipa::path(
    post,
    path = "/v1/queues/{name}/pause",
    tag = "queues",
    params(("name" = String, Path, description = "The queue: 1 to 128 letters, digits, `_`, `-`, `.` and `:`", min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    responses(
        (status = 200, description = "The queue, paused", body = QueueView),
        (status = 422, description = "Not a valid queue name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn pause(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<QueueView>, ApiError> {
    Ok(Json(set_paused(&state, &principal, name, true).await?))
}

/// Resume a paused queue; its workers are woken at once.
#[utoipa::path(
    post,
    path = "/v1/queues/{name}/resume",
    tag = "queues",
    params(("name" = String, Path, description = "The queue: 1 to 128 letters, digits, `_`, `-`, `.` and `:`", min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    responses(
        (status = 200, description = "The queue, resumed", body = QueueView),
        (status = 422, description = "Not a valid queue name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<QueueView>, ApiError> {
    Ok(Json(set_paused(&state, &principal, name, false).await?))
}
