//! The client: enqueue jobs and manage them, from anywhere in a service.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stoker_core::{
    validate_kind, validate_queue, Clock, InsertedJob, InvalidInput, JobCancelParams, JobId,
    JobInsert, JobInsertParams, JobListParams, JobRetryManyParams, JobRetryParams, JobRow,
    JobState, LeaderRow, QueueParams, QueueRow, StateCount, Store, StoreTx, SystemClock, WorkerRow,
    MAX_ARGS_BYTES_DEFAULT,
};
// --- stream tenancy ---
use stoker_core::AuditedAction;

use crate::overview::{worker_alive, QueueOverview, QueueWorker, WorkerStatus};
use crate::{EnqueueOptions, Error, Job, NewJob, Registry, Result, STALE_AFTER_DEFAULT};

/// The longest delay a job can be enqueued with: ten years. A longer one is refused, as a
/// mistake, and far enough from the calendar's end that no date arithmetic can overflow.
pub const SCHEDULE_MAX: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The most values one filter names in each of its lists (states, kinds, queues), so one call
/// cannot make the store compare every row against thousands of values.
pub const FILTER_MAX: usize = 100;

/// `now + delay`, refusing delays beyond [`SCHEDULE_MAX`] (naming `field`).
pub(crate) fn delayed(
    now: DateTime<Utc>,
    delay: Duration,
    field: &str,
) -> Result<DateTime<Utc>, InvalidInput> {
    let too_long = || {
        InvalidInput::new(
            field,
            format!(
                "{delay:?} is too long: at most {} seconds (ten years)",
                SCHEDULE_MAX.as_secs()
            ),
        )
    };
    if delay > SCHEDULE_MAX {
        return Err(too_long());
    }
    let delay = chrono::Duration::from_std(delay).map_err(|_| too_long())?;
    now.checked_add_signed(delay).ok_or_else(too_long)
}

/// Refuses a `run_at` outside the years 1 to 9999, the instants RFC 3339 can write (so every
/// stored `run_at` reads back on the wire) and every store keeps; later ones (chrono parses
/// `+200000-01-01T00:00:00Z`) overflow PostgreSQL's calendar. Every enqueue through the
/// [`Client`] applies it; callers that check requests themselves (to name a field their own
/// way) use it too.
///
/// # Errors
///
/// [`InvalidInput`] for field `run_at`.
pub fn check_run_at(run_at: DateTime<Utc>) -> Result<(), InvalidInput> {
    use chrono::Datelike;
    if (1..=9999).contains(&run_at.year()) {
        Ok(())
    } else {
        Err(InvalidInput::new(
            "run_at",
            format!(
                "{} is outside the years 1 to 9999 that RFC 3339 date-times cover",
                run_at.to_rfc3339()
            ),
        ))
    }
}

/// Refuses a filter list longer than [`FILTER_MAX`].
fn check_filter_len(field: &str, len: usize) -> Result<(), InvalidInput> {
    if len > FILTER_MAX {
        return Err(InvalidInput::new(
            field,
            format!("names {len} values; a filter takes at most {FILTER_MAX}"),
        ));
    }
    Ok(())
}

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
    /// The tenant every call is limited to, if the client is scoped.
    tenant: Option<String>,
    stale_after: Duration,
    /// The history recorder, if this process keeps history (issue 13).
    history: Option<crate::history::History>,
    // --- stream events ---
    /// Where live events are published (issue 13).
    events: crate::events::EventHub,
    // --- stream tenancy ---
    /// Who acts, for the audit log (issue 17).
    actor: crate::audit::Actor,
    // --- stream crypt ---
    /// Which jobs' args and results are sealed, and the keys (issue 17).
    encryption: Option<crate::crypt::Encryption>,
    /// What this client hides of args and results when it reads jobs (issue 17).
    redaction: Option<Arc<crate::redact::Redaction>>,
    // --- stream history ---
    /// Whether jobs it reads show completion callback URLs as scheme and host only (issue 13).
    hide_callback_urls: bool,
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
            .field("tenant", &self.config.tenant)
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
                tenant: None,
                stale_after: STALE_AFTER_DEFAULT,
                history: None,
                // --- stream events ---
                events: crate::events::EventHub::new(),
                // --- stream tenancy ---
                actor: crate::audit::Actor::library(),
                // --- stream crypt ---
                encryption: None,
                redaction: None,
                // --- stream history ---
                hide_callback_urls: false,
            }),
        }
    }

    /// The same client limited to `tenant`: every job it enqueues belongs to `tenant`, and it
    /// reads, lists, cancels, retries and deletes only that tenant's jobs. A job of another
    /// tenant asked for by id is [`Error::NotFound`](crate::Error::NotFound), as if it did not
    /// exist; naming another tenant (in an enqueue or a filter) and calls that span every
    /// tenant (queues, workers, stats, pause) are
    /// [`Error::TenantForbidden`](crate::Error::TenantForbidden).
    ///
    /// ```
    /// # async fn demo() -> Result<(), stoker::Error> {
    /// use std::sync::Arc;
    /// use serde_json::json;
    /// use stoker::{sqlite::SqliteStore, Client, EnqueueOptions};
    ///
    /// let client = Client::new(Arc::new(SqliteStore::connect("sqlite::memory:").await?));
    /// client.migrate().await?;
    /// let globex = client.enqueue_raw("report", json!({}), EnqueueOptions::new().tenant("globex")).await?;
    /// let acme = client.for_tenant("acme");
    /// let own = acme.enqueue_raw("report", json!({}), EnqueueOptions::new()).await?;
    /// assert_eq!(acme.get(own.id).await?.unwrap().tenant.as_deref(), Some("acme"));
    /// assert!(acme.get(globex.id).await?.is_none());
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn for_tenant(&self, tenant: impl Into<String>) -> Self {
        let mut client = self.clone();
        Arc::make_mut(&mut client.config).tenant = Some(tenant.into());
        client
    }

    /// Who this client acts as, for the audit log ([`Client::with_actor`]).
    pub fn actor(&self) -> &crate::audit::Actor {
        &self.config.actor
    }

    pub(crate) fn with_actor_inner(&self, actor: crate::audit::Actor) -> Self {
        let mut client = self.clone();
        Arc::make_mut(&mut client.config).actor = actor;
        client
    }

    /// The tenant this client is limited to, if it is scoped ([`Client::for_tenant`]).
    pub fn tenant(&self) -> Option<&str> {
        self.config.tenant.as_deref()
    }

    /// How long a worker may go without a heartbeat before the overviews show it gone (see
    /// [`worker_alive`](crate::worker_alive)). Set it to the rescuer's `stale_after`, so a worker
    /// shown alive is one whose jobs are safe. Defaults to 3 seconds, the rescuer's default.
    pub fn with_stale_after(mut self, stale_after: Duration) -> Self {
        Arc::make_mut(&mut self.config).stale_after = stale_after;
        self
    }

    /// See [`Client::with_stale_after`].
    pub fn stale_after(&self) -> Duration {
        self.config.stale_after
    }

    /// Refuses a scoped client a call that shows or changes every tenant's data; every such
    /// method of the client calls it, and so can code that serves such data itself (metrics).
    ///
    /// # Errors
    ///
    /// [`Error::TenantForbidden`](crate::Error::TenantForbidden) for a scoped client.
    pub fn require_every_tenant(&self, what: &str) -> Result<()> {
        match &self.config.tenant {
            None => Ok(()),
            Some(own) => Err(Error::TenantForbidden {
                field: None,
                message: format!(
                    "this client is limited to tenant {own:?} and cannot use {what}, which spans \
                     every tenant"
                ),
            }),
        }
    }

    /// Whether this client may see a job of `tenant`.
    pub(crate) fn sees(&self, tenant: Option<&str>) -> bool {
        match &self.config.tenant {
            None => true,
            Some(own) => tenant == Some(own.as_str()),
        }
    }

    /// A scoped client's check before it acts on a job by id: another tenant's job is not
    /// found.
    pub(crate) async fn require_visible(&self, id: JobId) -> Result<()> {
        if self.config.tenant.is_none() {
            return Ok(());
        }
        match self.store.job_get(id).await? {
            Some(job) if self.sees(job.tenant.as_deref()) => Ok(()),
            _ => Err(Error::NotFound(format!("job {id}"))),
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

    // --- History (issue 13) ---

    /// Records what this client does (enqueues, and pull workers' reservations and reports)
    /// in `history`, which writes it to the store in batches. Share one recorder per process
    /// with its [`Worker`](crate::Worker).
    pub fn with_history(mut self, history: crate::history::History) -> Self {
        Arc::make_mut(&mut self.config).history = Some(history);
        self
    }

    /// The history recorder, if the client has one ([`Client::with_history`]).
    pub fn history(&self) -> Option<&crate::history::History> {
        self.config.history.as_ref()
    }

    /// The labels of the jobs about to be inserted, if the client keeps history (so the
    /// insert can be recorded once it is known which jobs were new).
    pub(crate) fn history_labels(
        &self,
        params: &JobInsertParams,
    ) -> Option<Vec<crate::history::Labels>> {
        self.config.history.as_ref().map(|_| {
            params
                .jobs
                .iter()
                .map(|job| (job.queue.clone(), job.kind.clone(), job.tenant.clone()))
                .collect()
        })
    }

    /// Records inserted jobs in the history, if the client keeps it.
    pub(crate) fn record_enqueued(
        &self,
        now: DateTime<Utc>,
        labels: Option<Vec<crate::history::Labels>>,
        inserted: &[InsertedJob],
    ) {
        if let (Some(history), Some(labels)) = (&self.config.history, labels) {
            history.record_enqueued(now, &labels, inserted);
        }
    }

    // --- stream events ---

    /// Publishes this client's changes (and a worker's sharing the hub) on `hub` rather than
    /// on a hub of its own, so one process has one place to subscribe: see
    /// [`Client::events`].
    pub fn with_event_hub(mut self, hub: crate::events::EventHub) -> Self {
        Arc::make_mut(&mut self.config).events = hub;
        self
    }

    /// The hub this client publishes its changes on and [`Client::events`] subscribes to.
    pub fn event_hub(&self) -> &crate::events::EventHub {
        &self.config.events
    }

    /// The same client acting for every tenant (the events snapshot spans them all).
    pub(crate) fn unscoped(&self) -> Self {
        let mut client = self.clone();
        Arc::make_mut(&mut client.config).tenant = None;
        client
    }

    /// The events of the jobs about to be inserted, if anybody listens (their ids are known
    /// once the insert returns, and duplicates are dropped then).
    pub(crate) fn event_jobs(
        &self,
        params: &JobInsertParams,
    ) -> Option<Vec<crate::events::JobEvent>> {
        self.config.events.is_active().then(|| {
            params
                .jobs
                .iter()
                .map(|job| crate::events::JobEvent::inserting(job, params.now))
                .collect()
        })
    }

    pub(crate) fn publish_inserted(
        &self,
        events: Option<Vec<crate::events::JobEvent>>,
        inserted: &[InsertedJob],
    ) {
        if let Some(events) = events {
            self.config.events.publish(|| {
                events
                    .into_iter()
                    .zip(inserted)
                    .filter(|(_, result)| !result.duplicate)
                    .map(|(mut event, result)| {
                        event.id = result.id;
                        event
                    })
                    .collect()
            });
        }
    }

    /// Publishes a job's row as it is after a change made at `now`.
    pub(crate) fn publish_row(&self, job: &JobRow, now: DateTime<Utc>) {
        self.config
            .events
            .publish(|| vec![crate::events::JobEvent::from_row(job, now)]);
    }

    /// Publishes claimed jobs (now `running`), after the events of inserts under way.
    pub(crate) async fn publish_claimed(&self, jobs: &[JobRow], now: DateTime<Utc>) {
        if jobs.is_empty() {
            return;
        }
        self.config.events.before_claim_events().await;
        self.config.events.publish(|| {
            jobs.iter()
                .map(|job| crate::events::JobEvent::from_row(job, now))
                .collect()
        });
    }

    /// Publishes applied acknowledgements: each job as finished and the outcome asked for.
    pub(crate) fn publish_finished<'a>(
        &self,
        now: DateTime<Utc>,
        finished: impl IntoIterator<Item = (&'a stoker_core::FinishedJob, &'a stoker_core::Outcome)>,
    ) {
        self.config.events.publish(|| {
            finished
                .into_iter()
                .map(|(job, outcome)| crate::events::JobEvent::from_finished(job, outcome, now))
                .collect()
        });
    }

    // --- stream crypt ---

    /// Seals the args and results of the jobs `encryption` covers (issue 17), and opens sealed
    /// ones when it reads jobs. Give the same encryption to the worker
    /// ([`WorkerBuilder::encryption`](crate::WorkerBuilder::encryption)) so handlers get
    /// plaintext. The args size limit still applies to the plaintext.
    pub fn with_encryption(mut self, encryption: crate::crypt::Encryption) -> Self {
        Arc::make_mut(&mut self.config).encryption = Some(encryption);
        self
    }

    /// The client's encryption, if it has one ([`Client::with_encryption`]).
    pub fn encryption(&self) -> Option<&crate::crypt::Encryption> {
        self.config.encryption.as_ref()
    }

    /// The same client showing jobs redacted as `redaction` says (issue 17): every job it
    /// reads by [`Client::get`], [`Client::list`] or a search has the listed args and result
    /// paths (and their values in error messages) shown as `[redacted]`, and hidden args as
    /// `[hidden]`. The server gives this view to every token below admin.
    pub fn with_redaction(mut self, redaction: crate::redact::Redaction) -> Self {
        Arc::make_mut(&mut self.config).redaction =
            (!redaction.is_empty()).then(|| Arc::new(redaction));
        self
    }

    // --- stream history ---
    /// The same client showing completion callback URLs as scheme and host only (issue 13):
    /// every job it reads by [`Client::get`], [`Client::list`] or a search shows its
    /// `on_finish` URL, and a callback delivery job its `url` arg, as
    /// [`redact_callback_url`](crate::redact_callback_url) makes them. Such a URL often
    /// carries a secret (a signed URL); the server gives this view to tokens that may neither
    /// enqueue, operate nor administer. Nothing else changes: the stored URL, and the callback
    /// a worker delivers, stay whole.
    pub fn with_callback_urls_hidden(mut self) -> Self {
        Arc::make_mut(&mut self.config).hide_callback_urls = true;
        self
    }

    /// Whether this client hides callback URLs ([`Client::with_callback_urls_hidden`]).
    pub fn hides_callback_urls(&self) -> bool {
        self.config.hide_callback_urls
    }

    /// The client's redaction, if it redacts ([`Client::with_redaction`]).
    pub fn redaction(&self) -> Option<&crate::redact::Redaction> {
        self.config.redaction.as_deref()
    }

    /// Seals the args of the jobs about to be inserted that the encryption covers. The size
    /// limit is checked on the plaintext here; the store's own check then allows for the
    /// envelope (base64 makes the ciphertext a third larger, plus its fields).
    fn seal_inserts(&self, params: &mut JobInsertParams) -> Result<()> {
        self.seal_jobs(
            params.jobs.iter_mut(),
            &mut params.max_args_bytes,
            |index| {
                if index == 0 {
                    "args".to_owned()
                } else {
                    format!("jobs[{index}].args")
                }
            },
        )
    }

    /// Seals the args of `jobs` the encryption covers, checking each plaintext against
    /// `max_args_bytes` (an error names the job's field by `field(index)`), and raises
    /// `max_args_bytes` to allow for the envelope when it sealed any. Every insert path (one
    /// job, a batch, a workflow's nodes) goes through here.
    pub(crate) fn seal_jobs<'a>(
        &self,
        jobs: impl Iterator<Item = &'a mut stoker_core::JobInsert>,
        max_args_bytes: &mut usize,
        field: impl Fn(usize) -> String,
    ) -> Result<()> {
        let Some(encryption) = &self.config.encryption else {
            return Ok(());
        };
        let mut sealed_any = false;
        for (index, job) in jobs.enumerate() {
            if !encryption.applies(&job.kind, &job.queue) || crate::sealed_with(&job.args).is_some()
            {
                continue;
            }
            let size = stoker_core::args_size(&job.args);
            if size > *max_args_bytes {
                return Err(InvalidInput::new(
                    field(index),
                    format!("is {size} bytes of JSON, over the limit of {max_args_bytes} bytes"),
                )
                .into());
            }
            job.args = encryption
                .seal(
                    crate::crypt::Field::Args,
                    &job.kind,
                    job.tenant.as_deref(),
                    &job.args,
                )
                .map_err(|err| Error::Config(err.to_string()))?;
            sealed_any = true;
        }
        if sealed_any {
            *max_args_bytes = crate::crypt::sealed_size_limit(*max_args_bytes);
        }
        Ok(())
    }

    // --- stream workflows ---
    /// Whether this client encrypts the args of jobs of `kind` in `queue`.
    pub(crate) fn seals(&self, kind: &str, queue: &str) -> bool {
        self.config
            .encryption
            .as_ref()
            .is_some_and(|encryption| encryption.applies(kind, queue))
    }

    /// Whether this client shows jobs otherwise than they are stored (it opens sealed values
    /// or redacts), so values read from anywhere but a job row go through [`Client::reveal`].
    pub(crate) fn transforms_jobs(&self) -> bool {
        self.config.encryption.is_some()
            || self.config.redaction.is_some()
            || self.config.hide_callback_urls
    }

    /// A job as this client shows it: sealed args and result opened (left sealed, never
    /// failed, when the key is missing: the envelope names its key id and holds no
    /// plaintext), then redacted if the client redacts.
    pub fn reveal(&self, mut job: JobRow) -> JobRow {
        if let Some(encryption) = &self.config.encryption {
            let tenant = job.tenant.clone();
            if let Ok(args) = encryption.open(
                crate::crypt::Field::Args,
                &job.kind,
                tenant.as_deref(),
                &job.args,
            ) {
                job.args = args;
            }
            if let Some(result) = &job.result {
                if let Ok(result) = encryption.open(
                    crate::crypt::Field::Result,
                    &job.kind,
                    tenant.as_deref(),
                    result,
                ) {
                    job.result = Some(result);
                }
            }
        }
        if let Some(redaction) = &self.config.redaction {
            redaction.redact_job(&mut job);
        }
        // --- stream history ---
        if self.config.hide_callback_urls {
            crate::redact::hide_callback_urls(&mut job);
        }
        job
    }

    /// Opens a claimed job's args for its handler.
    ///
    /// # Errors
    ///
    /// The [`CryptError`](crate::CryptError) if they are sealed and do not open: the caller
    /// snoozes the job (it waits for the key; nothing is lost).
    pub(crate) fn open_claimed(
        &self,
        job: &mut JobRow,
    ) -> std::result::Result<(), crate::crypt::CryptError> {
        if crate::sealed_with(&job.args).is_none() {
            return Ok(());
        }
        let Some(encryption) = &self.config.encryption else {
            return Err(crate::crypt::CryptError::UnknownKey {
                field: "args",
                kid: crate::sealed_with(&job.args).unwrap_or_default(),
            });
        };
        job.args = encryption.open(
            crate::crypt::Field::Args,
            &job.kind,
            job.tenant.as_deref(),
            &job.args,
        )?;
        Ok(())
    }

    /// Seals a handler's result if the job's kind or queue is covered, or its args were
    /// sealed (`args_sealed`): a result often repeats the args.
    pub(crate) fn seal_result(
        &self,
        job: &JobRow,
        args_sealed: bool,
        result: Option<Value>,
    ) -> Option<Value> {
        let result = result?;
        let Some(encryption) = &self.config.encryption else {
            // Without keys nothing can be sealed; a job with sealed args never ran here (it
            // was snoozed), so this is a plain job's result.
            return Some(result);
        };
        if !(args_sealed || encryption.applies(&job.kind, &job.queue)) {
            return Some(result);
        }
        match encryption.seal(
            crate::crypt::Field::Result,
            &job.kind,
            job.tenant.as_deref(),
            &result,
        ) {
            Ok(sealed) => Some(sealed),
            // An empty ring cannot seal: the result is dropped rather than stored in clear.
            Err(err) => {
                tracing::error!(job = %job.id, %err, "cannot seal the result; it is not stored");
                None
            }
        }
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

    /// The args size limit, for the cron methods (issue 15) in `crate::cron`.
    pub(crate) fn args_limit(&self) -> usize {
        self.config.max_args_bytes
    }

    /// Creates or upgrades the store's schema; safe to call from every process at start.
    ///
    /// # Errors
    ///
    /// If a migration fails.
    pub async fn migrate(&self) -> Result<()> {
        Ok(self.store.migrate().await?)
    }

    /// Whether every migration this build knows of has been applied to the store, e.g. to
    /// refuse a database that `migrate` never ran on.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn migrations_current(&self) -> Result<bool> {
        Ok(self.store.migrations_current().await?)
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
        let mut params = self.insert_params(jobs)?;
        self.seal_inserts(&mut params)?;
        let (now, labels) = (params.now, self.history_labels(&params));
        let published = self.event_jobs(&params);
        let publishing = self.config.events.inserting().await;
        let inserted = self.store.job_insert_many(params).await?;
        self.record_enqueued(now, labels, &inserted);
        self.publish_inserted(published, &inserted);
        drop(publishing);
        Ok(inserted)
    }

    /// Enqueues many jobs as [`Client::enqueue_many`] does, and answers with each job as it
    /// is now: the new job, or for a duplicate the existing job its idempotency key matched
    /// (which may be running or finished already).
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`]; [`Error::Conflict`](crate::Error::Conflict) in the rare case
    /// that a matched existing job was deleted before it could be read.
    pub async fn enqueue_many_returning(
        &self,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<Vec<Enqueued>> {
        let params = self.insert_params(jobs)?;
        self.insert_returning(params).await
    }

    /// Enqueues jobs the caller resolved itself, every default applied (as the HTTP API builds
    /// them from its requests), and answers as [`Client::enqueue_many_returning`]. The
    /// client's rules still hold: its tenant scope, the schedule's range, and the args
    /// validation of its registry's handlers.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue_many_returning`].
    pub async fn enqueue_resolved_returning(&self, jobs: Vec<JobInsert>) -> Result<Vec<Enqueued>> {
        let now = self.config.clock.now();
        let registry = self.config.registry.as_deref();
        let jobs = jobs
            .into_iter()
            .map(|mut job| {
                if let Some(handler) = registry.and_then(|registry| registry.get(&job.kind)) {
                    handler.validate(&job.args)?;
                }
                job.tenant = self.tenant_for(job.tenant.take(), "tenant")?;
                if let Some(run_at) = job.run_at {
                    check_run_at(run_at)?;
                }
                Ok(job)
            })
            .collect::<Result<Vec<_>>>()?;
        self.insert_returning(JobInsertParams {
            jobs,
            now,
            max_args_bytes: self.config.max_args_bytes,
        })
        .await
    }

    async fn insert_returning(&self, mut params: JobInsertParams) -> Result<Vec<Enqueued>> {
        self.seal_inserts(&mut params)?;
        let now = params.now;
        // What a new job looks like needs no read: it is `available` at its run time, as the
        // store keeps it (to the microsecond).
        let fresh: Vec<(String, String, DateTime<Utc>)> = params
            .jobs
            .iter()
            .map(|job| {
                (
                    job.kind.clone(),
                    job.queue.clone(),
                    job.run_at.unwrap_or(now).trunc_subsecs(6),
                )
            })
            .collect();
        let labels = self.history_labels(&params);
        let published = self.event_jobs(&params);
        let publishing = self.config.events.inserting().await;
        let inserted = self.store.job_insert_many(params).await?;
        self.record_enqueued(now, labels, &inserted);
        self.publish_inserted(published, &inserted);
        drop(publishing);
        let mut existing: HashMap<JobId, Enqueued> = HashMap::new();
        let mut out = Vec::with_capacity(inserted.len());
        for (job, (kind, queue, run_at)) in inserted.into_iter().zip(fresh) {
            if !job.duplicate {
                out.push(Enqueued {
                    id: job.id,
                    duplicate: false,
                    kind,
                    queue,
                    state: JobState::Available,
                    run_at,
                });
                continue;
            }
            if let Some(seen) = existing.get(&job.id) {
                out.push(seen.clone());
                continue;
            }
            let Some(row) = self.store.job_get(job.id).await? else {
                return Err(Error::Conflict(format!(
                    "job {} matched this idempotency key but was deleted before it could be \
                     read; enqueue again",
                    job.id
                )));
            };
            let view = Enqueued {
                id: row.id,
                duplicate: true,
                kind: row.kind,
                queue: row.queue,
                state: row.state,
                run_at: row.run_at,
            };
            existing.insert(job.id, view.clone());
            out.push(view);
        }
        Ok(out)
    }

    async fn enqueue_one(&self, job: NewJob) -> Result<InsertedJob> {
        let mut inserted = self.enqueue_many([job]).await?;
        Ok(inserted.remove(0))
    }

    fn insert_params(&self, jobs: impl IntoIterator<Item = NewJob>) -> Result<JobInsertParams> {
        let now = self.config.clock.now();
        let jobs = self.resolve(jobs, now)?;
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
        let job = self.store.job_get(id).await?;
        Ok(job
            .filter(|job| self.sees(job.tenant.as_deref()))
            .map(|job| self.reveal(job)))
    }

    /// Lists jobs matching `filter`, newest first, one page at a time.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for a page size outside 1 to 1,000, an invalid
    /// queue or kind name, more than [`FILTER_MAX`] values in a list, or a cursor that is no
    /// job id; [`Error::TenantForbidden`](crate::Error::TenantForbidden) for another tenant than
    /// a scoped client's; a store error.
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
        check_filter_len("states", filter.states.len())?;
        check_filter_len("kinds", filter.kinds.len())?;
        check_filter_len("queues", filter.queues.len())?;
        for queue in &filter.queues {
            validate_queue(queue)?;
        }
        for kind in &filter.kinds {
            validate_kind(kind)?;
        }
        if let Some(before) = filter.before {
            if before.0 < 1 {
                return Err(InvalidInput::new(
                    "before",
                    format!("must be a job id (1 or more), got {before}"),
                )
                .into());
            }
        }
        let tenant = self.tenant_for(filter.tenant.clone(), "tenant")?;
        let jobs = self
            .store
            .job_list(JobListParams {
                states: filter.states.clone(),
                kinds: filter.kinds.clone(),
                queues: filter.queues.clone(),
                tenant,
                before_id: filter.before,
                limit,
            })
            .await?;
        let next = if jobs.len() == limit as usize {
            jobs.last().map(|job| job.id)
        } else {
            None
        };
        let jobs = jobs.into_iter().map(|job| self.reveal(job)).collect();
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
        self.require_visible(id).await?;
        let now = self.config.clock.now();
        let entry = self.audit_entry("job.cancel", Some(format!("job {id}")), None, Some(1));
        let job = self
            .store
            .audited(AuditedAction::JobCancel(JobCancelParams { id, now }), entry)
            .await?
            .job()?;
        self.publish_row(&job, now);
        Ok(job)
    }

    /// Runs a discarded, cancelled or completed job again now, keeping its error history.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no such job.
    pub async fn retry(&self, id: JobId) -> Result<JobRow> {
        self.require_visible(id).await?;
        let now = self.config.clock.now();
        let entry = self.audit_entry("job.retry", Some(format!("job {id}")), None, Some(1));
        let job = self
            .store
            .audited(AuditedAction::JobRetry(JobRetryParams { id, now }), entry)
            .await?
            .job()?;
        self.publish_row(&job, now);
        Ok(job)
    }

    /// Deletes a job that is not running, and returns it as it was.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no such job; [`Error::Conflict`](crate::Error::Conflict) if it is running.
    pub async fn delete(&self, id: JobId) -> Result<JobRow> {
        self.require_visible(id).await?;
        let entry = self.audit_entry("job.delete", Some(format!("job {id}")), None, Some(1));
        Ok(self
            .store
            .audited(AuditedAction::JobDelete(id), entry)
            .await?
            .job()?)
    }

    /// Pauses a queue in every worker process: none fetches from it until it is resumed.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for a bad queue name.
    pub async fn pause(&self, queue: &str) -> Result<()> {
        self.require_every_tenant("queue pause")?;
        let now = self.config.clock.now();
        let target = format!("queue {queue}");
        let queue = queue.to_owned();
        let entry = self.audit_entry("queue.pause", Some(target), None, None);
        Ok(self
            .store
            .audited(AuditedAction::QueuePause(QueueParams { queue, now }), entry)
            .await?
            .done()?)
    }

    /// Resumes a paused queue.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for a bad queue name.
    pub async fn resume(&self, queue: &str) -> Result<()> {
        self.require_every_tenant("queue resume")?;
        let now = self.config.clock.now();
        let target = format!("queue {queue}");
        let queue = queue.to_owned();
        let entry = self.audit_entry("queue.resume", Some(target), None, None);
        Ok(self
            .store
            .audited(
                AuditedAction::QueueResume(QueueParams { queue, now }),
                entry,
            )
            .await?
            .done()?)
    }

    /// Queues with settings (ever paused or resumed). A client scoped to a tenant (issue 17)
    /// gets only the settings of queues holding its tenant's jobs.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn queues(&self) -> Result<Vec<QueueRow>> {
        let rows = self.store.queue_list().await?;
        if self.tenant().is_none() {
            return Ok(rows);
        }
        let stats = self.stats().await?;
        Ok(rows
            .into_iter()
            .filter(|row| stats.queues.contains_key(&row.name))
            .collect())
    }

    /// Job counts by state, per queue, per kind and per tenant, read from the store's counters
    /// (never a count of the jobs). A client scoped to a tenant gets only that tenant's counts.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn stats(&self) -> Result<Stats> {
        let counts = self.store.job_stats().await?;
        Ok(match self.tenant() {
            None => Stats::from_counts(counts),
            Some(own) => Stats::from_counts(
                counts
                    .into_iter()
                    .filter(|count| count.tenant.as_deref() == Some(own)),
            ),
        })
    }

    /// Worker processes, with their heartbeats and counters. A client scoped to a tenant
    /// (issue 17) gets only the workers bound to its tenant (pull workers reserving with its
    /// token, see [`WorkerDetails::tenant`](stoker_core::WorkerDetails::tenant)): a worker
    /// serving every tenant runs other tenants' jobs, so it is not shown. Of the queues such a
    /// worker names, it sees those holding its tenant's jobs, as [`Client::queues`] shows.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>> {
        let rows = self.store.worker_list().await?;
        let Some(own) = self.tenant() else {
            return Ok(rows);
        };
        let mut rows: Vec<WorkerRow> = rows
            .into_iter()
            .filter(|row| {
                row.details
                    .as_ref()
                    .is_some_and(|details| details.tenant.as_deref() == Some(own))
            })
            .collect();
        if !rows.is_empty() {
            let stats = self.stats().await?;
            for row in &mut rows {
                row.queues.retain(|queue| stats.queues.contains_key(queue));
            }
        }
        Ok(rows)
    }

    /// The process running the maintenance services, if one leads.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn leader(&self) -> Result<Option<LeaderRow>> {
        self.require_every_tenant("the leader")?;
        Ok(self.store.leader_get(self.config.clock.now()).await?)
    }

    /// Every queue that has jobs or settings, by name: its jobs by state, whether it is
    /// paused, and the workers serving it with their liveness.
    ///
    /// # Errors
    ///
    /// A store error. A client scoped to a tenant (issue 17) gets only the queues holding its
    /// tenant's jobs, with those jobs' counts only, and only the workers bound to its tenant.
    pub async fn queue_overview(&self) -> Result<Vec<QueueOverview>> {
        let stats = self.stats().await?;
        let rows = self.store.queue_list().await?;
        let workers = self.worker_overview().await?;
        let mut names: BTreeSet<&str> = stats.queues.keys().map(String::as_str).collect();
        if self.tenant().is_none() {
            names.extend(rows.iter().map(|row| row.name.as_str()));
        }
        Ok(names
            .into_iter()
            .map(|name| {
                let row = rows.iter().find(|row| row.name == name);
                QueueOverview {
                    name: name.to_owned(),
                    paused: row.is_some_and(|row| row.paused),
                    updated_at: row.map(|row| row.updated_at),
                    counts: stats.queues.get(name).copied().unwrap_or_default(),
                    workers: workers
                        .iter()
                        .filter(|status| status.worker.queues.iter().any(|queue| queue == name))
                        .map(|status| QueueWorker {
                            id: status.worker.id.clone(),
                            alive: status.alive,
                        })
                        .collect(),
                }
            })
            .collect())
    }

    /// Every worker row, by id, with whether it is alive now (see
    /// [`worker_alive`](crate::worker_alive) and [`Client::with_stale_after`]).
    ///
    /// A client scoped to a tenant gets only the workers bound to it (see [`Client::workers`]).
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn worker_overview(&self) -> Result<Vec<WorkerStatus>> {
        let now = self.config.clock.now();
        let stale_after = self.config.stale_after;
        Ok(self
            .workers()
            .await?
            .into_iter()
            .map(|worker| WorkerStatus {
                alive: worker_alive(worker.heartbeat_at, now, stale_after),
                worker,
            })
            .collect())
    }

    /// Runs finished jobs matching `filter` again now, in batches, each as [`Client::retry`]
    /// would, calling `progress` before the first batch and after each one. Answers how many
    /// were retried and how many matching jobs remain, both counted in the client's scope (a
    /// scoped client's, or the filter's tenant): a later call retries those.
    ///
    /// The retry is bounded by the jobs that matched when it started, so jobs that fail
    /// straight back into a retried state while it runs are not retried again and again.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for no state, a state that is not finished, a
    /// bad queue or kind name, more than [`FILTER_MAX`] values in a list, or a limit or batch
    /// of 0; [`Error::TenantForbidden`](crate::Error::TenantForbidden) for another tenant than a
    /// scoped client's; a store error (jobs retried before it stay retried).
    pub async fn retry_many(
        &self,
        filter: &RetryFilter,
        mut progress: impl FnMut(RetryProgress) + Send,
    ) -> Result<RetryReport> {
        if filter.states.is_empty() {
            return Err(InvalidInput::new(
                "states",
                "name at least one of discarded, cancelled, completed",
            )
            .into());
        }
        check_filter_len("states", filter.states.len())?;
        check_filter_len("queues", filter.queues.len())?;
        check_filter_len("kinds", filter.kinds.len())?;
        if let Some(state) = filter.states.iter().find(|state| !state.is_finished()) {
            return Err(InvalidInput::new(
                "states",
                format!(
                    "{state} jobs cannot be retried in bulk: name discarded, cancelled or completed"
                ),
            )
            .into());
        }
        for queue in &filter.queues {
            validate_queue(queue)?;
        }
        for kind in &filter.kinds {
            validate_kind(kind)?;
        }
        if filter.limit == Some(0) {
            return Err(InvalidInput::new("limit", "must be at least 1").into());
        }
        if filter.batch == 0 {
            return Err(InvalidInput::new("batch", "must be at least 1").into());
        }
        let tenant = self.tenant_for(filter.tenant.clone(), "tenant")?;
        let matching = self
            .count_matching(
                &filter.states,
                &filter.queues,
                &filter.kinds,
                tenant.as_deref(),
            )
            .await?;
        let bound = filter.limit.map_or(matching, |limit| limit.min(matching));
        progress(RetryProgress {
            retried: 0,
            total: bound,
        });
        let states: Vec<String> = filter.states.iter().map(ToString::to_string).collect();
        // Each batch commits with its own audit row, counting what it retried (issue 17).
        let entry = self.audit_entry(
            "job.retry_many",
            None,
            Some(serde_json::json!({
                "states": states,
                "queues": filter.queues,
                "kinds": filter.kinds,
                "tenant": tenant,
                "limit": filter.limit,
            })),
            None,
        );
        let mut retried = 0;
        while retried < bound {
            let limit = (bound - retried).min(u64::from(filter.batch)) as u32;
            let now = self.config.clock.now();
            let params = JobRetryManyParams {
                states: filter.states.clone(),
                queues: filter.queues.clone(),
                kinds: filter.kinds.clone(),
                tenant: tenant.clone(),
                limit,
                now,
            };
            let entry = stoker_core::AuditEntry {
                at: now,
                ..entry.clone()
            };
            let changed = self
                .store
                .audited(AuditedAction::JobRetryMany(params), entry)
                .await?
                .changed()?;
            // --- stream history ---
            // Each retried job, as a single retry publishes it (issue 13, item 7).
            self.config.events.publish_changed(&changed, false, now);
            let count = changed.len() as u64;
            retried += count;
            progress(RetryProgress {
                retried,
                total: bound,
            });
            if count == 0 {
                break;
            }
        }
        Ok(RetryReport {
            retried,
            remaining: matching.saturating_sub(retried),
        })
    }

    /// How many jobs are in `states`, of `queues` and `kinds` (empty means any), and of
    /// `tenant` when given: read from the store's counters, which are kept per tenant.
    async fn count_matching(
        &self,
        states: &[JobState],
        queues: &[String],
        kinds: &[String],
        tenant: Option<&str>,
    ) -> Result<u64> {
        let counts = self.store.job_stats().await?;
        Ok(matching_count(&counts, states, queues, kinds, tenant))
    }
}

// --- stream wf ---
impl<S: ?Sized> Client<S> {
    /// [`Client::resolve`], for the workflow module.
    pub(crate) fn resolve_jobs(
        &self,
        jobs: impl IntoIterator<Item = NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobInsert>> {
        self.resolve(jobs, now)
    }
}

// --- stream wf ---
impl<S: Store + ?Sized> Client<S> {
    /// Whether this client may see data of `tenant`.
    pub(crate) fn sees_tenant(&self, tenant: Option<&str>) -> bool {
        self.sees(tenant)
    }
}

impl<S: ?Sized> Client<S> {
    /// Resolves jobs against their defaults and `now`, then applies the client's rules: its
    /// tenant, and how far ahead or back a job may be scheduled.
    fn resolve(
        &self,
        jobs: impl IntoIterator<Item = NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobInsert>> {
        let registry = self.config.registry.as_deref();
        jobs.into_iter()
            .map(|job| {
                let mut job = job.resolve(now, registry)?;
                job.tenant = self.tenant_for(job.tenant.take(), "tenant")?;
                if let Some(run_at) = job.run_at {
                    check_run_at(run_at)?;
                }
                Ok(job)
            })
            .collect()
    }

    /// The tenant a call acts for: the client's own when it is scoped (a call may name it, or
    /// nothing), else the one `requested`.
    ///
    /// # Errors
    ///
    /// [`Error::TenantForbidden`](crate::Error::TenantForbidden) naming `field` when a scoped
    /// client is asked to act for another tenant.
    pub fn tenant_for(&self, requested: Option<String>, field: &str) -> Result<Option<String>> {
        match (&self.config.tenant, requested) {
            (None, requested) => Ok(requested),
            (Some(own), None) => Ok(Some(own.clone())),
            (Some(own), Some(requested)) if *own == requested => Ok(Some(requested)),
            (Some(own), Some(requested)) => Err(Error::TenantForbidden {
                field: Some(field.to_owned()),
                message: format!(
                    "this client is limited to tenant {own:?} and cannot act for tenant \
                     {requested:?}"
                ),
            }),
        }
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
        let jobs = self.resolve(jobs, now)?;
        let mut params = JobInsertParams {
            jobs,
            now,
            max_args_bytes: self.config.max_args_bytes,
        };
        self.seal_inserts(&mut params)?;
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

/// A job as [`Client::enqueue_many_returning`] answers it: the new job, or the existing one
/// its idempotency key matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The new job's id, or the existing job's for a duplicate.
    pub id: JobId,
    /// True when the idempotency key matched an existing job and nothing was written.
    pub duplicate: bool,
    /// The job's kind.
    pub kind: String,
    /// The queue it waits in.
    pub queue: String,
    /// Its state now: `available` for a new job; anything for a duplicate.
    pub state: JobState,
    /// Not before this instant.
    pub run_at: DateTime<Utc>,
}

/// Which finished jobs [`Client::retry_many`] runs again.
///
/// ```
/// use stoker::{JobState, RetryFilter};
/// let filter = RetryFilter::new().state(JobState::Cancelled).queue("mailers").limit(500);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryFilter {
    /// The finished states to retry (`discarded`, `cancelled`, `completed`); at least one.
    pub states: Vec<JobState>,
    /// Only these queues; empty means any.
    pub queues: Vec<String>,
    /// Only these kinds; empty means any.
    pub kinds: Vec<String>,
    /// Only this tenant's jobs (a scoped client's own tenant in any case).
    pub tenant: Option<String>,
    /// The most jobs this call retries; `None` retries every job that matched when it started.
    pub limit: Option<u64>,
    /// Jobs retried per statement, so no statement holds locks for long. Defaults to 1,000.
    pub batch: u32,
}

impl Default for RetryFilter {
    fn default() -> Self {
        RetryFilter {
            states: Vec::new(),
            queues: Vec::new(),
            kinds: Vec::new(),
            tenant: None,
            limit: None,
            batch: RetryFilter::BATCH_DEFAULT,
        }
    }
}

impl RetryFilter {
    /// Jobs retried per statement unless set.
    pub const BATCH_DEFAULT: u32 = 1000;

    /// Every discarded job (the dead letters), 1,000 per statement.
    pub fn new() -> Self {
        RetryFilter {
            states: vec![JobState::Discarded],
            ..RetryFilter::default()
        }
    }

    /// Adds a state to retry (the first call replaces the default `discarded`).
    pub fn state(mut self, state: JobState) -> Self {
        if self.states == [JobState::Discarded] && state != JobState::Discarded {
            self.states.clear();
        }
        if !self.states.contains(&state) {
            self.states.push(state);
        }
        self
    }

    /// Adds a queue to match.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queues.push(queue.into());
        self
    }

    /// Adds a kind to match.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kinds.push(kind.into());
        self
    }

    /// Only this tenant's jobs.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The most jobs this call retries.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Jobs retried per statement.
    pub fn batch(mut self, batch: u32) -> Self {
        self.batch = batch;
        self
    }
}

/// How far a [`Client::retry_many`] has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryProgress {
    /// Jobs retried so far.
    pub retried: u64,
    /// The most jobs this call will retry: those that matched when it started, up to its
    /// limit.
    pub total: u64,
}

/// What a [`Client::retry_many`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryReport {
    /// Jobs retried.
    pub retried: u64,
    /// Matching jobs not retried by this call (its limit was reached), counted in the same
    /// scope as the retry, as they were when it started.
    pub remaining: u64,
}

/// How many jobs the counts hold in `states`, of `queues` and `kinds` (empty means any), and
/// of `tenant` when given.
fn matching_count(
    counts: &[StateCount],
    states: &[JobState],
    queues: &[String],
    kinds: &[String],
    tenant: Option<&str>,
) -> u64 {
    let total: i64 = counts
        .iter()
        .filter(|count| states.contains(&count.state))
        .filter(|count| queues.is_empty() || queues.contains(&count.queue))
        .filter(|count| kinds.is_empty() || kinds.contains(&count.kind))
        .filter(|count| tenant.is_none() || count.tenant.as_deref() == tenant)
        .map(|count| count.count)
        .sum();
    u64::try_from(total).unwrap_or(0)
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
    /// Due: waiting to run now (`available` and out of the schedule). Jobs still waiting for
    /// their `run_at` are in `scheduled` instead.
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
    // --- stream counts ---
    /// Scheduled: `available` but not yet due (waiting in the schedule for their `run_at`).
    #[serde(default)]
    pub scheduled: i64,
    // --- stream wf ---
    /// Blocked: workflow jobs waiting for their dependencies.
    #[serde(default)]
    pub blocked: i64,
}

impl StateCounts {
    /// The count for `state`; for `available`, due and scheduled jobs together.
    pub fn get(&self, state: JobState) -> i64 {
        match state {
            JobState::Available => self.available + self.scheduled,
            JobState::Running => self.running,
            JobState::Retryable => self.retryable,
            JobState::Completed => self.completed,
            JobState::Discarded => self.discarded,
            JobState::Cancelled => self.cancelled,
            JobState::Blocked => self.blocked,
        }
    }

    /// Adds a store count: `count` jobs in `state`, `scheduled` of them in the schedule.
    fn add(&mut self, state: JobState, count: i64, scheduled: i64) {
        self.scheduled += scheduled;
        let count = count - scheduled;
        let slot = match state {
            JobState::Available => &mut self.available,
            JobState::Running => &mut self.running,
            JobState::Retryable => &mut self.retryable,
            JobState::Completed => &mut self.completed,
            JobState::Discarded => &mut self.discarded,
            JobState::Cancelled => &mut self.cancelled,
            JobState::Blocked => &mut self.blocked,
        };
        *slot += count;
    }

    /// All states together.
    pub fn total(&self) -> i64 {
        JobState::ALL.iter().map(|state| self.get(*state)).sum()
    }
}

/// Job counts by state: overall, per queue, per kind and per tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Every job.
    pub totals: StateCounts,
    /// Per queue, by name.
    pub queues: BTreeMap<String, StateCounts>,
    /// Per kind, by name.
    pub kinds: BTreeMap<String, StateCounts>,
    // --- stream counts ---
    /// Per tenant, by id; jobs without a tenant are in none of them.
    #[serde(default)]
    pub tenants: BTreeMap<String, StateCounts>,
}

impl Stats {
    /// Sums the store's per-(queue, kind, tenant, state) counts.
    pub fn from_counts(counts: impl IntoIterator<Item = StateCount>) -> Self {
        let mut stats = Stats::default();
        for count in counts {
            let (state, n, scheduled) = (count.state, count.count, count.scheduled);
            stats.totals.add(state, n, scheduled);
            stats
                .queues
                .entry(count.queue)
                .or_default()
                .add(state, n, scheduled);
            stats
                .kinds
                .entry(count.kind)
                .or_default()
                .add(state, n, scheduled);
            if let Some(tenant) = count.tenant {
                stats
                    .tenants
                    .entry(tenant)
                    .or_default()
                    .add(state, n, scheduled);
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_tenants_jobs_and_splits_scheduled_from_due() {
        let count = |tenant: Option<&str>, state, count, scheduled| StateCount {
            queue: "q".into(),
            kind: "k".into(),
            state,
            count,
            tenant: tenant.map(str::to_owned),
            scheduled,
        };
        let counts = vec![
            count(None, JobState::Available, 5, 2),
            count(Some("t"), JobState::Available, 3, 3),
            count(Some("t"), JobState::Discarded, 4, 0),
            count(Some("u"), JobState::Discarded, 1, 0),
        ];
        let discarded = [JobState::Discarded];
        assert_eq!(matching_count(&counts, &discarded, &[], &[], Some("t")), 4);
        assert_eq!(matching_count(&counts, &discarded, &[], &[], Some("v")), 0);
        assert_eq!(matching_count(&counts, &discarded, &[], &[], None), 5);
        let stats = Stats::from_counts(counts);
        assert_eq!(stats.totals.available, 3, "due only");
        assert_eq!(stats.totals.scheduled, 5);
        assert_eq!(stats.totals.get(JobState::Available), 8);
        assert_eq!(stats.totals.total(), 13);
        assert_eq!(stats.tenants["t"].scheduled, 3);
        assert_eq!(stats.tenants["t"].available, 0);
        assert_eq!(stats.tenants["u"].discarded, 1);
        assert_eq!(
            stats.tenants.len(),
            2,
            "jobs without a tenant are in no tenant"
        );
    }

    #[test]
    fn counts_the_jobs_the_filters_match() {
        let count = |queue: &str, kind: &str, state, count| StateCount {
            queue: queue.into(),
            kind: kind.into(),
            state,
            count,
            tenant: None,
            scheduled: 0,
        };
        let counts = [
            count("a", "k", JobState::Discarded, 4),
            count("a", "j", JobState::Discarded, 2),
            count("b", "k", JobState::Discarded, 3),
            count("a", "k", JobState::Completed, 9),
        ];
        let discarded = [JobState::Discarded];
        assert_eq!(matching_count(&counts, &discarded, &[], &[], None), 9);
        assert_eq!(
            matching_count(&counts, &discarded, &["a".into()], &[], None),
            6
        );
        assert_eq!(
            matching_count(&counts, &discarded, &["a".into()], &["k".into()], None),
            4
        );
        assert_eq!(
            matching_count(&counts, &discarded, &[], &["k".into()], None),
            7
        );
        assert_eq!(
            matching_count(&counts, &discarded, &["zzz".into()], &[], None),
            0
        );
        let both = [JobState::Discarded, JobState::Completed];
        assert_eq!(matching_count(&counts, &both, &[], &[], None), 18);
    }

    #[test]
    fn schedules_within_the_rfc_3339_years_and_ten_years_of_delay() {
        let now: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        for ok in ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
            assert!(check_run_at(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for far in ["+10000-01-01T00:00:00Z", "-0001-12-31T00:00:00Z"] {
            let far: DateTime<Utc> = far.parse().unwrap();
            assert_eq!(check_run_at(far).unwrap_err().field, "run_at");
        }
        assert!(delayed(now, Duration::from_secs(60), "delay").is_ok());
        assert_eq!(
            delayed(now, Duration::from_secs_f64(1e15), "delay")
                .unwrap_err()
                .field,
            "delay"
        );
        assert!(delayed(now, Duration::MAX, "delay").is_err());
    }
}
