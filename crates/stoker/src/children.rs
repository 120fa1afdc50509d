//! Parents that wait for their children (issue 18) through the client: a running job
//! enqueues children it waits for, and completes only once they have finished, its result
//! kept meanwhile (see [`stoker_core::children`] for the model and the failure policies).
//!
//! In a Rust handler, [`JobContext::enqueue_child`](crate::JobContext::enqueue_child) does
//! both: it enqueues the child, and the handler's `Ok(result)` then waits for the children
//! instead of completing at once. A pull worker uses `POST /v1/pull/jobs/{id}/children` and
//! `POST /v1/pull/jobs/{id}/wait-children`, which call [`Client::enqueue_children_resolved`]
//! and [`Client::wait_children_reserved`].
//!
//! ```no_run
//! # async fn demo(ctx: stoker::JobContext) -> stoker::Result<()> {
//! use serde_json::json;
//! use stoker::{EnqueueOptions, NewJob};
//!
//! // The parent's handler: fan out, then return. The parent is `blocked` (not re-run)
//! // until both children have finished, then `completed` with this result.
//! for page in 0..2 {
//!     ctx.enqueue_child(NewJob::raw("render", json!({ "page": page }), EnqueueOptions::new()))
//!         .await?;
//! }
//! # Ok(()) }
//! ```

use serde_json::Value;
use stoker_core::{
    ChildrenInsertParams, ChildrenWait, DepPolicy, FinishedJob, InsertedJob, JobId, JobInsert,
    JobInsertParams, Store, WaitChildrenParams,
};

use crate::{Client, Error, NewJob, Result};

impl<S: Store + ?Sized> Client<S> {
    /// Enqueues `jobs` as children the running job `parent` (held under `fence`) waits for,
    /// with `policy` for a child that fails, in one transaction. Each child inherits the
    /// parent's lineage where its own is unset (the parent as its parent, its correlation id,
    /// its tenant). A duplicate (matched idempotency key) is waited for if it is unfinished
    /// and no other job waits for it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such job (or it is another tenant's);
    /// [`Error::LeaseLost`] if it is not running under `fence`; [`Error::Invalid`] naming
    /// `jobs[i].field` for a bad job.
    pub async fn enqueue_children(
        &self,
        parent: JobId,
        fence: i64,
        jobs: impl IntoIterator<Item = NewJob>,
        policy: DepPolicy,
    ) -> Result<Vec<InsertedJob>> {
        let jobs = self.resolve_jobs(jobs, self.clock().now())?;
        self.enqueue_children_resolved(parent, fence, jobs, policy)
            .await
    }

    /// [`Client::enqueue_children`] for jobs the caller resolved itself, as the HTTP API
    /// builds them. The client's rules still hold: its tenant scope, the schedule's range, its
    /// registry's args validation and its encryption.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue_children`].
    pub async fn enqueue_children_resolved(
        &self,
        parent: JobId,
        fence: i64,
        mut jobs: Vec<JobInsert>,
        policy: DepPolicy,
    ) -> Result<Vec<InsertedJob>> {
        self.require_visible(parent).await?;
        let Some(row) = self.store().job_get(parent).await? else {
            return Err(Error::NotFound(format!("job {parent}")));
        };
        let registry = self.registry();
        for (i, job) in jobs.iter_mut().enumerate() {
            if let Some(handler) = registry.and_then(|registry| registry.get(&job.kind)) {
                handler.validate(&job.args).map_err(|error| {
                    Error::Invalid(stoker_core::InvalidInput::new(
                        format!("jobs[{i}].{}", error.field),
                        error.reason,
                    ))
                })?;
            }
            if job.metadata.parent_id.is_none() {
                job.metadata.parent_id = Some(parent);
            }
            if job.metadata.correlation_id.is_none() {
                job.metadata.correlation_id = row.metadata.correlation_id.clone();
            }
            let tenant = job.tenant.take().or_else(|| row.tenant.clone());
            job.tenant = self.tenant_for(tenant, &format!("jobs[{i}].tenant"))?;
            if let Some(run_at) = job.run_at {
                crate::client::check_run_at(run_at)?;
            }
        }
        let now = self.clock().now();
        let mut insert = JobInsertParams {
            jobs,
            now,
            max_args_bytes: self.args_limit(),
        };
        self.seal_jobs(insert.jobs.iter_mut(), &mut insert.max_args_bytes, |i| {
            format!("jobs[{i}].args")
        })?;
        let labels = self.history_labels(&insert);
        let events = self.event_jobs(&insert);
        let params = ChildrenInsertParams {
            parent,
            fence,
            jobs: insert.jobs,
            policy,
            now,
            max_args_bytes: insert.max_args_bytes,
        };
        let publishing = self.event_hub().inserting().await;
        let inserted = self.store().job_children_insert(params).await?;
        let Some(inserted) = inserted else {
            return Err(Error::LeaseLost { id: parent, fence });
        };
        self.record_enqueued(now, labels, &inserted);
        self.publish_inserted(events, &inserted);
        drop(publishing);
        Ok(inserted)
    }

    /// Finishes the reserved job `id` (held under `fence`) as a parent that waits for its
    /// children, keeping `result`: it completes at once if none is pending, ends cancelled if
    /// one failed under [`DepPolicy::Cancel`], and otherwise waits `blocked` until the last
    /// child's finish completes it. Returns the job's state now.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such job (or it is another tenant's);
    /// [`Error::LeaseLost`] if it is not running under `fence` with a live lease.
    pub async fn wait_children_reserved(
        &self,
        id: JobId,
        fence: i64,
        result: Option<Value>,
    ) -> Result<FinishedJob> {
        self.require_visible(id).await?;
        let result = result.filter(|value| !value.is_null());
        // Sealed as a completion's result is (issue 17): only a client with keys reads the job.
        let result = match (result, self.encryption()) {
            (Some(value), Some(_)) => match self.store().job_get(id).await? {
                Some(job) => {
                    let args_sealed = crate::sealed_with(&job.args).is_some();
                    self.seal_result(&job, args_sealed, Some(value))
                }
                None => return Err(Error::NotFound(format!("job {id}"))),
            },
            (result, _) => result,
        };
        self.wait_children_sealed(id, fence, result).await
    }

    /// [`Client::wait_children_reserved`] with the result already as stored (sealed if the
    /// kind is encrypted): what the worker runtime sends.
    pub(crate) async fn wait_children_sealed(
        &self,
        id: JobId,
        fence: i64,
        result: Option<Value>,
    ) -> Result<FinishedJob> {
        let params = WaitChildrenParams {
            id,
            fence,
            result,
            now: self.clock().now(),
        };
        match self.store().job_wait_children(params).await? {
            Some(finished) => Ok(finished),
            None => Err(match self.store().job_get(id).await? {
                Some(_) => Error::LeaseLost { id, fence },
                None => Error::NotFound(format!("job {id}")),
            }),
        }
    }

    /// A job's wait for its children: pending and failed counts, its children by state, and
    /// the unresolved ones; `None` if it never enqueued a child it waits for.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such job (or it is another tenant's).
    pub async fn job_children(&self, id: JobId) -> Result<Option<ChildrenWait>> {
        self.require_visible(id).await?;
        if self.store().job_get(id).await?.is_none() {
            return Err(Error::NotFound(format!("job {id}")));
        }
        Ok(self.store().job_children(id).await?)
    }
}
