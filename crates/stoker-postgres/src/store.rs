//! [`PgStore`]: the [`Store`] implementation.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::{Connection, Row};
use stoker_core::cron::{
    CronDue, CronFireOutcome, CronFireParams, CronRow, CronRun, CronWriteParams,
};
use stoker_core::{
    Capabilities, FinishedJob, InsertedJob, InvalidInput, JobCancelParams, JobClaimParams,
    JobFinishParams, JobId, JobInsert, JobInsertParams, JobLeaseParams, JobListParams,
    JobProgressParams, JobPruneParams, JobRetryManyParams, JobRetryParams, JobRow, JobStageParams,
    JobState, JobStuckParams, LeaderElectParams, LeaderRow, LeaseExtended, Outcome, QueueParams,
    QueueRow, StateCount, Store, StoreError, StoreEvent, StoreResult, StoreTx,
    WorkerHeartbeatParams, WorkerHeartbeatReply, WorkerRow,
};
use stoker_core::{ErrorKind, FailureRecord};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::builder::{channel_name, PgStoreBuilder};
use crate::coalescer::Coalescer;
use crate::error::store_error;
use crate::listener::Listener;
use crate::row::{finished_row, job_row, leader_row, queue_row, worker_row};
use crate::sql::Sql;
use crate::{failures, migrate};

// Recurring schedules (issue 15).
mod cron;
// --- stream alerts ---
mod alert;
// --- stream tokens ---
mod token;
// --- stream flow ---
mod flow;
// --- stream wf ---
mod workflow;
// --- stream tenancy ---
mod audit;
mod audited;
mod tenancy;
pub(crate) use audit::audit_insert_on;
// --- stream crypt ---
mod sealed;
// --- stream workflows ---
mod batch;
mod children;

/// A [`Store`] on PostgreSQL: any number of worker processes on any number of machines share
/// one database, coordinated by row locks (`FOR UPDATE SKIP LOCKED`), `LISTEN/NOTIFY` and
/// advisory locks.
///
/// Cheap to clone: clones share one pool and one event listener. The listener stops when the
/// last clone is dropped.
///
/// See the [crate docs](crate) for an example and the store's limits.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    schema: String,
    channel: String,
    listen: bool,
    sql: Sql,
    /// History statements (issue 13).
    history: crate::history::HistorySql,
    coalescer: Arc<Coalescer>,
    /// Started by the first `subscribe`.
    listener: Mutex<Option<Listener>>,
    // --- stream flow ---
    /// The limits, cached for a second (issue 16).
    limits: stoker_core::LimitCache,
    // --- stream perf ---
    /// Acknowledgements commit without waiting for the WAL flush (issue 20).
    async_ack_commit: bool,
}

/// The most counter deltas one fold moves: a statement of tens of milliseconds at most. At a
/// drain of 10,000 jobs a second a few thousand deltas a second arrive, so one fold per pruner
/// pass (30 s) or stats read keeps up.
const COUNTS_FOLD_BATCH: i32 = 100_000;

impl PgStore {
    /// Connects with every setting at its default: schema `public`, 10 connections, listening
    /// for events.
    ///
    /// # Errors
    ///
    /// As [`PgStoreBuilder::build`].
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        PgStore::builder(url).build().await
    }

    /// Starts configuring a store that opens its own pool to `url`.
    pub fn builder(url: &str) -> PgStoreBuilder {
        PgStoreBuilder::from_url(url)
    }

    /// Starts configuring a store in `schema` on the application's own pool, so jobs and
    /// application data share its connections. The pool's size is the application's business
    /// ([`PgStoreBuilder::max_connections`] is ignored); the event listener still opens its own
    /// connection, with the pool's connect options.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(pool: sqlx::PgPool) -> stoker_core::StoreResult<()> {
    /// use stoker_postgres::PgStore;
    ///
    /// let store = PgStore::from_pool(pool, "jobs").build().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_pool(pool: PgPool, schema: impl Into<String>) -> PgStoreBuilder {
        PgStoreBuilder::from_pool(pool).schema(schema)
    }

    pub(crate) fn new(pool: PgPool, schema: String, listen: bool, interval: Duration) -> Self {
        let channel = channel_name(&schema);
        PgStore {
            inner: Arc::new(Inner {
                sql: Sql::new(&schema, &channel),
                history: crate::history::HistorySql::new(&schema),
                pool,
                schema,
                channel,
                listen,
                coalescer: Arc::new(Coalescer::new(interval)),
                listener: Mutex::new(None),
                limits: Default::default(),
                async_ack_commit: false,
            }),
        }
    }

    // --- stream perf ---
    /// Sets [`PgStoreBuilder::async_ack_commit`] on a store just built (its `Inner` is not
    /// shared yet).
    pub(crate) fn with_async_ack_commit(mut self, on: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.async_ack_commit = on;
        }
        self
    }

    /// The store's pool, e.g. to begin the transaction for
    /// [`job_insert_many_tx`](StoreTx::job_insert_many_tx).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The channel the store's notifications go to: `stoker_<schema>` (with a hash in place of
    /// the schema name's tail when that would pass 63 bytes).
    pub fn notify_channel(&self) -> &str {
        &self.inner.channel
    }

    fn listener(&self) -> MutexGuard<'_, Option<Listener>> {
        // An Option is consistent whatever panicked while holding the lock.
        self.inner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds the job counters' delta rows into the counters (migration 10), at most
    /// [`COUNTS_FOLD_BATCH`] per call; returns how many it folded.
    pub(crate) async fn job_counts_fold(&self) -> StoreResult<u64> {
        let folded: i64 = sqlx::query_scalar(&self.inner.sql.job_counts_fold)
            .bind(COUNTS_FOLD_BATCH)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(store_error)?;
        row_count("folded", folded)
    }

    /// Before sending a notification: if this store's listener is still starting, waits for it
    /// (bounded), so that a subscriber never misses a notification of its own store's making.
    async fn listener_ready(&self) {
        let ready = self.listener().as_ref().map(Listener::ready);
        if let Some(ready) = ready {
            ready.wait().await;
        }
    }

    /// Runs a one-job update (`$1` the id, `$2` now) that returns the job when it applies; when
    /// it does not (the job's state rules it out), returns the job as it is, or `NotFound`.
    /// Waits for the listener first, since these updates notify.
    async fn update_or_current(
        &self,
        sql: &str,
        id: JobId,
        now: DateTime<Utc>,
    ) -> StoreResult<JobRow> {
        self.listener_ready().await;
        let row = sqlx::query(sql)
            .bind(id.0)
            .bind(now)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(store_error)?;
        match row {
            Some(row) => job_row(&row),
            None => self.fetch_job(id).await?.ok_or_else(|| not_found(id)),
        }
    }

    /// [`Store::job_prune`] on `conn`: statement by statement, or inside the caller's
    /// transaction (an audited clean, issue 17).
    pub(super) async fn job_prune_on(
        &self,
        conn: &mut PgConnection,
        params: JobPruneParams,
    ) -> StoreResult<u64> {
        for rule in &params.queue_rules {
            rule.validate()?;
        }
        if params.limit == 0 {
            return Ok(0);
        }
        // The leader's pruner runs this every interval: it also folds the counters' deltas,
        // so they stay few even when nothing reads the counts.
        self.job_counts_fold().await?;
        let deleted = sqlx::query(&self.inner.sql.job_prune)
            .bind(params.completed_before)
            .bind(params.cancelled_before)
            .bind(params.discarded_before)
            .bind(params.keep_last.map(i64::from))
            .bind(limit(params.limit))
            .execute(&mut *conn)
            .await
            .map_err(store_error)?;
        let mut deleted = deleted.rows_affected();
        // --- stream counts ---
        // Per-queue rules, each bounded by what the call may still delete.
        for rule in &params.queue_rules {
            let state = rule.state.as_str();
            if let Some(before) = rule.finished_before {
                if deleted < u64::from(params.limit) {
                    deleted += sqlx::query(&self.inner.sql.job_prune_queue_age)
                        .bind(&rule.queue)
                        .bind(state)
                        .bind(before)
                        .bind(limit(params.limit - deleted as u32))
                        .execute(&mut *conn)
                        .await
                        .map_err(store_error)?
                        .rows_affected();
                }
            }
            if let Some(keep) = rule.keep_last {
                if deleted < u64::from(params.limit) {
                    deleted += sqlx::query(&self.inner.sql.job_prune_queue_keep)
                        .bind(&rule.queue)
                        .bind(state)
                        .bind(i64::from(keep))
                        .bind(limit(params.limit - deleted as u32))
                        .execute(&mut *conn)
                        .await
                        .map_err(store_error)?
                        .rows_affected();
                }
            }
        }
        Ok(deleted)
    }

    /// Schedules the trailing "jobs available" notification for `queue` after `delay`.
    fn send_trailing(&self, queue: String, delay: Duration) {
        let pool = self.inner.pool.clone();
        let coalescer = Arc::clone(&self.inner.coalescer);
        let sql = self.inner.sql.notify.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            coalescer.sent(&queue, Instant::now());
            let sent = sqlx::query(&sql)
                .bind(format!("a:{queue}"))
                .execute(&pool)
                .await;
            if let Err(err) = sent {
                // Workers find the jobs on their next poll.
                tracing::warn!(queue, error = %err, "could not send a jobs-available notification");
            }
        });
    }

    async fn fetch_job(&self, id: JobId) -> StoreResult<Option<JobRow>> {
        sqlx::query(&self.inner.sql.job_get)
            .bind(id.0)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(store_error)?
            .map(|row| job_row(&row))
            .transpose()
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema)
            .field("channel", &self.inner.channel)
            .field("listen", &self.inner.listen)
            .finish_non_exhaustive()
    }
}

/// The columns of one insert batch, validated, as the arrays the insert statement unnests.
struct InsertBatch {
    kinds: Vec<String>,
    queues: Vec<String>,
    args: Vec<Value>,
    priorities: Vec<i16>,
    max_attempts: Vec<i32>,
    run_ats: Vec<DateTime<Utc>>,
    unique_keys: Vec<Option<String>>,
    tenants: Vec<Option<String>>,
    metadata: Vec<Value>,
    timeouts: Vec<Option<i64>>,
    backoffs: Vec<Option<Value>>,
    now: DateTime<Utc>,
}

impl InsertBatch {
    /// Validates every job (nothing is written if one is invalid) and lays the batch out in
    /// columns.
    fn new(params: JobInsertParams) -> StoreResult<InsertBatch> {
        for job in &params.jobs {
            job.validate(params.max_args_bytes)?;
        }
        let n = params.jobs.len();
        let mut batch = InsertBatch {
            kinds: Vec::with_capacity(n),
            queues: Vec::with_capacity(n),
            args: Vec::with_capacity(n),
            priorities: Vec::with_capacity(n),
            max_attempts: Vec::with_capacity(n),
            run_ats: Vec::with_capacity(n),
            unique_keys: Vec::with_capacity(n),
            tenants: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            timeouts: Vec::with_capacity(n),
            backoffs: Vec::with_capacity(n),
            now: params.now,
        };
        for job in params.jobs {
            let JobInsert {
                kind,
                queue,
                args,
                priority,
                max_attempts,
                run_at,
                unique_key,
                tenant,
                metadata,
                timeout_ms,
                backoff,
            } = job;
            let metadata = serde_json::to_value(&metadata)
                .map_err(|err| InvalidInput::new("metadata", err.to_string()))?;
            batch.kinds.push(kind);
            batch.queues.push(queue);
            batch.args.push(args);
            batch.priorities.push(priority.0);
            batch.max_attempts.push(max_attempts);
            batch.run_ats.push(run_at.unwrap_or(params.now));
            batch.unique_keys.push(unique_key);
            batch.tenants.push(tenant);
            batch.metadata.push(metadata);
            batch.timeouts.push(timeout_ms);
            batch.backoffs.push(
                backoff
                    .map(serde_json::to_value)
                    .transpose()
                    .map_err(|err| InvalidInput::new("backoff", err.to_string()))?,
            );
        }
        Ok(batch)
    }

    fn len(&self) -> usize {
        self.kinds.len()
    }

    /// The distinct queues of the batch, in first-seen order.
    fn distinct_queues(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.queues
            .iter()
            .filter(|queue| seen.insert(queue.as_str()))
            .cloned()
            .collect()
    }

    /// The idempotency key of job `i` with its tenant, `""` standing for "no tenant" as in the
    /// unique index.
    fn key(&self, i: usize) -> Option<(&str, &str)> {
        let key = self.unique_keys[i].as_deref()?;
        Some((self.tenants[i].as_deref().unwrap_or(""), key))
    }

    /// `sql` (one of the insert statements) with the batch bound to it.
    fn bind<'q>(
        &'q self,
        sql: &'q str,
        leading: &'q [String],
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(sql)
            .bind(&self.kinds)
            .bind(&self.queues)
            .bind(&self.args)
            .bind(&self.priorities)
            .bind(&self.max_attempts)
            .bind(&self.run_ats)
            .bind(&self.unique_keys)
            .bind(&self.tenants)
            .bind(&self.metadata)
            .bind(&self.timeouts)
            .bind(self.now)
            .bind(leading)
            .bind(&self.backoffs)
    }

    /// Inserts the batch on `conn` in one statement (two when a duplicate's existing row
    /// committed while the statement ran), notifying the `leading` queues that get new jobs
    /// inside it. Returns one result per job, in order.
    async fn insert(
        &self,
        conn: &mut PgConnection,
        sql: &Sql,
        leading: &[String],
    ) -> StoreResult<(Vec<InsertedJob>, Vec<bool>)> {
        let n = self.len();
        // The id of each job inserted, in input order; `None` for a duplicate.
        let inserted_ids: Vec<Option<i64>> = match self.unique_keys.as_slice() {
            [key] => {
                let one = if key.is_some() {
                    &sql.job_insert_one_keyed
                } else {
                    &sql.job_insert_one
                };
                let row = self
                    .bind(one, leading)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(store_error)?;
                vec![row
                    .map(|row| row.try_get::<i64, _>("id"))
                    .transpose()
                    .map_err(store_error)?]
            }
            _ => {
                let keyless = self.unique_keys.iter().all(Option::is_none);
                let statement = if keyless {
                    &sql.job_insert_keyless
                } else {
                    &sql.job_insert
                };
                let row = self
                    .bind(statement, leading)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(store_error)?;
                // Every input job's id: in input order from the batch statement, in ascending
                // order (the order they were drawn in, input order) from the keyless one.
                let mut ids: Vec<i64> = row.try_get("ids").map_err(store_error)?;
                if ids.len() != n {
                    return Err(StoreError::Corrupt(format!(
                        "inserting {n} jobs returned {} ids",
                        ids.len()
                    )));
                }
                if keyless {
                    ids.sort_unstable();
                    ids.into_iter().map(Some).collect()
                } else {
                    // The ids actually inserted; the others are duplicates.
                    let returned: HashSet<i64> = row
                        .try_get::<Option<Vec<i64>>, _>("inserted")
                        .map_err(store_error)?
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                    ids.into_iter()
                        .map(|id| returned.contains(&id).then_some(id))
                        .collect()
                }
            }
        };

        // First pass: the id each key got within this batch.
        let mut batch_ids: HashMap<(&str, &str), i64> = HashMap::new();
        for (i, id) in inserted_ids.iter().enumerate() {
            if let (Some(id), Some(key)) = (id, self.key(i)) {
                batch_ids.insert(key, *id);
            }
        }

        // Second pass: the id of each job, or of the job each duplicate matched within the
        // batch; duplicates of earlier jobs are looked up below.
        let mut results: Vec<Option<InsertedJob>> = Vec::with_capacity(n);
        let mut unresolved = Vec::new();
        for (i, id) in inserted_ids.iter().enumerate() {
            let result = if let Some(id) = *id {
                Some(InsertedJob {
                    id: JobId(id),
                    duplicate: false,
                })
            } else {
                let key = self.key(i).ok_or_else(|| {
                    StoreError::Corrupt("a job without a unique key was not inserted".into())
                })?;
                batch_ids.get(&key).copied().map(|id| InsertedJob {
                    id: JobId(id),
                    duplicate: true,
                })
            };
            if result.is_none() {
                unresolved.push(i);
            }
            results.push(result);
        }

        if !unresolved.is_empty() {
            // The jobs these collided with were there before the statement, or committed while
            // it ran (a concurrent insert of the same key, which the statement waited for): a
            // new statement sees them all.
            let (tenants, keys): (Vec<&str>, Vec<&str>) =
                unresolved.iter().filter_map(|&i| self.key(i)).unzip();
            let found = sqlx::query(&sql.job_insert_resolve)
                .bind(&tenants)
                .bind(&keys)
                .fetch_all(&mut *conn)
                .await
                .map_err(store_error)?;
            let mut existing: HashMap<(String, String), i64> = HashMap::new();
            for row in &found {
                existing.insert(
                    (
                        row.try_get("tenant").map_err(store_error)?,
                        row.try_get("unique_key").map_err(store_error)?,
                    ),
                    row.try_get("id").map_err(store_error)?,
                );
            }
            for i in unresolved {
                let (tenant, key) = self.key(i).unwrap_or_default();
                let id = existing
                    .get(&(tenant.to_owned(), key.to_owned()))
                    .ok_or_else(|| StoreError::Busy {
                        message: format!(
                            "the job holding unique key {key:?} was deleted while this insert \
                             ran; retry"
                        ),
                        source: None,
                    })?;
                results[i] = Some(InsertedJob {
                    id: JobId(*id),
                    duplicate: true,
                });
            }
        }

        let results = results.into_iter().flatten().collect::<Vec<_>>();
        if results.len() != n {
            return Err(StoreError::Corrupt(
                "an inserted job has no result".to_owned(),
            ));
        }
        Ok((results, inserted_ids.iter().map(Option::is_some).collect()))
    }
}

/// The columns of one finish batch, as the arrays the finish statement unnests.
#[derive(Default)]
struct FinishBatch {
    ids: Vec<i64>,
    fences: Vec<i64>,
    states: Vec<&'static str>,
    results: Vec<Option<Value>>,
    run_ats: Vec<Option<DateTime<Utc>>>,
    errors: Vec<Option<Value>>,
}

impl FinishBatch {
    fn new(params: &JobFinishParams) -> StoreResult<FinishBatch> {
        let mut batch = FinishBatch::default();
        for finish in &params.finishes {
            // The outcome's own target state; the statement applies the cancel-requested rule.
            let (state, result, run_at, error) = match &finish.outcome {
                Outcome::Completed { result } => ("completed", result.clone(), None, None),
                Outcome::Retry { error, run_at } => ("retryable", None, Some(*run_at), Some(error)),
                Outcome::Discard { error } => ("discarded", None, None, Some(error)),
                Outcome::Snooze { run_at } => ("available", None, Some(*run_at), None),
                Outcome::Cancel { error } => ("cancelled", None, None, error.as_ref()),
                Outcome::HandBack => ("available", None, None, None),
                other => {
                    return Err(InvalidInput::new(
                        "outcome",
                        format!("{other:?} is not supported by the PostgreSQL store"),
                    )
                    .into())
                }
            };
            let error = error
                .map(serde_json::to_value)
                .transpose()
                .map_err(|err| InvalidInput::new("error", err.to_string()))?;
            batch.ids.push(finish.id.0);
            batch.fences.push(finish.fence);
            batch.states.push(state);
            batch.results.push(result);
            batch.run_ats.push(run_at);
            batch.errors.push(error);
        }
        Ok(batch)
    }
}

/// A limit as SQL wants it.
fn limit(limit: u32) -> i64 {
    i64::from(limit)
}

/// `None` for an empty filter list, so the statement can skip the filter.
fn filter<T: ToString>(values: &[T]) -> Option<Vec<String>> {
    (!values.is_empty()).then(|| values.iter().map(ToString::to_string).collect())
}

/// A counter delta as SQL wants it.
fn delta(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn not_found(id: JobId) -> StoreError {
    StoreError::NotFound(format!("job {id}"))
}

/// When a lease of `lease` taken at `now` ends.
///
/// # Errors
///
/// `Invalid` naming `lease` if the end is past the last instant a time can hold.
fn lease_end(now: DateTime<Utc>, lease: Duration) -> StoreResult<DateTime<Utc>> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .ok_or_else(|| InvalidInput::new("lease", format!("{lease:?} is too long")).into())
}

/// Checks the states of a bulk retry: at least one, and only finished ones.
///
/// # Errors
///
/// `Invalid` naming `states`.
fn validate_retry_states(states: &[JobState]) -> StoreResult<()> {
    if states.is_empty() {
        return Err(InvalidInput::new(
            "states",
            "name at least one finished state (completed, discarded, cancelled)",
        )
        .into());
    }
    if let Some(state) = states.iter().find(|state| !state.is_finished()) {
        return Err(InvalidInput::new(
            "states",
            format!(
                "{state} is not a finished state: only completed, discarded and cancelled jobs \
                 can be retried in bulk"
            ),
        )
        .into());
    }
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        if self.inner.listen {
            Capabilities::SHARED
        } else {
            Capabilities::LOCAL
        }
    }

    async fn migrate(&self) -> StoreResult<()> {
        migrate::migrate(&self.inner.pool, &self.inner.schema).await
    }

    async fn migrations_current(&self) -> StoreResult<bool> {
        migrate::current(&self.inner.pool, &self.inner.sql.migrations_applied).await
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        if !self.inner.listen {
            return None;
        }
        let mut listener = self.listener();
        if let Some(listener) = listener.as_ref() {
            return Some(listener.subscribe());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("PgStore::subscribe called outside a Tokio runtime; no events");
            return None;
        };
        let mut options = (*self.inner.pool.connect_options()).clone();
        options = options.application_name(&format!("stoker-listener {}", self.inner.schema));
        let started = Listener::start(&runtime, options, self.inner.channel.clone());
        let receiver = started.subscribe();
        *listener = Some(started);
        Some(receiver)
    }

    async fn job_cancel(&self, params: JobCancelParams) -> StoreResult<JobRow> {
        // No row updated: finished (returned unchanged) or missing.
        self.update_or_current(&self.inner.sql.job_cancel, params.id, params.now)
            .await
    }

    async fn job_claim(&self, params: JobClaimParams) -> StoreResult<Vec<JobRow>> {
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        let lease_end = params
            .lease
            .map(|lease| lease_end(params.now, lease))
            .transpose()?;
        // Flow control (issue 16): a queue some limit applies to takes the limited claim.
        if let Some(limits) = self.flow_limits_for(&params.queue).await? {
            return self.flow_claim(&params, lease_end, limits, None).await;
        }
        let query = if params.kinds.is_empty() {
            sqlx::query(&self.inner.sql.job_claim)
        } else {
            sqlx::query(&self.inner.sql.job_claim_kinds)
        }
        .bind(params.now)
        .bind(&params.worker_id)
        .bind(&params.queue)
        .bind(limit(params.limit))
        .bind(lease_end);
        let query = if params.kinds.is_empty() {
            query
        } else {
            query.bind(&params.kinds)
        };
        let rows = query
            .fetch_all(&self.inner.pool)
            .await
            .map_err(store_error)?;
        let mut jobs = rows.iter().map(job_row).collect::<StoreResult<Vec<_>>>()?;
        // RETURNING order is unspecified: restore the fetch order.
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }

    async fn job_delete(&self, id: JobId) -> StoreResult<JobRow> {
        // Twice at most: a job that stops running between the delete and the check is
        // deleted on the second try.
        for _ in 0..2 {
            let deleted = sqlx::query(&self.inner.sql.job_delete)
                .bind(id.0)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(store_error)?;
            if let Some(row) = deleted {
                return job_row(&row);
            }
            match self.fetch_job(id).await? {
                None => return Err(not_found(id)),
                Some(job) if job.state == JobState::Running => break,
                Some(_) => {
                    // --- stream workflows ---
                    if let Some(reason) = self.delete_refusal(id).await? {
                        return Err(StoreError::Conflict(reason));
                    }
                    continue;
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "job {id} is running: cancel it first"
        )))
    }

    async fn job_finish_many(&self, params: JobFinishParams) -> StoreResult<Vec<FinishedJob>> {
        if params.finishes.is_empty() {
            return Ok(Vec::new());
        }
        let batch = FinishBatch::new(&params)?;
        let finish = if self.inner.async_ack_commit {
            &self.inner.sql.job_finish_async
        } else {
            &self.inner.sql.job_finish
        };
        let query = sqlx::query(finish)
            .bind(&batch.ids)
            .bind(&batch.fences)
            .bind(&batch.states)
            .bind(&batch.results)
            .bind(&batch.run_ats)
            .bind(&batch.errors)
            .bind(params.now)
            .bind(params.rescue);
        // Failed attempts (issue 13): recorded in their groups in the same transaction. A
        // batch of completions alone stays the one statement it always was.
        let failed: HashMap<i64, (ErrorKind, &str)> = params
            .finishes
            .iter()
            .filter_map(|finish| match &finish.outcome {
                Outcome::Retry { error, .. } | Outcome::Discard { error } => {
                    Some((finish.id.0, (error.kind, error.message.as_str())))
                }
                _ => None,
            })
            .collect();
        let rows = if failed.is_empty() {
            query
                .fetch_all(&self.inner.pool)
                .await
                .map_err(store_error)?
        } else {
            let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
            let rows = query.fetch_all(&mut *tx).await.map_err(store_error)?;
            let mut records = Vec::new();
            for row in &rows {
                let job = finished_row(row)?;
                if let Some((kind, message)) = failed.get(&job.id.0) {
                    // Its tenant's own group (issue 17).
                    records.push(
                        FailureRecord::new(job.id, &job.kind, *kind, message)
                            .of_tenant(job.tenant.as_deref()),
                    );
                }
            }
            failures::record_failures(&mut tx, &self.inner.schema, &records, params.now).await?;
            tx.commit().await.map_err(store_error)?;
            rows
        };
        let mut applied = HashMap::with_capacity(rows.len());
        for row in &rows {
            let job = finished_row(row)?;
            applied.insert(job.id, job);
        }
        // In input order.
        Ok(batch
            .ids
            .iter()
            .filter_map(|&id| applied.remove(&JobId(id)))
            .collect())
    }

    async fn job_get(&self, id: JobId) -> StoreResult<Option<JobRow>> {
        self.fetch_job(id).await
    }

    async fn job_insert_many(&self, params: JobInsertParams) -> StoreResult<Vec<InsertedJob>> {
        // Enqueue quotas (issue 16, item 4) are taken in the insert's transaction.
        let quotas = self.flow_quota_demand(&params.jobs).await?;
        // --- stream flow ---
        // Tenants of fair queues are marked ready in the same transaction (issue 16).
        let fair_marks = self.flow_fair_marks(&params.jobs).await?;
        let batch = InsertBatch::new(params)?;
        if batch.len() == 0 {
            return Ok(Vec::new());
        }
        self.listener_ready().await;
        let queues = batch.distinct_queues();
        let coalescer = &self.inner.coalescer;
        let started = Instant::now();
        let (leading, trailing): (Vec<String>, Vec<String>) = queues
            .into_iter()
            .partition(|queue| coalescer.lead(queue, started));
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let (results, inserted) = if quotas.is_empty() && fair_marks.is_empty() {
            batch.insert(&mut conn, &self.inner.sql, &leading).await?
        } else {
            let mut tx = conn.begin().await.map_err(store_error)?;
            if !quotas.is_empty() {
                flow::flow_quota_take(&mut tx, &self.inner.schema, &quotas, batch.now).await?;
            }
            self.flow_fair_mark(&mut tx, &fair_marks).await?;
            let done = batch.insert(&mut tx, &self.inner.sql, &leading).await?;
            tx.commit().await.map_err(store_error)?;
            done
        };
        drop(conn);
        // Committed: queues that got jobs without a notification of their own get a trailing
        // one, sent after this commit.
        let committed = Instant::now();
        for queue in trailing {
            let got_jobs = batch
                .queues
                .iter()
                .zip(&inserted)
                .any(|(job_queue, &inserted)| inserted && *job_queue == queue);
            if got_jobs {
                if let Some(delay) = coalescer.trail(&queue, committed) {
                    self.send_trailing(queue, delay);
                }
            }
        }
        Ok(results)
    }

    async fn job_list(&self, params: JobListParams) -> StoreResult<Vec<JobRow>> {
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        let states: Vec<&str> = params.states.iter().map(|state| state.as_str()).collect();
        let query = if states.is_empty() {
            sqlx::query(&self.inner.sql.job_list)
        } else {
            sqlx::query(&self.inner.sql.job_list_states)
        };
        let rows = query
            .bind(filter(&states))
            .bind(filter(&params.kinds))
            .bind(filter(&params.queues))
            .bind(&params.tenant)
            .bind(params.before_id.map(|id| id.0))
            .bind(limit(params.limit))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(job_row).collect()
    }

    async fn job_extend_lease(&self, params: JobLeaseParams) -> StoreResult<Option<LeaseExtended>> {
        let expires_at = lease_end(params.now, params.lease)?;
        let row: Option<(DateTime<Utc>, bool, Option<String>)> =
            sqlx::query_as(&self.inner.sql.job_extend_lease)
                .bind(params.id.0)
                .bind(params.fence)
                .bind(expires_at)
                .bind(params.now)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(store_error)?;
        Ok(
            row.map(|(expires_at, cancel_requested, worker_id)| LeaseExtended {
                expires_at,
                cancel_requested,
                worker_id,
            }),
        )
    }

    async fn job_list_stuck(&self, params: JobStuckParams) -> StoreResult<Vec<JobRow>> {
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&self.inner.sql.job_list_stuck)
            .bind(params.stale_before)
            .bind(params.now)
            .bind(limit(params.limit))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(job_row).collect()
    }

    async fn job_progress(&self, params: JobProgressParams) -> StoreResult<bool> {
        params.validate()?;
        let progress = serde_json::to_value(params.to_progress())
            .map_err(|err| InvalidInput::new("progress", err.to_string()))?;
        let updated = sqlx::query(&self.inner.sql.job_progress)
            .bind(params.id.0)
            .bind(params.fence)
            .bind(progress)
            .bind(params.now)
            .execute(&self.inner.pool)
            .await
            .map_err(store_error)?;
        Ok(updated.rows_affected() > 0)
    }

    async fn job_prune(&self, params: JobPruneParams) -> StoreResult<u64> {
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        self.job_prune_on(&mut conn, params).await
    }

    async fn job_retry(&self, params: JobRetryParams) -> StoreResult<JobRow> {
        // No row updated: running (returned unchanged) or missing.
        self.update_or_current(&self.inner.sql.job_retry, params.id, params.now)
            .await
    }

    async fn job_retry_many_jobs(
        &self,
        params: JobRetryManyParams,
    ) -> StoreResult<Vec<stoker_core::ChangedJob>> {
        validate_retry_states(&params.states)?;
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        let states: Vec<&str> = params.states.iter().map(|state| state.as_str()).collect();
        self.listener_ready().await;
        // Each row carries the count of queues notified, which makes the statement run the
        // notifications (a CTE that nothing reads would not run).
        #[allow(clippy::type_complexity)]
        let retried: Vec<(
            i64,
            String,
            String,
            Option<String>,
            i32,
            Option<String>,
            i64,
        )> = sqlx::query_as(&self.inner.sql.job_retry_many)
            .bind(&states)
            .bind(filter(&params.queues))
            .bind(filter(&params.kinds))
            .bind(&params.tenant)
            .bind(limit(params.limit))
            .bind(params.now)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(store_error)?;
        Ok(retried
            .into_iter()
            .map(
                |(id, queue, kind, tenant, attempt, correlation_id, _)| stoker_core::ChangedJob {
                    id: JobId(id),
                    state: JobState::Available,
                    queue,
                    kind,
                    tenant,
                    attempt,
                    correlation_id,
                },
            )
            .collect())
    }

    async fn job_stage(&self, params: JobStageParams) -> StoreResult<u64> {
        if params.limit == 0 {
            return Ok(0);
        }
        self.listener_ready().await;
        let staged: i64 = sqlx::query_scalar(&self.inner.sql.job_stage)
            .bind(params.now)
            .bind(limit(params.limit))
            .fetch_one(&self.inner.pool)
            .await
            .map_err(store_error)?;
        row_count("staged", staged)
    }

    async fn job_stats(&self) -> StoreResult<Vec<StateCount>> {
        // Folding first keeps the read short; the read is exact without it.
        self.job_counts_fold().await?;
        let rows = sqlx::query(&self.inner.sql.job_stats)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(state_count).collect()
    }

    async fn leader_get(&self, now: DateTime<Utc>) -> StoreResult<Option<LeaderRow>> {
        sqlx::query(&self.inner.sql.leader_get)
            .bind(now)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(store_error)?
            .map(|row| leader_row(&row))
            .transpose()
    }

    async fn leader_attempt_elect(&self, params: LeaderElectParams) -> StoreResult<bool> {
        let expires_at = chrono::Duration::from_std(params.ttl)
            .ok()
            .and_then(|ttl| params.now.checked_add_signed(ttl))
            .ok_or_else(|| InvalidInput::new("ttl", format!("{:?} is too long", params.ttl)))?;
        let elected = sqlx::query(&self.inner.sql.leader_elect)
            .bind(&params.leader_id)
            .bind(params.now)
            .bind(expires_at)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(store_error)?;
        Ok(elected.is_some())
    }

    async fn leader_resign(&self, leader_id: &str) -> StoreResult<()> {
        sqlx::query(&self.inner.sql.leader_resign)
            .bind(leader_id)
            .execute(&self.inner.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn queue_list(&self) -> StoreResult<Vec<QueueRow>> {
        let rows = sqlx::query(&self.inner.sql.queue_list)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(queue_row).collect()
    }

    async fn queue_pause(&self, params: QueueParams) -> StoreResult<()> {
        stoker_core::validate_queue(&params.queue)?;
        sqlx::query(&self.inner.sql.queue_pause)
            .bind(&params.queue)
            .bind(params.now)
            .execute(&self.inner.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn queue_resume(&self, params: QueueParams) -> StoreResult<()> {
        stoker_core::validate_queue(&params.queue)?;
        self.listener_ready().await;
        sqlx::query(&self.inner.sql.queue_resume)
            .bind(&params.queue)
            .bind(params.now)
            .execute(&self.inner.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn worker_heartbeat(
        &self,
        params: WorkerHeartbeatParams,
    ) -> StoreResult<WorkerHeartbeatReply> {
        let running: Vec<i64> = params.running.iter().map(|id| id.0).collect();
        let rows: Vec<(String, Option<i64>, Option<String>)> =
            sqlx::query_as(&self.inner.sql.worker_heartbeat)
                .bind(&params.id)
                .bind(&params.host)
                .bind(i64::from(params.pid))
                .bind(&params.queues)
                .bind(i64::from(params.concurrency))
                .bind(params.started_at)
                .bind(params.now)
                .bind(delta(params.done_delta))
                .bind(delta(params.failed_delta))
                .bind(&running)
                .bind(sqlx::types::Json(stoker_core::WorkerDetails {
                    running: params.running.clone(),
                    ..params.details.clone()
                }))
                .fetch_all(&self.inner.pool)
                .await
                .map_err(store_error)?;
        let mut reply = WorkerHeartbeatReply::default();
        for (what, id, queue) in rows {
            match (what.as_str(), id, queue) {
                ("cancel", Some(id), _) => reply.cancel_requested.push(JobId(id)),
                ("due", _, Some(queue)) => reply.due_queues.push(queue),
                ("vacant", _, _) => reply.leader_vacant = true,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "unexpected heartbeat reply row {other:?}"
                    )))
                }
            }
        }
        Ok(reply)
    }

    async fn worker_list(&self) -> StoreResult<Vec<WorkerRow>> {
        let rows = sqlx::query(&self.inner.sql.worker_list)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(worker_row).collect()
    }

    async fn worker_prune(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let deleted = sqlx::query(&self.inner.sql.worker_prune)
            .bind(before)
            .execute(&self.inner.pool)
            .await
            .map_err(store_error)?;
        Ok(deleted.rows_affected())
    }

    async fn worker_remove(&self, id: &str) -> StoreResult<()> {
        sqlx::query(&self.inner.sql.worker_remove)
            .bind(id)
            .execute(&self.inner.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    // Recurring schedules (issue 15): the statements live in `store/cron.rs`.

    async fn cron_write(&self, params: CronWriteParams) -> StoreResult<CronRow> {
        self.cron_write_impl(params, None).await
    }

    async fn cron_get(&self, name: &str) -> StoreResult<Option<CronRow>> {
        self.cron_get_impl(name).await
    }

    async fn cron_list(&self) -> StoreResult<Vec<CronRow>> {
        self.cron_list_impl().await
    }

    async fn cron_delete(&self, name: &str) -> StoreResult<CronRow> {
        self.cron_delete_impl(name, None).await
    }

    async fn cron_due(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<CronDue> {
        self.cron_due_impl(now, limit).await
    }

    async fn cron_fire(&self, params: CronFireParams) -> StoreResult<CronFireOutcome> {
        self.cron_fire_impl(params, None).await
    }

    async fn cron_history(&self, name: &str, limit: u32) -> StoreResult<Vec<CronRun>> {
        self.cron_history_impl(name, limit).await
    }

    // --- Failure groups, bulk operations and job logs (issue 13): see `crate::failures`. ---

    async fn failure_group_list(
        &self,
        params: stoker_core::FailureGroupListParams,
    ) -> StoreResult<Vec<stoker_core::FailureGroup>> {
        failures::group_list(&self.inner.pool, &self.inner.schema, &params).await
    }

    async fn failure_group_get(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<stoker_core::FailureGroup>> {
        failures::group_get(&self.inner.pool, &self.inner.schema, fingerprint).await
    }

    async fn bulk_op_create(
        &self,
        params: stoker_core::BulkOpCreateParams,
    ) -> StoreResult<stoker_core::BulkOpRow> {
        failures::op_create(&self.inner.pool, &self.inner.schema, &params, None).await
    }

    async fn bulk_op_get(&self, id: i64) -> StoreResult<Option<stoker_core::BulkOpRow>> {
        failures::op_get(&self.inner.pool, &self.inner.schema, id).await
    }

    async fn bulk_op_list(
        &self,
        params: stoker_core::BulkOpListParams,
    ) -> StoreResult<Vec<stoker_core::BulkOpRow>> {
        failures::op_list(&self.inner.pool, &self.inner.schema, &params).await
    }

    async fn bulk_op_abort(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<stoker_core::BulkOpRow> {
        failures::op_abort(&self.inner.pool, &self.inner.schema, id, now, None).await
    }

    async fn bulk_op_step_jobs(
        &self,
        params: stoker_core::BulkOpStepParams,
    ) -> StoreResult<Option<stoker_core::BulkOpStep>> {
        failures::op_step(
            &self.inner.pool,
            &self.inner.schema,
            &self.inner.channel,
            &params,
        )
        .await
    }

    async fn job_log_append(
        &self,
        params: stoker_core::JobLogParams,
    ) -> StoreResult<Option<stoker_core::JobLogAppended>> {
        failures::log_append(&self.inner.pool, &self.inner.schema, &params).await
    }

    async fn job_logs(&self, id: JobId) -> StoreResult<Vec<stoker_core::JobLogLine>> {
        failures::logs(&self.inner.pool, &self.inner.schema, id).await
    }

    // --- History (issue 13) ---

    async fn history_record(&self, params: stoker_core::HistoryRecordParams) -> StoreResult<()> {
        self.inner
            .history
            .record(&self.inner.pool, &params.deltas)
            .await
    }

    async fn history_query(
        &self,
        params: stoker_core::HistoryQueryParams,
    ) -> StoreResult<Vec<stoker_core::HistoryValue>> {
        self.inner.history.query(&self.inner.pool, &params).await
    }

    async fn history_rollup(
        &self,
        params: stoker_core::HistoryRollupParams,
    ) -> StoreResult<stoker_core::HistoryRollupReport> {
        self.inner.history.rollup(&self.inner.pool, &params).await
    }

    async fn queue_depths(&self) -> StoreResult<Vec<stoker_core::QueueDepth>> {
        // --- stream dash ---
        // The depths are sums of the counters (migration 21): folding first keeps the read
        // short, as for `job_stats`; the read is exact without it.
        self.job_counts_fold().await?;
        self.inner.history.depths(&self.inner.pool).await
    }

    // --- stream alerts ---

    async fn alert_write(
        &self,
        params: stoker_core::alert::AlertWriteParams,
    ) -> StoreResult<stoker_core::alert::AlertRow> {
        self.alert_write_impl(params, None).await
    }

    async fn alert_get(&self, name: &str) -> StoreResult<Option<stoker_core::alert::AlertRow>> {
        self.alert_get_impl(name).await
    }

    async fn alert_list(&self) -> StoreResult<Vec<stoker_core::alert::AlertRow>> {
        self.alert_list_impl().await
    }

    async fn alert_delete(&self, name: &str) -> StoreResult<stoker_core::alert::AlertRow> {
        self.alert_delete_impl(name, None).await
    }

    async fn alert_transition(
        &self,
        params: stoker_core::alert::AlertTransitionParams,
    ) -> StoreResult<Option<stoker_core::alert::AlertRow>> {
        self.alert_transition_impl(params).await
    }

    async fn alert_events(
        &self,
        name: &str,
        limit: u32,
    ) -> StoreResult<Vec<stoker_core::alert::AlertEvent>> {
        self.alert_events_impl(name, limit).await
    }

    // --- stream search ---

    async fn job_search(
        &self,
        params: stoker_core::JobSearchParams,
    ) -> StoreResult<stoker_core::JobSearchPage> {
        crate::search::search(&self.inner.pool, &self.inner.schema, &params).await
    }

    async fn job_count(
        &self,
        criteria: stoker_core::JobCriteria,
    ) -> StoreResult<stoker_core::JobCount> {
        crate::search::count(&self.inner.pool, &self.inner.schema, &criteria).await
    }

    // --- stream tokens ---

    async fn token_create(
        &self,
        params: stoker_core::TokenCreateParams,
    ) -> StoreResult<stoker_core::TokenRow> {
        self.token_create_impl(params, None).await
    }

    async fn token_get(&self, id: &str) -> StoreResult<Option<stoker_core::TokenRow>> {
        self.token_get_impl(id).await
    }

    async fn token_list(&self) -> StoreResult<Vec<stoker_core::TokenRow>> {
        self.token_list_impl().await
    }

    async fn token_revoke(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<stoker_core::TokenRow> {
        self.token_revoke_impl(id, now, None).await
    }

    async fn token_touch(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        self.token_touch_impl(id, now).await
    }

    // --- stream flow ---
    async fn limit_set(
        &self,
        params: stoker_core::LimitSetParams,
    ) -> StoreResult<stoker_core::LimitRow> {
        self.limit_set_impl(params, None).await
    }

    async fn limit_list(&self) -> StoreResult<Vec<stoker_core::LimitRow>> {
        self.limit_list_impl().await
    }

    async fn limit_delete(&self, name: &str) -> StoreResult<stoker_core::LimitRow> {
        self.limit_delete_impl(name, None).await
    }

    async fn limit_usage(&self, now: DateTime<Utc>) -> StoreResult<Vec<stoker_core::LimitUsage>> {
        self.limit_usage_impl(now).await
    }

    async fn limit_push_back(&self, params: stoker_core::LimitPushBackParams) -> StoreResult<()> {
        self.limit_push_back_impl(params).await
    }

    async fn limit_reconcile(&self) -> StoreResult<u64> {
        self.limit_reconcile_impl().await
    }

    fn limit_wake_at(&self, queue: &str) -> Option<DateTime<Utc>> {
        self.inner.limits.wake_at(queue)
    }

    // --- stream wf ---

    async fn workflow_insert(
        &self,
        params: stoker_core::WorkflowInsertParams,
    ) -> StoreResult<stoker_core::WorkflowInserted> {
        self.workflow_insert_impl(params).await
    }

    async fn workflow_get(
        &self,
        id: stoker_core::WorkflowId,
    ) -> StoreResult<Option<stoker_core::WorkflowRow>> {
        self.workflow_get_impl(id).await
    }

    async fn workflow_jobs(
        &self,
        id: stoker_core::WorkflowId,
    ) -> StoreResult<Vec<stoker_core::WorkflowJob>> {
        self.workflow_jobs_impl(id).await
    }

    async fn workflow_cancel(
        &self,
        params: stoker_core::WorkflowCancelParams,
    ) -> StoreResult<stoker_core::WorkflowRow> {
        self.workflow_cancel_impl(params).await
    }

    async fn job_dependency_results(
        &self,
        id: JobId,
    ) -> StoreResult<Vec<stoker_core::DependencyResult>> {
        self.job_dependency_results_impl(id).await
    }

    async fn job_workflow(
        &self,
        id: JobId,
    ) -> StoreResult<Option<(stoker_core::WorkflowId, String)>> {
        self.job_workflow_impl(id).await
    }
    // --- stream tenancy ---

    async fn job_claim_tenant(
        &self,
        params: JobClaimParams,
        tenant: &str,
    ) -> StoreResult<Vec<JobRow>> {
        self.job_claim_tenant_impl(params, tenant).await
    }

    // --- stream tenant ---
    async fn queue_depths_tenant(&self, tenant: &str) -> StoreResult<Vec<stoker_core::QueueDepth>> {
        self.queue_depths_tenant_impl(tenant).await
    }

    async fn job_prune_tenant(&self, params: JobPruneParams, tenant: &str) -> StoreResult<u64> {
        self.job_prune_tenant_impl(params, tenant, None).await
    }

    async fn audit_append(
        &self,
        entry: stoker_core::AuditEntry,
    ) -> StoreResult<stoker_core::AuditRow> {
        self.audit_append_impl(entry).await
    }

    async fn audit_list(
        &self,
        params: stoker_core::AuditListParams,
    ) -> StoreResult<Vec<stoker_core::AuditRow>> {
        self.audit_list_impl(params).await
    }

    async fn audited(
        &self,
        action: stoker_core::AuditedAction,
        entry: stoker_core::AuditEntry,
    ) -> StoreResult<stoker_core::AuditedOutcome> {
        self.audited_impl(action, entry).await
    }

    async fn audit_prune(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        self.audit_prune_impl(before, limit).await
    }
    // --- stream ops ---

    async fn failure_group_counts(
        &self,
        params: stoker_core::FailureCountParams,
    ) -> StoreResult<Vec<stoker_core::FailureHour>> {
        failures::group_counts(&self.inner.pool, &self.inner.schema, &params).await
    }
    // --- stream crypt ---

    async fn job_sealed_list(
        &self,
        params: stoker_core::JobSealedListParams,
    ) -> StoreResult<Vec<stoker_core::SealedJob>> {
        self.job_sealed_list_impl(params).await
    }

    async fn job_sealed_rewrite(
        &self,
        rewrites: Vec<stoker_core::SealedRewrite>,
    ) -> StoreResult<u64> {
        self.job_sealed_rewrite_impl(rewrites).await
    }
    // --- stream workflows ---

    async fn batch_insert(
        &self,
        params: stoker_core::BatchInsertParams,
    ) -> StoreResult<stoker_core::BatchInserted> {
        self.batch_insert_impl(params).await
    }

    async fn batch_get(
        &self,
        id: stoker_core::BatchId,
    ) -> StoreResult<Option<stoker_core::BatchRow>> {
        self.batch_get_impl(id).await
    }

    async fn batch_list(
        &self,
        params: stoker_core::BatchListParams,
    ) -> StoreResult<Vec<stoker_core::BatchRow>> {
        self.batch_list_impl(params).await
    }

    async fn batch_cancel(
        &self,
        id: stoker_core::BatchId,
        now: DateTime<Utc>,
    ) -> StoreResult<stoker_core::BatchRow> {
        self.batch_cancel_impl(id, now).await
    }

    async fn job_batch(&self, id: JobId) -> StoreResult<Option<stoker_core::BatchId>> {
        self.job_batch_impl(id).await
    }

    async fn workflow_list(
        &self,
        params: stoker_core::WorkflowListParams,
    ) -> StoreResult<Vec<stoker_core::WorkflowRow>> {
        self.workflow_list_impl(params).await
    }

    async fn job_children_insert(
        &self,
        params: stoker_core::ChildrenInsertParams,
    ) -> StoreResult<Option<Vec<InsertedJob>>> {
        self.job_children_insert_impl(params).await
    }

    async fn job_wait_children(
        &self,
        params: stoker_core::WaitChildrenParams,
    ) -> StoreResult<Option<FinishedJob>> {
        self.job_wait_children_impl(params).await
    }

    async fn job_children(&self, id: JobId) -> StoreResult<Option<stoker_core::ChildrenWait>> {
        self.job_children_impl(id).await
    }
}

// --- stream search ---
impl PgStore {
    /// The plans PostgreSQL picks for a [`Store::job_search`] page and for the
    /// [`Store::job_count`] of the same criteria (`EXPLAIN`, not run), as text: for
    /// benchmarks and tests to check that every search walks an index and never sorts.
    ///
    /// # Errors
    ///
    /// `Invalid` for bad params; a database error.
    pub async fn explain_job_search(
        &self,
        params: &stoker_core::JobSearchParams,
    ) -> StoreResult<(String, String)> {
        crate::search::explain(&self.inner.pool, &self.inner.schema, params).await
    }
}

#[async_trait]
impl StoreTx<PgConnection> for PgStore {
    /// Inserts on the caller's connection. The notification for every queue that gets jobs is
    /// part of the statement, so it is delivered if and when the caller's transaction
    /// commits. These notifications are not coalesced: a trailing one sent from the pool could
    /// reach workers before the caller commits, and then nothing would wake them after.
    async fn job_insert_many_tx(
        &self,
        conn: &mut PgConnection,
        params: JobInsertParams,
    ) -> StoreResult<Vec<InsertedJob>> {
        let quotas = self.flow_quota_demand(&params.jobs).await?;
        // --- stream flow ---
        let fair_marks = self.flow_fair_marks(&params.jobs).await?;
        let batch = InsertBatch::new(params)?;
        if batch.len() == 0 {
            return Ok(Vec::new());
        }
        self.listener_ready().await;
        let queues = batch.distinct_queues();
        if quotas.is_empty() && fair_marks.is_empty() {
            let (results, _) = batch.insert(conn, &self.inner.sql, &queues).await?;
            return Ok(results);
        }
        // A savepoint inside the caller's transaction (or a transaction of its own): a refused
        // quota leaves nothing behind.
        let mut tx = conn.begin().await.map_err(store_error)?;
        if !quotas.is_empty() {
            flow::flow_quota_take(&mut tx, &self.inner.schema, &quotas, batch.now).await?;
        }
        self.flow_fair_mark(&mut tx, &fair_marks).await?;
        let (results, _) = batch.insert(&mut tx, &self.inner.sql, &queues).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(results)
    }
}

/// A count of rows a statement `did` (retried, staged), as the trait returns it.
fn row_count(did: &str, count: i64) -> StoreResult<u64> {
    u64::try_from(count)
        .map_err(|_| StoreError::Corrupt(format!("{did} a negative count: {count}")))
}

fn state_count(row: &PgRow) -> StoreResult<StateCount> {
    let state: String = row.try_get("state").map_err(store_error)?;
    let scheduled: Option<i64> = row.try_get("scheduled").map_err(store_error)?;
    Ok(StateCount {
        queue: row.try_get("queue").map_err(store_error)?,
        kind: row.try_get("kind").map_err(store_error)?,
        state: state
            .parse()
            .map_err(|err: stoker_core::UnknownState| StoreError::Corrupt(err.to_string()))?,
        count: row.try_get("count").map_err(store_error)?,
        tenant: row.try_get("tenant").map_err(store_error)?,
        scheduled: scheduled.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use sqlx::Executor;
    use stoker_core::{AttemptError, JobFinish};

    use super::*;

    /// A migrated store in a schema of its own for `test`, or `None` (the test is skipped,
    /// saying so) when `STOKER_TEST_DATABASE_URL` is unset. A schema left by an earlier failed
    /// run of the same process id is dropped first.
    async fn scratch_store(test: &str, prefix: &str) -> Option<(PgStore, String)> {
        let Some(url) = std::env::var("STOKER_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        else {
            eprintln!("skipped {test}: STOKER_TEST_DATABASE_URL is unset");
            return None;
        };
        let schema = format!("{prefix}_{}", std::process::id());
        let store = PgStore::builder(&url)
            .schema(&schema)
            .build()
            .await
            .expect("connect");
        store
            .pool()
            .execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
            .await
            .expect("drop a leftover schema");
        store.migrate().await.expect("migrate");
        Some((store, schema))
    }

    /// An insert reads no other row and joins nothing, whatever plan PostgreSQL made for it
    /// (sqlx prepares each statement once per connection; PostgreSQL keeps a generic plan,
    /// made for a guessed 10 rows, until the table is analyzed). The old form joined: under a
    /// plan made while the table was new, its duplicate lookup hashed the whole table on every
    /// insert, and its join of the input with the inserted rows was a nested loop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_insert_reads_no_other_row_under_a_plan_made_when_the_table_was_empty() {
        let Some((store, schema)) =
            scratch_store("an_insert_reads_no_other_row", "stoker_pgspec_insert").await
        else {
            return;
        };
        // A new table's first few jobs, as when PostgreSQL made the plan in the bench.
        store
            .pool()
            .execute(sqlx::raw_sql(&format!(
                "INSERT INTO \"{schema}\".stoker_jobs (kind, queue, args, max_attempts, run_at, \
                                                    created_at) \
                 SELECT 'k', 'default', '{{}}', 5, now(), now() FROM generate_series(1, 5)"
            )))
            .await
            .expect("the first jobs");
        let statements = [
            ("stoker_insert", &store.inner.sql.job_insert),
            ("stoker_insert_keyless", &store.inner.sql.job_insert_keyless),
            ("stoker_insert_one", &store.inner.sql.job_insert_one),
            (
                "stoker_insert_one_keyed",
                &store.inner.sql.job_insert_one_keyed,
            ),
        ];
        let mut conn = store.pool().acquire().await.expect("acquire");
        conn.execute("SET plan_cache_mode = force_generic_plan")
            .await
            .expect("generic plans");
        for (name, sql) in statements {
            conn.execute(sqlx::raw_sql(&format!(
                "PREPARE {name} (text[], text[], jsonb[], int2[], int4[], timestamptz[], \
                                 text[], text[], jsonb[], int8[], timestamptz, text[], \
                                 jsonb[]) AS {sql}"
            )))
            .await
            .expect("prepare while the table is empty");
        }
        store
            .pool()
            .execute(sqlx::raw_sql(&format!(
                "INSERT INTO \"{schema}\".stoker_jobs (kind, queue, args, max_attempts, run_at, \
                                                    created_at, unique_key) \
                 SELECT 'k', 'default', '{{}}', 5, now(), now(), 'key-' || g \
                 FROM generate_series(1, 20000) g"
            )))
            .await
            .expect("fill the table");
        for (name, key) in [
            ("stoker_insert", "NULL"),
            ("stoker_insert_keyless", "NULL"),
            ("stoker_insert_one", "NULL"),
            // Both a new key and one the table holds.
            ("stoker_insert_one_keyed", "new-key"),
            ("stoker_insert_one_keyed", "key-7"),
        ] {
            let args = format!(
                "'{{k}}', '{{default}}', '{{\"{{}}\"}}', '{{0}}', '{{5}}', ARRAY[now()], \
                 '{{{key}}}', '{{NULL}}', '{{\"{{}}\"}}', '{{NULL}}', now(), '{{}}', \
                 '{{NULL}}'"
            );
            let plan: Vec<String> = sqlx::query_scalar(&format!(
                "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE {name}({args})"
            ))
            .fetch_all(&mut *conn)
            .await
            .expect("explain");
            let plan = plan.join("\n");
            eprintln!("{name} ({key}):\n{plan}");
            // No duplicate lookup, and no joins: a plan made for 10 rows must not turn
            // quadratic on a bulk insert of 10,000, nor read the table.
            assert!(!plan.contains("Scan on stoker_jobs"), "{name}: {plan}");
            assert!(
                !plan.contains("Join") && !plan.contains("Nested Loop"),
                "{name} joins: {plan}"
            );
        }
        drop(conn);
        store
            .pool()
            .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
            .await
            .expect("drop the schema");
    }

    // --- stream perf ---
    /// The batch, on_finish and workflow row triggers are set up (their WHEN read back and planned) in
    /// every statement that writes a column they watch, which cost a drain without batches or
    /// callbacks 2.75% of PostgreSQL's instructions while they watched `state`. They watch
    /// `finished_at` (migrations 26 and 27), so they stay out of every claim only while no claim
    /// writes that column: this fails if a trigger goes back to `state` or a claim starts
    /// writing `finished_at`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claims_write_no_column_the_finish_triggers_watch() {
        let Some((store, schema)) =
            scratch_store("claims_write_no_column", "stoker_pgspec_fintrig").await
        else {
            return;
        };
        let watched: Vec<(String, String)> = sqlx::query_as(
            "SELECT t.tgname::text, a.attname::text \
             FROM pg_trigger t \
             JOIN pg_class c ON c.oid = t.tgrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL unnest(t.tgattr::int2[]) AS k(attnum) \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
             WHERE n.nspname = $1 AND c.relname = 'stoker_jobs' \
               AND t.tgname IN ('stoker_jobs_batch_count', 'stoker_jobs_on_finish', \
                                'stoker_jobs_resolve_deps', 'stoker_jobs_resolve_child') \
             ORDER BY 1, 2",
        )
        .bind(&schema)
        .fetch_all(store.pool())
        .await
        .expect("read the triggers' columns");
        assert_eq!(
            watched,
            vec![
                (
                    "stoker_jobs_batch_count".to_owned(),
                    "finished_at".to_owned()
                ),
                ("stoker_jobs_on_finish".to_owned(), "finished_at".to_owned()),
                (
                    "stoker_jobs_resolve_child".to_owned(),
                    "finished_at".to_owned()
                ),
                (
                    "stoker_jobs_resolve_deps".to_owned(),
                    "finished_at".to_owned()
                ),
            ]
        );
        for claim in [&store.inner.sql.job_claim, &store.inner.sql.job_claim_kinds] {
            let set = claim
                .split(" SET ")
                .nth(1)
                .and_then(|rest| rest.split(" WHERE ").next())
                .expect("a claim is an UPDATE with a SET list");
            assert!(!set.contains("finished_at"), "{claim}");
        }
        store
            .pool()
            .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
            .await
            .expect("drop the schema");
    }

    /// With `async_ack_commit`, acknowledgements still apply as they do without it, both the
    /// one-statement batch (completions) and the transaction that also records failures, and
    /// `synchronous_commit` is off for their own transactions only: the pool's connections
    /// come back with it on, so claims and inserts still wait for the flush.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_ack_commit_changes_only_the_acknowledgements_commit() {
        let Some((plain, schema)) =
            scratch_store("async_ack_commit", "stoker_pgspec_asyncack").await
        else {
            return;
        };
        let url = std::env::var("STOKER_TEST_DATABASE_URL").expect("set, or skipped above");
        let store = PgStore::builder(&url)
            .schema(&schema)
            .max_connections(1)
            .async_ack_commit(true)
            .build()
            .await
            .expect("connect");
        let jobs = format!("\"{schema}\".stoker_jobs");
        store
            .pool()
            .execute(
                format!(
                    "INSERT INTO {jobs} (kind, queue, args, max_attempts, run_at, created_at) \
                     SELECT 'k', 'default', '{{}}', 5, '2020-01-01', '2020-01-01' \
                     FROM generate_series(1, 3)"
                )
                .as_str(),
            )
            .await
            .expect("fill the table");
        let now: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().expect("a valid instant");
        let claimed = store
            .job_claim(JobClaimParams {
                queue: "default".into(),
                kinds: vec![],
                limit: 3,
                worker_id: "w".into(),
                now,
                lease: None,
            })
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 3);
        let error = AttemptError {
            attempt: 1,
            at: now,
            kind: ErrorKind::Timeout,
            message: "timed out".into(),
            backtrace: None,
        };
        let outcomes = [
            vec![Outcome::Completed { result: None }],
            vec![
                Outcome::Completed { result: None },
                Outcome::Retry {
                    error,
                    run_at: now + chrono::Duration::seconds(60),
                },
            ],
        ];
        let mut jobs_left = claimed.iter();
        for batch in outcomes {
            let finishes: Vec<JobFinish> = batch
                .into_iter()
                .map(|outcome| {
                    let job = jobs_left.next().expect("a claimed job");
                    JobFinish {
                        id: job.id,
                        fence: job.fence,
                        outcome,
                    }
                })
                .collect();
            let count = finishes.len();
            let applied = store
                .job_finish_many(JobFinishParams {
                    finishes,
                    now,
                    rescue: false,
                })
                .await
                .expect("finish");
            assert_eq!(applied.len(), count);
            let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(store.pool())
                .await
                .expect("read the setting");
            assert_eq!(setting, "on", "the setting outlived the acknowledgement");
        }
        let states: Vec<String> =
            sqlx::query_scalar(&format!("SELECT state FROM {jobs} ORDER BY id"))
                .fetch_all(plain.pool())
                .await
                .expect("read the states");
        assert_eq!(states, ["completed", "completed", "retryable"]);
        plain
            .pool()
            .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
            .await
            .expect("drop the schema");
    }

    /// A claim on a fresh table (no statistics yet: a new deployment's first minutes, every
    /// bench run), planned empty and full, walks the fetch index under custom and generic
    /// plans and never the depths' due index. (The bench caught the due index taking the
    /// claim and sorting, at a fifth of the drain; this plan check did not reproduce those
    /// conditions, so the W2 bench is what guards it.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fresh_tables_claim_walks_the_fetch_index() {
        let Some((store, schema)) =
            scratch_store("a_fresh_tables_claim", "stoker_pgspec_fresh").await
        else {
            return;
        };
        let jobs = format!("\"{schema}\".stoker_jobs");
        let mut conn = store.pool().acquire().await.expect("acquire");
        // Planned on the empty table, then on a full one.
        for (rows, mode) in [
            (0, "force_generic_plan"),
            (0, "force_custom_plan"),
            (20_000, "force_generic_plan"),
            (0, "force_custom_plan"),
        ] {
            conn.execute(sqlx::raw_sql(&format!(
                "INSERT INTO {jobs} (kind, queue, args, max_attempts, run_at, created_at) \
                 SELECT 'k', 'default', '{{}}', 5, '2020-01-01', '2020-01-01' \
                 FROM generate_series(1, {rows})"
            )))
            .await
            .expect("fill the table");
            conn.execute(sqlx::raw_sql(&format!(
                "SET plan_cache_mode = {mode}; PREPARE stoker_explain \
                 (timestamptz, text, text, int8, timestamptz) AS {}",
                store.inner.sql.job_claim
            )))
            .await
            .expect("prepare");
            let plan: Vec<String> = sqlx::query_scalar(
                "EXPLAIN EXECUTE stoker_explain('2030-01-01', 'w', 'default', 50, NULL)",
            )
            .fetch_all(&mut *conn)
            .await
            .expect("explain");
            conn.execute("DEALLOCATE stoker_explain; RESET plan_cache_mode")
                .await
                .expect("deallocate");
            let plan = plan.join("\n");
            assert!(plan.contains("stoker_jobs_fetch_idx"), "{mode}: {plan}");
            assert!(!plan.contains("stoker_jobs_due_idx"), "{mode}: {plan}");
        }
        drop(conn);
        store
            .pool()
            .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
            .await
            .expect("drop the schema");
    }

    /// Every claim is an index scan of the fetch index plus primary-key lookups, staging a scan
    /// of the schedule index, the stuck-job
    /// query an index scan that reads only running rows, and a bulk retry primary-key lookups, under
    /// custom and generic plans alike, however many finished, future and running rows the table
    /// holds. Needs `STOKER_TEST_DATABASE_URL`; run with `--nocapture` to see the plans.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hot_statements_are_index_scans_whatever_the_table_holds() {
        let Some((store, schema)) =
            scratch_store("hot_statements_are_index_scans", "stoker_pgspec_explain").await
        else {
            return;
        };
        let jobs = format!("\"{schema}\".stoker_jobs");
        let fill = format!(
            "INSERT INTO {jobs} (kind, queue, args, state, max_attempts, run_at, created_at, \
                                 finished_at) \
             SELECT 'k', 'default', '{{}}', 'completed', 5, '2020-01-01', '2020-01-01', \
                    '2020-01-01' FROM generate_series(1, 100000); \
             INSERT INTO {jobs} (kind, queue, args, max_attempts, run_at, created_at, scheduled) \
             SELECT 'k', 'default', '{{}}', 5, '2100-01-01'::timestamptz + g * interval '1 s', \
                    '2020-01-01', true FROM generate_series(1, 100000) g; \
             INSERT INTO {jobs} (kind, queue, args, max_attempts, run_at, created_at, scheduled) \
             SELECT 'k', 'default', '{{}}', 5, '2029-12-31', '2020-01-01', true \
             FROM generate_series(1, 50); \
             INSERT INTO {jobs} (kind, queue, args, max_attempts, run_at, created_at) \
             SELECT 'k', 'default', '{{}}', 5, '2020-01-01', '2020-01-01' \
             FROM generate_series(1, 100); \
             INSERT INTO {jobs} (kind, queue, args, state, max_attempts, run_at, created_at, \
                                 finished_at) \
             SELECT 'k', 'default', '{{}}', 'discarded', 5, '2020-01-01', '2020-01-01', \
                    '2020-01-01' FROM generate_series(1, 500); \
             INSERT INTO {jobs} (kind, queue, args, state, attempt, max_attempts, run_at, \
                                 created_at, attempted_at, worker_id, lease_expires_at) \
             SELECT 'k', 'default', '{{}}', 'running', 1, 5, '2020-01-01', '2020-01-01', \
                    '2020-01-01', 'w' || g % 10, \
                    CASE WHEN g % 2 = 0 THEN '2030-01-01'::timestamptz END \
             FROM generate_series(1, 200) g; \
             ANALYZE {jobs};"
        );
        store
            .pool()
            .execute(sqlx::raw_sql(&fill))
            .await
            .expect("fill the table");

        let mut conn = store.pool().acquire().await.expect("acquire");
        // (what, parameter types, arguments, statement, indexes the plan must use; `a|b` accepts
        // either, where the planner may fairly pick one or the other from the statistics)
        let variants: [(&str, &str, &str, &str, &[&str]); 7] = [
            (
                "claim",
                "(timestamptz, text, text, int8, timestamptz)",
                "'2030-01-01', 'w', 'default', 10, NULL",
                &store.inner.sql.job_claim,
                &["stoker_jobs_fetch_idx", "stoker_jobs_pkey"],
            ),
            (
                "claim with a lease and kinds",
                "(timestamptz, text, text, int8, timestamptz, text[])",
                "'2030-01-01', 'w', 'default', 10, '2030-01-01 00:01', '{k}'",
                &store.inner.sql.job_claim_kinds,
                &["stoker_jobs_fetch_idx", "stoker_jobs_pkey"],
            ),
            (
                "stuck",
                "(timestamptz, timestamptz, int8)",
                "'2030-01-01', '2030-01-01', 100",
                &store.inner.sql.job_list_stuck,
                // Just the running rows: `(state, id)` with `state = 'running'` as its
                // condition.
                &["stoker_jobs_state_idx"],
            ),
            (
                "heartbeat, with its poll of the worker's queues",
                "(text, text, int8, text[], int8, timestamptz, timestamptz, int8, int8, int8[], jsonb)",
                "'w1', 'h', 1, '{default,other}', 10, '2030-01-01', '2030-01-01', 0, 0, '{}', NULL",
                &store.inner.sql.worker_heartbeat,
                &["stoker_jobs_fetch_idx"],
            ),
            (
                "stage",
                "(timestamptz, int8)",
                "'2030-01-01', 1000",
                &store.inner.sql.job_stage,
                &["stoker_jobs_scheduled_idx"],
            ),
            (
                "retry many discarded",
                "(text[], text[], text[], text, int8, timestamptz)",
                "'{discarded}', NULL, NULL, NULL, 100, '2030-01-01'",
                &store.inner.sql.job_retry_many,
                &["stoker_jobs_pkey"],
            ),
            (
                "retry many completed of a queue",
                "(text[], text[], text[], text, int8, timestamptz)",
                "'{completed}', '{default}', NULL, NULL, 100, '2030-01-01'",
                &store.inner.sql.job_retry_many,
                &["stoker_jobs_pkey"],
            ),
        ];
        for (name, types, args, sql, indexes) in variants {
            for mode in ["force_custom_plan", "force_generic_plan"] {
                conn.execute(sqlx::raw_sql(&format!(
                    "SET plan_cache_mode = {mode}; PREPARE stoker_explain {types} AS {sql}"
                )))
                .await
                .expect("prepare");
                let plan: Vec<String> =
                    sqlx::query_scalar(&format!("EXPLAIN EXECUTE stoker_explain({args})"))
                        .fetch_all(&mut *conn)
                        .await
                        .expect("explain");
                conn.execute("DEALLOCATE stoker_explain; RESET plan_cache_mode")
                    .await
                    .expect("deallocate");
                let plan = plan.join("\n");
                eprintln!("{name} ({mode}):\n{plan}\n");
                assert!(!plan.contains("Seq Scan on stoker_jobs"), "{plan}");
                // Fetches must stop at the first due rows; a bitmap scan cannot, it reads the
                // whole index range (every job scheduled in the future).
                assert!(
                    !plan.contains("Bitmap Index Scan on stoker_jobs_fetch_idx"),
                    "{plan}"
                );
                for index in indexes {
                    assert!(
                        index.split('|').any(|one| plan.contains(one)),
                        "{name} ({mode}) uses {index}: {plan}"
                    );
                }
            }
        }
        drop(conn);

        let claimed = store
            .job_claim(JobClaimParams {
                queue: "default".into(),
                kinds: vec![],
                limit: 10,
                worker_id: "w".into(),
                now: "2030-01-01T00:00:00Z".parse().expect("a valid instant"),
                lease: None,
            })
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 10);
        let staged = store
            .job_stage(JobStageParams {
                now: "2030-01-01T00:00:00Z".parse().expect("a valid instant"),
                limit: 1000,
            })
            .await
            .expect("stage");
        assert_eq!(
            staged, 50,
            "the due scheduled jobs, and none of the future ones"
        );

        store
            .pool()
            .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
            .await
            .expect("drop the schema");
    }

    // --- stream counts ---
    /// The operator's reads and the retention deletes never scan the jobs (issue 13, item 5):
    /// the stats read touches only the counters, their deltas and the running jobs (by index),
    /// the fold only the counters and deltas, the history
    /// series only `stoker_history`, and per-queue retention walks the finished index, under custom and generic plans, with 200,000 finished and 20,000
    /// waiting jobs in the table. Run with `--nocapture` to see the plans.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operator_reads_and_retention_never_scan_the_jobs() {
        let Some((store, schema)) =
            scratch_store("operator_reads_never_scan_the_jobs", "stoker_pgspec_counts").await
        else {
            return;
        };
        let s = format!("\"{schema}\"");
        store
            .pool()
            .execute(sqlx::raw_sql(&format!(
                "INSERT INTO {s}.stoker_jobs (kind, queue, args, state, max_attempts, run_at, \
                                              created_at, finished_at, tenant) \
                 SELECT 'k' || (g % 7), 'q' || (g % 5), '{{}}', \
                        (ARRAY['completed', 'discarded', 'cancelled'])[g % 3 + 1], 5, \
                        '2020-01-01', '2020-01-01', \
                        '2020-01-01'::timestamptz + g * interval '1 s', 't' || (g % 4) \
                 FROM generate_series(1, 200000) g; \
                 INSERT INTO {s}.stoker_jobs (kind, queue, args, max_attempts, run_at, \
                                              created_at) \
                 SELECT 'k', 'q' || (g % 5), '{{}}', 5, '2020-01-01', '2020-01-01' \
                 FROM generate_series(1, 20000) g; \
                 ANALYZE {s}.stoker_jobs;"
            )))
            .await
            .expect("fill the table");
        // The fill's deltas stay unfolded for the stats read's plan, as between two folds.
        let stats = store.job_stats().await.expect("stats");
        let total: i64 = stats.iter().map(|count| count.count).sum();
        assert_eq!(total, 220_000, "the counts match the rows written");

        let mut conn = store.pool().acquire().await.expect("acquire");
        let variants: [(&str, &str, &str, &str, &[&str]); 5] = [
            ("stats", "(int4)", "1", &store.inner.sql.job_stats, &[]),
            (
                "fold",
                "(int4)",
                "1000",
                &store.inner.sql.job_counts_fold,
                &[],
            ),
            (
                "retention by age of one queue and state",
                "(text, text, timestamptz, int8)",
                "'q1', 'completed', '2020-01-02', 1000",
                &store.inner.sql.job_prune_queue_age,
                &["stoker_jobs_finished_idx"],
            ),
            (
                "retention keeping the newest N of one queue and state",
                "(text, text, int8, int8)",
                "'q1', 'discarded', 100, 1000",
                &store.inner.sql.job_prune_queue_keep,
                &["stoker_jobs_finished_idx"],
            ),
            (
                "history series",
                "(text, int8, int8, text, text, text)",
                "'minute', 0, 4000000000, NULL, NULL, NULL",
                &store.inner.history.query,
                &[],
            ),
        ];
        for (name, types, args, sql, indexes) in variants {
            // The stats read takes no parameter: prepare it without one.
            let (types, args) = if name == "stats" {
                ("", "")
            } else {
                (types, args)
            };
            for mode in ["force_custom_plan", "force_generic_plan"] {
                conn.execute(sqlx::raw_sql(&format!(
                    "SET plan_cache_mode = {mode}; PREPARE stoker_explain {types} AS {sql}"
                )))
                .await
                .expect("prepare");
                let execute = if args.is_empty() {
                    "EXECUTE stoker_explain".to_owned()
                } else {
                    format!("EXECUTE stoker_explain({args})")
                };
                let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {execute}"))
                    .fetch_all(&mut *conn)
                    .await
                    .expect("explain");
                conn.execute("DEALLOCATE stoker_explain; RESET plan_cache_mode")
                    .await
                    .expect("deallocate");
                let plan = plan.join("\n");
                eprintln!("{name} ({mode}):\n{plan}\n");
                assert!(!plan.contains("Seq Scan on stoker_jobs"), "{name}: {plan}");
                if name == "stats" {
                    // Only the running rows, through the state index.
                    assert!(
                        plan.contains("stoker_jobs_state_idx")
                            || plan.contains("stoker_jobs_running_idx"),
                        "{name} reads the running jobs by index: {plan}"
                    );
                } else if indexes.is_empty() {
                    assert!(
                        !plan.contains("on stoker_jobs"),
                        "{name} reads no job: {plan}"
                    );
                }
                for index in indexes {
                    assert!(plan.contains(index), "{name} ({mode}) uses {index}: {plan}");
                }
            }
        }
        drop(conn);

        // And the retention deletes do what they say: keep the newest 100 discarded of q1.
        let deleted = store
            .job_prune(JobPruneParams {
                limit: 100_000,
                queue_rules: vec![stoker_core::QueuePruneRule {
                    queue: "q1".into(),
                    state: JobState::Discarded,
                    finished_before: None,
                    keep_last: Some(100),
                }],
                ..JobPruneParams::default()
            })
            .await
            .expect("prune");
        let left: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {s}.stoker_jobs WHERE queue = 'q1' AND state = 'discarded'"
        ))
        .fetch_one(store.pool())
        .await
        .expect("count");
        assert_eq!(left, 100);
        assert!(deleted > 13_000, "{deleted}");

        store
            .pool()
            .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
            .await
            .expect("drop the schema");
    }
}
