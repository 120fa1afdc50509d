//! `/health`: whether the store answers, its schema is current and a leader runs maintenance.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::model::{HealthResponse, HealthStatus};
use super::AppState;

/// Health of this server.
///
/// 200 with `ok` when the store answers, its migrations are current and a leader holds the
/// maintenance lease; 200 with `degraded` when no leader does (just after start, or if every
/// server runs without maintenance); 503 with `unavailable` when the store does not answer or
/// is not migrated. Needs no token.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Serving (`ok` or `degraded`)", body = HealthResponse),
        (status = 503, description = "Not serving", body = HealthResponse),
    )
)]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    let store = &state.inner.store;
    let (reachable, current) = match store.migrations_current().await {
        Ok(current) => (true, current),
        Err(err) => {
            tracing::warn!(%err, "health check: the store did not answer");
            (false, false)
        }
    };
    let leader = if reachable {
        match store.leader_get(state.now()).await {
            Ok(leader) => leader.map(|row| row.leader_id),
            Err(err) => {
                tracing::warn!(%err, "health check: cannot read the leader");
                None
            }
        }
    } else {
        None
    };
    let status = if !reachable || !current {
        HealthStatus::Unavailable
    } else if leader.is_none() {
        HealthStatus::Degraded
    } else {
        HealthStatus::Ok
    };
    let code = if status == HealthStatus::Unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        Json(HealthResponse {
            status,
            store: store.name().to_owned(),
            store_reachable: reachable,
            migrations_current: current,
            leader,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }),
    )
}
