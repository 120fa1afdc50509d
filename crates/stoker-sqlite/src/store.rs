//! [`SqliteStore`]: the [`Store`] implementation.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{Sqlite, SqlitePool};
use sqlx::{Connection, QueryBuilder, SqliteConnection};
use stoker_core::cron::{
    CronDue, CronFireOutcome, CronFireParams, CronRow, CronRun, CronWriteParams,
};
use stoker_core::{
    validate_queue, Capabilities, FinishedJob, InsertedJob, InvalidInput, JobCancelParams,
    JobClaimParams, JobFinishParams, JobId, JobInsertParams, JobLeaseParams, JobListParams,
    JobProgressParams, JobPruneParams, JobRetryManyParams, JobRetryParams, JobRow, JobStageParams,
    JobState, JobStuckParams, LeaderElectParams, LeaderRow, LeaseExtended, QueueParams, QueueRow,
    StateCount, Store, StoreError, StoreEvent, StoreResult, StoreTx, WorkerHeartbeatParams,
    WorkerHeartbeatReply, WorkerRow,
};
use tokio::sync::{broadcast, watch};

use crate::builder::SqliteStoreBuilder;
use crate::connection::{ReadConnection, Readers, WriteConnection, Writer};
use crate::counts::CountDeltas;
use crate::error::db_error;
use crate::row::{
    column, from_micros, job_columns, job_from_row, micros, parse_state, time_column, to_json,
    worker_columns, worker_from_row,
};
use crate::{failures, finish, insert, migrate, prune};
pub(crate) use audit::audit_insert_on;
use stoker_core::{AuditEntry, AuditedAction, AuditedOutcome};

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
mod tenancy;
// --- stream crypt ---
mod sealed;
// --- stream wake ---
mod wake;
// --- stream workflows ---
mod batch;
mod children;
use stoker_core::WorkerDetails;

/// How many events the channel behind [`Store::subscribe`] buffers. A subscriber that falls
/// further behind gets `RecvError::Lagged`, which it should treat as [`StoreEvent::Resync`].
pub const EVENT_CAPACITY: usize = 1024;

/// The name of the one leadership lease.
const LEADER_NAME: &str = "stoker";

/// Claims up to `?4` due jobs of queue `?3` for worker `?2` at `?1`, with their lease ending at
/// `?5` (null for no lease), in one statement. The inner query repeats the fetch index's
/// predicate `state IN ('available', 'retryable') AND scheduled = 0` word for word, so SQLite
/// walks that partial
/// index in fetch order and stops after `?4` rows. The `+` in `+run_at` keeps `run_at` a filter
/// rather than a search term: given the term and table statistics (a user's `ANALYZE`), SQLite
/// skip-scans the priorities for the range and sorts every due job on each claim (15 ms per
/// claim with 100k due jobs, against 0.4 ms).
pub(crate) const CLAIM_SQL: &str = concat!(
    "UPDATE stoker_jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1, attempted_at = ?1,
    worker_id = ?2, lease_expires_at = ?5, flow_slots = NULL
WHERE id IN (
    SELECT id FROM stoker_jobs
    WHERE state IN ('available', 'retryable') AND scheduled = 0
      AND queue = ?3 AND +run_at <= ?1
      AND NOT EXISTS (SELECT 1 FROM stoker_queues WHERE name = ?3 AND paused)
    ORDER BY priority DESC, run_at, id
    LIMIT ?4)
RETURNING ",
    job_columns!()
);

/// [`CLAIM_SQL`] for only the kinds in `?6`, a JSON array.
pub(crate) const CLAIM_KINDS_SQL: &str = concat!(
    "UPDATE stoker_jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1, attempted_at = ?1,
    worker_id = ?2, lease_expires_at = ?5, flow_slots = NULL
WHERE id IN (
    SELECT id FROM stoker_jobs
    WHERE state IN ('available', 'retryable') AND scheduled = 0
      AND queue = ?3 AND +run_at <= ?1
      AND kind IN (SELECT value FROM json_each(?6))
      AND NOT EXISTS (SELECT 1 FROM stoker_queues WHERE name = ?3 AND paused)
    ORDER BY priority DESC, run_at, id
    LIMIT ?4)
RETURNING ",
    job_columns!()
);

const GET_SQL: &str = concat!("SELECT ", job_columns!(), " FROM stoker_jobs WHERE id = ?1");

const CANCEL_SQL: &str = concat!(
    "UPDATE stoker_jobs
SET state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
    finished_at = CASE WHEN state = 'running' THEN finished_at ELSE ?1 END,
    scheduled = 0,
    cancel_requested_at = CASE WHEN state = 'running' THEN ?1 ELSE cancel_requested_at END
WHERE id = ?2 AND state IN ('blocked', 'available', 'retryable', 'running')
RETURNING ",
    job_columns!(),
    // After the job's columns, so `job_from_row` reads the row as usual: whether jobs depend
    // on it, which a cancel may release (issue 18).
    ", has_dependents"
);

const RETRY_SQL: &str = concat!(
    "UPDATE stoker_jobs
SET state = 'available', run_at = ?1, finished_at = NULL, cancel_requested_at = NULL,
    lease_expires_at = NULL, scheduled = 0,
    max_attempts = CASE WHEN attempt >= max_attempts THEN attempt + 1 ELSE max_attempts END
WHERE id = ?2 AND state NOT IN ('running', 'blocked')
RETURNING ",
    job_columns!()
);

// --- stream workflows ---
// A job others wait for, an unfinished batch member and an unfired batch callback are kept
// (issue 18): the caller reads why and refuses.
const DELETE_SQL: &str = concat!(
    "DELETE FROM stoker_jobs WHERE id = ?1 AND state <> 'running'
     AND NOT (batch_id IS NOT NULL AND state IN ('blocked', 'available', 'retryable'))
     AND NOT (has_dependents AND EXISTS (
         SELECT 1 FROM stoker_deps AS d JOIN stoker_jobs AS c ON c.id = d.child_id
         WHERE d.parent_id = ?1 AND NOT d.resolved AND c.state = 'blocked'))
     AND NOT (state = 'blocked' AND EXISTS (
         SELECT 1 FROM stoker_batches WHERE callback_id = ?1))
     RETURNING ",
    job_columns!()
);

/// Picks up to `?5` finished jobs to retry, oldest first: those in a state of the JSON array
/// `?1`, and (when not null) in a queue of `?2`, of a kind of `?3`, of tenant `?4`. The caller
/// has checked that `?1` names finished states only. Returns each one's id, queue, kind and
/// state, for [`RETRY_IDS_SQL`] and the finished counts.
pub(crate) const RETRY_MANY_PICK_SQL: &str = "
SELECT id, queue, kind, state, tenant FROM stoker_jobs
WHERE state IN (SELECT value FROM json_each(?1))
  AND (?2 IS NULL OR queue IN (SELECT value FROM json_each(?2)))
  AND (?3 IS NULL OR kind IN (SELECT value FROM json_each(?3)))
  AND (?4 IS NULL OR tenant = ?4)
ORDER BY id
LIMIT ?5";

/// Retries the jobs whose ids are in the JSON array `?2`, as [`RETRY_SQL`] does one.
pub(crate) const RETRY_IDS_SQL: &str = "
UPDATE stoker_jobs
SET state = 'available', run_at = ?1, finished_at = NULL, cancel_requested_at = NULL,
    lease_expires_at = NULL, scheduled = 0,
    max_attempts = CASE WHEN attempt >= max_attempts THEN attempt + 1 ELSE max_attempts END
WHERE id IN (SELECT value FROM json_each(?2)) AND state NOT IN ('running', 'blocked')
RETURNING id, attempt, json_extract(metadata, '$.correlation_id')";

/// Job `?1`'s queue, kind and state.
const STATE_OF_SQL: &str = "SELECT queue, kind, state FROM stoker_jobs WHERE id = ?1";

/// Moves the lease of job `?2`, if it is running with fence `?3` and its lease has not ended
/// by `?4`, to end at `?1`; returns the new end, whether a cancel was requested, and the
/// worker.
pub(crate) const EXTEND_LEASE_SQL: &str = "
UPDATE stoker_jobs SET lease_expires_at = ?1
WHERE id = ?2 AND state = 'running' AND fence = ?3
  AND (lease_expires_at IS NULL OR lease_expires_at > ?4)
RETURNING lease_expires_at, cancel_requested_at IS NOT NULL, worker_id";

/// Records progress `?1` of job `?2` if it is running with fence `?3` and its lease has not
/// ended by `?4`.
pub(crate) const PROGRESS_SQL: &str = "
UPDATE stoker_jobs SET progress = ?1
WHERE id = ?2 AND state = 'running' AND fence = ?3
  AND (lease_expires_at IS NULL OR lease_expires_at > ?4)";

/// Running jobs whose lease ended at or before `?2`, or that have no lease and whose worker
/// has no heartbeat at or after `?1` (silent, or no row at all), oldest attempt first, at most
/// `?3`. A leased job's worker row does not matter: a pull worker has none.
pub(crate) const STUCK_SQL: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM stoker_jobs AS j
WHERE state = 'running'
  AND CASE WHEN lease_expires_at IS NOT NULL THEN lease_expires_at <= ?2
           ELSE NOT EXISTS (
               SELECT 1 FROM stoker_workers AS w
               WHERE w.id = j.worker_id AND w.heartbeat_at >= ?1) END
ORDER BY attempted_at, id
LIMIT ?3"
);

/// Finished counts from the counters the store keeps (see [`crate::counts`]); waiting ones
/// (`blocked`, `available` with its scheduled share, `retryable`) counted live by a walk of
/// the covering `stoker_jobs_waiting_idx` that reads no table row (migration 23); running
/// ones, at most the cluster's concurrency, through the `(state, id)` index. The state
/// condition is the index's own, word for word, so SQLite may use it, and `INDEXED BY` makes
/// it do so before `ANALYZE` has run (without statistics it would pick `(state, id)`).
pub(crate) const STATS_SQL: &str = "
SELECT queue, kind, NULLIF(tenant, ''), state, count, 0 FROM stoker_job_counts WHERE count > 0
UNION ALL
SELECT queue, kind, tenant, state, COUNT(*), SUM(state = 'available' AND scheduled = 1)
FROM stoker_jobs INDEXED BY stoker_jobs_waiting_idx
WHERE state = 'blocked' OR state = 'available' OR state = 'retryable'
GROUP BY queue, kind, tenant, state
UNION ALL
SELECT queue, kind, tenant, state, COUNT(*), 0
FROM stoker_jobs
WHERE state = 'running'
GROUP BY queue, kind, tenant";

const LEADER_GET_SQL: &str = "
SELECT leader_id, elected_at, expires_at FROM stoker_leader
WHERE name = ?1 AND expires_at > ?2";

/// Takes the lease if it is free or expired, or renews it for its holder; returns a row only
/// if `?2` holds it afterwards. A renewal keeps the term's start.
const LEADER_ELECT_SQL: &str = "
INSERT INTO stoker_leader (name, leader_id, elected_at, expires_at) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (name) DO UPDATE SET
    leader_id = excluded.leader_id,
    elected_at = CASE
        WHEN stoker_leader.leader_id = excluded.leader_id
             AND stoker_leader.expires_at > excluded.elected_at
        THEN stoker_leader.elected_at ELSE excluded.elected_at END,
    expires_at = excluded.expires_at
WHERE stoker_leader.expires_at <= excluded.elected_at
   OR stoker_leader.leader_id = excluded.leader_id
RETURNING leader_id";

const LEADER_RESIGN_SQL: &str = "DELETE FROM stoker_leader WHERE name = ?1 AND leader_id = ?2";

/// Sets a queue's pause flag; a no-op (keeping `updated_at`) when it already has that value.
const QUEUE_SET_SQL: &str = "
INSERT INTO stoker_queues (name, paused, updated_at) VALUES (?1, ?2, ?3)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at
WHERE stoker_queues.paused <> excluded.paused";

const QUEUE_LIST_SQL: &str = "SELECT name, paused, updated_at FROM stoker_queues ORDER BY name";

const WORKER_HEARTBEAT_SQL: &str = "
INSERT INTO stoker_workers
    (id, host, pid, queues, concurrency, started_at, heartbeat_at, jobs_done, jobs_failed,
     details)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host,
    pid = excluded.pid,
    queues = excluded.queues,
    concurrency = excluded.concurrency,
    started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at,
    jobs_done = stoker_workers.jobs_done + excluded.jobs_done,
    jobs_failed = stoker_workers.jobs_failed + excluded.jobs_failed,
    details = excluded.details";

const WORKER_LIST_SQL: &str = concat!(
    "SELECT ",
    worker_columns!(),
    " FROM stoker_workers ORDER BY id"
);

/// The heartbeat's stand-in for polling: which of the worker's queues are not paused and have
/// a due job. One probe of the fetch index per queue.
const WORKER_DUE_QUEUES_SQL: &str = "
SELECT q.value FROM json_each(?1) AS q
WHERE EXISTS (SELECT 1 FROM stoker_jobs j
              WHERE j.queue = q.value AND j.state IN ('available', 'retryable')
                AND j.scheduled = 0 AND j.run_at <= ?2)
  AND NOT EXISTS (SELECT 1 FROM stoker_queues p WHERE p.name = q.value AND p.paused)
ORDER BY q.value";

/// Takes up to `?2` jobs due at `?1` out of the schedule, earliest first, through the schedule
/// index (which holds nothing else); returns each one's queue.
pub(crate) const STAGE_SQL: &str = "
UPDATE stoker_jobs SET scheduled = 0
WHERE id IN (
    SELECT id FROM stoker_jobs
    WHERE scheduled = 1 AND run_at <= ?1
    ORDER BY run_at, id
    LIMIT ?2)
RETURNING queue";

/// Whether no leader holds an unexpired term.
const LEADER_VACANT_SQL: &str = "
SELECT NOT EXISTS (SELECT 1 FROM stoker_leader WHERE name = ?1 AND expires_at > ?2)";

const WORKER_CANCELLED_SQL: &str = "
SELECT id FROM stoker_jobs
WHERE id IN (SELECT value FROM json_each(?1))
  AND state = 'running' AND cancel_requested_at IS NOT NULL
ORDER BY id";

/// A [`Store`] on a SQLite database: an embedded, zero set-up job queue in one file.
///
/// Cloning is cheap and a clone shares everything: connections and event subscribers. See
/// the [crate docs](crate) for set-up and limits.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Exactly one connection, so writes within this process never contend for SQLite's lock.
    writer: Writer,
    /// Connections for reads; the writer itself for an in-memory database.
    reader: Readers,
    /// In-process events; sending with no subscriber is fine.
    events: broadcast::Sender<StoreEvent>,
    /// The connection that checkpoints the WAL (see [`crate::checkpoint`]), for a file.
    checkpointer: Option<SqlitePool>,
    /// Stops the checkpoint task when the last clone of the store is dropped.
    _stop_checkpoints: watch::Sender<()>,
    // --- stream flow ---
    /// The limits, cached for a second (issue 16).
    limits: stoker_core::LimitCache,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` with the default settings.
    ///
    /// Does not create the schema: call [`Store::migrate`] (the worker runtime does).
    ///
    /// # Errors
    ///
    /// [`StoreError::Busy`] if the database stayed locked for the whole busy timeout;
    /// [`StoreError::Database`] if it cannot be opened.
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<SqliteStore> {
        SqliteStoreBuilder::new(path).build().await
    }

    /// Opens a database by URL: `sqlite://path`, `sqlite:path` (files are created if missing)
    /// or `sqlite::memory:` (an in-memory database, gone when the store and its clones are
    /// dropped).
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] for a URL that is not a SQLite URL; otherwise as
    /// [`SqliteStore::open`].
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        SqliteStoreBuilder::from_url(url)?.build().await
    }

    /// A builder for the database file at `path`, to change the default settings.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder::new(path)
    }

    /// A store on these connections. With a `checkpointer` pool (a file database), a task
    /// checkpoints the WAL through it for as long as the store lives.
    pub(crate) fn from_connections(
        writer: Writer,
        reader: Readers,
        checkpointer: Option<SqlitePool>,
    ) -> SqliteStore {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (stop_checkpoints, stopped) = watch::channel(());
        if let Some(pool) = &checkpointer {
            tokio::spawn(crate::checkpoint::run(pool.clone(), stopped));
        }
        SqliteStore {
            inner: Arc::new(Inner {
                writer,
                reader,
                events,
                checkpointer,
                _stop_checkpoints: stop_checkpoints,
                limits: Default::default(),
            }),
        }
    }

    /// The writer connection, so an application can open its own transaction and insert jobs
    /// in it with [`StoreTx::job_insert_many_tx`] (the outbox pattern); see
    /// [`WriteConnection`] for an example.
    ///
    /// While the application holds it, the store's own writes in this process wait for it:
    /// keep such transactions short.
    ///
    /// # Errors
    ///
    /// [`StoreError::Busy`] if another task held the connection for the whole busy timeout;
    /// [`StoreError::Database`] if the store is closed.
    pub async fn write_connection(&self) -> StoreResult<WriteConnection> {
        self.inner.writer.acquire().await
    }

    /// Closes every connection, waiting for those in use to be returned. Operations after
    /// this fail. Dropping the last clone of the store also closes it.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        if let Readers::Pool(pool) = &self.inner.reader {
            pool.close().await;
        }
        if let Some(checkpointer) = &self.inner.checkpointer {
            checkpointer.close().await;
        }
    }

    /// The writer connection, waiting up to the busy timeout for it.
    async fn write(&self) -> StoreResult<WriteConnection> {
        self.inner.writer.acquire().await
    }

    /// The writer, for tests that drive its statements directly.
    #[cfg(test)]
    pub(crate) fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// A connection to read on.
    pub(crate) async fn read(&self) -> StoreResult<ReadConnection> {
        ReadConnection::acquire(&self.inner.reader, &self.inner.writer).await
    }

    fn notify(&self, event: StoreEvent) {
        // An error only means nobody is subscribed right now.
        let _ = self.inner.events.send(event);
    }

    /// Sends `JobsAvailable` once for each distinct queue among `queues` (one per job written).
    fn notify_available(&self, queues: Vec<String>) {
        for queue in queues.into_iter().collect::<BTreeSet<_>>() {
            self.notify(StoreEvent::JobsAvailable { queue });
        }
    }

    async fn job_get_on(conn: &mut SqliteConnection, id: JobId) -> StoreResult<Option<JobRow>> {
        sqlx::query(GET_SQL)
            .bind(id.0)
            .fetch_optional(conn)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    /// The job after an update that matched no row: [`StoreError::NotFound`] if it does not
    /// exist, else the job as it is.
    async fn job_unchanged(&self, id: JobId) -> StoreResult<JobRow> {
        Self::job_get_on(&mut *self.write().await?, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job {id}")))
    }

    async fn queue_set(
        &self,
        params: &QueueParams,
        paused: bool,
        audit: Option<AuditEntry>,
    ) -> StoreResult<()> {
        validate_queue(&params.queue)?;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        sqlx::query(QUEUE_SET_SQL)
            .bind(&params.queue)
            .bind(paused)
            .bind(micros(params.now))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit_insert_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    // --- stream tenancy ---
    // Management actions with their audit rows (issue 17): the bodies of the plain
    // operations, which pass no row.

    async fn job_cancel_on(
        &self,
        params: JobCancelParams,
        audit: Option<AuditEntry>,
    ) -> StoreResult<JobRow> {
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let row = sqlx::query(CANCEL_SQL)
            .bind(micros(params.now))
            .bind(params.id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            // The writer is the only connection: end the transaction and give the connection
            // back before reading.
            drop(tx);
            drop(conn);
            return self.job_unchanged(params.id).await;
        };
        let job = job_from_row(&row)?;
        let has_dependents: bool = column(&row, 24, "has_dependents")?;
        // A queued job ends cancelled; a running one only has its cancel requested.
        let mut counts = CountDeltas::default();
        counts.entered(&job.queue, &job.kind, job.tenant.as_deref(), job.state);
        audit_insert_on(&mut tx, audit.as_ref()).await?;
        counts.apply(&mut tx).await?;
        tx.commit().await.map_err(db_error)?;
        if job.state == JobState::Running {
            self.notify(StoreEvent::JobCancelRequested { id: job.id });
        }
        // --- stream wake ---
        if job.state == JobState::Cancelled && has_dependents {
            self.wake_released(vec![job.id.0]).await;
        }
        // --- stream history ---
        // The completion callback the `on_finish` trigger inserted starts now (issue 13).
        if job.state == JobState::Cancelled {
            if let Some(on_finish) = &job.metadata.on_finish {
                self.notify_available(vec![on_finish
                    .queue
                    .clone()
                    .unwrap_or_else(|| "default".to_owned())]);
            }
        }
        Ok(job)
    }

    async fn job_delete_on(&self, id: JobId, audit: Option<AuditEntry>) -> StoreResult<JobRow> {
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let row = sqlx::query(DELETE_SQL)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => {
                let job = job_from_row(&row)?;
                let mut counts = CountDeltas::default();
                counts.left(&job.queue, &job.kind, job.tenant.as_deref(), job.state);
                audit_insert_on(&mut tx, audit.as_ref()).await?;
                counts.apply(&mut tx).await?;
                tx.commit().await.map_err(db_error)?;
                Ok(job)
            }
            None => {
                // --- stream workflows ---
                let refusal = Self::delete_refusal(&mut tx, id).await?;
                drop(tx);
                drop(conn);
                let job = self.job_unchanged(id).await?;
                Err(StoreError::Conflict(refusal.unwrap_or_else(|| {
                    format!("job {id} is {}: cancel it before deleting it", job.state)
                })))
            }
        }
    }

    async fn job_retry_on(
        &self,
        params: JobRetryParams,
        audit: Option<AuditEntry>,
    ) -> StoreResult<JobRow> {
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        // The state the job leaves, for the finished counts: RETURNING shows only the new one.
        let before: Option<(String, String, String)> = sqlx::query_as(STATE_OF_SQL)
            .bind(params.id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let row = sqlx::query(RETRY_SQL)
            .bind(micros(params.now))
            .bind(params.id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let (Some(row), Some((queue, kind, state))) = (row, before) else {
            // Missing, or running (returned unchanged).
            drop(tx);
            drop(conn);
            return self.job_unchanged(params.id).await;
        };
        let job = job_from_row(&row)?;
        let mut counts = CountDeltas::default();
        counts.left(&queue, &kind, job.tenant.as_deref(), parse_state(&state)?);
        audit_insert_on(&mut tx, audit.as_ref()).await?;
        counts.apply(&mut tx).await?;
        tx.commit().await.map_err(db_error)?;
        self.notify(StoreEvent::JobsAvailable {
            queue: job.queue.clone(),
        });
        Ok(job)
    }

    async fn job_retry_many_on(
        &self,
        params: JobRetryManyParams,
        audit: Option<AuditEntry>,
    ) -> StoreResult<Vec<stoker_core::ChangedJob>> {
        validate_retry_states(&params.states)?;
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        let states: Vec<&str> = params.states.iter().map(|state| state.as_str()).collect();
        let list = |values: &[String]| (!values.is_empty()).then(|| to_json(values)).transpose();
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let picked: Vec<(i64, String, String, String, Option<String>)> =
            sqlx::query_as(RETRY_MANY_PICK_SQL)
                .bind(to_json(&states)?)
                .bind(list(&params.queues)?)
                .bind(list(&params.kinds)?)
                .bind(&params.tenant)
                .bind(i64::from(params.limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = picked.iter().map(|(id, ..)| *id).collect();
        // The picked jobs are all retried: the write transaction holds them since the pick.
        let retried: HashMap<i64, (i32, Option<String>)> = sqlx::query_as(RETRY_IDS_SQL)
            .bind(micros(params.now))
            .bind(to_json(&ids)?)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|(id, attempt, correlation_id)| (id, (attempt, correlation_id)))
            .collect();
        let mut counts = CountDeltas::default();
        let mut queues = Vec::with_capacity(picked.len());
        let mut changed = Vec::with_capacity(retried.len());
        for (id, queue, kind, state, tenant) in picked {
            let Some((attempt, correlation_id)) = retried.get(&id) else {
                continue;
            };
            counts.left(&queue, &kind, tenant.as_deref(), parse_state(&state)?);
            queues.push(queue.clone());
            changed.push(stoker_core::ChangedJob {
                id: JobId(id),
                state: JobState::Available,
                queue,
                kind,
                tenant,
                attempt: *attempt,
                correlation_id: correlation_id.clone(),
            });
        }
        let audit = audit.map(|entry| AuditEntry {
            affected: Some(i64::try_from(changed.len()).unwrap_or(i64::MAX)),
            ..entry
        });
        audit_insert_on(&mut tx, audit.as_ref()).await?;
        counts.apply(&mut tx).await?;
        tx.commit().await.map_err(db_error)?;
        self.notify_available(queues);
        Ok(changed)
    }

    async fn queue_resume_on(
        &self,
        params: QueueParams,
        audit: Option<AuditEntry>,
    ) -> StoreResult<()> {
        self.queue_set(&params, false, audit).await?;
        self.notify(StoreEvent::JobsAvailable {
            queue: params.queue,
        });
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::LOCAL
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.write().await?;
        migrate::migrate(&mut conn).await
    }

    async fn migrations_current(&self) -> StoreResult<bool> {
        migrate::is_current(&mut *self.read().await?).await
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        Some(self.inner.events.subscribe())
    }

    async fn job_cancel(&self, params: JobCancelParams) -> StoreResult<JobRow> {
        self.job_cancel_on(params, None).await
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
            sqlx::query(CLAIM_SQL)
        } else {
            sqlx::query(CLAIM_KINDS_SQL)
        };
        let query = query
            .bind(micros(params.now))
            .bind(&params.worker_id)
            .bind(&params.queue)
            .bind(i64::from(params.limit))
            .bind(lease_end.map(micros));
        let query = if params.kinds.is_empty() {
            query
        } else {
            query.bind(to_json(&params.kinds)?)
        };
        let rows = query
            .fetch_all(&mut *self.write().await?)
            .await
            .map_err(db_error)?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING gives rows in no particular order.
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }

    async fn job_delete(&self, id: JobId) -> StoreResult<JobRow> {
        self.job_delete_on(id, None).await
    }

    async fn job_finish_many(&self, params: JobFinishParams) -> StoreResult<Vec<FinishedJob>> {
        let finished = finish::finish_many(&self.inner.writer, &params).await?;
        // Only a job that others depend on can release any: an ordinary batch reads nothing.
        if !finished.parents.is_empty() {
            self.wake_released(finished.parents).await;
        }
        // --- stream history ---
        // Completion callbacks inserted by the `on_finish` trigger start now, not at the next
        // poll (issue 13).
        if !finished.callbacks.is_empty() {
            self.notify_available(finished.callbacks);
        }
        // --- stream flow ---
        // A freed concurrency slot (issue 16) wakes the workers its limit held back, in this
        // queue and in any other queue a claim found limited, rather than leaving them to
        // their next poll.
        if !finished.freed.is_empty() {
            let mut queues = finished.freed;
            for queue in self.inner.limits.take_held() {
                if !queues.contains(&queue) {
                    queues.push(queue);
                }
            }
            for queue in queues {
                self.notify(StoreEvent::JobsAvailable { queue });
            }
        }
        Ok(finished.jobs)
    }

    async fn job_get(&self, id: JobId) -> StoreResult<Option<JobRow>> {
        Self::job_get_on(&mut *self.read().await?, id).await
    }

    async fn job_insert_many(&self, params: JobInsertParams) -> StoreResult<Vec<InsertedJob>> {
        insert::validate(&params)?;
        if params.jobs.is_empty() {
            return Ok(Vec::new());
        }
        // Enqueue quotas (issue 16, item 4) are taken in the insert's transaction.
        let quotas = self.flow_quota_demand(&params.jobs).await?;
        // --- stream flow ---
        // Tenants of fair queues are marked ready in the same transaction (issue 16).
        let fair_marks = self.flow_fair_marks(&params.jobs).await?;
        let inserted = if params.jobs.len() == 1 && quotas.is_empty() && fair_marks.is_empty() {
            insert::insert_one(&mut *self.write().await?, &params).await?
        } else {
            let mut conn = self.write().await?;
            let mut tx = begin_write(&mut conn).await?;
            if !quotas.is_empty() {
                flow::flow_quota_take(&mut tx, &quotas, params.now).await?;
            }
            flow::flow_fair_mark(&mut tx, &fair_marks).await?;
            let inserted = insert::insert_jobs(&mut tx, &params).await?;
            tx.commit().await.map_err(db_error)?;
            inserted
        };
        for queue in inserted.queues {
            self.notify(StoreEvent::JobsAvailable { queue });
        }
        Ok(inserted.jobs)
    }

    async fn job_list(&self, params: JobListParams) -> StoreResult<Vec<JobRow>> {
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            job_columns!(),
            " FROM stoker_jobs WHERE true"
        ));
        if !params.states.is_empty() {
            query.push(" AND state IN (");
            let mut list = query.separated(", ");
            for state in &params.states {
                list.push_bind(state.as_str());
            }
            query.push(")");
        }
        for (column, values) in [("kind", &params.kinds), ("queue", &params.queues)] {
            if values.is_empty() {
                continue;
            }
            query.push(" AND ").push(column).push(" IN (");
            let mut list = query.separated(", ");
            for value in values {
                list.push_bind(value.as_str());
            }
            query.push(")");
        }
        if let Some(tenant) = &params.tenant {
            query.push(" AND tenant = ").push_bind(tenant.as_str());
        }
        if let Some(before) = params.before_id {
            query.push(" AND id < ").push_bind(before.0);
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(params.limit));
        let rows = query
            .build()
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_error)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn job_extend_lease(&self, params: JobLeaseParams) -> StoreResult<Option<LeaseExtended>> {
        let expires_at = lease_end(params.now, params.lease)?;
        let row: Option<(i64, bool, Option<String>)> = sqlx::query_as(EXTEND_LEASE_SQL)
            .bind(micros(expires_at))
            .bind(params.id.0)
            .bind(params.fence)
            .bind(micros(params.now))
            .fetch_optional(&mut *self.write().await?)
            .await
            .map_err(db_error)?;
        row.map(|(expires_at, cancel_requested, worker_id)| {
            Ok(LeaseExtended {
                expires_at: from_micros("lease_expires_at", expires_at)?,
                cancel_requested,
                worker_id,
            })
        })
        .transpose()
    }

    async fn job_list_stuck(&self, params: JobStuckParams) -> StoreResult<Vec<JobRow>> {
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(STUCK_SQL)
            .bind(micros(params.stale_before))
            .bind(micros(params.now))
            .bind(i64::from(params.limit))
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_error)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn job_progress(&self, params: JobProgressParams) -> StoreResult<bool> {
        params.validate()?;
        let done = sqlx::query(PROGRESS_SQL)
            .bind(to_json(&params.to_progress())?)
            .bind(params.id.0)
            .bind(params.fence)
            .bind(micros(params.now))
            .execute(&mut *self.write().await?)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn job_prune(&self, params: JobPruneParams) -> StoreResult<u64> {
        prune::prune(&mut *self.write().await?, &params, None).await
    }

    async fn job_retry(&self, params: JobRetryParams) -> StoreResult<JobRow> {
        self.job_retry_on(params, None).await
    }

    async fn job_stage(&self, params: JobStageParams) -> StoreResult<u64> {
        if params.limit == 0 {
            return Ok(0);
        }
        let queues: Vec<String> = sqlx::query_scalar(STAGE_SQL)
            .bind(micros(params.now))
            .bind(i64::from(params.limit))
            .fetch_all(&mut *self.write().await?)
            .await
            .map_err(db_error)?;
        let staged = queues.len() as u64;
        self.notify_available(queues);
        Ok(staged)
    }

    async fn job_retry_many_jobs(
        &self,
        params: JobRetryManyParams,
    ) -> StoreResult<Vec<stoker_core::ChangedJob>> {
        self.job_retry_many_on(params, None).await
    }

    async fn job_stats(&self) -> StoreResult<Vec<StateCount>> {
        let rows = sqlx::query(STATS_SQL)
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_error)?;
        let mut counts = rows
            .iter()
            .map(|row| {
                Ok(StateCount {
                    queue: column(row, 0, "queue")?,
                    kind: column(row, 1, "kind")?,
                    tenant: column(row, 2, "tenant")?,
                    state: parse_state(column(row, 3, "state")?)?,
                    count: column(row, 4, "count")?,
                    scheduled: column(row, 5, "scheduled")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let order = |state: JobState| JobState::ALL.iter().position(|s| *s == state);
        counts.sort_by(|a, b| {
            (&a.queue, &a.kind, &a.tenant, order(a.state)).cmp(&(
                &b.queue,
                &b.kind,
                &b.tenant,
                order(b.state),
            ))
        });
        Ok(counts)
    }

    async fn leader_get(&self, now: DateTime<Utc>) -> StoreResult<Option<LeaderRow>> {
        let row = sqlx::query(LEADER_GET_SQL)
            .bind(LEADER_NAME)
            .bind(micros(now))
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(db_error)?;
        row.map(|row| {
            Ok(LeaderRow {
                leader_id: column(&row, 0, "leader_id")?,
                elected_at: time_column(&row, 1, "elected_at")?,
                expires_at: time_column(&row, 2, "expires_at")?,
            })
        })
        .transpose()
    }

    async fn leader_attempt_elect(&self, params: LeaderElectParams) -> StoreResult<bool> {
        let now = micros(params.now);
        let ttl = i64::try_from(params.ttl.as_micros()).unwrap_or(i64::MAX);
        let leader: Option<String> = sqlx::query_scalar(LEADER_ELECT_SQL)
            .bind(LEADER_NAME)
            .bind(&params.leader_id)
            .bind(now)
            .bind(now.saturating_add(ttl))
            .fetch_optional(&mut *self.write().await?)
            .await
            .map_err(db_error)?;
        Ok(leader.as_deref() == Some(params.leader_id.as_str()))
    }

    async fn leader_resign(&self, leader_id: &str) -> StoreResult<()> {
        sqlx::query(LEADER_RESIGN_SQL)
            .bind(LEADER_NAME)
            .bind(leader_id)
            .execute(&mut *self.write().await?)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn queue_list(&self) -> StoreResult<Vec<QueueRow>> {
        let rows = sqlx::query(QUEUE_LIST_SQL)
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(QueueRow {
                    name: column(row, 0, "name")?,
                    paused: column(row, 1, "paused")?,
                    updated_at: time_column(row, 2, "updated_at")?,
                })
            })
            .collect()
    }

    async fn queue_pause(&self, params: QueueParams) -> StoreResult<()> {
        self.queue_set(&params, true, None).await
    }

    async fn queue_resume(&self, params: QueueParams) -> StoreResult<()> {
        self.queue_resume_on(params, None).await
    }

    async fn worker_heartbeat(
        &self,
        params: WorkerHeartbeatParams,
    ) -> StoreResult<WorkerHeartbeatReply> {
        let mut conn = self.write().await?;
        sqlx::query(WORKER_HEARTBEAT_SQL)
            .bind(&params.id)
            .bind(&params.host)
            .bind(i64::from(params.pid))
            .bind(to_json(&params.queues)?)
            .bind(i64::from(params.concurrency))
            .bind(micros(params.started_at))
            .bind(micros(params.now))
            .bind(i64::try_from(params.done_delta).unwrap_or(i64::MAX))
            .bind(i64::try_from(params.failed_delta).unwrap_or(i64::MAX))
            .bind(to_json(&WorkerDetails {
                running: params.running.clone(),
                ..params.details.clone()
            })?)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        let mut reply = WorkerHeartbeatReply {
            leader_vacant: sqlx::query_scalar(LEADER_VACANT_SQL)
                .bind(LEADER_NAME)
                .bind(micros(params.now))
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error)?,
            ..WorkerHeartbeatReply::default()
        };
        if !params.queues.is_empty() {
            reply.due_queues = sqlx::query_scalar(WORKER_DUE_QUEUES_SQL)
                .bind(to_json(&params.queues)?)
                .bind(micros(params.now))
                .fetch_all(&mut *conn)
                .await
                .map_err(db_error)?;
        }
        if !params.running.is_empty() {
            let running: Vec<i64> = params.running.iter().map(|id| id.0).collect();
            let ids: Vec<i64> = sqlx::query_scalar(WORKER_CANCELLED_SQL)
                .bind(to_json(&running)?)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_error)?;
            reply.cancel_requested = ids.into_iter().map(JobId).collect();
        }
        Ok(reply)
    }

    async fn worker_list(&self) -> StoreResult<Vec<WorkerRow>> {
        let rows = sqlx::query(WORKER_LIST_SQL)
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_error)?;
        rows.iter().map(worker_from_row).collect()
    }

    async fn worker_prune(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM stoker_workers WHERE heartbeat_at < ?1")
            .bind(micros(before))
            .execute(&mut *self.write().await?)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn worker_remove(&self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM stoker_workers WHERE id = ?1")
            .bind(id)
            .execute(&mut *self.write().await?)
            .await
            .map_err(db_error)?;
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
        failures::group_list(&mut *self.read().await?, &params).await
    }

    async fn failure_group_get(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<stoker_core::FailureGroup>> {
        failures::group_get(&mut *self.read().await?, fingerprint).await
    }

    async fn bulk_op_create(
        &self,
        params: stoker_core::BulkOpCreateParams,
    ) -> StoreResult<stoker_core::BulkOpRow> {
        failures::op_create(&mut *self.write().await?, &params, None).await
    }

    async fn bulk_op_get(&self, id: i64) -> StoreResult<Option<stoker_core::BulkOpRow>> {
        failures::op_get(&mut *self.read().await?, id).await
    }

    async fn bulk_op_list(
        &self,
        params: stoker_core::BulkOpListParams,
    ) -> StoreResult<Vec<stoker_core::BulkOpRow>> {
        failures::op_list(&mut *self.read().await?, &params).await
    }

    async fn bulk_op_abort(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<stoker_core::BulkOpRow> {
        failures::op_abort(&mut *self.write().await?, id, now, None).await
    }

    async fn bulk_op_step_jobs(
        &self,
        params: stoker_core::BulkOpStepParams,
    ) -> StoreResult<Option<stoker_core::BulkOpStep>> {
        let stepped = failures::op_step(&mut *self.write().await?, &params).await?;
        let Some((op, mut events)) = stepped else {
            return Ok(None);
        };
        self.notify_available(events.available);
        for id in events.cancel_requested {
            self.notify(StoreEvent::JobCancelRequested { id });
        }
        // --- stream wake ---
        if !events.finished_parents.is_empty() {
            self.wake_released(events.finished_parents).await;
        }
        Ok(Some(stoker_core::BulkOpStep {
            op,
            changed: std::mem::take(&mut events.changed),
        }))
    }

    async fn job_log_append(
        &self,
        params: stoker_core::JobLogParams,
    ) -> StoreResult<Option<stoker_core::JobLogAppended>> {
        params.validate()?;
        failures::log_append(&mut *self.write().await?, &params).await
    }

    async fn job_logs(&self, id: JobId) -> StoreResult<Vec<stoker_core::JobLogLine>> {
        failures::logs(&mut *self.read().await?, id).await
    }

    // --- History (issue 13) ---

    async fn history_record(&self, params: stoker_core::HistoryRecordParams) -> StoreResult<()> {
        crate::history::record(&mut *self.write().await?, &params.deltas).await
    }

    async fn history_query(
        &self,
        params: stoker_core::HistoryQueryParams,
    ) -> StoreResult<Vec<stoker_core::HistoryValue>> {
        crate::history::query(&mut *self.read().await?, &params).await
    }

    async fn history_rollup(
        &self,
        params: stoker_core::HistoryRollupParams,
    ) -> StoreResult<stoker_core::HistoryRollupReport> {
        crate::history::rollup(&mut *self.write().await?, &params).await
    }

    async fn queue_depths(&self) -> StoreResult<Vec<stoker_core::QueueDepth>> {
        crate::history::depths(&mut *self.read().await?).await
    }

    // --- stream alerts ---
    // Alert rules (issue 13, item 8): the statements live in `store/alert.rs`.

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
        crate::search::search(&mut *self.read().await?, &params).await
    }

    async fn job_count(
        &self,
        criteria: stoker_core::JobCriteria,
    ) -> StoreResult<stoker_core::JobCount> {
        crate::search::count(&mut *self.read().await?, &criteria).await
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
        crate::history::depths_tenant(&mut *self.read().await?, tenant).await
    }

    async fn job_prune_tenant(&self, params: JobPruneParams, tenant: &str) -> StoreResult<u64> {
        prune::prune_tenant(&mut *self.write().await?, &params, tenant, None).await
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
        action: AuditedAction,
        entry: AuditEntry,
    ) -> StoreResult<AuditedOutcome> {
        let audit = Some(entry);
        Ok(match action {
            AuditedAction::JobCancel(params) => {
                AuditedOutcome::Job(self.job_cancel_on(params, audit).await?)
            }
            AuditedAction::JobRetry(params) => {
                AuditedOutcome::Job(self.job_retry_on(params, audit).await?)
            }
            AuditedAction::JobDelete(id) => {
                AuditedOutcome::Job(self.job_delete_on(id, audit).await?)
            }
            AuditedAction::QueuePause(params) => {
                self.queue_set(&params, true, audit).await?;
                AuditedOutcome::Done
            }
            AuditedAction::QueueResume(params) => {
                self.queue_resume_on(params, audit).await?;
                AuditedOutcome::Done
            }
            AuditedAction::JobRetryMany(params) => {
                AuditedOutcome::Changed(self.job_retry_many_on(params, audit).await?)
            }
            AuditedAction::JobPrune { params, tenant } => {
                let mut conn = self.write().await?;
                AuditedOutcome::Count(match tenant {
                    None => prune::prune(&mut conn, &params, audit).await?,
                    Some(tenant) => prune::prune_tenant(&mut conn, &params, &tenant, audit).await?,
                })
            }
            AuditedAction::CronWrite(params) => {
                AuditedOutcome::Cron(self.cron_write_impl(params, audit).await?)
            }
            AuditedAction::CronDelete(name) => {
                AuditedOutcome::Cron(self.cron_delete_impl(&name, audit).await?)
            }
            AuditedAction::CronFire(params) => {
                AuditedOutcome::CronFire(self.cron_fire_impl(params, audit).await?)
            }
            AuditedAction::AlertWrite(params) => {
                AuditedOutcome::Alert(self.alert_write_impl(params, audit).await?)
            }
            AuditedAction::AlertDelete(name) => {
                AuditedOutcome::Alert(self.alert_delete_impl(&name, audit).await?)
            }
            AuditedAction::TokenCreate(params) => {
                AuditedOutcome::Token(self.token_create_impl(params, audit).await?)
            }
            AuditedAction::TokenRevoke { id, now } => {
                AuditedOutcome::Token(self.token_revoke_impl(&id, now, audit).await?)
            }
            AuditedAction::LimitSet(params) => {
                AuditedOutcome::Limit(self.limit_set_impl(params, audit).await?)
            }
            AuditedAction::LimitDelete(name) => {
                AuditedOutcome::Limit(self.limit_delete_impl(&name, audit).await?)
            }
            AuditedAction::BulkOpCreate(params) => AuditedOutcome::BulkOp(
                failures::op_create(&mut *self.write().await?, &params, audit).await?,
            ),
            AuditedAction::BulkOpAbort { id, now } => AuditedOutcome::BulkOp(
                failures::op_abort(&mut *self.write().await?, id, now, audit).await?,
            ),
        })
    }

    async fn audit_prune(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        self.audit_prune_impl(before, limit).await
    }
    // --- stream ops ---

    async fn failure_group_counts(
        &self,
        params: stoker_core::FailureCountParams,
    ) -> StoreResult<Vec<stoker_core::FailureHour>> {
        failures::group_counts(&mut *self.read().await?, &params).await
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

/// A write transaction on `conn`, the writer. `BEGIN IMMEDIATE` takes SQLite's write lock at
/// once, so a transaction that reads before it writes cannot fail to upgrade.
pub(crate) async fn begin_write(
    conn: &mut SqliteConnection,
) -> StoreResult<sqlx::Transaction<'_, Sqlite>> {
    conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)
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
impl StoreTx<SqliteConnection> for SqliteStore {
    /// Inserts jobs on `conn`, inside the caller's transaction if it has one (as a savepoint,
    /// so a failure leaves the caller's transaction as it was), or else in a transaction of its
    /// own.
    ///
    /// Sends no events: the caller's transaction may still roll back, and SQLite cannot tie an
    /// event to its commit. Workers find the jobs on their next poll.
    async fn job_insert_many_tx(
        &self,
        conn: &mut SqliteConnection,
        params: JobInsertParams,
    ) -> StoreResult<Vec<InsertedJob>> {
        insert::validate(&params)?;
        if params.jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = if conn.is_in_transaction() {
            conn.begin().await
        } else {
            conn.begin_with("BEGIN IMMEDIATE").await
        }
        .map_err(db_error)?;
        let quotas = self.flow_quota_demand_on(&mut tx, &params.jobs).await?;
        if !quotas.is_empty() {
            flow::flow_quota_take(&mut tx, &quotas, params.now).await?;
        }
        // --- stream flow ---
        // The limits were just read on this connection if the cache was stale.
        let fair_marks = match self.inner.limits.fresh() {
            Some(limits) => flow::fair_marks_of(&limits, &params.jobs),
            None => Vec::new(),
        };
        flow::flow_fair_mark(&mut tx, &fair_marks).await?;
        let inserted = insert::insert_jobs(&mut tx, &params).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(inserted.jobs)
    }
}
