//! Batches (issue 18) through the client: a group of jobs with a callback enqueued exactly
//! once when the batch is closed and all of them have finished, its args carrying the counts
//! by outcome under `"batch"`; progress read from the batch's counters at any time; jobs added
//! to an open batch (from inside one of its jobs too); cancel.
//!
//! ```no_run
//! # async fn demo(client: stoker::Client) -> stoker::Result<()> {
//! use serde_json::json;
//! use stoker::{Batch, EnqueueOptions, NewJob};
//!
//! let deliver = |to: &str| NewJob::raw("deliver", json!({ "to": to }), EnqueueOptions::new());
//! let batch = Batch::new("campaign-7")
//!     .callback(NewJob::raw("campaign_done", json!({ "campaign": 7 }), EnqueueOptions::new()))
//!     .jobs(["a@example.com", "b@example.com"].map(deliver));
//! let inserted = client.enqueue_batch(batch).await?;
//! let progress = client.batch(inserted.batch).await?.unwrap();
//! println!("{} of {} pending", progress.pending, progress.total);
//! # Ok(()) }
//! ```

use stoker_core::{
    BatchId, BatchInsertParams, BatchInserted, BatchListParams, BatchRow, InvalidInput, JobId,
    JobInsert, JobState, Store, WorkflowListParams, WorkflowRow,
};

use crate::{Client, Error, NewJob, Result};

/// A batch to enqueue: its jobs and its callback.
#[derive(Debug)]
pub struct Batch {
    name: String,
    callback: Option<NewJob>,
    jobs: Vec<NewJob>,
    open: bool,
}

impl Batch {
    /// An empty batch named `name` (1 to 128 characters of `A-Z a-z 0-9 _ - . :`), closed
    /// when enqueued unless [`Batch::keep_open`] is called.
    pub fn new(name: impl Into<String>) -> Self {
        Batch {
            name: name.into(),
            callback: None,
            jobs: Vec::new(),
            open: false,
        }
    }

    /// The job enqueued once every job of the batch has finished (and the batch is closed).
    /// Its args must be a JSON object; it receives `"batch": {"id", "total", "completed",
    /// "discarded", "cancelled"}` in them.
    pub fn callback(mut self, job: NewJob) -> Self {
        self.callback = Some(job);
        self
    }

    /// Adds a job.
    pub fn job(mut self, job: NewJob) -> Self {
        self.jobs.push(job);
        self
    }

    /// Adds jobs.
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = NewJob>) -> Self {
        self.jobs.extend(jobs);
        self
    }

    /// Leaves the batch open after the enqueue, for [`Client::batch_add`] (or
    /// [`JobContext::add_to_batch`](crate::JobContext::add_to_batch)) to add more; it never
    /// fires before [`Client::batch_close`].
    pub fn keep_open(mut self) -> Self {
        self.open = true;
        self
    }

    /// How many jobs it holds (the callback aside).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether it holds no job.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

impl<S: Store + ?Sized> Client<S> {
    /// Enqueues a batch in one transaction: its jobs, its counters and its callback (held
    /// until the batch fires), or (on any error) nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the field (a bad job or callback, a callback whose args are
    /// not an object, more than [`stoker_core::BATCH_MAX_JOBS_PER_CALL`] jobs).
    pub async fn enqueue_batch(&self, batch: Batch) -> Result<BatchInserted> {
        let now = self.clock().now();
        let callback = match batch.callback {
            Some(job) => Some(self.resolve_jobs([job], now)?.remove(0)),
            None => None,
        };
        let jobs = self.resolve_jobs(batch.jobs, now)?;
        self.enqueue_batch_resolved(None, batch.name, None, callback, jobs, !batch.open)
            .await
    }

    /// Adds jobs to an open batch, in one transaction with its counters.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue_batch`]; [`Error::NotFound`] for an unknown batch (or another
    /// tenant's); [`Error::Conflict`] for one closed or cancelled.
    pub async fn batch_add(
        &self,
        id: BatchId,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<BatchInserted> {
        let jobs = self.resolve_jobs(jobs, self.clock().now())?;
        let tenant = self.batch_tenant(id).await?;
        self.enqueue_batch_resolved(Some(id), String::new(), tenant, None, jobs, false)
            .await
    }

    /// Closes a batch: no job can be added any more, and its callback is enqueued as soon as
    /// nothing is pending (at once, if nothing is). Closing a closed batch changes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown batch (or another tenant's); [`Error::Conflict`]
    /// for a cancelled one.
    pub async fn batch_close(&self, id: BatchId) -> Result<BatchRow> {
        let tenant = self.batch_tenant(id).await?;
        self.enqueue_batch_resolved(Some(id), String::new(), tenant, None, Vec::new(), true)
            .await?;
        self.batch(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("batch {id}")))
    }

    /// The tenant of a batch this client sees.
    async fn batch_tenant(&self, id: BatchId) -> Result<Option<String>> {
        match self.batch(id).await? {
            Some(row) => Ok(row.tenant),
            None => Err(Error::NotFound(format!("batch {id}"))),
        }
    }

    /// Creates (or, with `id`, adds to) a batch of jobs the caller resolved itself, as the
    /// HTTP API builds them. The client's rules still hold: its tenant scope (every job takes
    /// the batch's tenant), the schedule's range, its registry's args validation and its
    /// encryption.
    ///
    /// # Errors
    ///
    /// As [`Client::batch_add`]; [`Error::Invalid`] for a callback of a kind this client
    /// encrypts (its counts are written into its args by the store, which holds no key).
    pub async fn enqueue_batch_resolved(
        &self,
        id: Option<BatchId>,
        name: String,
        tenant: Option<String>,
        callback: Option<JobInsert>,
        jobs: Vec<JobInsert>,
        close: bool,
    ) -> Result<BatchInserted> {
        let tenant = self.tenant_for(tenant, "tenant")?;
        let registry = self.registry();
        let checked = |field: String, mut job: JobInsert| -> Result<JobInsert> {
            if let Some(handler) = registry.and_then(|registry| registry.get(&job.kind)) {
                handler.validate(&job.args).map_err(|error| {
                    Error::Invalid(InvalidInput::new(
                        format!("{field}.{}", error.field),
                        error.reason,
                    ))
                })?;
            }
            job.tenant = match job.tenant.take() {
                None => tenant.clone(),
                Some(own) => self.tenant_for(Some(own), &format!("{field}.tenant"))?,
            };
            if let Some(run_at) = job.run_at {
                crate::client::check_run_at(run_at)?;
            }
            Ok(job)
        };
        let callback = callback
            .map(|job| checked("callback".into(), job))
            .transpose()?;
        let mut jobs = jobs
            .into_iter()
            .enumerate()
            .map(|(i, job)| checked(format!("jobs[{i}]"), job))
            .collect::<Result<Vec<_>>>()?;
        if let Some(callback) = &callback {
            if self.seals(&callback.kind, &callback.queue) {
                return Err(InvalidInput::new(
                    "callback.kind",
                    format!(
                        "the kind {:?} is encrypted at rest, and a batch's callback gets its \
                         counts written into its args by the store; use a callback kind that is \
                         not encrypted (it can read the batch by its id)",
                        callback.kind
                    ),
                )
                .into());
            }
        }
        let mut max_args_bytes = self.args_limit();
        self.seal_jobs(jobs.iter_mut(), &mut max_args_bytes, |i| {
            format!("jobs[{i}].args")
        })?;
        let params = BatchInsertParams {
            batch: id,
            name,
            tenant,
            callback,
            jobs,
            close,
            now: self.clock().now(),
            max_args_bytes,
        };
        Ok(self.store().batch_insert(params).await?)
    }

    /// A batch with its counters; `None` if there is no such batch or it is another
    /// tenant's. One row's read, whatever the batch's size.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn batch(&self, id: BatchId) -> Result<Option<BatchRow>> {
        let row = self.store().batch_get(id).await?;
        Ok(row.filter(|row| self.sees_tenant(row.tenant.as_deref())))
    }

    /// Batches, newest first; a tenant-scoped client sees only its own.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a bad limit; [`Error::TenantForbidden`] for another tenant.
    pub async fn batches(&self, mut params: BatchListParams) -> Result<Vec<BatchRow>> {
        params.tenant = self.tenant_for(params.tenant.take(), "tenant")?;
        Ok(self.store().batch_list(params).await?)
    }

    /// Cancels a batch: its waiting jobs and its callback end cancelled, its running jobs are
    /// asked to stop, and no job can be added to it. A finished batch is returned unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such batch (or it is another tenant's).
    pub async fn cancel_batch(&self, id: BatchId) -> Result<BatchRow> {
        if self.batch(id).await?.is_none() {
            return Err(Error::NotFound(format!("batch {id}")));
        }
        let now = self.clock().now();
        Ok(self.store().batch_cancel(id, now).await?)
    }

    /// The batch job `id` belongs to, with its counters; `None` if it is in no batch. What a
    /// pull worker reads to learn its job's batch (a Rust handler has
    /// [`JobContext::add_to_batch`](crate::JobContext::add_to_batch)).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such job (or it is another tenant's).
    pub async fn job_batch(&self, id: JobId) -> Result<Option<BatchRow>> {
        self.require_visible(id).await?;
        if self.store().job_get(id).await?.is_none() {
            return Err(Error::NotFound(format!("job {id}")));
        }
        match self.store().job_batch(id).await? {
            Some(batch) => self.batch(batch).await,
            None => Ok(None),
        }
    }

    /// Adds jobs to the open batch of job `id`, which the caller holds reserved under
    /// `fence`: the pull protocol's [`JobContext::add_to_batch`](crate::JobContext::add_to_batch).
    /// Each job inherits the reserved job's lineage where its own is unset (the reserved job
    /// as its parent, its correlation id), and the batch's tenant.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such job (or it is another tenant's);
    /// [`Error::LeaseLost`] if the job is not running under `fence` with a live lease;
    /// [`Error::Invalid`] for a bad job;
    /// [`Error::Conflict`] if it is in no batch, or the batch is closed or cancelled.
    pub async fn batch_add_reserved(
        &self,
        id: JobId,
        fence: i64,
        mut jobs: Vec<JobInsert>,
    ) -> Result<BatchInserted> {
        self.require_visible(id).await?;
        let Some(job) = self.store().job_get(id).await? else {
            return Err(Error::NotFound(format!("job {id}")));
        };
        let now = self.clock().now();
        let held = job.state == JobState::Running
            && job.fence == fence
            && job.lease_expires_at.is_none_or(|end| end > now);
        if !held {
            return Err(Error::LeaseLost { id, fence });
        }
        let Some(batch) = self.store().job_batch(id).await? else {
            return Err(Error::Conflict(format!("job {id} is in no batch")));
        };
        for insert in &mut jobs {
            if insert.metadata.parent_id.is_none() {
                insert.metadata.parent_id = Some(id);
            }
            if insert.metadata.correlation_id.is_none() {
                insert.metadata.correlation_id = job.metadata.correlation_id.clone();
            }
        }
        let tenant = self.batch_tenant(batch).await?;
        self.enqueue_batch_resolved(Some(batch), String::new(), tenant, None, jobs, false)
            .await
    }

    /// Workflows, newest first, each with its state and counts; a tenant-scoped client sees
    /// only its own.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a bad limit; [`Error::TenantForbidden`] for another tenant.
    pub async fn workflows(&self, mut params: WorkflowListParams) -> Result<Vec<WorkflowRow>> {
        params.tenant = self.tenant_for(params.tenant.take(), "tenant")?;
        Ok(self.store().workflow_list(params).await?)
    }
}
