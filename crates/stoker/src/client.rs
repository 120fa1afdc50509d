//! The client: enqueue jobs and manage them, from anywhere in a service.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stoker_core::{
    validate_queue, Clock, InsertedJob, InvalidInput, JobCancelParams, JobId, JobInsertParams,
    JobListParams, JobRetryParams, JobRow, JobState, LeaderRow, QueueParams, QueueRow, StateCount,
    Store, StoreTx, SystemClock, WorkerRow, MAX_ARGS_BYTES_DEFAULT,
};

use crate::{EnqueueOptions, Job, NewJob, Registry, Result};

/// Enqueues and manages jobs. Cheap to clone; clones share everything.
///
/// `S` is the store; it defaults to `dyn Store` so one client type serves any store. Keep the
/// concrete type (e.g. `Client<PgStore>`) to enqueue inside your own transactions with
/// [`Client::enqueue_tx`].
///
/// # Examples
///
/// ```
/// # async fn demo() -> Result<(), stoker::Error> {
/// use std::sync::Arc;
/// use serde_json::json;
/// use stoker::{sqlite::SqliteStore, Client, EnqueueOptions};
///
/// let store = Arc::new(SqliteStore::connect("sqlite::memory:").await?);
/// let client = Client::new(store);
/// client.migrate().await?;
/// let job = client.enqueue_raw("email", json!({"to": "ada@example.com"}), EnqueueOptions::new()).await?;
/// assert!(!job.duplicate);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub struct Client<S: ?Sized = dyn Store> {
    store: Arc<S>,
    config: Arc<ClientConfig>,
}

#[derive(Clone)]
struct ClientConfig {
    clock: Arc<dyn Clock>,
    registry: Option<Arc<Registry>>,
    max_args_bytes: usize,
}

impl<S: ?Sized> Clone for Client<S> {
    fn clone(&self) -> Self {
        Client {
            store: Arc::clone(&self.store),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: ?Sized> std::fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("max_args_bytes", &self.config.max_args_bytes)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Client<S> {
    /// The same client over `dyn Store`, e.g. to hand to code that serves any store.
    pub fn into_dyn(self) -> Client {
        Client {
            store: self.store,
            config: self.config,
        }
    }
}

impl<S: Store + ?Sized> Client<S> {
    /// A client over `store`, with the system clock and a 1 MiB args limit.
    pub fn new(store: Arc<S>) -> Self {
        Client {
            store,
            config: Arc::new(ClientConfig {
                clock: Arc::new(SystemClock),
                registry: None,
                max_args_bytes: MAX_ARGS_BYTES_DEFAULT,
            }),
        }
    }

    /// Uses `clock` for every "now" (delays, run times); for tests.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        Arc::make_mut(&mut self.config).clock = clock;
        self
    }

    /// Validates raw args of the kinds in `registry` with their handlers before writing them.
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        Arc::make_mut(&mut self.config).registry = Some(registry);
        self
    }

    /// Refuses args larger than `bytes` of JSON. Defaults to 1 MiB.
    pub fn max_args_bytes(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).max_args_bytes = bytes;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The clock the client reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.config.clock
    }

    /// The registry whose handlers validate args and give their kinds' backoff, if any.
    pub(crate) fn registry(&self) -> Option<&Registry> {
        self.config.registry.as_deref()
    }

    /// Creates or upgrades the store's schema; safe to call from every process at start.
    ///
    /// # Errors
    ///
    /// If a migration fails.
    pub async fn migrate(&self) -> Result<()> {
        Ok(self.store.migrate().await?)
    }

    /// Enqueues a typed job with its kind's defaults.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) naming the field at fault (nothing is written), or a store error.
    pub async fn enqueue<J: Job>(&self, job: J) -> Result<InsertedJob> {
        self.enqueue_one(NewJob::new(job)).await
    }

    /// Enqueues a typed job with options.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`].
    pub async fn enqueue_with<J: Job>(&self, job: J, opts: EnqueueOptions) -> Result<InsertedJob> {
        self.enqueue_one(NewJob::with(job, opts)).await
    }

    /// Enqueues a job of any kind with JSON args.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`]; args of a kind in the client's registry must pass its handler's
    /// validation.
    pub async fn enqueue_raw(
        &self,
        kind: impl Into<String>,
        args: Value,
        opts: EnqueueOptions,
    ) -> Result<InsertedJob> {
        self.enqueue_one(NewJob::raw(kind, args, opts)).await
    }

    /// Enqueues many jobs in a handful of statements (10,000 in one call is fine). Results are
    /// in input order. If any job is invalid, none is written.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`].
    pub async fn enqueue_many(
        &self,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<Vec<InsertedJob>> {
        let params = self.insert_params(jobs)?;
        Ok(self.store.job_insert_many(params).await?)
    }

    async fn enqueue_one(&self, job: NewJob) -> Result<InsertedJob> {
        let mut inserted = self.enqueue_many([job]).await?;
        Ok(inserted.remove(0))
    }

    fn insert_params(&self, jobs: impl IntoIterator<Item = NewJob>) -> Result<JobInsertParams> {
        let now = self.config.clock.now();
        let registry = self.config.registry.as_deref();
        let jobs = jobs
            .into_iter()
            .map(|job| job.resolve(now, registry))
            .collect::<Result<Vec<_>>>()?;
        Ok(JobInsertParams {
            jobs,
            now,
            max_args_bytes: self.config.max_args_bytes,
        })
    }

    /// Fetches a job: state, attempts, error history, result, progress.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn get(&self, id: JobId) -> Result<Option<JobRow>> {
        Ok(self.store.job_get(id).await?)
    }

    /// Lists jobs matching `filter`, newest first, one page at a time.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for a page size outside 1 to 1,000 or an invalid queue name; a
    /// store error.
    pub async fn list(&self, filter: &JobFilter) -> Result<JobPage> {
        let limit = filter.limit;
        if !(1..=JobFilter::LIMIT_MAX).contains(&limit) {
            return Err(InvalidInput::new(
                "limit",
                format!(
                    "must be between 1 and {}, got {limit}",
                    JobFilter::LIMIT_MAX
                ),
            )
            .into());
        }
        for queue in &filter.queues {
            validate_queue(queue)?;
        }
        let jobs = self
            .store
            .job_list(JobListParams {
                states: filter.states.clone(),
                kinds: filter.kinds.clone(),
                queues: filter.queues.clone(),
                tenant: filter.tenant.clone(),
                before_id: filter.before,
                limit,
            })
            .await?;
        let next = if jobs.len() == limit as usize {
            jobs.last().map(|job| job.id)
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }

    /// Cancels a job: a waiting one becomes `cancelled` at once; a running one is signalled to
    /// stop (its handler sees [`JobContext::is_cancelled`](crate::JobContext::is_cancelled)) and
    /// ends `cancelled`. Returns the job as it is now.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no such job.
    pub async fn cancel(&self, id: JobId) -> Result<JobRow> {
        let now = self.config.clock.now();
        Ok(self.store.job_cancel(JobCancelParams { id, now }).await?)
    }

    /// Runs a discarded, cancelled or completed job again now, keeping its error history.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no such job.
    pub async fn retry(&self, id: JobId) -> Result<JobRow> {
        let now = self.config.clock.now();
        Ok(self.store.job_retry(JobRetryParams { id, now }).await?)
    }

    /// Deletes a job that is not running, and returns it as it was.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no such job; [`Error::Conflict`](crate::Error::Conflict) if it is running.
    pub async fn delete(&self, id: JobId) -> Result<JobRow> {
        Ok(self.store.job_delete(id).await?)
    }

    /// Pauses a queue in every worker process: none fetches from it until it is resumed.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for a bad queue name.
    pub async fn pause(&self, queue: &str) -> Result<()> {
        let now = self.config.clock.now();
        let queue = queue.to_owned();
        Ok(self.store.queue_pause(QueueParams { queue, now }).await?)
    }

    /// Resumes a paused queue.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for a bad queue name.
    pub async fn resume(&self, queue: &str) -> Result<()> {
        let now = self.config.clock.now();
        let queue = queue.to_owned();
        Ok(self.store.queue_resume(QueueParams { queue, now }).await?)
    }

    /// Queues with settings (ever paused or resumed).
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn queues(&self) -> Result<Vec<QueueRow>> {
        Ok(self.store.queue_list().await?)
    }

    /// Job counts by state, per queue and per kind.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn stats(&self) -> Result<Stats> {
        Ok(Stats::from_counts(self.store.job_stats().await?))
    }

    /// Worker processes, with their heartbeats and counters.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>> {
        Ok(self.store.worker_list().await?)
    }

    /// The process running the maintenance services, if one leads.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn leader(&self) -> Result<Option<LeaderRow>> {
        Ok(self.store.leader_get(self.config.clock.now()).await?)
    }
}

impl<S: ?Sized> Client<S> {
    /// Enqueues a typed job on `conn`, inside the caller's own transaction: the job exists
    /// only if that transaction commits (the outbox pattern).
    ///
    /// ```no_run
    /// # async fn demo(pool: sqlx::PgPool, client: stoker::Client<stoker::postgres::PgStore>) -> Result<(), Box<dyn std::error::Error>> {
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Welcome { user: i64 }
    /// # impl stoker::Job for Welcome { const KIND: &'static str = "welcome"; type Output = ();
    /// #   async fn perform(self, _: stoker::JobContext) -> Result<(), stoker::JobError> { Ok(()) } }
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("INSERT INTO users (id) VALUES (42)").execute(&mut *tx).await?;
    /// client.enqueue_tx(&mut *tx, Welcome { user: 42 }, Default::default()).await?;
    /// tx.commit().await?; // both the user and the job, or neither
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`].
    pub async fn enqueue_tx<C, J>(
        &self,
        conn: &mut C,
        job: J,
        opts: EnqueueOptions,
    ) -> Result<InsertedJob>
    where
        S: StoreTx<C>,
        C: ?Sized + Send,
        J: Job,
    {
        let mut inserted = self
            .enqueue_many_tx(conn, [NewJob::with(job, opts)])
            .await?;
        Ok(inserted.remove(0))
    }

    /// Enqueues many jobs on `conn`, inside the caller's own transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`].
    pub async fn enqueue_many_tx<C>(
        &self,
        conn: &mut C,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<Vec<InsertedJob>>
    where
        S: StoreTx<C>,
        C: ?Sized + Send,
    {
        let now = self.config.clock.now();
        let registry = self.config.registry.as_deref();
        let jobs = jobs
            .into_iter()
            .map(|job| job.resolve(now, registry))
            .collect::<Result<Vec<_>>>()?;
        let params = JobInsertParams {
            jobs,
            now,
            max_args_bytes: self.config.max_args_bytes,
        };
        Ok(self.store.job_insert_many_tx(conn, params).await?)
    }
}

/// Which jobs [`Client::list`] returns.
///
/// ```
/// use stoker::{JobFilter, JobState};
/// let filter = JobFilter::new().state(JobState::Discarded).queue("mailers").limit(50);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFilter {
    /// Only these states; empty means any.
    #[serde(default)]
    pub states: Vec<JobState>,
    /// Only these kinds; empty means any.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only these queues; empty means any.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Only this tenant's jobs.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The cursor: only jobs older than this id ([`JobPage::next`] of the previous page).
    #[serde(default)]
    pub before: Option<JobId>,
    /// Page size, 1 to 1,000. Defaults to 100.
    #[serde(default = "JobFilter::limit_default")]
    pub limit: u32,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            states: Vec::new(),
            kinds: Vec::new(),
            queues: Vec::new(),
            tenant: None,
            before: None,
            limit: JobFilter::limit_default(),
        }
    }
}

impl JobFilter {
    /// The largest page.
    pub const LIMIT_MAX: u32 = 1000;

    fn limit_default() -> u32 {
        100
    }

    /// Every job, 100 per page.
    pub fn new() -> Self {
        JobFilter::default()
    }

    /// Adds a state to match.
    pub fn state(mut self, state: JobState) -> Self {
        self.states.push(state);
        self
    }

    /// Adds a kind to match.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kinds.push(kind.into());
        self
    }

    /// Adds a queue to match.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queues.push(queue.into());
        self
    }

    /// Only this tenant's jobs.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Continues after a previous page.
    pub fn before(mut self, cursor: JobId) -> Self {
        self.before = Some(cursor);
        self
    }

    /// Page size, 1 to 1,000.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }
}

/// One page of [`Client::list`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPage {
    /// The jobs, newest first.
    pub jobs: Vec<JobRow>,
    /// The cursor for the next page, if there may be one.
    pub next: Option<JobId>,
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Waiting to run (now or scheduled).
    pub available: i64,
    /// Running now.
    pub running: i64,
    /// Waiting for a retry.
    pub retryable: i64,
    /// Finished successfully.
    pub completed: i64,
    /// Failed for good (dead letter).
    pub discarded: i64,
    /// Cancelled.
    pub cancelled: i64,
}

impl StateCounts {
    /// The count for `state`.
    pub fn get(&self, state: JobState) -> i64 {
        match state {
            JobState::Available => self.available,
            JobState::Running => self.running,
            JobState::Retryable => self.retryable,
            JobState::Completed => self.completed,
            JobState::Discarded => self.discarded,
            JobState::Cancelled => self.cancelled,
        }
    }

    fn add(&mut self, state: JobState, count: i64) {
        let slot = match state {
            JobState::Available => &mut self.available,
            JobState::Running => &mut self.running,
            JobState::Retryable => &mut self.retryable,
            JobState::Completed => &mut self.completed,
            JobState::Discarded => &mut self.discarded,
            JobState::Cancelled => &mut self.cancelled,
        };
        *slot += count;
    }

    /// All states together.
    pub fn total(&self) -> i64 {
        JobState::ALL.iter().map(|state| self.get(*state)).sum()
    }
}

/// Job counts by state: overall, per queue and per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Every job.
    pub totals: StateCounts,
    /// Per queue, by name.
    pub queues: BTreeMap<String, StateCounts>,
    /// Per kind, by name.
    pub kinds: BTreeMap<String, StateCounts>,
}

impl Stats {
    /// Sums the store's per-(queue, kind, state) counts.
    pub fn from_counts(counts: impl IntoIterator<Item = StateCount>) -> Self {
        let mut stats = Stats::default();
        for count in counts {
            stats.totals.add(count.state, count.count);
            stats
                .queues
                .entry(count.queue)
                .or_default()
                .add(count.state, count.count);
            stats
                .kinds
                .entry(count.kind)
                .or_default()
                .add(count.state, count.count);
        }
        stats
    }
}
