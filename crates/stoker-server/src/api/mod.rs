//! The HTTP API: JSON under `/v1`, `/health`, Prometheus `/metrics`, and the OpenAPI document at
//! `/v1/openapi.json`.
//!
//! | method and path | scope | what |
//! |---|---|---|
//! | `POST /v1/jobs` | enqueue | enqueue one job (201 new, 200 duplicate) |
//! | `POST /v1/jobs/bulk` | enqueue | enqueue many jobs at once |
//! | `GET /v1/jobs` | read | list jobs: filters and keyset pagination |
//! | `GET /v1/jobs/{id}` | read | one job: state, attempts, errors, result, progress |
//! | `DELETE /v1/jobs/{id}` | admin | delete a job that is not running |
//! | `POST /v1/jobs/{id}/cancel` | admin | cancel a job |
//! | `POST /v1/jobs/{id}/retry` | admin | run a job again now |
//! | `POST /v1/jobs/retry` | admin | retry every discarded job of a queue or kind |
//! | `GET /v1/queues` | read | queues with counts by state |
//! | `POST /v1/queues/{name}/pause`, `/resume` | admin | pause or resume a queue |
//! | `GET /v1/workers` | read | workers with heartbeats and counters |
//! | `GET /v1/stats` | read | counts and throughput |
//! | `GET /v1/handlers` | read | the built-in handlers |
//! | `POST /v1/pull/reserve` | work | reserve jobs with a lease (long-poll) |
//! | `POST /v1/pull/jobs/{id}/heartbeat`, `/progress`, `/complete`, `/fail`, `/snooze`, `/cancel` | work | report on a reserved job |
//! | `POST /v1/pull/ack` | work | report on many reserved jobs, and reserve more, in one request |
//! | `GET /health` | none | store reachable, migrations current, leader known |
//! | `GET /metrics` | read | Prometheus metrics |
//! | `GET /v1/openapi.json` | none | the OpenAPI document |
//!
//! Without tokens (loopback only) every route is open. With tokens, every route but `/health`
//! and the OpenAPI document needs `Authorization: Bearer <token>` with the scope shown; `admin`
//! grants every scope. A token bound to a tenant sees and touches only that tenant's jobs, and
//! cannot use the cluster-wide routes (queues, workers, stats, metrics, the pull protocol).
//!
//! Build the router with [`router`] on an [`AppState`]; [`Server`](crate::serve::Server) does
//! that and listens.

pub mod error;
mod extract;
mod health;
pub(crate) mod jobs;
pub(crate) mod metrics;
pub mod model;
mod openapi;
pub(crate) mod pull;
mod queues;
pub(crate) mod stats;
mod workers;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};

pub use crate::app::{AppState, Background};
pub use crate::auth::Principal;
pub use error::ApiError;
pub use metrics::Metrics;
pub use openapi::ApiDoc;

/// The API's router, ready to serve: every route of the module docs, JSON errors for unknown
/// routes, wrong methods and every extractor rejection, and the body size limit.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v1/jobs", post(jobs::enqueue).get(jobs::list))
        .route("/v1/jobs/bulk", post(jobs::enqueue_bulk))
        .route("/v1/jobs/retry", post(jobs::retry_many))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{name}/pause", post(queues::pause))
        .route("/v1/queues/{name}/resume", post(queues::resume))
        .route("/v1/workers", get(workers::list))
        .route("/v1/stats", get(stats::get))
        .route("/v1/handlers", get(workers::handlers))
        .route("/v1/pull/reserve", post(pull::reserve))
        .route("/v1/pull/jobs/{id}/heartbeat", post(pull::heartbeat))
        .route("/v1/pull/jobs/{id}/progress", post(pull::progress))
        .route("/v1/pull/jobs/{id}/complete", post(pull::complete))
        .route("/v1/pull/jobs/{id}/fail", post(pull::fail))
        .route("/v1/pull/jobs/{id}/snooze", post(pull::snooze))
        .route("/v1/pull/jobs/{id}/cancel", post(pull::cancel))
        // Batched acknowledgements and reserve-with-ack (issue 19).
        .route("/v1/pull/ack", post(pull::ack))
        .route("/metrics", get(metrics::scrape))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ));
    let public = Router::new()
        .route("/health", get(health::health))
        .route("/v1/openapi.json", get(openapi::document));
    let max_body_bytes = state.inner.max_body_bytes;
    public
        .merge(protected)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn route_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        model::ErrorCode::RouteNotFound,
        format!(
            "no route {}; the API is under /v1 (see /v1/openapi.json)",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        model::ErrorCode::MethodNotAllowed,
        format!(
            "{} does not take {method} (see /v1/openapi.json)",
            uri.path()
        ),
    )
}
