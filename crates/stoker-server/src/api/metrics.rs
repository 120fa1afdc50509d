//! Prometheus metrics at `/metrics`, in the OpenMetrics text format.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `stoker_jobs_enqueued_total` | queue, kind | new jobs enqueued through this server's API (duplicates excluded) |
//! | `stoker_jobs_completed_total` | queue, kind | jobs completed by this server's worker or reported complete by pull workers through it |
//! | `stoker_jobs_failed_total` | queue, kind | failed attempts (retried or discarded), same sources |
//! | `stoker_jobs_discarded_total` | queue, kind | jobs discarded after a failed attempt, same sources |
//! | `stoker_job_run_seconds` | queue, kind | how long finished attempts ran |
//! | `stoker_job_pickup_latency_seconds` | queue, kind | from due (`run_at`) to the attempt's start |
//! | `stoker_queue_jobs` | queue, state | jobs per queue and state in the store, read at scrape |
//! | `stoker_queue_due_jobs` | queue | due jobs waiting (not scheduled), read at scrape: what autoscalers follow |
//! | `stoker_queue_scheduled_jobs` | queue | jobs waiting for a future `run_at`, read at scrape |
//! | `stoker_queue_oldest_due_age_seconds` | queue | how long the oldest due job has waited, read at scrape |
//! | `stoker_workers_alive` | | worker rows (processes and pull workers) with a recent heartbeat, read at scrape |
//! | `stoker_limit_running` | limit, key | jobs running under a concurrency limiter, read at scrape (issue 16) |
//! | `stoker_limit_throttled` | limit, key | 1 while a rate limiter holds its jobs back, read at scrape (issue 16) |
//!
//! Counters are per server: sum them across a cluster. The gauges read at scrape describe the
//! whole cluster, so every server reports the same values.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use stoker::{AttemptResult, JobState, WorkerEvent};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::model::ErrorBody;
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    queue: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabels {
    queue: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

/// Per-queue waiting work, read at scrape from [`stoker::Client::queue_depths`] (issue 13).
#[derive(Default)]
struct DepthGauges {
    due: Family<QueueLabels, Gauge>,
    scheduled: Family<QueueLabels, Gauge>,
    oldest_age: Family<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl DepthGauges {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "queue_due_jobs",
            "Due jobs waiting in the queue (not scheduled for later)",
            self.due.clone(),
        );
        registry.register(
            "queue_scheduled_jobs",
            "Jobs of the queue waiting for a future run_at",
            self.scheduled.clone(),
        );
        registry.register_with_unit(
            "queue_oldest_due_age",
            "How long the queue's oldest due job has waited",
            Unit::Seconds,
            self.oldest_age.clone(),
        );
    }

    async fn read(&self, state: &AppState) -> Result<(), ApiError> {
        let depths = state.client().queue_depths().await?;
        let now = state.now();
        self.due.clear();
        self.scheduled.clear();
        self.oldest_age.clear();
        for depth in depths {
            let labels = QueueLabels { queue: depth.queue };
            self.due.get_or_create(&labels).set(depth.due);
            self.scheduled.get_or_create(&labels).set(depth.scheduled);
            let age = depth
                .oldest_due_at
                .map(|at| (now - at).to_std().unwrap_or_default().as_secs_f64())
                .unwrap_or(0.0);
            self.oldest_age.get_or_create(&labels).set(age);
        }
        Ok(())
    }
}

type HistogramFamily = Family<JobLabels, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 5 ms to about 82 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The server's metrics: counters fed as jobs are enqueued and finished, gauges read from the
/// store at each scrape.
pub struct Metrics {
    registry: Registry,
    enqueued: Family<JobLabels, Counter>,
    completed: Family<JobLabels, Counter>,
    failed: Family<JobLabels, Counter>,
    discarded: Family<JobLabels, Counter>,
    run_time: HistogramFamily,
    pickup_latency: HistogramFamily,
    queue_jobs: Family<QueueStateLabels, Gauge>,
    workers_alive: Gauge,
    /// Per-queue depth gauges (issue 13).
    depth: DepthGauges,
    scrape: tokio::sync::Mutex<()>,
    // --- stream flow ---
    limits: LimitGauges,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stoker");
        let enqueued = Family::<JobLabels, Counter>::default();
        let completed = Family::<JobLabels, Counter>::default();
        let failed = Family::<JobLabels, Counter>::default();
        let discarded = Family::<JobLabels, Counter>::default();
        let run_time: HistogramFamily = Family::new_with_constructor(seconds_histogram);
        let pickup_latency: HistogramFamily = Family::new_with_constructor(seconds_histogram);
        let queue_jobs = Family::<QueueStateLabels, Gauge>::default();
        let workers_alive = Gauge::default();
        let depth = DepthGauges::default();
        depth.register(&mut registry);
        // --- stream flow ---
        let limits = LimitGauges::default();
        limits.register(&mut registry);
        registry.register(
            "jobs_enqueued",
            "New jobs enqueued through this server's API",
            enqueued.clone(),
        );
        registry.register(
            "jobs_completed",
            "Jobs completed by this server's worker or its pull workers",
            completed.clone(),
        );
        registry.register(
            "jobs_failed",
            "Failed attempts (retried or discarded) of this server's worker or its pull workers",
            failed.clone(),
        );
        registry.register(
            "jobs_discarded",
            "Jobs discarded after a failed attempt, by this server's worker or its pull workers",
            discarded.clone(),
        );
        registry.register_with_unit(
            "job_run",
            "How long finished attempts ran",
            Unit::Seconds,
            run_time.clone(),
        );
        registry.register_with_unit(
            "job_pickup_latency",
            "From when a job was due to when its attempt started",
            Unit::Seconds,
            pickup_latency.clone(),
        );
        registry.register(
            "queue_jobs",
            "Jobs per queue and state in the store, read at scrape",
            queue_jobs.clone(),
        );
        registry.register(
            "workers_alive",
            "Worker rows with a recent heartbeat, read at scrape",
            workers_alive.clone(),
        );
        Metrics {
            registry,
            enqueued,
            completed,
            failed,
            discarded,
            run_time,
            pickup_latency,
            queue_jobs,
            workers_alive,
            depth,
            scrape: tokio::sync::Mutex::new(()),
            // --- stream flow ---
            limits,
        }
    }

    fn labels(queue: &str, kind: &str) -> JobLabels {
        JobLabels {
            queue: queue.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// Counts `count` new jobs of one queue and kind.
    pub fn record_enqueued(&self, queue: &str, kind: &str, count: u64) {
        self.enqueued
            .get_or_create(&Self::labels(queue, kind))
            .inc_by(count);
    }

    /// Counts a finished attempt and its run time. Snoozed, cancelled and handed-back
    /// attempts count in no counter.
    pub fn record_attempt(
        &self,
        queue: &str,
        kind: &str,
        result: AttemptResult,
        run_time: Option<Duration>,
    ) {
        let labels = Self::labels(queue, kind);
        match result {
            AttemptResult::Completed => {
                self.completed.get_or_create(&labels).inc();
            }
            AttemptResult::Retried => {
                self.failed.get_or_create(&labels).inc();
            }
            AttemptResult::Discarded => {
                self.failed.get_or_create(&labels).inc();
                self.discarded.get_or_create(&labels).inc();
            }
            _ => return,
        }
        if let Some(run_time) = run_time {
            self.run_time
                .get_or_create(&labels)
                .observe(run_time.as_secs_f64());
        }
    }

    /// Records how long a job waited from due to its attempt's start.
    pub fn record_pickup(&self, queue: &str, kind: &str, latency: Duration) {
        self.pickup_latency
            .get_or_create(&Self::labels(queue, kind))
            .observe(latency.as_secs_f64());
    }

    /// Reads the gauges from the store and renders everything as OpenMetrics text.
    async fn render(&self, state: &AppState) -> Result<String, ApiError> {
        let _scrape = self.scrape.lock().await;
        let client = state.client();
        let stats = client.stats().await?;
        let workers = client.worker_overview().await?;
        self.queue_jobs.clear();
        for (queue, counts) in stats.queues {
            for job_state in JobState::ALL {
                let count = counts.get(job_state);
                if count != 0 {
                    self.queue_jobs
                        .get_or_create(&QueueStateLabels {
                            queue: queue.clone(),
                            state: job_state.as_str().to_owned(),
                        })
                        .set(count);
                }
            }
        }
        let alive = workers.iter().filter(|status| status.alive).count();
        self.workers_alive
            .set(i64::try_from(alive).unwrap_or(i64::MAX));
        self.depth.read(state).await?;
        // --- stream flow ---
        self.limits.read(state).await?;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(ApiError::internal)?;
        Ok(text)
    }
}

/// Feeds the metrics from a worker's acknowledgements until `stop`.
pub(crate) async fn record_worker_events(
    state: AppState,
    mut events: broadcast::Receiver<WorkerEvent>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = stop.cancelled() => return,
        };
        match event {
            Ok(event) => {
                let metrics = &state.inner.metrics;
                metrics.record_pickup(&event.queue, &event.kind, event.pickup_latency);
                metrics.record_attempt(
                    &event.queue,
                    &event.kind,
                    event.result,
                    Some(event.run_time),
                );
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "metrics fell behind the worker's events");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Metrics in the OpenMetrics text format", content_type = "application/openmetrics-text", body = String),
        (status = 403, description = "Missing scope, or a tenant-bound token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn scrape(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    // The metrics span every tenant: a scoped client refuses them.
    state
        .client_for(&principal)
        .require_every_tenant("metrics")?;
    let text = state.inner.metrics.render(&state).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

// --- stream flow ---
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimiterLabels {
    limit: String,
    key: String,
}

/// The limiters in use (issue 16), read at scrape: running jobs and throttling.
#[derive(Default)]
struct LimitGauges {
    running: Family<LimiterLabels, Gauge>,
    throttled: Family<LimiterLabels, Gauge>,
    tokens: Family<LimiterLabels, Gauge>,
    quota_used: Family<LimiterLabels, Gauge>,
    held_back: Family<LimiterLabels, Gauge>,
}

impl LimitGauges {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "limit_running",
            "Jobs running under a concurrency limiter",
            self.running.clone(),
        );
        registry.register(
            "limit_throttled",
            "1 while a rate limiter holds its jobs back",
            self.throttled.clone(),
        );
        registry.register(
            "limit_tokens",
            "Starts a rate limiter allows right now (0 to its burst)",
            self.tokens.clone(),
        );
        registry.register(
            "limit_quota_used",
            "Submissions an enqueue quota counted in its current window",
            self.quota_used.clone(),
        );
        registry.register(
            "limit_held_back",
            "Available, due jobs a full limiter holds back (counted from at most 10,000 due jobs per limiter)",
            self.held_back.clone(),
        );
    }

    async fn read(&self, state: &AppState) -> Result<(), ApiError> {
        let usage = state.client().limit_usage().await?;
        self.running.clear();
        self.throttled.clear();
        self.tokens.clear();
        self.quota_used.clear();
        self.held_back.clear();
        for limiter in usage {
            let labels = LimiterLabels {
                limit: limiter.name,
                key: limiter.key,
            };
            self.running.get_or_create(&labels).set(limiter.running);
            if limiter.throttled_until.is_some() {
                self.throttled.get_or_create(&labels).set(1);
            }
            if let Some(tokens) = limiter.tokens_left {
                self.tokens.get_or_create(&labels).set(i64::from(tokens));
            }
            if let Some(used) = limiter.quota_used {
                self.quota_used.get_or_create(&labels).set(i64::from(used));
            }
            self.held_back
                .get_or_create(&labels)
                .set(i64::try_from(limiter.held_back).unwrap_or(i64::MAX));
        }
        Ok(())
    }
}
