//! `/health`: whether the store answers, its schema is current and a leader runs maintenance.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::model::{HealthResponse, HealthStatus};
use super::AppState;

/// How long the health check waits for the store: a load balancer must hear "unavailable"
/// promptly while the database is unreachable, not after the pool's acquire timeout.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Health of this server.
///
/// 200 with `ok` when the store answers, its migrations are current and a leader holds the
/// maintenance lease; 200 with `degraded` when no leader does (just after start, or if every
/// server runs without maintenance); 503 with `unavailable` when the store does not answer or
/// is not migrated, or does not answer within a second. Needs no token.
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
    let client = state.client();
    let checks = async {
        let current = match client.migrations_current().await {
            Ok(current) => current,
            Err(err) => {
                tracing::warn!(%err, "health check: the store did not answer");
                return (false, false, None);
            }
        };
        let leader = match client.leader().await {
            Ok(leader) => leader.map(|row| row.leader_id),
            Err(err) => {
                tracing::warn!(%err, "health check: cannot read the leader");
                None
            }
        };
        (true, current, leader)
    };
    let (reachable, current, leader) = match tokio::time::timeout(STORE_CHECK_TIMEOUT, checks).await
    {
        Ok(checked) => checked,
        Err(_) => {
            tracing::warn!(
                timeout_ms = STORE_CHECK_TIMEOUT.as_millis(),
                "health check: the store did not answer in time"
            );
            (false, false, None)
        }
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
            store: client.store().name().to_owned(),
            store_reachable: reachable,
            migrations_current: current,
            leader,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }),
    )
}
