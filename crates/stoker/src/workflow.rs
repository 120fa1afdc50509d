//! Workflows (issue 18) through the client: a named graph of jobs enqueued in one call, its
//! state and result, its cancel, a job's dependency results, and adding jobs to a running
//! workflow from inside one of its jobs.
//!
//! ```no_run
//! # async fn demo(client: stoker::Client) -> stoker::Result<()> {
//! use serde_json::json;
//! use stoker::{Dependency, EnqueueOptions, NewJob, Workflow};
//!
//! let fetch = |url: &str| NewJob::raw("fetch", json!({ "url": url }), EnqueueOptions::new());
//! let workflow = Workflow::new("report")
//!     .job("a", fetch("https://a.example"))
//!     .job("b", fetch("https://b.example"))
//!     .job_after("merge", NewJob::raw("merge", json!({}), EnqueueOptions::new()), [
//!         Dependency::node("a"),
//!         Dependency::node("b"),
//!     ]);
//! let inserted = client.enqueue_workflow(workflow).await?;
//! let state = client.workflow(inserted.workflow).await?.unwrap().state;
//! # Ok(()) }
//! ```

use stoker_core::{
    Dependency, DependencyResult, JobId, JobInsert, Store, WorkflowCancelParams, WorkflowId,
    WorkflowInsertParams, WorkflowInserted, WorkflowJob, WorkflowNode, WorkflowRow,
    WORKFLOW_MAX_JOBS_DEFAULT,
};

use crate::client::check_run_at;
use crate::{Client, Error, NewJob, Result};
use serde_json::Value;

/// A workflow to enqueue: named jobs and what each waits for.
#[derive(Debug)]
pub struct Workflow {
    name: String,
    steps: Vec<(String, NewJob, Vec<Dependency>)>,
}

impl Workflow {
    /// An empty workflow named `name` (1 to 128 characters of `A-Z a-z 0-9 _ - . :`).
    pub fn new(name: impl Into<String>) -> Self {
        Workflow {
            name: name.into(),
            steps: Vec::new(),
        }
    }

    /// Adds the job `name`, available at once.
    pub fn job(self, name: impl Into<String>, job: NewJob) -> Self {
        self.job_after(name, job, [])
    }

    /// Adds the job `name`, blocked until `deps` (nodes of this workflow, or existing jobs)
    /// allow it.
    pub fn job_after(
        mut self,
        name: impl Into<String>,
        job: NewJob,
        deps: impl IntoIterator<Item = Dependency>,
    ) -> Self {
        self.steps
            .push((name.into(), job, deps.into_iter().collect()));
        self
    }

    /// A chain: each job waits for the one before it (under the default policy, a failure
    /// cancels the rest) and reads its result with
    /// [`JobContext::dependency_results`](crate::JobContext::dependency_results).
    ///
    /// ```
    /// use serde_json::json;
    /// use stoker::{EnqueueOptions, NewJob, Workflow};
    ///
    /// let step = |kind: &str| NewJob::raw(kind, json!({}), EnqueueOptions::new());
    /// let chain = Workflow::chain("etl", [("extract", step("extract")), ("load", step("load"))]);
    /// assert_eq!(chain.len(), 2);
    /// ```
    pub fn chain<N: Into<String>>(
        name: impl Into<String>,
        jobs: impl IntoIterator<Item = (N, NewJob)>,
    ) -> Self {
        let mut workflow = Workflow::new(name);
        let mut previous: Option<String> = None;
        for (node, job) in jobs {
            let node = node.into();
            let deps = previous.take().map(Dependency::node);
            workflow = workflow.job_after(node.clone(), job, deps);
            previous = Some(node);
        }
        workflow
    }

    /// How many jobs it holds.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether it holds no job.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl<S: Store + ?Sized> Client<S> {
    /// Enqueues a workflow in one transaction: every job and edge, or (on any error) nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the node and field (a cycle, an unknown node or job, another
    /// tenant's job, more than [`WORKFLOW_MAX_JOBS_DEFAULT`] jobs, a bad job).
    pub async fn enqueue_workflow(&self, workflow: Workflow) -> Result<WorkflowInserted> {
        self.insert_workflow(None, workflow).await
    }

    /// Adds jobs to a workflow that is not cancelled (dynamic fan-out); their dependencies may
    /// name the workflow's existing nodes. Inside a handler,
    /// [`JobContext::add_to_workflow`](crate::JobContext::add_to_workflow) finds the workflow.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue_workflow`]; [`Error::NotFound`] for an unknown workflow (or
    /// another tenant's); [`Error::Conflict`] for a cancelled one.
    pub async fn workflow_add(
        &self,
        id: WorkflowId,
        workflow: Workflow,
    ) -> Result<WorkflowInserted> {
        self.insert_workflow(Some(id), workflow).await
    }

    async fn insert_workflow(
        &self,
        id: Option<WorkflowId>,
        workflow: Workflow,
    ) -> Result<WorkflowInserted> {
        let (names, jobs, deps): (Vec<String>, Vec<NewJob>, Vec<Vec<Dependency>>) =
            workflow.steps.into_iter().fold(
                (Vec::new(), Vec::new(), Vec::new()),
                |(mut names, mut jobs, mut deps), (name, job, dep)| {
                    names.push(name);
                    jobs.push(job);
                    deps.push(dep);
                    (names, jobs, deps)
                },
            );
        let now = self.clock().now();
        let jobs = self.resolve_jobs(jobs, now)?;
        let nodes = names
            .into_iter()
            .zip(jobs)
            .zip(deps)
            .map(|((name, job), depends_on)| (name, job, depends_on))
            .collect();
        self.enqueue_workflow_resolved(id, workflow.name, None, nodes)
            .await
    }

    /// Enqueues (or, with `id`, adds to) a workflow of jobs the caller resolved itself, as the
    /// HTTP API builds them. The client's rules still hold: its tenant scope (every job takes
    /// the workflow's tenant), the schedule's range, and its registry's args validation.
    ///
    /// # Errors
    ///
    /// As [`Client::workflow_add`].
    pub async fn enqueue_workflow_resolved(
        &self,
        id: Option<WorkflowId>,
        name: String,
        tenant: Option<String>,
        nodes: Vec<(String, JobInsert, Vec<Dependency>)>,
    ) -> Result<WorkflowInserted> {
        let tenant = self.tenant_for(tenant, "tenant")?;
        let registry = self.registry();
        let mut out = Vec::with_capacity(nodes.len());
        for (i, (node, mut job, depends_on)) in nodes.into_iter().enumerate() {
            if let Some(handler) = registry.and_then(|registry| registry.get(&job.kind)) {
                handler.validate(&job.args).map_err(|error| {
                    Error::Invalid(stoker_core::InvalidInput::new(
                        format!("nodes[{i}].job.{}", error.field),
                        error.reason,
                    ))
                })?;
            }
            job.tenant = match job.tenant.take() {
                None => tenant.clone(),
                Some(own) => self.tenant_for(Some(own), &format!("nodes[{i}].job.tenant"))?,
            };
            if let Some(run_at) = job.run_at {
                check_run_at(run_at)?;
            }
            out.push(WorkflowNode {
                name: node,
                job,
                depends_on,
            });
        }
        // A workflow's jobs are sealed as every other insert's are (issue 17).
        let mut max_args_bytes = self.args_limit();
        self.seal_jobs(
            out.iter_mut().map(|node| &mut node.job),
            &mut max_args_bytes,
            |i| format!("nodes[{i}].job.args"),
        )?;
        let now = self.clock().now();
        // --- stream history ---
        // Live events (issue 13): the jobs without dependencies are inserted `available`, as
        // any enqueue; a job with dependencies may be `blocked` or already released, which
        // only the store knows, so followers see it through their read of followed jobs.
        let ready: Vec<Option<crate::events::JobEvent>> = if self.event_hub().is_active() {
            out.iter()
                .map(|node| {
                    node.depends_on
                        .is_empty()
                        .then(|| crate::events::JobEvent::inserting(&node.job, now))
                })
                .collect()
        } else {
            Vec::new()
        };
        let params = WorkflowInsertParams {
            workflow: id,
            name,
            tenant,
            nodes: out,
            now,
            max_args_bytes,
            max_jobs: WORKFLOW_MAX_JOBS_DEFAULT,
        };
        let publishing = self.event_hub().inserting().await;
        let inserted = self.store().workflow_insert(params).await?;
        if !ready.is_empty() {
            self.event_hub().publish(|| {
                ready
                    .into_iter()
                    .zip(&inserted.jobs)
                    .filter_map(|(event, (_, id))| {
                        event.map(|mut event| {
                            event.id = *id;
                            event
                        })
                    })
                    .collect()
            });
        }
        drop(publishing);
        Ok(inserted)
    }

    /// A workflow with its state, counts and (once completed) result; `None` if there is no
    /// such workflow or it is another tenant's.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRow>> {
        let row = self.store().workflow_get(id).await?;
        let Some(mut row) = row.filter(|row| self.sees_tenant(row.tenant.as_deref())) else {
            return Ok(None);
        };
        // The result holds its final jobs' results as stored: a client that opens sealed
        // values or redacts shows each as it shows the job's own (issue 17).
        if self.transforms_jobs() {
            if let Some(Value::Object(results)) = &mut row.result {
                for job in self.store().workflow_jobs(id).await? {
                    if let Some(value) = results.get_mut(&job.node) {
                        if let Some(shown) = self.get(job.id).await?.and_then(|job| job.result) {
                            *value = shown;
                        }
                    }
                }
            }
        }
        Ok(Some(row))
    }

    /// A workflow's jobs with their edges, for drawing its graph.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such workflow (or it is another tenant's).
    pub async fn workflow_jobs(&self, id: WorkflowId) -> Result<Vec<WorkflowJob>> {
        if self.workflow(id).await?.is_none() {
            return Err(Error::NotFound(format!("workflow {id}")));
        }
        Ok(self.store().workflow_jobs(id).await?)
    }

    /// Cancels a workflow: its waiting jobs end cancelled, its running ones are asked to stop,
    /// and no job can be added to it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such workflow (or it is another tenant's).
    pub async fn cancel_workflow(&self, id: WorkflowId) -> Result<WorkflowRow> {
        if self.workflow(id).await?.is_none() {
            return Err(Error::NotFound(format!("workflow {id}")));
        }
        let now = self.clock().now();
        Ok(self
            .store()
            .workflow_cancel(WorkflowCancelParams { id, now })
            .await?)
    }

    /// A job's dependencies with their states and results (what its handler reads first).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such job (or it is another tenant's).
    pub async fn dependency_results(&self, id: JobId) -> Result<Vec<DependencyResult>> {
        if self.get(id).await?.is_none() {
            return Err(Error::NotFound(format!("job {id}")));
        }
        let mut results = self.store().job_dependency_results(id).await?;
        // Results as this client shows them: opened if sealed, redacted if it redacts.
        if self.transforms_jobs() {
            for dependency in &mut results {
                if dependency.result.is_some() {
                    dependency.result = self.get(dependency.id).await?.and_then(|job| job.result);
                }
            }
        }
        Ok(results)
    }
}
