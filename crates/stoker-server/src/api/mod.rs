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
//! | `POST /v1/jobs/{id}/cancel` | operate | cancel a job |
//! | `POST /v1/jobs/{id}/retry` | operate | run a job again now |
//! | `POST /v1/jobs/retry` | operate | retry every discarded job of a queue or kind |
//! | `GET /v1/queues` | read | queues with counts by state |
//! | `POST /v1/queues/{name}/pause`, `/resume` | operate | pause or resume a queue |
//! | `GET /v1/workers` | read | workers with heartbeats and counters |
//! | `GET /v1/stats` | read | counts and throughput |
//! | `GET /v1/handlers` | read | the built-in handlers |
//! | `POST /v1/pull/reserve` | work | reserve jobs with a lease (long-poll) |
//! | `POST /v1/pull/jobs/{id}/heartbeat`, `/progress`, `/complete`, `/fail`, `/snooze`, `/cancel` | work | report on a reserved job |
//! | `GET /v1/cron`, `POST /v1/cron` | read, admin | list or create recurring schedules |
//! | `GET`, `PATCH`, `DELETE /v1/cron/{name}` | read, admin | one schedule |
//! | `POST /v1/cron/{name}/pause`, `/resume`, `/run-now` | admin | pause, resume, run now |
//! | `GET /v1/cron/{name}/history` | read | a schedule's recent runs |
//! | `GET /v1/cron-next` | read | the next slots of any expression |
//! | `GET /v1/failures`, `/v1/failures/{fingerprint}` | read | failure groups (issue 13) |
//! | `POST /v1/failures/{fingerprint}/retry`, `/discard` | operate | bulk operation over a group |
//! | `POST /v1/ops`; `GET /v1/ops`, `/v1/ops/{id}`; `POST /v1/ops/{id}/abort` | operate (admin to delete); read; operate | bulk operations by filter |
//! | `GET /v1/jobs/{id}/logs`; `POST /v1/pull/jobs/{id}/logs` | read; work | job logs |
//! | `POST /v1/pull/ack` | work | report on many reserved jobs, and reserve more, in one request |
//! | `GET`, `POST /v1/alerts`; `GET`, `PATCH`, `DELETE /v1/alerts/{name}`; `GET /v1/alerts/{name}/events` | read, admin | alert rules and their state (issue 13) |
//! | `GET /health` | none | store reachable, migrations current, leader known |
//! | `GET /metrics` | read | Prometheus metrics |
//! | `GET /v1/openapi.json` | none | the OpenAPI document |
//! | `GET /v1/events` | read | live events: job changes and snapshots (server-sent events) |
//! | `POST /v1/tokens`, `GET /v1/tokens`; `POST /v1/tokens/{id}/revoke`, `/rotate` | admin (not tenant-bound) | stored API tokens (issue 17) |
//! | `POST /v1/workflows`, `/v1/workflows/{id}/jobs`; `GET /v1/workflows/{id}`; `POST /v1/workflows/{id}/cancel` | enqueue; read; operate | workflows (issue 18) |
//! | `GET /v1/pull/jobs/{id}/dependencies` | work | a workflow job's dependency results |
//! | `GET /v1/audit` | operate | the audit log of management actions (issue 17) |
//! | `POST /v1/batches`, `/v1/batches/{id}/jobs`, `/v1/batches/{id}/close`; `GET /v1/batches`, `/v1/batches/{id}`, `/v1/workflows`; `POST /v1/batches/{id}/cancel` | enqueue; read; operate | batches and the workflow list (issue 18) |
//! | `GET /v1/events/snapshot` | read | the live snapshot once, for pollers |
//!
//! Without tokens (loopback only) every route is open. With tokens, every route but `/health`
//! and the OpenAPI document needs `Authorization: Bearer <token>` with the scope shown; `admin`
//! grants every scope, `operate` grants `read` too. A token bound to a tenant sees and touches
//! only that tenant's jobs, everywhere (issue 17): jobs, counts, stats and history, queues
//! (its own jobs' counts), cron schedules whose jobs are its tenant's, bulk operations over
//! its tenant's jobs, the event stream, and the pull protocol (it reserves only its tenant's
//! jobs), queue depths and cleaning (its own jobs), failure groups (its own), the live
//! snapshot (its own counts), the
//! workers bound to its tenant, its tenant's limits (those keyed by tenant) and the alert
//! rules scoped to its tenant. Another tenant's job, schedule, operation or rule answers 404,
//! as if it did not exist. Routes that show or change every tenant at once answer 403
//! `tenant_forbidden`: queue pause and resume (a queue serves every tenant), changing limits
//! (a limit governs every tenant's jobs), metrics, tokens, key rotation and audit pruning.
//! Failure groups are per tenant (a tenant's failed jobs form groups of their own), so a
//! tenant-bound token lists, reads, retries and discards its own. The rule lives in [`stoker::Client::for_tenant`], below the handlers;
//! `tests/api_tenancy.rs` walks every documented operation with two tenants' tokens.
//!
//! Build the router with [`router`] on an [`AppState`]; [`Server`](crate::serve::Server) does
//! that and listens.

// Recurring schedules (issue 15).
pub mod cron;
pub mod error;
mod extract;
// Failure groups, bulk operations and job logs (issue 13).
pub mod failures;
mod health;
// History (issue 13).
pub mod history;
pub(crate) mod jobs;
pub(crate) mod metrics;
pub mod model;
mod openapi;
pub(crate) mod pull;
mod queues;
pub(crate) mod stats;
mod workers;
// --- stream events ---
pub mod events;
// --- stream alerts ---
pub mod alerts;
// --- stream search ---
pub(crate) mod search;
// --- stream tokens ---
pub mod tokens;
// --- stream flow ---
pub mod limits;
// --- stream wf ---
pub mod workflows;
// --- stream workflows ---
pub mod batches;
pub mod children;
// --- stream tenancy ---
pub mod audit;
// --- stream ops ---
pub mod snapshot;

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
        // Recurring schedules (issue 15).
        .route("/v1/cron", get(cron::list).post(cron::create))
        .route(
            "/v1/cron/{name}",
            get(cron::get).patch(cron::update).delete(cron::delete),
        )
        .route("/v1/cron/{name}/pause", post(cron::pause))
        .route("/v1/cron/{name}/resume", post(cron::resume))
        .route("/v1/cron/{name}/run-now", post(cron::run_now))
        .route("/v1/cron/{name}/history", get(cron::history))
        .route("/v1/cron-next", get(cron::next))
        // Failure groups, bulk operations and job logs (issue 13).
        .route("/v1/failures", get(failures::list))
        .route("/v1/failures/{fingerprint}", get(failures::get))
        .route("/v1/failures/{fingerprint}/retry", post(failures::retry))
        .route(
            "/v1/failures/{fingerprint}/discard",
            post(failures::discard),
        )
        .route("/v1/ops", post(failures::create).get(failures::list_ops))
        .route("/v1/ops/{id}", get(failures::get_op))
        .route("/v1/ops/{id}/abort", post(failures::abort))
        .route("/v1/jobs/{id}/logs", get(failures::job_logs))
        .route("/v1/pull/jobs/{id}/logs", post(failures::pull_logs))
        // History (issue 13).
        .route("/v1/stats/series", get(history::series))
        .route("/v1/queues/depths", get(history::depths))
        .route("/v1/jobs/clean", post(history::clean))
        // Batched acknowledgements and reserve-with-ack (issue 19).
        .route("/v1/pull/ack", post(pull::ack))
        // --- stream events ---
        .route("/v1/events", get(events::stream))
        // --- stream alerts ---
        .route("/v1/alerts", get(alerts::list).post(alerts::create))
        .route(
            "/v1/alerts/{name}",
            get(alerts::get)
                .patch(alerts::update)
                .delete(alerts::delete),
        )
        .route("/v1/alerts/{name}/events", get(alerts::events))
        .route("/metrics", get(metrics::scrape))
        // --- stream search ---
        .route("/v1/jobs/{id}/lineage", get(search::lineage))
        // --- stream tokens ---
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{id}/revoke", post(tokens::revoke))
        .route("/v1/tokens/{id}/rotate", post(tokens::rotate))
        // --- stream flow ---
        .route("/v1/limits", get(limits::list))
        .route(
            "/v1/limits/{name}",
            axum::routing::put(limits::set).delete(limits::delete),
        )
        // --- stream wf ---
        .route("/v1/workflows", post(workflows::create))
        .route("/v1/workflows/{id}", get(workflows::get))
        .route("/v1/workflows/{id}/jobs", post(workflows::add))
        .route("/v1/workflows/{id}/cancel", post(workflows::cancel))
        .route(
            "/v1/pull/jobs/{id}/dependencies",
            get(workflows::dependencies),
        )
        // --- stream tenancy ---
        .route("/v1/audit", get(audit::list))
        // --- stream ops ---
        .route("/v1/events/snapshot", get(snapshot::get))
        // --- stream workflows ---
        .route("/v1/batches", get(batches::list).post(batches::create))
        .route("/v1/batches/{id}", get(batches::get))
        .route("/v1/batches/{id}/jobs", post(batches::add))
        .route("/v1/batches/{id}/close", post(batches::close))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/workflows", get(batches::workflows))
        .route("/v1/pull/jobs/{id}/batch", get(batches::job_batch))
        .route("/v1/pull/jobs/{id}/batch/jobs", post(batches::pull_add))
        .route("/v1/pull/jobs/{id}/children", post(children::create))
        .route("/v1/pull/jobs/{id}/wait-children", post(children::wait))
        .route("/v1/jobs/{id}/children", get(children::get))
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
