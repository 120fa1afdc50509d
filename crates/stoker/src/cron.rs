//! Recurring schedules (issue 15) through the [`Client`], and the [`CronFirer`] that every
//! process runs to fire them.
//!
//! A schedule names a cron expression in an IANA time zone and the job to enqueue at each slot.
//! Every process with maintenance on runs a [`CronFirer`]; none needs to lead. Each slot's job
//! is inserted under a compare-and-set in the database, keyed by schedule and slot, so a slot
//! fires exactly once however many processes try (see [`stoker_core::cron`]).
//!
//! ```
//! # async fn demo() -> stoker::Result<()> {
//! use std::sync::Arc;
//! use stoker::cron::CronSchedule;
//! use stoker::Client;
//!
//! let store = Arc::new(stoker::sqlite::SqliteStore::connect("sqlite::memory:").await?);
//! let client = Client::new(store);
//! client.migrate().await?;
//! let mut report = CronSchedule::new("weekly-report", "0 9 * * MON", "report", serde_json::json!({}));
//! report.tz = "Europe/London".into();
//! client.cron_create(report).await?;
//! assert_eq!(client.cron_list().await?.len(), 1);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
pub use stoker_core::cron::{
    fire_due, CatchUp, CronExpr, CronJobMeta, CronRow, CronRun, CronSchedule, FireReport, FiredJob,
    Overlap, CRON_CATCH_UP_MAX_LIMIT, CRON_EXPR_MAX_LEN, CRON_HISTORY_KEEP, CRON_NAME_MAX_LEN,
    CRON_ON_TIME_SECONDS, CRON_TZ_MAX_LEN, CRON_WINDOW_MAX_SECONDS,
};
use stoker_core::cron::{
    validate_name, CronFireOutcome, CronFireParams, CronSlotJob, CronWriteMode, CronWriteParams,
};
use stoker_core::{InsertedJob, InvalidInput, Store};
use tokio_util::sync::CancellationToken;

use crate::{Client, Error, Result};

/// The most upcoming slots [`next_slots`] lists.
pub const NEXT_MAX: usize = 100;
/// The most runs [`Client::cron_history`] returns.
pub const HISTORY_MAX: u32 = CRON_HISTORY_KEEP;

/// The next `n` slots of `expr` in `tz` after `after` (`stoker cron next`).
///
/// # Errors
///
/// [`Error::Invalid`] naming `expr`, `tz` or `count`.
pub fn next_slots(
    expr: &str,
    tz: &str,
    after: DateTime<Utc>,
    n: usize,
) -> Result<Vec<DateTime<Utc>>> {
    if !(1..=NEXT_MAX).contains(&n) {
        return Err(InvalidInput::new("count", format!("must be from 1 to {NEXT_MAX}")).into());
    }
    Ok(CronExpr::parse(expr, tz)?.upcoming(after, n))
}

// Recurring schedules (issue 15). A client limited to a tenant ([`Client::for_tenant`]) sees
// and changes only the schedules whose jobs are its tenant's (issue 17); another tenant's
// schedule is not found. Names stay one namespace: creating a taken name is a conflict
// whoever holds it.
impl<S: Store + ?Sized> Client<S> {
    /// Validates `schedule` and writes it in `mode`; with `audit` (the action's name), in one transaction with
    /// its audit row.
    async fn cron_write(
        &self,
        mut schedule: CronSchedule,
        mode: CronWriteMode,
        audit: Option<&str>,
    ) -> Result<CronRow> {
        if self.tenant().is_some() {
            // A client limited to a tenant writes its own tenant's schedules only: the jobs
            // they enqueue are its tenant's, and another tenant's schedule is not found.
            schedule.tenant = self.tenant_for(schedule.tenant.take(), "tenant")?;
            if !matches!(mode, CronWriteMode::Create) {
                validate_name(&schedule.name)?;
                if let Some(existing) = self.store().cron_get(&schedule.name).await? {
                    if !self.sees(existing.schedule.tenant.as_deref()) {
                        return Err(Error::NotFound(format!("schedule {:?}", schedule.name)));
                    }
                }
            }
        }
        let expr = schedule.validate(self.args_limit())?;
        if let Some(handler) = self.registry().and_then(|r| r.get(&schedule.kind)) {
            handler.validate(&schedule.args)?;
        }
        // A schedule of an encrypted kind or queue keeps its args sealed (issue 17): the
        // schedule's row holds no plaintext, and every job it fires copies the envelope, which
        // is bound to the kind and tenant the job has too.
        if let Some(encryption) = self.encryption() {
            if encryption.applies(&schedule.kind, &schedule.queue)
                && crate::sealed_with(&schedule.args).is_none()
            {
                schedule.args = encryption
                    .seal(
                        crate::crypt::Field::Args,
                        &schedule.kind,
                        schedule.tenant.as_deref(),
                        &schedule.args,
                    )
                    .map_err(|err| Error::Config(err.to_string()))?;
            }
        }
        let now = self.clock().now();
        let next_slot = expr
            .next_after(now)
            .ok_or_else(|| InvalidInput::new("expr", "never matches again"))?;
        let params = CronWriteParams {
            schedule,
            next_slot,
            mode,
            now,
        };
        // An operator's change commits with its audit row (issue 17); the config's upsert at
        // start is not one.
        match audit {
            None => Ok(self.store().cron_write(params).await?),
            Some(action) => {
                let entry = self.cron_audit_entry(action, &params.schedule.name);
                Ok(self
                    .store()
                    .audited(stoker_core::AuditedAction::CronWrite(params), entry)
                    .await?
                    .cron()?)
            }
        }
    }

    /// Creates a schedule. Its first slot is the first after now.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the field at fault; [`Error::Conflict`] if the name is taken.
    pub async fn cron_create(&self, schedule: CronSchedule) -> Result<CronRow> {
        self.cron_write(schedule, CronWriteMode::Create, Some("cron.create"))
            .await
    }

    fn cron_audit_entry(&self, action: &str, name: &str) -> stoker_core::AuditEntry {
        self.audit_entry(action, Some(format!("schedule {name}")), None, None)
    }

    /// Replaces a schedule's definition. A new expression or time zone takes effect from now:
    /// slots the old one missed are not backfilled.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the field at fault; [`Error::NotFound`] if there is none.
    pub async fn cron_update(&self, schedule: CronSchedule) -> Result<CronRow> {
        self.cron_write(schedule, CronWriteMode::Update, Some("cron.update"))
            .await
    }

    /// Creates or updates a schedule by name, keeping a paused schedule paused (what the
    /// `stoker serve` config and [`WorkerBuilder::cron`](crate::WorkerBuilder::cron) do at
    /// start). An unchanged definition writes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the field at fault.
    pub async fn cron_upsert(&self, mut schedule: CronSchedule) -> Result<CronRow> {
        validate_name(&schedule.name)?;
        if let Some(existing) = self.store().cron_get(&schedule.name).await? {
            schedule.enabled = existing.schedule.enabled;
        }
        self.cron_write(schedule, CronWriteMode::Upsert, None).await
    }

    /// One schedule.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none.
    pub async fn cron_get(&self, name: &str) -> Result<CronRow> {
        self.store()
            .cron_get(name)
            .await?
            .filter(|row| self.sees(row.schedule.tenant.as_deref()))
            .map(|row| self.cron_opened(row))
            .ok_or_else(|| Error::NotFound(format!("schedule {name:?}")))
    }

    /// The args limit a fire checks: a schedule's args were checked as plaintext when it was
    /// written, and sealed ones are larger by the envelope.
    fn fire_args_limit(&self) -> usize {
        crate::crypt::sealed_size_limit(self.args_limit())
    }

    /// A schedule as this client shows it: sealed args opened when it holds the key (left
    /// sealed otherwise: the envelope holds no plaintext).
    fn cron_opened(&self, mut row: CronRow) -> CronRow {
        if let Some(encryption) = self.encryption() {
            if let Ok(args) = encryption.open(
                crate::crypt::Field::Args,
                &row.schedule.kind,
                row.schedule.tenant.as_deref(),
                &row.schedule.args,
            ) {
                row.schedule.args = args;
            }
        }
        row
    }

    /// Every schedule, by name.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn cron_list(&self) -> Result<Vec<CronRow>> {
        let mut rows = self.store().cron_list().await?;
        rows.retain(|row| self.sees(row.schedule.tenant.as_deref()));
        Ok(rows.into_iter().map(|row| self.cron_opened(row)).collect())
    }

    /// Deletes a schedule and its history (its jobs stay).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none.
    pub async fn cron_delete(&self, name: &str) -> Result<CronRow> {
        if self.tenant().is_some() {
            self.cron_get(name).await?;
        }
        let entry = self.cron_audit_entry("cron.delete", name);
        let action = stoker_core::AuditedAction::CronDelete(name.to_owned());
        Ok(self.store().audited(action, entry).await?.cron()?)
    }

    /// Pauses a schedule: no slot fires until it is resumed.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none.
    pub async fn cron_pause(&self, name: &str) -> Result<CronRow> {
        let mut schedule = self.cron_get(name).await?.schedule;
        schedule.enabled = false;
        self.cron_write(schedule, CronWriteMode::Update, Some("cron.pause"))
            .await
    }

    /// Resumes a paused schedule from now: slots missed while paused are not fired.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none.
    pub async fn cron_resume(&self, name: &str) -> Result<CronRow> {
        let mut schedule = self.cron_get(name).await?.schedule;
        schedule.enabled = true;
        self.cron_write(schedule, CronWriteMode::Update, Some("cron.resume"))
            .await
    }

    /// Enqueues the schedule's job now, by hand. Its key (`cron:<name>:run-now:<instant>`)
    /// never collides with a slot's, and the schedule's next slot is unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none.
    pub async fn cron_run_now(&self, name: &str) -> Result<InsertedJob> {
        // The row as stored: its job gets the schedule's args as they are kept (sealed for an
        // encrypted kind), never the opened view `cron_get` shows.
        let row = self
            .store()
            .cron_get(name)
            .await?
            .filter(|row| self.sees(row.schedule.tenant.as_deref()))
            .ok_or_else(|| Error::NotFound(format!("schedule {name:?}")))?;
        let now = self.clock().now();
        let job = row.schedule.job(now, false, true);
        let described = job.clone();
        let publishing = self.event_hub().inserting().await;
        let entry = self.cron_audit_entry("cron.run_now", name);
        let params = CronFireParams {
            name: name.to_owned(),
            advance: None,
            slots: vec![CronSlotJob {
                slot: now,
                catch_up: false,
                run_now: true,
                job,
            }],
            overlap: row.schedule.overlap,
            now,
            max_args_bytes: self.fire_args_limit(),
        };
        let outcome = self
            .store()
            .audited(stoker_core::AuditedAction::CronFire(params), entry)
            .await?
            .cron_fire()?;
        match outcome {
            CronFireOutcome::Fired(jobs) if jobs.len() == 1 => {
                if !jobs[0].duplicate {
                    self.publish_fired(&[FiredJob::new(&described, &jobs[0])], now);
                }
                drop(publishing);
                Ok(jobs[0])
            }
            other => Err(Error::Conflict(format!(
                "the manual run of {name:?} was not inserted: {other:?}"
            ))),
        }
    }

    /// The newest `limit` runs of a schedule (at most [`HISTORY_MAX`]), newest first.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such schedule; [`Error::Invalid`] naming `limit`.
    pub async fn cron_history(&self, name: &str, limit: u32) -> Result<Vec<CronRun>> {
        if !(1..=HISTORY_MAX).contains(&limit) {
            return Err(
                InvalidInput::new("limit", format!("must be from 1 to {HISTORY_MAX}")).into(),
            );
        }
        self.cron_get(name).await?;
        Ok(self.store().cron_history(name, limit).await?)
    }

    /// Fires every due slot now (what the [`CronFirer`] does each tick).
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn cron_fire_due(&self) -> Result<FireReport> {
        let now = self.clock().now();
        // A claim of these jobs is published after them (see `EventHub::inserting`).
        let publishing = self.event_hub().inserting().await;
        let report = fire_due(&**self.store(), now, self.fire_args_limit()).await?;
        // --- stream history ---
        // The jobs fired are inserts like any other: live events see them (issue 13).
        self.publish_fired(&report.jobs, now);
        drop(publishing);
        Ok(report)
    }

    /// Publishes the jobs a schedule inserted at `now` as `available`.
    fn publish_fired(&self, jobs: &[FiredJob], now: DateTime<Utc>) {
        self.event_hub().publish(|| {
            jobs.iter()
                .map(|job| crate::events::JobEvent {
                    id: job.id,
                    state: stoker_core::JobState::Available,
                    queue: job.queue.clone(),
                    kind: job.kind.clone(),
                    tenant: job.tenant.clone(),
                    correlation_id: job.correlation_id.clone(),
                    attempt: 0,
                    at: now,
                    error: None,
                })
                .collect()
        });
    }
}

/// Settings of the [`CronFirer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronFirerConfig {
    /// The longest it sleeps between two looks at the schedule table when nothing is due
    /// sooner: how long a schedule created by another process may wait to be seen. Defaults
    /// to 15 seconds (4 cheap reads a minute while idle).
    pub max_sleep: Duration,
    /// The shortest sleep, so a slot another process is firing right now is not polled in a
    /// tight loop. Defaults to 100 ms.
    pub min_sleep: Duration,
}

impl Default for CronFirerConfig {
    fn default() -> Self {
        CronFirerConfig {
            max_sleep: Duration::from_secs(15),
            min_sleep: Duration::from_millis(100),
        }
    }
}

/// Fires due cron slots; runs in every process with maintenance on, leader or not.
pub struct CronFirer {
    client: Client,
    config: CronFirerConfig,
}

impl CronFirer {
    /// A firer over `client`'s store, clock and args limit.
    pub fn new(client: Client, config: CronFirerConfig) -> Self {
        CronFirer { client, config }
    }

    /// Fires every due slot once, and returns how long to sleep before the next look.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn run_once(&self) -> Result<(FireReport, Duration)> {
        let report = self.client.cron_fire_due().await?;
        let now = self.client.clock().now();
        let sleep = report
            .next_slot
            .and_then(|next| (next - now).to_std().ok())
            .unwrap_or(self.config.max_sleep)
            .clamp(self.config.min_sleep, self.config.max_sleep);
        Ok((report, sleep))
    }

    /// Runs until `stop`. A failed pass is logged and retried after `max_sleep`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let sleep = match self.run_once().await {
                Ok((report, sleep)) => {
                    if report.fired + report.skipped > 0 {
                        tracing::debug!(
                            fired = report.fired,
                            skipped = report.skipped,
                            lost = report.lost,
                            "cron pass"
                        );
                    }
                    sleep
                }
                Err(err) => {
                    tracing::warn!(%err, "cron pass failed; will retry");
                    self.config.max_sleep
                }
            };
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

impl std::fmt::Debug for CronFirer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronFirer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
