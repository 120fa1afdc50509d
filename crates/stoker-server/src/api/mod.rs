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

mod auth;
pub mod error;
mod extract;
mod health;
pub(crate) mod jobs;
mod metrics;
pub mod model;
mod openapi;
mod pull;
mod queues;
mod stats;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use stoker::{Clock, Registry, Store, SystemClock, WorkerEvent};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use auth::Principal;
pub use error::ApiError;
pub use metrics::Metrics;
pub use openapi::ApiDoc;

use crate::config::{ApiToken, Config, PullSettings};
use crate::handlers::HandlerInfo;

/// How often the pull workers' counters and heartbeats are written.
const PULL_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What every handler shares: the store, the configuration the API needs, metrics, the
/// throughput sampler and the pull workers seen. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    store: Arc<dyn Store>,
    /// The pull protocol's way in: reserve and report through the library's rules.
    client: stoker::Client,
    clock: Arc<dyn Clock>,
    tokens: Vec<ApiToken>,
    registry: Registry,
    handlers: Vec<HandlerInfo>,
    worker_queues: Vec<String>,
    max_body_bytes: usize,
    pull: PullSettings,
    stale_after: Duration,
    sample_interval: Duration,
    metrics: Metrics,
    throughput: stats::Throughput,
    pull_workers: pull::PullWorkers,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.inner.store.name())
            .field("tokens", &self.inner.tokens.len())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state for serving `store` with `config`'s tokens, limits and pull settings. The
    /// built-in handlers (which validate the args of their kinds on enqueue) come from
    /// [`crate::handlers::builtin`].
    pub fn new(store: Arc<dyn Store>, config: &Config) -> Self {
        AppState {
            inner: Arc::new(StateInner {
                client: stoker::Client::new(Arc::clone(&store))
                    .with_registry(Arc::new(crate::handlers::builtin())),
                store,
                clock: Arc::new(SystemClock),
                tokens: config.tokens.clone(),
                registry: crate::handlers::builtin(),
                handlers: crate::handlers::describe(),
                worker_queues: config.worker.queues.keys().cloned().collect(),
                max_body_bytes: config.max_body_bytes,
                pull: config.pull,
                stale_after: config.rescuer.stale_after,
                sample_interval: config.stats.sample_interval,
                metrics: Metrics::new(),
                throughput: stats::Throughput::default(),
                pull_workers: pull::PullWorkers::default(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The metrics `/metrics` serves.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Ends waiting reserve requests (they answer with no jobs) so a graceful shutdown is not
    /// held up by long-polls.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }

    /// Starts the background tasks: the throughput sampler, the pull workers' heartbeats, and
    /// (given a worker's events) the metrics of the jobs that worker runs.
    pub fn spawn_background(&self, events: Option<broadcast::Receiver<WorkerEvent>>) -> Background {
        let stop = CancellationToken::new();
        let mut tasks = vec![
            tokio::spawn(stats::run_sampler(self.clone(), stop.clone())),
            tokio::spawn(pull::run_flusher(
                self.clone(),
                PULL_FLUSH_INTERVAL,
                stop.clone(),
            )),
        ];
        if let Some(events) = events {
            tasks.push(tokio::spawn(metrics::record_worker_events(
                self.clone(),
                events,
                stop.clone(),
            )));
        }
        Background { stop, tasks }
    }
}

/// The API's background tasks; stop them with [`Background::stop`].
#[derive(Debug)]
pub struct Background {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Stops every task and waits for them; the pull workers' last counters are written.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

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
        .route("/metrics", get(metrics::scrape))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
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
