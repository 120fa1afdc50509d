//! The client's pull side: reserve jobs under a lease and report on them with the fence they
//! were reserved with. The server's pull protocol is these methods over HTTP, so workers in any
//! language get the same rules as the Rust worker (one failed-attempt rule, one fence).
//!
//! Every report names the job and its fence ([`JobRow::fence`] as reserved). A report whose
//! fence is no longer current (the lease lapsed, the job was rescued, finished, or reserved
//! again by someone else) changes nothing and fails with [`Error::LeaseLost`]; one for a job
//! that does not exist with [`Error::NotFound`]. Each report is one store write; only a failure
//! (whose retry delay depends on the attempt and the job's backoff) reads the job first.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use stoker_core::{
    validate_kind, validate_queue, AttemptError, ErrorKind, FinishedJob, InvalidInput,
    JobClaimParams, JobFinish, JobFinishParams, JobId, JobLeaseParams, JobProgressParams, JobRow,
    JobState, LeaseExtended, Outcome, Store, StoreEvent, WorkerHeartbeatParams,
};
use tokio::sync::broadcast;

use crate::backoff::{after, failed_attempt};
use crate::{Client, Error, Result};

/// The most queues one reservation names.
pub const RESERVE_MAX_QUEUES: usize = 32;
/// The most kinds one reservation names.
pub const RESERVE_MAX_KINDS: usize = 64;
/// The most jobs one reservation takes.
pub const RESERVE_MAX_LIMIT: u32 = 100;

/// What [`Client::reserve`] takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// The worker id written to each reserved job (the server uses `pull:<name>`).
    pub worker: String,
    /// The queues to take jobs from, in order of preference: 1 to [`RESERVE_MAX_QUEUES`].
    pub queues: Vec<String>,
    /// Only jobs of these kinds; empty means every kind. At most [`RESERVE_MAX_KINDS`].
    pub kinds: Vec<String>,
    /// The most jobs to reserve: 1 to [`RESERVE_MAX_LIMIT`].
    pub limit: u32,
    /// How long each job is held unless its lease is extended; more than zero.
    pub lease: Duration,
}

impl Reservation {
    /// Checks the bounds before any work: the counts first, so a request naming thousands of
    /// queues is refused without looking at them.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `worker`, `queues`, `queues[i]`, `kinds`, `kinds[i]`, `limit`
    /// or `lease`.
    pub fn validate(&self) -> std::result::Result<(), InvalidInput> {
        if self.worker.is_empty() {
            return Err(InvalidInput::new("worker", "must not be empty"));
        }
        if self.queues.is_empty() || self.queues.len() > RESERVE_MAX_QUEUES {
            return Err(InvalidInput::new(
                "queues",
                format!(
                    "name 1 to {RESERVE_MAX_QUEUES} queues, got {}",
                    self.queues.len()
                ),
            ));
        }
        if self.kinds.len() > RESERVE_MAX_KINDS {
            return Err(InvalidInput::new(
                "kinds",
                format!(
                    "name at most {RESERVE_MAX_KINDS} kinds, got {}",
                    self.kinds.len()
                ),
            ));
        }
        if !(1..=RESERVE_MAX_LIMIT).contains(&self.limit) {
            return Err(InvalidInput::new(
                "limit",
                format!(
                    "must be between 1 and {RESERVE_MAX_LIMIT}, got {}",
                    self.limit
                ),
            ));
        }
        if self.lease.is_zero() {
            return Err(InvalidInput::new("lease", "must be longer than zero"));
        }
        for (index, queue) in self.queues.iter().enumerate() {
            validate_queue(queue)
                .map_err(|err| InvalidInput::new(format!("queues[{index}]"), err.reason))?;
        }
        for (index, kind) in self.kinds.iter().enumerate() {
            validate_kind(kind)
                .map_err(|err| InvalidInput::new(format!("kinds[{index}]"), err.reason))?;
        }
        Ok(())
    }
}

/// How a reserved job's attempt failed: [`Client::fail_reserved`].
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What went wrong, recorded in the job's error history.
    pub message: String,
    /// Retry after this long instead of the backoff (e.g. from a `Retry-After` header).
    pub retry_in: Option<Duration>,
    /// Discard the job now (dead letter), whatever attempts remain.
    pub discard: bool,
}

impl<S: Store + ?Sized> Client<S> {
    /// Subscribes to the store's events (jobs available, cancels requested), so a reservation
    /// that waits can wake the moment a job arrives; `None` when the store delivers none (then
    /// poll).
    pub fn subscribe(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        self.store().subscribe()
    }

    /// Writes the heartbeat row of a worker that runs jobs out of process (a pull worker), so
    /// it shows among the workers and its counters add up. Spans every tenant.
    ///
    /// # Errors
    ///
    /// [`Error::TenantForbidden`] from a client limited to a tenant; a store error.
    pub async fn record_worker(&self, params: WorkerHeartbeatParams) -> Result<()> {
        self.require_every_tenant("worker rows")?;
        self.store().worker_heartbeat(params).await?;
        Ok(())
    }

    /// Reserves up to `limit` due jobs of the reservation's queues (and kinds), taking the
    /// queues in order, each job `running` for `worker` under a lease. Returns them with their
    /// fence, which every report on them must carry; none if nothing is due. A client limited
    /// to a tenant ([`Client::for_tenant`]) reserves only that tenant's jobs, and its reports
    /// on another tenant's job answer [`Error::NotFound`].
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] (see [`Reservation::validate`]), or a store error.
    pub async fn reserve(&self, reservation: &Reservation) -> Result<Vec<JobRow>> {
        reservation.validate()?;
        let mut limit = reservation.limit;
        let mut jobs = Vec::new();
        for queue in &reservation.queues {
            if limit == 0 {
                break;
            }
            let params = JobClaimParams {
                queue: queue.clone(),
                kinds: reservation.kinds.clone(),
                limit,
                worker_id: reservation.worker.clone(),
                now: self.clock().now(),
                lease: Some(reservation.lease),
            };
            // A client limited to a tenant reserves only that tenant's jobs (issue 17).
            let claimed = match self.tenant() {
                Some(tenant) => self.store().job_claim_tenant(params, tenant).await?,
                None => self.store().job_claim(params).await?,
            };
            limit -= u32::try_from(claimed.len()).unwrap_or(limit).min(limit);
            if let Some(history) = self.history() {
                history.record_started(&claimed);
            }
            self.publish_claimed(&claimed, self.clock().now()).await;
            // --- stream crypt ---
            jobs.extend(self.open_reserved(claimed).await?);
        }
        Ok(jobs)
    }

    /// Extends the lease of a reserved job to `lease` from now, and says whether a cancel was
    /// requested (then stop, and report with [`Client::cancel_reserved`]).
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`] if the job is no longer held under `fence` or its lease already
    /// ended; [`Error::NotFound`]; [`Error::Invalid`] for a zero or overlong lease.
    pub async fn extend_lease(
        &self,
        id: JobId,
        fence: i64,
        lease: Duration,
    ) -> Result<LeaseExtended> {
        if lease.is_zero() {
            return Err(InvalidInput::new("lease", "must be longer than zero").into());
        }
        self.require_visible(id).await?;
        let extended = self
            .store()
            .job_extend_lease(JobLeaseParams {
                id,
                fence,
                lease,
                now: self.clock().now(),
            })
            .await?;
        match extended {
            Some(extended) => Ok(extended),
            None => Err(self.refused(id, fence).await),
        }
    }

    /// Records a reserved job's progress: a fraction from 0.0 to 1.0, what it is doing, and
    /// optional JSON details.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `fraction` or `details` (over
    /// [`MAX_PROGRESS_DETAILS_BYTES`](stoker_core::MAX_PROGRESS_DETAILS_BYTES));
    /// [`Error::LeaseLost`]; [`Error::NotFound`].
    pub async fn progress_reserved(
        &self,
        id: JobId,
        fence: i64,
        fraction: f64,
        message: Option<String>,
        details: Option<Value>,
    ) -> Result<()> {
        let params = JobProgressParams {
            id,
            fence,
            fraction,
            message,
            details,
            now: self.clock().now(),
        };
        params.validate()?;
        self.require_visible(id).await?;
        if self.store().job_progress(params).await? {
            Ok(())
        } else {
            Err(self.refused(id, fence).await)
        }
    }

    /// Completes a reserved job with its result (`completed`), and returns the job as the
    /// report left it.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`]; [`Error::NotFound`]; a store error.
    pub async fn complete_reserved(
        &self,
        id: JobId,
        fence: i64,
        result: Option<Value>,
    ) -> Result<FinishedJob> {
        let result = result.filter(|value| !value.is_null());
        let result = self.seal_reserved_result(id, result).await?;
        self.finish_reserved(id, fence, Outcome::Completed { result }, self.clock().now())
            .await
    }

    // --- stream crypt ---

    /// Opens the sealed args of reserved jobs, so pull workers get plaintext. A job whose args
    /// do not open (its key is missing or wrong) is snoozed for
    /// [`KEY_MISSING_RETRY`](crate::KEY_MISSING_RETRY) without using an attempt and left out
    /// of the answer: it waits for a server with the key, and the log says which key.
    async fn open_reserved(&self, claimed: Vec<JobRow>) -> Result<Vec<JobRow>> {
        let now = self.clock().now();
        let mut opened = Vec::with_capacity(claimed.len());
        let mut waiting = Vec::new();
        for mut job in claimed {
            match self.open_claimed(&mut job) {
                Ok(()) => opened.push(job),
                Err(err) => {
                    tracing::error!(job = %job.id, kind = %job.kind, %err, "cannot open the job's args; it waits");
                    waiting.push(JobFinish {
                        id: job.id,
                        fence: job.fence,
                        outcome: Outcome::Snooze {
                            run_at: after(now, crate::KEY_MISSING_RETRY),
                        },
                    });
                }
            }
        }
        if !waiting.is_empty() {
            self.store()
                .job_finish_many(JobFinishParams::new(waiting, now))
                .await?;
        }
        Ok(opened)
    }

    /// A pull worker's result as it is stored: sealed if the job's kind or queue is
    /// encrypted, or its args are sealed. Only a client with encryption reads the job for it.
    async fn seal_reserved_result(
        &self,
        id: JobId,
        result: Option<Value>,
    ) -> Result<Option<Value>> {
        if self.encryption().is_none() || result.is_none() {
            return Ok(result);
        }
        match self.store().job_get(id).await? {
            Some(job) => {
                let args_sealed = crate::sealed_with(&job.args).is_some();
                Ok(self.seal_result(&job, args_sealed, result))
            }
            // The report is refused as for any missing job; nothing is written.
            None => Ok(None),
        }
    }

    /// Fails a reserved job's attempt by the one failed-attempt rule: retried after
    /// `retry_in`, else the job's own backoff, else its kind's (if the client's registry has
    /// it), else the default backoff, while attempts remain; discarded after the last, or at
    /// once with `discard`. A job with a cancel requested ends `cancelled`. Returns the job as
    /// the report left it.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `error` for an empty message; [`Error::LeaseLost`];
    /// [`Error::NotFound`]; a store error.
    pub async fn fail_reserved(
        &self,
        id: JobId,
        fence: i64,
        failure: Failure,
    ) -> Result<FinishedJob> {
        if failure.message.is_empty() {
            return Err(
                InvalidInput::new("error", "say what went wrong: must not be empty").into(),
            );
        }
        let job = self.held(id, fence).await?;
        let now = self.clock().now();
        let error = AttemptError {
            attempt: job.attempt,
            at: now,
            kind: ErrorKind::Error,
            message: failure.message,
            backtrace: None,
        };
        let outcome = if failure.discard {
            Outcome::Discard { error }
        } else {
            let handler = self
                .registry()
                .and_then(|registry| registry.get(&job.kind))
                .map(|handler| &**handler);
            failed_attempt(&job, error, now, failure.retry_in, handler)
        };
        self.finish_reserved(id, fence, outcome, now).await
    }

    /// Snoozes a reserved job: `available` again after `delay`, without using up an attempt
    /// (a job with a cancel requested ends `cancelled`). Returns the job as the report left it.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`]; [`Error::NotFound`]; a store error.
    pub async fn snooze_reserved(
        &self,
        id: JobId,
        fence: i64,
        delay: Duration,
    ) -> Result<FinishedJob> {
        let now = self.clock().now();
        let outcome = Outcome::Snooze {
            run_at: after(now, delay),
        };
        self.finish_reserved(id, fence, outcome, now).await
    }

    /// Acknowledges a cancel: the reserved job ends `cancelled`, with `message` (if given) in
    /// its error history. Returns the job as the report left it.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`]; [`Error::NotFound`]; a store error.
    pub async fn cancel_reserved(
        &self,
        id: JobId,
        fence: i64,
        message: Option<String>,
    ) -> Result<FinishedJob> {
        let now = self.clock().now();
        let error = match message.filter(|message| !message.trim().is_empty()) {
            // The history records which attempt stopped: only the row knows it.
            Some(message) => Some(AttemptError {
                attempt: self.held(id, fence).await?.attempt,
                at: now,
                kind: ErrorKind::Cancelled,
                message,
                backtrace: None,
            }),
            None => None,
        };
        self.finish_reserved(id, fence, Outcome::Cancel { error }, now)
            .await
    }

    /// Applies one report in one store write.
    async fn finish_reserved(
        &self,
        id: JobId,
        fence: i64,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Result<FinishedJob> {
        self.require_visible(id).await?;
        // History and live events (issue 13) both read the outcome asked for.
        let asked = outcome.clone();
        let finish = JobFinish { id, fence, outcome };
        let mut applied = self
            .store()
            .job_finish_many(JobFinishParams::new(vec![finish], now))
            .await?;
        if let Some(job) = applied.first() {
            if let Some(history) = self.history() {
                history.record_finished(now, [(job, &asked, None)]);
            }
            self.publish_finished(now, [(job, &asked)]);
        }
        match applied.pop() {
            Some(job) if job.id == id => Ok(job),
            _ => Err(self.refused(id, fence).await),
        }
    }

    /// The job, if it is running under `fence` with its lease (if any) not yet ended.
    async fn held(&self, id: JobId, fence: i64) -> Result<JobRow> {
        let now = self.clock().now();
        let job = self
            .store()
            .job_get(id)
            .await?
            .filter(|job| self.sees(job.tenant.as_deref()));
        match job {
            None => Err(Error::NotFound(format!("job {id}"))),
            Some(job)
                if job.state == JobState::Running
                    && job.fence == fence
                    && job.lease_expires_at.is_none_or(|end| end > now) =>
            {
                Ok(job)
            }
            Some(_) => Err(Error::LeaseLost { id, fence }),
        }
    }

    /// Why a fenced write changed nothing: the job is gone, or no longer held under `fence`.
    async fn refused(&self, id: JobId, fence: i64) -> Error {
        match self.store().job_get(id).await {
            Ok(Some(_)) => Error::LeaseLost { id, fence },
            Ok(None) => Error::NotFound(format!("job {id}")),
            Err(err) => err.into(),
        }
    }
}

// --- Batched acknowledgements (issue 19: the fast pull protocol) -------------------------------

/// The most entries one [`Client::ack_reserved`] call takes.
pub const ACK_MAX_ITEMS: usize = 1000;

/// What one entry of [`Client::ack_reserved`] reports about a reserved job.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOp {
    /// The job succeeded, with its result: as [`Client::complete_reserved`].
    Complete {
        /// The handler's output.
        result: Option<Value>,
    },
    /// The attempt failed: as [`Client::fail_reserved`].
    Fail(Failure),
    /// Run again after `delay` without using up an attempt: as [`Client::snooze_reserved`].
    Snooze {
        /// How long from now.
        delay: Duration,
    },
    /// The worker stopped the job: as [`Client::cancel_reserved`].
    Cancel {
        /// Why, recorded in the job's error history.
        message: Option<String>,
    },
    /// Extend the lease to `lease` from now: as [`Client::extend_lease`].
    Heartbeat {
        /// The new lease.
        lease: Duration,
    },
}

/// One entry of [`Client::ack_reserved`]: a job, the fence it was reserved with, and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The job.
    pub id: JobId,
    /// The fence it was reserved with.
    pub fence: i64,
    /// The report.
    pub op: AckOp,
}

/// What one applied entry of [`Client::ack_reserved`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acked {
    /// A complete, fail, snooze or cancel: the job as the report left it.
    Finished(FinishedJob),
    /// A heartbeat: the extended lease.
    Lease(LeaseExtended),
}

impl<S: Store + ?Sized> Client<S> {
    /// Applies many reports in one call, each fenced and answered on its own: an entry whose
    /// fence is stale gets [`Error::LeaseLost`] (or [`Error::NotFound`]) in its place in the
    /// answer, and the others still apply. Every complete, fail, snooze and cancel goes to the
    /// store in one [`Store::job_finish_many`] statement, so a worker acknowledging 50 jobs
    /// pays one write instead of 50; heartbeats are one write each. Fails (other than
    /// discards) and cancels with a message read their jobs first, as the one-job calls do.
    ///
    /// The answers are in the order of `acks`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] before anything is written: more than [`ACK_MAX_ITEMS`] entries
    /// (`acks`), an empty fail message (`acks[i].error`), a zero lease
    /// (`acks[i].lease_seconds`); a store error. A job named a second time gets
    /// [`Error::Invalid`] naming `acks[i].id` in its own answer.
    pub async fn ack_reserved(&self, acks: Vec<Ack>) -> Result<Vec<Result<Acked>>> {
        validate_acks(&acks)?;
        let now = self.clock().now();
        let mut answers: Vec<Option<Result<Acked>>> = Vec::with_capacity(acks.len());
        answers.resize_with(acks.len(), || None);
        let mut finishes = Vec::new();
        // The index in `acks` of each finish, so the store's answers find their entries.
        let mut positions = std::collections::HashMap::new();
        let mut seen = std::collections::HashSet::with_capacity(acks.len());
        for (index, ack) in acks.into_iter().enumerate() {
            let Ack { id, fence, op } = ack;
            // One report per job per batch: two would race inside one statement. A later
            // one is refused on its own, as a stale fence is, and the first still applies.
            if !seen.insert(id) {
                let field = format!("acks[{index}].id");
                let reason = format!("names job {id} a second time in this batch");
                answers[index] = Some(Err(InvalidInput::new(field, reason).into()));
                continue;
            }
            // A client limited to a tenant reads each job first: another tenant's job is
            // not found, as if it did not exist (issue 17).
            if self.tenant().is_some() {
                if let Err(err) = self.require_visible(id).await {
                    answers[index] = Some(Err(err));
                    continue;
                }
            }
            let outcome = match op {
                AckOp::Heartbeat { lease } => {
                    answers[index] =
                        Some(self.extend_lease(id, fence, lease).await.map(Acked::Lease));
                    continue;
                }
                AckOp::Complete { result } => {
                    let result = result.filter(|value| !value.is_null());
                    match self.seal_reserved_result(id, result).await {
                        Ok(result) => Outcome::Completed { result },
                        Err(err) => {
                            answers[index] = Some(Err(err));
                            continue;
                        }
                    }
                }
                AckOp::Snooze { delay } => Outcome::Snooze {
                    run_at: after(now, delay),
                },
                AckOp::Fail(failure) => match self.failed_outcome(id, fence, failure, now).await {
                    Ok(outcome) => outcome,
                    Err(err) => {
                        answers[index] = Some(Err(err));
                        continue;
                    }
                },
                AckOp::Cancel { message } => {
                    match message.filter(|message| !message.trim().is_empty()) {
                        None => Outcome::Cancel { error: None },
                        Some(message) => match self.held(id, fence).await {
                            Ok(job) => Outcome::Cancel {
                                error: Some(AttemptError {
                                    attempt: job.attempt,
                                    at: now,
                                    kind: ErrorKind::Cancelled,
                                    message,
                                    backtrace: None,
                                }),
                            },
                            Err(err) => {
                                answers[index] = Some(Err(err));
                                continue;
                            }
                        },
                    }
                }
            };
            positions.insert(id, (index, fence));
            finishes.push(JobFinish { id, fence, outcome });
        }
        if !finishes.is_empty() {
            // History (issue 13): the batch counts as the one-job reports do.
            // Live events (issue 13) read the outcomes too.
            let outcomes: Option<std::collections::HashMap<JobId, Outcome>> =
                (self.history().is_some() || self.event_hub().is_active()).then(|| {
                    finishes
                        .iter()
                        .map(|finish| (finish.id, finish.outcome.clone()))
                        .collect()
                });
            let applied = self
                .store()
                .job_finish_many(JobFinishParams::new(finishes, now))
                .await?;
            if let (Some(history), Some(outcomes)) = (self.history(), &outcomes) {
                history.record_finished(
                    now,
                    applied.iter().filter_map(|job| {
                        outcomes.get(&job.id).map(|outcome| (job, outcome, None))
                    }),
                );
            }
            if let Some(outcomes) = &outcomes {
                self.publish_finished(
                    now,
                    applied
                        .iter()
                        .filter_map(|job| outcomes.get(&job.id).map(|outcome| (job, outcome))),
                );
            }
            for job in applied {
                if let Some((index, _)) = positions.remove(&job.id) {
                    answers[index] = Some(Ok(Acked::Finished(job)));
                }
            }
            // What the store skipped was refused: say why, entry by entry.
            for (id, (index, fence)) in positions {
                answers[index] = Some(Err(self.refused(id, fence).await));
            }
        }
        Ok(answers
            .into_iter()
            .map(|answer| answer.expect("every entry is answered"))
            .collect())
    }

    /// The outcome of a failed attempt of a job held under `fence`, by the one failed-attempt
    /// rule of [`Client::fail_reserved`].
    async fn failed_outcome(
        &self,
        id: JobId,
        fence: i64,
        failure: Failure,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let error = |attempt| AttemptError {
            attempt,
            at: now,
            kind: ErrorKind::Error,
            message: failure.message.clone(),
            backtrace: None,
        };
        let job = self.held(id, fence).await?;
        if failure.discard {
            return Ok(Outcome::Discard {
                error: error(job.attempt),
            });
        }
        let handler = self
            .registry()
            .and_then(|registry| registry.get(&job.kind))
            .map(|handler| &**handler);
        Ok(failed_attempt(
            &job,
            error(job.attempt),
            now,
            failure.retry_in,
            handler,
        ))
    }
}

/// Checks a batch before any of it is written.
fn validate_acks(acks: &[Ack]) -> std::result::Result<(), InvalidInput> {
    if acks.len() > ACK_MAX_ITEMS {
        return Err(InvalidInput::new(
            "acks",
            format!("at most {ACK_MAX_ITEMS} entries, got {}", acks.len()),
        ));
    }
    for (index, ack) in acks.iter().enumerate() {
        match &ack.op {
            AckOp::Fail(failure) if failure.message.is_empty() => {
                return Err(InvalidInput::new(
                    format!("acks[{index}].error"),
                    "say what went wrong: must not be empty",
                ));
            }
            AckOp::Heartbeat { lease } if lease.is_zero() => {
                return Err(InvalidInput::new(
                    format!("acks[{index}].lease_seconds"),
                    "must be longer than zero",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
