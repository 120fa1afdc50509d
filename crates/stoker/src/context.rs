//! What a running job can see and do: its identity, cancellation, progress, follow-up jobs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;
use stoker_core::{
    InsertedJob, JobId, JobLogAppended, JobLogParams, JobProgressParams, JobRow, Metadata,
};
use tokio_util::sync::CancellationToken;

use crate::{Client, EnqueueOptions, Job, NewJob, Result};

/// Handed to every attempt: who the job is, whether it should stop, and a way to report
/// progress and enqueue follow-up jobs. Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    job: JobRow,
    client: Client,
    cancel: CancellationToken,
    /// Set once the handler enqueued a child it waits for, or asked to wait for its
    /// children: its `Ok` then waits for them instead of completing at once (issue 18).
    waits: Arc<AtomicBool>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.inner.job.id)
            .field("kind", &self.inner.job.kind)
            .field("attempt", &self.inner.job.attempt)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    /// A context for one attempt; `waits` is the flag [`JobContext::wait_for_children`] sets,
    /// which the worker reads once the handler returned.
    pub(crate) fn new(
        job: JobRow,
        client: Client,
        cancel: CancellationToken,
        waits: Arc<AtomicBool>,
    ) -> Self {
        JobContext {
            inner: Arc::new(ContextInner {
                job,
                client,
                cancel,
                waits,
            }),
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.inner.job.id
    }

    /// The job's kind.
    pub fn kind(&self) -> &str {
        &self.inner.job.kind
    }

    /// The job's queue.
    pub fn queue(&self) -> &str {
        &self.inner.job.queue
    }

    /// This attempt's number, 1 for the first.
    pub fn attempt(&self) -> i32 {
        self.inner.job.attempt
    }

    /// The most attempts the job gets.
    pub fn max_attempts(&self) -> i32 {
        self.inner.job.max_attempts
    }

    /// The job's lineage and tracing data.
    pub fn metadata(&self) -> &Metadata {
        &self.inner.job.metadata
    }

    /// The tenant the job belongs to.
    pub fn tenant(&self) -> Option<&str> {
        self.inner.job.tenant.as_deref()
    }

    /// The job as it was claimed (args, errors of earlier attempts, ...).
    pub fn job(&self) -> &JobRow {
        &self.inner.job
    }

    /// Whether the job should stop: it was cancelled, or the worker is shutting down.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes when the job should stop; use it in `tokio::select!` around long work.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await;
    }

    /// The cancellation token itself, to hand to code that takes one.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Reports progress (`fraction` from 0.0 to 1.0, and what it is doing), visible through
    /// [`Client::get`] while the job runs and kept after it finishes.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) if `fraction` is outside 0.0..=1.0, or a store error.
    pub async fn progress(&self, fraction: f64, message: impl Into<Option<String>>) -> Result<()> {
        self.report(fraction, message.into(), None).await
    }

    /// Reports progress with structured details (any JSON, e.g. `{"rows": 1200, "of":
    /// 5000}`), as BullMQ's `updateProgress` takes an object: stored with the fraction and
    /// message, replacing the last report's.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) naming `fraction` if it is outside
    /// 0.0..=1.0, or `details` if they are over
    /// [`MAX_PROGRESS_DETAILS_BYTES`](stoker_core::MAX_PROGRESS_DETAILS_BYTES) of JSON; or a
    /// store error.
    pub async fn progress_with(
        &self,
        fraction: f64,
        message: impl Into<Option<String>>,
        details: Value,
    ) -> Result<()> {
        self.report(fraction, message.into(), Some(details)).await
    }

    async fn report(
        &self,
        fraction: f64,
        message: Option<String>,
        details: Option<Value>,
    ) -> Result<()> {
        let job = &self.inner.job;
        let params = JobProgressParams {
            id: job.id,
            fence: job.fence,
            fraction,
            message,
            details,
            now: self.inner.client.clock().now(),
        };
        params.validate()?;
        self.inner.client.store().job_progress(params).await?;
        Ok(())
    }

    /// Writes a line to the job's log (issue 13), stored with this attempt and shown by
    /// [`Client::job_logs`], the API's get-job and `stoker jobs logs ID`; deleted with the job.
    /// A job keeps at most [`JOB_LOG_MAX_LINES`](stoker_core::JOB_LOG_MAX_LINES) lines and
    /// [`JOB_LOG_MAX_BYTES`](stoker_core::JOB_LOG_MAX_BYTES) over all its attempts; later
    /// lines are dropped (the returned count says how many). Like progress, a line from an
    /// attempt that no longer holds the job is not stored.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) naming `lines[0]` for a line over
    /// [`JOB_LOG_LINE_MAX_CHARS`](stoker_core::JOB_LOG_LINE_MAX_CHARS); a store error.
    pub async fn log(&self, line: impl Into<String>) -> Result<JobLogAppended> {
        self.log_lines(vec![line.into()]).await
    }

    /// Like [`JobContext::log`], for up to
    /// [`JOB_LOG_MAX_LINES_PER_CALL`](stoker_core::JOB_LOG_MAX_LINES_PER_CALL) lines in one
    /// write.
    ///
    /// # Errors
    ///
    /// As [`JobContext::log`], naming `lines` for an empty or too long list.
    pub async fn log_lines(&self, lines: Vec<String>) -> Result<JobLogAppended> {
        let job = &self.inner.job;
        let params = JobLogParams {
            id: job.id,
            fence: job.fence,
            lines,
            now: self.inner.client.clock().now(),
        };
        params.validate()?;
        let count = params.lines.len() as u32;
        let appended = self.inner.client.store().job_log_append(params).await?;
        Ok(appended.unwrap_or(JobLogAppended {
            accepted: 0,
            dropped: count,
        }))
    }

    /// Enqueues a follow-up job that inherits this job's correlation id and tenant, with this
    /// job as its parent.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`].
    pub async fn enqueue<J: Job>(&self, job: J) -> Result<InsertedJob> {
        self.enqueue_with(job, EnqueueOptions::new()).await
    }

    /// Like [`JobContext::enqueue`], with options; unset lineage fields are inherited.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`].
    pub async fn enqueue_with<J: Job>(&self, job: J, opts: EnqueueOptions) -> Result<InsertedJob> {
        let opts = self.inherit(opts);
        self.inner.client.enqueue_with(job, opts).await
    }

    /// Like [`JobContext::enqueue`], for a job of any kind with JSON args.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`].
    pub async fn enqueue_raw(
        &self,
        kind: impl Into<String>,
        args: Value,
        opts: EnqueueOptions,
    ) -> Result<InsertedJob> {
        let opts = self.inherit(opts);
        let mut inserted = self
            .inner
            .client
            .enqueue_many([NewJob::raw(kind, args, opts)])
            .await?;
        Ok(inserted.remove(0))
    }

    // --- stream wf ---
    /// This job's dependencies (workflow jobs it waited for) with their states and results,
    /// in the order of their ids; empty for a job without any.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn dependency_results(&self) -> Result<Vec<stoker_core::DependencyResult>> {
        // Through the client, so sealed results arrive opened (issue 17).
        self.inner.client.dependency_results(self.id()).await
    }

    /// Adds jobs to this job's workflow (dynamic fan-out): their dependencies may name the
    /// workflow's nodes, this one included, and the workflow is not finished until they are.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) if this job is in no workflow or a job is
    /// bad; [`Error::Conflict`](crate::Error::Conflict) if the workflow was cancelled.
    pub async fn add_to_workflow(
        &self,
        workflow: crate::Workflow,
    ) -> Result<stoker_core::WorkflowInserted> {
        let client = &self.inner.client;
        let Some((id, _)) = client.store().job_workflow(self.id()).await? else {
            return Err(crate::Error::Invalid(stoker_core::InvalidInput::new(
                "workflow",
                format!("job {} is in no workflow", self.id()),
            )));
        };
        client.workflow_add(id, workflow).await
    }

    // --- stream workflows ---
    /// Adds jobs to this job's batch, which must still be open (a batch fires only once
    /// closed, so the callback cannot run before jobs added this way finish). Lineage is
    /// inherited as for [`JobContext::enqueue_with`].
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) if this job is in no batch or a job is bad;
    /// [`Error::Conflict`](crate::Error::Conflict) if the batch is closed or cancelled.
    pub async fn add_to_batch(
        &self,
        jobs: impl IntoIterator<Item = crate::NewJob>,
    ) -> Result<stoker_core::BatchInserted> {
        let client = &self.inner.client;
        let Some(id) = client.store().job_batch(self.id()).await? else {
            return Err(crate::Error::Invalid(stoker_core::InvalidInput::new(
                "batch",
                format!("job {} is in no batch", self.id()),
            )));
        };
        let jobs: Vec<crate::NewJob> = jobs
            .into_iter()
            .map(|job| job.map_options(|opts| self.inherit(opts)))
            .collect();
        client.batch_add(id, jobs).await
    }

    /// Enqueues a child this job waits for (issue 18): the job completes only once its
    /// children have finished. The handler's `Ok(result)` then moves the job to `blocked`
    /// with its result kept (it does not run again), and the finish of its last child
    /// completes it. A child that fails cancels this job (see
    /// [`JobContext::enqueue_child_with`] for the other policies). The child inherits this
    /// job's lineage as with [`JobContext::enqueue_with`].
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) if this attempt no longer holds the job;
    /// [`Error::Invalid`](crate::Error::Invalid) for a bad job.
    pub async fn enqueue_child(&self, job: NewJob) -> Result<InsertedJob> {
        self.enqueue_child_with(job, stoker_core::DepPolicy::Cancel)
            .await
    }

    /// Like [`JobContext::enqueue_child`], with what a failed child does to this job:
    /// [`DepPolicy::Cancel`](stoker_core::DepPolicy::Cancel) ends it cancelled (and asks it
    /// to stop if it still runs), [`DepPolicy::Run`](stoker_core::DepPolicy::Run) completes
    /// it anyway, [`DepPolicy::Hold`](stoker_core::DepPolicy::Hold) keeps it waiting until an
    /// operator retries the child and it completes.
    ///
    /// # Errors
    ///
    /// As [`JobContext::enqueue_child`].
    pub async fn enqueue_child_with(
        &self,
        job: NewJob,
        policy: stoker_core::DepPolicy,
    ) -> Result<InsertedJob> {
        let job = job.map_options(|opts| self.inherit(opts));
        let me = &self.inner.job;
        // Marked first: a child may be written even if the answer is lost.
        self.wait_for_children();
        let mut inserted = self
            .inner
            .client
            .enqueue_children(me.id, me.fence, [job], policy)
            .await?;
        Ok(inserted.remove(0))
    }

    /// Makes this attempt's `Ok(result)` wait for the job's children instead of completing at
    /// once, e.g. for a retried attempt whose children an earlier attempt enqueued. A job
    /// without children pending completes at once as usual.
    pub fn wait_for_children(&self) {
        self.inner.waits.store(true, Ordering::Release);
    }

    /// The client the worker uses, for anything else.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    fn inherit(&self, opts: EnqueueOptions) -> EnqueueOptions {
        let job = &self.inner.job;
        opts.inherit(job.id, &job.metadata, job.tenant.as_deref())
    }
}
