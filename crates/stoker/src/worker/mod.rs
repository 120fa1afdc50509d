//! The worker runtime: fetch jobs, run them, acknowledge them, and keep the store informed.
//!
//! One [`Worker`] per process. Inside it:
//!
//! - a **producer** per queue claims due jobs in batches sized to the free slots, woken at once
//!   by store events (PostgreSQL `LISTEN/NOTIFY`, in-process signals on SQLite) or by the
//!   heartbeat;
//! - an **executor** task per job runs the handler with its timeout, catches panics and turns
//!   the result into an [`Outcome`](stoker_core::Outcome);
//! - the **completer** writes outcomes in batches, one statement for many jobs;
//! - the **heartbeat** is the worker's one periodic statement: it keeps the worker's row fresh,
//!   so its jobs are not rescued, names the queues that have due jobs (the poll), and picks up
//!   cancel requests when events are unavailable;
//! - on the elected leader, the maintenance services (stager, rescuer, pruner).

mod completer;
mod executor;
mod heartbeat;
mod producer;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use stoker_core::{validate_queue, Clock, JobId, Store, StoreEvent, SystemClock};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::maintenance::{
    Maintenance, MaintenanceConfig, PrunerConfig, RescuerConfig, StagerConfig,
};
use crate::{Client, Error, Handler, Job, JobContext, JobError, Registry, Result};

/// How often an idle worker looks for due jobs when no event wakes it. Defaults to 1 second.
pub const POLL_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// How often a worker refreshes its heartbeat. Defaults to 1 second.
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// How long running jobs may take to finish after a shutdown starts. Defaults to 10 seconds.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(10);
/// After the grace period, how long cancelled jobs get to return before they are dropped and
/// handed back. Defaults to 2 seconds.
pub const CANCEL_GRACE_DEFAULT: Duration = Duration::from_secs(2);
/// How long a busy queue waits for its slots to free up before claiming a partial batch (see
/// [`WorkerBuilder::fetch_cooldown`]). Defaults to 1 millisecond.
pub const FETCH_COOLDOWN_DEFAULT: Duration = Duration::from_millis(1);
/// The most acknowledgements written in one statement.
pub const ACK_BATCH_MAX: usize = 1000;

/// Acknowledgement events a slow subscriber may fall behind by before it misses some (and is
/// told how many, by `RecvError::Lagged`).
const EVENTS_CAPACITY: usize = 1024;

/// Builds a [`Worker`]. Registration errors are collected and reported by
/// [`WorkerBuilder::build`], so the chain stays readable.
pub struct WorkerBuilder {
    store: Arc<dyn Store>,
    queues: BTreeMap<String, usize>,
    registry: Registry,
    errors: Vec<Error>,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
    heartbeat_interval: Duration,
    fetch_cooldown: Duration,
    shutdown_grace: Duration,
    cancel_grace: Duration,
    registered_kinds_only: bool,
    maintenance: bool,
    services: MaintenanceConfig,
    max_args_bytes: Option<usize>,
    /// Recurring schedules (issue 15) upserted at start, and the firer's settings.
    cron: Vec<crate::cron::CronSchedule>,
    cron_firer: crate::cron::CronFirerConfig,
    /// History (issue 13): the recorder and how often it is written.
    history: Option<(crate::history::History, Duration)>,
    /// The version the registry shows (issue 13).
    version: Option<String>,
    // --- stream events ---
    /// Where claims and acknowledgements are published.
    event_hub: Option<crate::EventHub>,
    // --- stream crypt ---
    /// Opens sealed args for handlers and seals results (issue 17).
    encryption: Option<crate::Encryption>,
}

impl WorkerBuilder {
    /// Serves `queue` with up to `concurrency` jobs at a time.
    pub fn queue(mut self, queue: impl Into<String>, concurrency: usize) -> Self {
        let queue = queue.into();
        if let Err(err) = validate_queue(&queue) {
            self.errors.push(err.into());
        } else if concurrency == 0 {
            self.errors.push(Error::Config(format!(
                "queue {queue:?} needs a concurrency of at least 1"
            )));
        } else if self.queues.insert(queue.clone(), concurrency).is_some() {
            self.errors.push(Error::Config(format!(
                "queue {queue:?} is configured twice"
            )));
        }
        self
    }

    /// Registers the typed job `J`.
    pub fn register<J: Job>(mut self) -> Self {
        if let Err(err) = self.registry.register::<J>() {
            self.errors.push(err);
        }
        self
    }

    /// Registers a dynamic handler for `kind`.
    pub fn handler(mut self, kind: impl Into<String>, handler: impl Handler) -> Self {
        if let Err(err) = self.registry.register_handler(kind, handler) {
            self.errors.push(err);
        }
        self
    }

    /// Registers an async closure taking JSON args as the handler for `kind`.
    pub fn handler_fn<F, Fut>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(serde_json::Value, JobContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<serde_json::Value, JobError>> + Send + 'static,
    {
        if let Err(err) = self.registry.register_fn(kind, f) {
            self.errors.push(err);
        }
        self
    }

    /// Uses the handlers of `registry` (replacing any registered so far).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// The clock for every "now"; for tests. Defaults to the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How often the worker looks for due jobs when no event wakes it: scheduled jobs coming
    /// due, retries whose backoff passed, and other processes' inserts on a store without
    /// cross-process events. Defaults to 1 second.
    ///
    /// The look is part of the heartbeat: the worker sends one statement every
    /// `min(poll_interval, heartbeat_interval)` that heartbeats, checks every queue it serves
    /// and picks up cancel requests, and an idle worker sends nothing else.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How often the heartbeat is written. Defaults to 1 second; keep it well under the
    /// rescuer's `stale_after`.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long a queue with fewer than half its slots free waits, after its last claim came
    /// back, for the rest to free up before it claims again: slots that free up one by one
    /// under load share a claim instead of costing one statement each, and short jobs, which
    /// all end within the wait, are claimed again in full batches. The wait ends early once
    /// every slot is free. An idle queue claims at once. Defaults to 1 millisecond.
    pub fn fetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.fetch_cooldown = cooldown;
        self
    }

    /// How long running jobs may take to finish once shutdown starts. Defaults to 10 seconds.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long jobs cancelled at the end of the grace period get to return before they are
    /// dropped and handed back. Defaults to 2 seconds.
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Claims only jobs of the kinds this worker has handlers for, leaving other kinds in its
    /// queues to other workers (such as the pull workers of a `stoker serve`, which share its
    /// queues). Defaults to false: a worker claims every job of its queues and fails kinds it
    /// has no handler for ("no handler registered for kind X"), so a job nobody can run lands
    /// in the dead-letter state instead of waiting unseen.
    pub fn registered_kinds_only(mut self, enabled: bool) -> Self {
        self.registered_kinds_only = enabled;
        self
    }

    /// Whether this process stands for leader and runs the maintenance services (stager,
    /// rescuer, pruner) when elected. Defaults to true; exactly one process leads at a time.
    /// Some process on the store must run them: without a leader, jobs scheduled for later or
    /// waiting out a retry's backoff are never staged, and dead workers' jobs never rescued.
    pub fn maintenance(mut self, enabled: bool) -> Self {
        self.maintenance = enabled;
        self
    }

    /// Configures the stager, which moves scheduled jobs to their queues when due.
    pub fn stager(mut self, config: StagerConfig) -> Self {
        self.services.stager = config;
        self
    }

    /// Configures the rescuer.
    pub fn rescuer(mut self, config: RescuerConfig) -> Self {
        self.services.rescuer = config;
        self
    }

    /// Configures the pruner.
    pub fn pruner(mut self, config: PrunerConfig) -> Self {
        self.services.pruner = config;
        self
    }

    /// Adds a recurring schedule (issue 15), upserted by name when the worker starts (a
    /// paused schedule stays paused). An invalid schedule fails [`WorkerBuilder::build`],
    /// naming the field.
    pub fn cron(mut self, schedule: crate::cron::CronSchedule) -> Self {
        if let Err(err) =
            schedule.validate(self.max_args_bytes.unwrap_or(crate::MAX_ARGS_BYTES_DEFAULT))
        {
            self.errors.push(err.into());
        } else if self.cron.iter().any(|s| s.name == schedule.name) {
            self.errors.push(Error::Config(format!(
                "cron schedule {:?} is added twice",
                schedule.name
            )));
        }
        self.cron.push(schedule);
        self
    }

    /// Settings of the cron firer this process runs (with maintenance on).
    pub fn cron_firer(mut self, config: crate::cron::CronFirerConfig) -> Self {
        self.cron_firer = config;
        self
    }

    /// Configures the bulk runner, which applies bulk operations in batches (issue 13).
    pub fn bulk_runner(mut self, config: crate::maintenance::BulkRunnerConfig) -> Self {
        self.services.bulk = config;
        self
    }

    // --- History (issue 13) ---

    /// Records this worker's claims and outcomes (and its client's enqueues) in `history`,
    /// written to the store every [`HISTORY_FLUSH_INTERVAL_DEFAULT`](crate::HISTORY_FLUSH_INTERVAL_DEFAULT)
    /// and once more at shutdown. Off by default.
    pub fn history(self, history: crate::history::History) -> Self {
        self.history_every(history, crate::history::HISTORY_FLUSH_INTERVAL_DEFAULT)
    }

    /// As [`WorkerBuilder::history`], written every `interval`.
    pub fn history_every(mut self, history: crate::history::History, interval: Duration) -> Self {
        self.history = Some((history, interval));
        self
    }

    /// The version the worker registry shows for this worker (your application's, say).
    /// Defaults to Stoker's.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    // --- stream events ---

    /// Publishes this worker's claims and acknowledgements (and its client's changes) on
    /// `hub`: give it the hub of the [`Client`](crate::Client) that serves
    /// [`Client::events`](crate::Client::events) in this process.
    pub fn event_hub(mut self, hub: crate::EventHub) -> Self {
        self.event_hub = Some(hub);
        self
    }

    /// Configures the leader's history keeper (depth samples, roll-ups, retention).
    pub fn history_keeper(mut self, config: crate::history::HistoryKeeperConfig) -> Self {
        self.services.history = config;
        self
    }

    // --- stream alerts ---
    /// Configures the leader's alert evaluator (issue 13): how often rules are evaluated and
    /// the queue their messages go to.
    pub fn alert_evaluator(mut self, config: crate::alerts::AlertEvaluatorConfig) -> Self {
        self.services.alerts = config;
        self
    }

    // --- stream crypt ---
    /// Opens sealed args before handlers run and seals results of encrypted jobs (issue 17);
    /// jobs enqueued through [`JobContext`] are sealed as the client's are. Give it the same
    /// [`Encryption`](crate::Encryption) as the enqueuing [`Client`](crate::Client). Without
    /// it, a job with sealed args waits (snoozed) rather than running on ciphertext.
    pub fn encryption(mut self, encryption: crate::Encryption) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// The args size limit of jobs enqueued through [`JobContext`]. Defaults to 1 MiB.
    pub fn max_args_bytes(mut self, bytes: usize) -> Self {
        self.max_args_bytes = Some(bytes);
        self
    }

    /// Checks the configuration and builds the worker.
    ///
    /// # Errors
    ///
    /// The first configuration or registration error: no queue, a zero concurrency, a
    /// duplicate queue or kind, an invalid name.
    pub fn build(mut self) -> Result<Worker> {
        if !self.errors.is_empty() {
            return Err(self.errors.remove(0));
        }
        if self.queues.is_empty() {
            return Err(Error::Config(
                "no queue to serve: add one with .queue(\"default\", 10)".into(),
            ));
        }
        for (what, value) in [
            ("poll_interval", self.poll_interval),
            ("heartbeat_interval", self.heartbeat_interval),
        ] {
            if value.is_zero() {
                return Err(Error::Config(format!("{what} must be positive")));
            }
        }
        // The store reads an empty kind list as "every kind".
        let claim_kinds: Vec<String> = if self.registered_kinds_only {
            if self.registry.kinds().is_empty() {
                return Err(Error::Config(
                    "registered_kinds_only needs at least one registered handler".into(),
                ));
            }
            self.registry
                .kinds()
                .into_iter()
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        };
        let registry = Arc::new(self.registry);
        let mut client = Client::new(Arc::clone(&self.store))
            .with_clock(Arc::clone(&self.clock))
            .with_registry(Arc::clone(&registry));
        if let Some(bytes) = self.max_args_bytes {
            client = client.max_args_bytes(bytes);
        }
        if let Some((history, _)) = &self.history {
            client = client.with_history(history.clone());
        }
        // --- stream events ---
        if let Some(hub) = self.event_hub {
            client = client.with_event_hub(hub);
        }
        // --- stream crypt ---
        if let Some(encryption) = self.encryption {
            client = client.with_encryption(encryption);
        }
        Ok(Worker {
            events: broadcast::channel(EVENTS_CAPACITY).0,
            config: Arc::new(WorkerConfig {
                store: self.store,
                client,
                registry,
                clock: self.clock,
                queues: self.queues,
                poll_interval: self.poll_interval,
                heartbeat_interval: self.heartbeat_interval,
                fetch_cooldown: self.fetch_cooldown,
                claim_kinds,
                shutdown_grace: self.shutdown_grace,
                cancel_grace: self.cancel_grace,
                maintenance: self.maintenance,
                services: self.services,
                cron: self.cron,
                cron_firer: self.cron_firer,
                history: self.history,
                version: self
                    .version
                    .unwrap_or_else(|| format!("stoker {}", env!("CARGO_PKG_VERSION"))),
            }),
        })
    }
}

pub(crate) struct WorkerConfig {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) client: Client,
    pub(crate) registry: Arc<Registry>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) queues: BTreeMap<String, usize>,
    pub(crate) poll_interval: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) fetch_cooldown: Duration,
    /// The kinds producers claim; empty means every kind.
    pub(crate) claim_kinds: Vec<String>,
    pub(crate) shutdown_grace: Duration,
    pub(crate) cancel_grace: Duration,
    pub(crate) maintenance: bool,
    pub(crate) services: MaintenanceConfig,
    pub(crate) cron: Vec<crate::cron::CronSchedule>,
    pub(crate) cron_firer: crate::cron::CronFirerConfig,
    /// History (issue 13): the recorder and how often it is written.
    pub(crate) history: Option<(crate::history::History, Duration)>,
    /// The version the registry shows (issue 13).
    pub(crate) version: String,
}

/// Runs jobs from one or more queues. Build one with [`Worker::builder`], then
/// [`Worker::start`] it, or [`Worker::run`] it until SIGINT/SIGTERM.
///
/// # Examples
///
/// ```
/// # async fn demo() -> Result<(), stoker::Error> {
/// use std::sync::Arc;
/// use serde_json::{json, Value};
/// use stoker::{sqlite::SqliteStore, Client, EnqueueOptions, JobContext, JobError, Worker};
///
/// let store = Arc::new(SqliteStore::connect("sqlite::memory:").await?);
/// let client = Client::new(store.clone());
/// client.migrate().await?;
///
/// let worker = Worker::builder(store)
///     .queue("default", 10)
///     .handler_fn("echo", |args: Value, _ctx: JobContext| async move { Ok::<_, JobError>(args) })
///     .build()?;
/// let handle = worker.start().await?;
/// let mut finished = handle.events();
/// let job = client.enqueue_raw("echo", json!({"hello": "world"}), EnqueueOptions::new()).await?;
/// while finished.recv().await.unwrap().id != job.id {}
/// assert_eq!(client.get(job.id).await?.unwrap().result, Some(json!({"hello": "world"})));
/// handle.shutdown().await;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub struct Worker {
    config: Arc<WorkerConfig>,
    /// Shared by every start of this worker, so a subscriber can join before the first job
    /// runs.
    events: broadcast::Sender<WorkerEvent>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queues", &self.config.queues)
            .field("kinds", &self.config.registry.kinds())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts building a worker over `store`.
    pub fn builder(store: Arc<dyn Store>) -> WorkerBuilder {
        WorkerBuilder {
            store,
            queues: BTreeMap::new(),
            registry: Registry::new(),
            errors: Vec::new(),
            clock: Arc::new(SystemClock),
            poll_interval: POLL_INTERVAL_DEFAULT,
            heartbeat_interval: HEARTBEAT_INTERVAL_DEFAULT,
            fetch_cooldown: FETCH_COOLDOWN_DEFAULT,
            registered_kinds_only: false,
            shutdown_grace: SHUTDOWN_GRACE_DEFAULT,
            cancel_grace: CANCEL_GRACE_DEFAULT,
            maintenance: true,
            services: MaintenanceConfig::default(),
            max_args_bytes: None,
            cron: Vec::new(),
            cron_firer: crate::cron::CronFirerConfig::default(),
            history: None,
            version: None,
            // --- stream events ---
            event_hub: None,
            // --- stream crypt ---
            encryption: None,
        }
    }

    /// Subscribes to acknowledgements as they are written, like [`WorkerHandle::events`], but
    /// before [`Worker::start`]: a subscriber that joins here misses none of the jobs the
    /// worker runs, even those already queued when it starts.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use stoker::Worker;
    /// # async fn demo(worker: Worker) -> Result<(), stoker::Error> {
    /// let mut events = worker.events();
    /// let handle = worker.start().await?;
    /// let first = events.recv().await.expect("the worker is running");
    /// println!("job {} finished: {:?}", first.id, first.result);
    /// handle.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> broadcast::Receiver<WorkerEvent> {
        self.events.subscribe()
    }

    /// A client sharing this worker's store, clock and registry (so it validates args of the
    /// registered kinds).
    pub fn client(&self) -> Client {
        self.config.client.clone()
    }

    /// The registered kinds.
    pub fn kinds(&self) -> Vec<&str> {
        self.config.registry.kinds()
    }

    /// Registers the worker, starts its tasks and returns a handle to stop it.
    ///
    /// # Errors
    ///
    /// If the store's schema is not migrated, or the first heartbeat cannot be written.
    pub async fn start(&self) -> Result<WorkerHandle> {
        let config = Arc::clone(&self.config);
        if !config.store.migrations_current().await? {
            return Err(Error::Config(
                "the store's schema is not migrated: call Client::migrate() (or `stoker migrate`) first"
                    .into(),
            ));
        }
        for schedule in &config.cron {
            config.client.cron_upsert(schedule.clone()).await?;
        }
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let events = self.events.clone();
        let runtime = Arc::new(Runtime {
            id: worker_id(),
            started_at: config.clock.now(),
            wakers: config
                .queues
                .keys()
                .map(|queue| (queue.clone(), Arc::new(Notify::new())))
                .collect(),
            config,
            running: Mutex::new(HashMap::new()),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            run_ms: AtomicU64::new(0),
            acks: Mutex::new(Some(ack_tx)),
            events,
            leader_vacant: Arc::new(Notify::new()),
            stop_fetching: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            jobs: TaskTracker::new(),
        });

        // Register before claiming anything, so the rescuer never sees our jobs without a row.
        heartbeat::beat(&runtime).await?;

        let stop_services = CancellationToken::new();
        let mut services = Vec::new();
        services.push(tokio::spawn(heartbeat::run(
            Arc::clone(&runtime),
            stop_services.clone(),
        )));
        // History (issue 13): stopped after the completer drains, so it writes the last
        // outcomes too.
        if let Some((history, interval)) = &runtime.config.history {
            services.push(history.spawn_flusher(*interval, stop_services.clone()));
        }
        if let Some(events) = runtime.config.store.subscribe() {
            services.push(tokio::spawn(route_events(
                Arc::clone(&runtime),
                events,
                stop_services.clone(),
            )));
        }
        let maintenance = runtime.config.maintenance.then(|| {
            Maintenance::start(
                Arc::clone(&runtime.config.store),
                Arc::clone(&runtime.config.clock),
                Arc::clone(&runtime.config.registry),
                runtime.id.clone(),
                runtime.config.services.clone(),
                Arc::clone(&runtime.leader_vacant),
                crate::maintenance::MaintenanceExtras {
                    cron: Some(crate::cron::CronFirer::new(
                        runtime.config.client.clone(),
                        runtime.config.cron_firer.clone(),
                    )),
                    // --- stream events ---
                    events: Some(runtime.config.client.event_hub().clone()),
                    // --- stream counts ---
                    history: runtime
                        .config
                        .history
                        .as_ref()
                        .map(|(history, _)| history.clone()),
                },
            )
        });
        let completer = tokio::spawn(completer::run(Arc::clone(&runtime), ack_rx));
        let producers = runtime
            .config
            .queues
            .iter()
            .map(|(queue, &concurrency)| {
                tokio::spawn(producer::run(
                    Arc::clone(&runtime),
                    queue.clone(),
                    concurrency,
                ))
            })
            .collect();
        tracing::info!(
            worker = %runtime.id,
            store = runtime.config.store.name(),
            queues = ?runtime.config.queues,
            kinds = ?runtime.config.registry.kinds(),
            "worker started"
        );
        Ok(WorkerHandle {
            runtime,
            producers,
            completer,
            services,
            stop_services,
            maintenance,
        })
    }

    /// Starts the worker and runs it until SIGINT or SIGTERM, then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// As [`Worker::start`].
    pub async fn run(&self) -> Result<()> {
        let handle = self.start().await?;
        shutdown_signal().await;
        tracing::info!("shutdown signal received; stopping gracefully");
        handle.shutdown().await;
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

fn worker_id() -> String {
    let host = host_name();
    let pid = std::process::id();
    let nonce: u32 = rand::random();
    format!("{host}-{pid}-{nonce:08x}")
}

/// The machine's host name, from the kernel where available.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// What a finished attempt came to, as a worker saw its acknowledgement applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptResult {
    /// The job completed.
    Completed,
    /// The attempt failed; the job will be retried.
    Retried,
    /// The job was discarded (dead letter).
    Discarded,
    /// The job was snoozed.
    Snoozed,
    /// The job was cancelled.
    Cancelled,
    /// The job was handed back unrun at shutdown.
    HandedBack,
}

/// Sent by a running worker each time one of its acknowledgements is written: what tests,
/// metrics and tools watch instead of polling the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerEvent {
    /// The job.
    pub id: JobId,
    /// The job's queue.
    pub queue: String,
    /// The job's kind.
    pub kind: String,
    /// The attempt that finished.
    pub attempt: i32,
    /// What it came to, as the worker asked (a cancel request may still turn it into
    /// `cancelled` in the store).
    pub result: AttemptResult,
    /// How long the attempt ran.
    pub run_time: Duration,
    /// How long the job waited from when it was due (`run_at`) to when this attempt started.
    pub pickup_latency: Duration,
}

/// An outcome on its way to the completer, with what the worker's events report about it.
pub(crate) struct Ack {
    pub(crate) finish: stoker_core::JobFinish,
    /// The attempt that finished (the finish itself carries only the claim's fence).
    pub(crate) attempt: i32,
    pub(crate) queue: String,
    pub(crate) kind: String,
    pub(crate) run_time: Duration,
    pub(crate) pickup_latency: Duration,
    /// A completion that waits for the job's children (issue 18): written by its own
    /// statement, not in the batch.
    pub(crate) wait_children: bool,
}

/// A started worker. Dropping it does not stop the worker; call [`WorkerHandle::shutdown`].
pub struct WorkerHandle {
    runtime: Arc<Runtime>,
    producers: Vec<JoinHandle<()>>,
    completer: JoinHandle<()>,
    services: Vec<JoinHandle<()>>,
    stop_services: CancellationToken,
    maintenance: Option<Maintenance>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("id", &self.runtime.id)
            .finish_non_exhaustive()
    }
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs still running when the grace period ended, which were cancelled.
    pub cancelled_at_deadline: usize,
}

impl WorkerHandle {
    /// This worker's id, as in its heartbeat row and in the jobs it runs.
    pub fn id(&self) -> &str {
        &self.runtime.id
    }

    /// Subscribes to acknowledgements as they are written: a way for tests and tools to wait
    /// for jobs without polling.
    pub fn events(&self) -> broadcast::Receiver<WorkerEvent> {
        self.runtime.events.subscribe()
    }

    /// How many jobs this worker is running now.
    pub fn running(&self) -> usize {
        self.runtime.running.lock().expect("running lock").len()
    }

    /// Whether this process leads the maintenance services now.
    pub fn is_leader(&self) -> bool {
        self.maintenance
            .as_ref()
            .is_some_and(Maintenance::is_leader)
    }

    /// Shuts down gracefully: stop fetching; let running jobs finish within the grace period;
    /// then cancel the rest, give them a moment to return, and hand them back to the queue
    /// without using up an attempt; write every pending acknowledgement; deregister.
    pub async fn shutdown(self) -> ShutdownReport {
        let runtime = &self.runtime;
        let config = &runtime.config;
        runtime.stop_fetching.cancel();
        for producer in self.producers {
            let _ = producer.await;
        }
        runtime.jobs.close();

        let mut report = ShutdownReport::default();
        if tokio::time::timeout(config.shutdown_grace, runtime.jobs.wait())
            .await
            .is_err()
        {
            let running: Vec<Arc<RunningJob>> = runtime
                .running
                .lock()
                .expect("running lock")
                .values()
                .cloned()
                .collect();
            report.cancelled_at_deadline = running.len();
            tracing::warn!(
                jobs = running.len(),
                "shutdown grace period over; cancelling running jobs to hand them back"
            );
            for job in &running {
                job.stop(StopReason::Shutdown);
            }
            if tokio::time::timeout(config.cancel_grace, runtime.jobs.wait())
                .await
                .is_err()
            {
                runtime.hard_stop.cancel();
                runtime.jobs.wait().await;
            }
        }

        // Every job has sent its outcome: closing the channel lets the completer drain and end.
        runtime.acks.lock().expect("acks lock").take();
        let _ = self.completer.await;

        self.stop_services.cancel();
        for service in self.services {
            let _ = service.await;
        }
        if let Some(maintenance) = self.maintenance {
            maintenance.stop().await;
        }
        // A final heartbeat carries the last counters, then the row goes.
        if let Err(err) = heartbeat::beat(runtime).await {
            tracing::warn!(%err, "final heartbeat failed");
        }
        if let Err(err) = config.store.worker_remove(&runtime.id).await {
            tracing::warn!(%err, "could not remove the worker's row; it will be pruned");
        }
        tracing::info!(worker = %runtime.id, "worker stopped");
        report
    }
}

/// Why a running job was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum StopReason {
    None = 0,
    Cancelled = 1,
    Shutdown = 2,
}

pub(crate) struct RunningJob {
    pub(crate) token: CancellationToken,
    reason: AtomicU8,
}

impl RunningJob {
    pub(crate) fn new() -> Self {
        RunningJob {
            token: CancellationToken::new(),
            reason: AtomicU8::new(StopReason::None as u8),
        }
    }

    /// Signals the job to stop; the first reason given wins.
    pub(crate) fn stop(&self, reason: StopReason) {
        let _ = self.reason.compare_exchange(
            StopReason::None as u8,
            reason as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.token.cancel();
    }

    pub(crate) fn reason(&self) -> StopReason {
        match self.reason.load(Ordering::Acquire) {
            1 => StopReason::Cancelled,
            2 => StopReason::Shutdown,
            _ => StopReason::None,
        }
    }
}

/// State shared by a worker's tasks.
pub(crate) struct Runtime {
    pub(crate) id: String,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) config: Arc<WorkerConfig>,
    pub(crate) wakers: HashMap<String, Arc<Notify>>,
    pub(crate) running: Mutex<HashMap<JobId, Arc<RunningJob>>>,
    /// Completions and failures since the last heartbeat.
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Run time of finished attempts since start, in ms, for the registry (issue 13).
    pub(crate) run_ms: AtomicU64,
    acks: Mutex<Option<mpsc::UnboundedSender<Ack>>>,
    pub(crate) events: broadcast::Sender<WorkerEvent>,
    /// Signalled when a heartbeat finds the leader's seat free.
    pub(crate) leader_vacant: Arc<Notify>,
    /// Producers stop claiming.
    pub(crate) stop_fetching: CancellationToken,
    /// Jobs still running after the cancel grace are dropped and handed back.
    pub(crate) hard_stop: CancellationToken,
    pub(crate) jobs: TaskTracker,
}

impl Runtime {
    pub(crate) fn ack(&self, ack: Ack) {
        let acks = self.acks.lock().expect("acks lock");
        match acks.as_ref() {
            Some(tx) if tx.send(ack).is_ok() => {}
            _ => tracing::error!(
                "acknowledgement after the completer stopped; the rescuer will recover the job"
            ),
        }
    }

    /// Signals a running job of ours to stop because it was cancelled.
    pub(crate) fn cancel_running(&self, id: JobId) {
        if let Some(job) = self.running.lock().expect("running lock").get(&id) {
            tracing::debug!(job = %id, "cancel requested");
            job.stop(StopReason::Cancelled);
        }
    }

    pub(crate) fn wake(&self, queue: &str) {
        if let Some(waker) = self.wakers.get(queue) {
            waker.notify_one();
        }
    }

    fn wake_all(&self) {
        for waker in self.wakers.values() {
            waker.notify_one();
        }
    }
}

/// Turns store events into producer wake-ups and cancel signals. A burst of events for one
/// queue collapses into one wake-up: `Notify` keeps at most one pending permit.
async fn route_events(
    runtime: Arc<Runtime>,
    mut events: broadcast::Receiver<StoreEvent>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = stop.cancelled() => return,
        };
        match event {
            Ok(StoreEvent::JobsAvailable { queue }) => runtime.wake(&queue),
            Ok(StoreEvent::JobCancelRequested { id }) => runtime.cancel_running(id),
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => runtime.wake_all(),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
