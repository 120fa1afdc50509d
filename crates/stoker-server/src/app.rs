//! What every face of the server shares: the [`AppState`], built around one
//! [`stoker::Client`], so the HTTP API, the pull protocol and any other face (a dashboard)
//! reach the store the same way and apply the same rules.

use std::sync::Arc;
use std::time::Duration;

use stoker::{Client, Clock, Registry, Store, SystemClock, WorkerEvent};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{metrics, pull, stats, Metrics};
use crate::auth::Principal;
use crate::config::{ApiToken, Config, PullSettings};
use crate::handlers::HandlerInfo;

/// How often the pull workers' counters and heartbeats are written.
const PULL_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What every request handler shares: the client, the configuration the faces need, metrics,
/// the throughput sampler and the pull workers seen. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<StateInner>,
}

pub(crate) struct StateInner {
    /// The one way to the store for every face; scope it per caller with
    /// [`Client::for_tenant`].
    pub(crate) client: Client,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) tokens: Vec<ApiToken>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) handlers: Vec<HandlerInfo>,
    pub(crate) worker_queues: Vec<String>,
    pub(crate) max_body_bytes: usize,
    pub(crate) pull: PullSettings,
    pub(crate) sample_interval: Duration,
    pub(crate) metrics: Metrics,
    pub(crate) throughput: stats::Throughput,
    pub(crate) pull_workers: pull::PullWorkers,
    pub(crate) shutdown: CancellationToken,
    // --- stream tokens ---
    /// Stored tokens recently read (issue 17).
    pub(crate) stored_tokens: crate::auth::TokenCache,
    // --- stream crypt ---
    /// What callers below admin see redacted (issue 17).
    pub(crate) redaction: stoker::Redaction,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.inner.client.store().name())
            .field("tokens", &self.inner.tokens.len())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state for serving `store` with `config`'s tokens, limits and pull settings. The
    /// built-in handlers (which validate the args of their kinds on enqueue) come from
    /// [`crate::handlers::builtin`].
    pub fn new(store: Arc<dyn Store>, config: &Config) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let registry = Arc::new(crate::handlers::builtin());
        let mut client = Client::new(store)
            .with_clock(Arc::clone(&clock))
            .with_registry(Arc::clone(&registry))
            .with_stale_after(config.rescuer.stale_after);
        // --- stream crypt ---
        if let Some(encryption) = config.encryption.encryption() {
            client = client.with_encryption(encryption);
        }
        AppState {
            inner: Arc::new(StateInner {
                client,
                clock,
                tokens: config.tokens.clone(),
                registry,
                handlers: crate::handlers::describe(),
                worker_queues: config.worker.queues.keys().cloned().collect(),
                max_body_bytes: config.max_body_bytes,
                pull: config.pull,
                sample_interval: config.stats.sample_interval,
                metrics: Metrics::new(),
                throughput: stats::Throughput::default(),
                pull_workers: pull::PullWorkers::default(),
                shutdown: CancellationToken::new(),
                // --- stream tokens ---
                stored_tokens: crate::auth::TokenCache::new(config.token_cache_ttl),
                // --- stream crypt ---
                redaction: config.redaction.clone(),
            }),
        }
    }

    /// The same state with its client recording history in `history` (issue 13): enqueues and
    /// pull workers' reservations and reports. Call it before the state is shared.
    ///
    /// # Panics
    ///
    /// If the state was already cloned.
    pub fn with_history(mut self, history: stoker::History) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_history before the state is shared");
        inner.client = inner.client.clone().with_history(history);
        self
    }

    // --- stream events ---

    /// The same state with its client publishing on `hub` (issue 13, live events): give the
    /// built-in worker the same hub, so `GET /v1/events` shows its claims and
    /// acknowledgements. Call it before the state is shared.
    ///
    /// # Panics
    ///
    /// If the state was already cloned.
    pub fn with_event_hub(mut self, hub: stoker::EventHub) -> Self {
        let inner =
            Arc::get_mut(&mut self.inner).expect("with_event_hub before the state is shared");
        inner.client = inner.client.clone().with_event_hub(hub);
        self
    }

    /// The client every face goes through, unscoped (it acts for every tenant).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The client acting for `principal`: limited to its tenant when its token is bound to
    /// one, so every read and write is checked below the HTTP layer; recording its management
    /// actions in the audit log as the principal's; and, for every token below admin, showing
    /// jobs redacted as the `[[redact]]` tables say (issue 17), so the API, the CLI over it and
    /// the dashboard redact alike; and, for a token that may neither enqueue, operate nor
    /// administer, completion callback URLs as scheme and host only (issue 13).
    pub fn client_for(&self, principal: &Principal) -> Client {
        let client = match &principal.tenant {
            Some(tenant) => self.inner.client.for_tenant(tenant.clone()),
            None => self.inner.client.clone(),
        };
        // Its management actions are audited as the caller's (issue 17).
        let client = client.with_actor(principal.actor());
        // --- stream crypt ---
        let client =
            if principal.allows(crate::config::Scope::Admin) || self.inner.redaction.is_empty() {
                client
            } else {
                client.with_redaction(self.inner.redaction.clone())
            };
        // --- stream history ---
        // A completion callback's URL can carry a secret (a signed URL): a token that may
        // neither enqueue, operate nor administer sees its scheme and host only (issue 13).
        use crate::config::Scope;
        if [Scope::Enqueue, Scope::Operate, Scope::Admin]
            .into_iter()
            .any(|scope| principal.allows(scope))
        {
            client
        } else {
            client.with_callback_urls_hidden()
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.inner.client.store()
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

    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
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

/// The server's background tasks; stop them with [`Background::stop`].
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
