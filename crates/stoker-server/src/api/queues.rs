//! Queues: list with counts by state, pause, resume.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use stoker::core::{validate_queue, QueueParams};
use stoker::Stats;

use super::extract::ApiPath;
use super::model::{ErrorBody, JobCounts, QueueList, QueueView};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// Every queue with jobs or settings: the union of the store's counts and its queue rows.
async fn queues(state: &AppState) -> Result<BTreeMap<String, QueueView>, ApiError> {
    let store = &state.inner.store;
    let stats = Stats::from_counts(store.job_stats().await?);
    let rows = store.queue_list().await?;
    let mut queues: BTreeMap<String, QueueView> = stats
        .queues
        .into_iter()
        .map(|(name, counts)| {
            let row = rows.iter().find(|row| row.name == name);
            (name.clone(), QueueView::new(name, row, counts.into()))
        })
        .collect();
    for row in &rows {
        queues
            .entry(row.name.clone())
            .or_insert_with(|| QueueView::new(row.name.clone(), Some(row), JobCounts::default()));
    }
    Ok(queues)
}

/// List queues with their jobs by state and whether they are paused.
#[utoipa::path(
    get,
    path = "/v1/queues",
    tag = "queues",
    responses(
        (status = 200, description = "Every queue, by name", body = QueueList),
        (status = 403, description = "Missing scope, or a tenant-bound token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<QueueList>, ApiError> {
    principal.require(Scope::Read)?;
    principal.require_cluster("the queue list")?;
    Ok(Json(QueueList {
        queues: queues(&state).await?.into_values().collect(),
    }))
}

async fn set_paused(
    state: &AppState,
    principal: &Principal,
    name: String,
    paused: bool,
) -> Result<QueueView, ApiError> {
    principal.require(Scope::Admin)?;
    principal.require_cluster(if paused {
        "queue pause"
    } else {
        "queue resume"
    })?;
    validate_queue(&name).map_err(|err| ApiError::invalid("name", err.to_string()))?;
    let params = QueueParams {
        queue: name.clone(),
        now: state.now(),
    };
    if paused {
        state.inner.store.queue_pause(params).await?;
    } else {
        state.inner.store.queue_resume(params).await?;
    }
    tracing::info!(queue = %name, paused, "queue updated");
    let mut queues = queues(state).await?;
    Ok(queues.remove(&name).unwrap_or_else(|| QueueView {
        name,
        paused,
        updated_at: None,
        counts: JobCounts::default(),
    }))
}

/// Pause a queue: no worker (nor pull worker) takes its jobs until it is resumed. Jobs can
/// still be enqueued.
#[utoipa::path(
    post,
    path = "/v1/queues/{name}/pause",
    tag = "queues",
    params(("name" = String, Path, description = "The queue")),
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
    params(("name" = String, Path, description = "The queue")),
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
