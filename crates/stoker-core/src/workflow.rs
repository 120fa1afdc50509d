//! Workflows (issue 18): jobs that wait for other jobs, enqueued together as a named graph.
//!
//! A job with dependencies is inserted `blocked` and counts its unresolved edges in
//! `pending_deps`. A job that others depend on carries a `has_dependents` flag, and only such
//! a job, on moving into a finished state, resolves its outgoing edges (a trigger in each
//! store, so every path that finishes a job, an acknowledgement, a cancel, a rescue, resolves
//! them in its own transaction, and an ordinary job pays nothing but the flag's test). Each
//! edge's [`DepPolicy`] says what a parent that did not complete does to its dependent.
//!
//! The insert checks the whole graph first ([`WorkflowInsertParams::validate`]): names, the
//! dependencies' targets, and that there is no cycle; nothing is written unless all of it is.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{InvalidInput, JobId, JobInsert, JobState, MAX_ARGS_BYTES_DEFAULT};

/// The longest workflow name and the longest node name.
pub const WORKFLOW_NAME_MAX_LEN: usize = 128;
/// The most jobs a workflow may hold unless configured otherwise (all its insert calls
/// together).
pub const WORKFLOW_MAX_JOBS_DEFAULT: usize = 10_000;
/// The most dependencies one job may name: as many as a workflow holds jobs, so one fan-in
/// job can wait for a full fan-out.
pub const WORKFLOW_MAX_DEPS_PER_JOB: usize = WORKFLOW_MAX_JOBS_DEFAULT;

/// A workflow's id, assigned by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(pub i64);

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a dependency that ends without completing (discarded or cancelled) does to the job
/// waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepPolicy {
    /// The dependent is cancelled, and so, by their own edges, are the jobs waiting for it.
    /// Defaults to this: work that needs an input does not run without it.
    #[default]
    Cancel,
    /// The dependent runs anyway once its other dependencies allow; it sees the failure among
    /// its dependency results.
    Run,
    /// The dependent stays `blocked` (the workflow is `held`) until an operator retries the
    /// failed dependency and it completes, or cancels the workflow.
    Hold,
}

impl DepPolicy {
    /// Every policy.
    pub const ALL: [DepPolicy; 3] = [DepPolicy::Cancel, DepPolicy::Run, DepPolicy::Hold];

    /// The lowercase name used in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            DepPolicy::Cancel => "cancel",
            DepPolicy::Run => "run",
            DepPolicy::Hold => "hold",
        }
    }
}

impl fmt::Display for DepPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DepPolicy {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DepPolicy::ALL
            .into_iter()
            .find(|policy| policy.as_str() == s)
            .ok_or_else(|| {
                InvalidInput::new("policy", format!("must be cancel, run or hold, got {s:?}"))
            })
    }
}

/// What a dependency points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepTarget {
    /// A job of the same workflow by its node name: one inserted in the same call, or (when
    /// adding to a workflow) one already in it.
    Node(String),
    /// Any existing job of the same tenant, by id.
    Job(JobId),
}

/// One edge: the job waits for `target`, and `policy` says what happens if it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The job waited for.
    pub target: DepTarget,
    /// What a failure of the target does.
    pub policy: DepPolicy,
}

impl Dependency {
    /// A dependency on the node `name` with the default policy ([`DepPolicy::Cancel`]).
    pub fn node(name: impl Into<String>) -> Self {
        Dependency {
            target: DepTarget::Node(name.into()),
            policy: DepPolicy::default(),
        }
    }

    /// A dependency on an existing job with the default policy.
    pub fn job(id: JobId) -> Self {
        Dependency {
            target: DepTarget::Job(id),
            policy: DepPolicy::default(),
        }
    }

    /// The same dependency under `policy`.
    pub fn policy(mut self, policy: DepPolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// One job of a workflow insert.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowNode {
    /// Its name, unique within the workflow: what other nodes depend on.
    pub name: String,
    /// The job. Its tenant must be the workflow's, and it may not carry an idempotency key
    /// (a duplicate would make the node an existing job outside the workflow).
    pub job: JobInsert,
    /// What it waits for; empty means it is available at once.
    pub depends_on: Vec<Dependency>,
}

/// Parameters of [`Store::workflow_insert`](crate::Store::workflow_insert).
#[derive(Debug, Clone)]
pub struct WorkflowInsertParams {
    /// `None` creates a workflow; `Some` adds the nodes to an existing, uncancelled one of the
    /// same tenant (dynamic fan-out, e.g. from inside one of its jobs).
    pub workflow: Option<WorkflowId>,
    /// The new workflow's name (ignored when adding).
    pub name: String,
    /// The tenant; every node's job must carry the same.
    pub tenant: Option<String>,
    /// The jobs, in any order.
    pub nodes: Vec<WorkflowNode>,
    /// The insert time.
    pub now: DateTime<Utc>,
    /// Args larger than this (as compact JSON) are refused.
    pub max_args_bytes: usize,
    /// The most jobs the workflow may hold once these are added.
    pub max_jobs: usize,
}

impl WorkflowInsertParams {
    /// Parameters to create the workflow `name` from `nodes` at `now`, with the default
    /// limits.
    pub fn new(name: impl Into<String>, nodes: Vec<WorkflowNode>, now: DateTime<Utc>) -> Self {
        WorkflowInsertParams {
            workflow: None,
            name: name.into(),
            tenant: None,
            nodes,
            now,
            max_args_bytes: MAX_ARGS_BYTES_DEFAULT,
            max_jobs: WORKFLOW_MAX_JOBS_DEFAULT,
        }
    }

    /// Checks everything that needs no database: the name, each node's name and job, that
    /// each node's tenant is the workflow's, that every node dependency names a node of this
    /// call or one of `existing` (the nodes already in the workflow), that no node depends on
    /// the same job twice, that the count fits `max_jobs` with `existing_count` jobs already
    /// in, and that the new edges form no cycle.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the field, e.g. `nodes[3].depends_on[0]`, and the node.
    pub fn validate(
        &self,
        existing: &HashSet<String>,
        existing_count: usize,
    ) -> Result<(), InvalidInput> {
        if self.workflow.is_none() {
            validate_name("name", &self.name)?;
        }
        if self.nodes.is_empty() {
            return Err(InvalidInput::new("nodes", "must hold at least one job"));
        }
        if existing_count + self.nodes.len() > self.max_jobs {
            return Err(InvalidInput::new(
                "nodes",
                format!(
                    "a workflow holds at most {} jobs; this one would hold {}",
                    self.max_jobs,
                    existing_count + self.nodes.len()
                ),
            ));
        }
        let mut index_of: HashMap<&str, usize> = HashMap::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let field = format!("nodes[{i}].name");
            validate_name(&field, &node.name)?;
            if index_of.insert(node.name.as_str(), i).is_some() || existing.contains(&node.name) {
                return Err(InvalidInput::new(
                    field,
                    format!("node {:?} is named twice in the workflow", node.name),
                ));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let at = |field: &str, error: InvalidInput| {
                InvalidInput::new(
                    format!("nodes[{i}].{field}"),
                    format!("node {:?}: {}", node.name, error.reason),
                )
            };
            node.job
                .validate(self.max_args_bytes)
                .map_err(|error| at(&error.field.clone(), error))?;
            if node.job.tenant != self.tenant {
                return Err(at(
                    "job.tenant",
                    InvalidInput::new("", "must be the workflow's tenant"),
                ));
            }
            if node.job.unique_key.is_some() {
                return Err(at(
                    "job.unique_key",
                    InvalidInput::new("", "a workflow's jobs cannot carry an idempotency key"),
                ));
            }
            if node.depends_on.len() > WORKFLOW_MAX_DEPS_PER_JOB {
                return Err(at(
                    "depends_on",
                    InvalidInput::new(
                        "",
                        format!("at most {WORKFLOW_MAX_DEPS_PER_JOB} dependencies"),
                    ),
                ));
            }
            let mut seen = HashSet::new();
            for (d, dep) in node.depends_on.iter().enumerate() {
                let field = format!("depends_on[{d}]");
                if !seen.insert(&dep.target) {
                    return Err(at(
                        &field,
                        InvalidInput::new("", "names the same job twice"),
                    ));
                }
                match &dep.target {
                    DepTarget::Node(name) if name == &node.name => {
                        return Err(at(
                            &field,
                            InvalidInput::new("", "a job cannot wait for itself"),
                        ))
                    }
                    DepTarget::Node(name)
                        if !index_of.contains_key(name.as_str()) && !existing.contains(name) =>
                    {
                        return Err(at(
                            &field,
                            InvalidInput::new(
                                "",
                                format!("no node named {name:?} in the workflow"),
                            ),
                        ))
                    }
                    DepTarget::Job(id) if id.0 <= 0 => {
                        return Err(at(&field, InvalidInput::new("", "job ids are positive")))
                    }
                    _ => {}
                }
            }
        }
        // Kahn's algorithm over the edges between new nodes (existing jobs never wait for new
        // ones, so a cycle can only run through this call's nodes).
        let mut waiting: Vec<usize> = vec![0; self.nodes.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for dep in &node.depends_on {
                if let DepTarget::Node(name) = &dep.target {
                    if let Some(&parent) = index_of.get(name.as_str()) {
                        waiting[i] += 1;
                        dependents[parent].push(i);
                    }
                }
            }
        }
        let mut ready: Vec<usize> = (0..self.nodes.len()).filter(|&i| waiting[i] == 0).collect();
        let mut done = 0;
        while let Some(i) = ready.pop() {
            done += 1;
            for &child in &dependents[i] {
                waiting[child] -= 1;
                if waiting[child] == 0 {
                    ready.push(child);
                }
            }
        }
        if done < self.nodes.len() {
            let (i, node) = self
                .nodes
                .iter()
                .enumerate()
                .find(|(i, _)| waiting[*i] > 0)
                .expect("a node left waiting");
            return Err(InvalidInput::new(
                format!("nodes[{i}].depends_on"),
                format!("node {:?} is part of a dependency cycle", node.name),
            ));
        }
        Ok(())
    }
}

/// Checks a workflow or node name: 1 to 128 characters from `A-Z a-z 0-9 _ - . :`.
///
/// # Errors
///
/// [`InvalidInput`] for `field`.
pub fn validate_name(field: &str, name: &str) -> Result<(), InvalidInput> {
    let ok = !name.is_empty()
        && name.len() <= WORKFLOW_NAME_MAX_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::new(
            field,
            format!(
                "must be 1 to {WORKFLOW_NAME_MAX_LEN} characters of A-Z, a-z, 0-9, _, -, . and :, got {name:?}"
            ),
        ))
    }
}

/// What [`Store::workflow_insert`](crate::Store::workflow_insert) inserted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowInserted {
    /// The workflow.
    pub workflow: WorkflowId,
    /// Each node's job id, in input order.
    pub jobs: Vec<(String, JobId)>,
}

/// A workflow's state, derived from its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// Some job is waiting, running or blocked on a job that may still complete.
    Running,
    /// Nothing can move: a job waits on a failed dependency under [`DepPolicy::Hold`]. Retry
    /// the failed job to resume, or cancel the workflow.
    Held,
    /// Every job completed.
    Completed,
    /// Every job finished, and some did not complete.
    Failed,
    /// The workflow was cancelled.
    Cancelled,
}

impl WorkflowState {
    /// The lowercase name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Running => "running",
            WorkflowState::Held => "held",
            WorkflowState::Completed => "completed",
            WorkflowState::Failed => "failed",
            WorkflowState::Cancelled => "cancelled",
        }
    }

    /// The state of a workflow with these job counts, `held` jobs waiting on a failed
    /// dependency under [`DepPolicy::Hold`], cancelled or not.
    pub fn derive(counts: &WorkflowCounts, held: i64, cancelled: bool) -> WorkflowState {
        let unfinished = counts.blocked + counts.available + counts.running + counts.retryable;
        if cancelled {
            WorkflowState::Cancelled
        } else if counts.available + counts.running + counts.retryable > 0 {
            WorkflowState::Running
        } else if held > 0 {
            WorkflowState::Held
        } else if unfinished > 0 {
            // Blocked on jobs outside the workflow that have not finished.
            WorkflowState::Running
        } else if counts.discarded + counts.cancelled > 0 {
            WorkflowState::Failed
        } else {
            WorkflowState::Completed
        }
    }
}

impl fmt::Display for WorkflowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many of a workflow's jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowCounts {
    /// Waiting for dependencies.
    pub blocked: i64,
    /// Waiting to run.
    pub available: i64,
    /// Running.
    pub running: i64,
    /// Waiting for a retry.
    pub retryable: i64,
    /// Completed.
    pub completed: i64,
    /// Discarded.
    pub discarded: i64,
    /// Cancelled.
    pub cancelled: i64,
}

impl WorkflowCounts {
    /// Adds `count` jobs in `state`.
    pub fn add(&mut self, state: JobState, count: i64) {
        let slot = match state {
            JobState::Blocked => &mut self.blocked,
            JobState::Available => &mut self.available,
            JobState::Running => &mut self.running,
            JobState::Retryable => &mut self.retryable,
            JobState::Completed => &mut self.completed,
            JobState::Discarded => &mut self.discarded,
            JobState::Cancelled => &mut self.cancelled,
        };
        *slot += count;
    }

    /// Every job.
    pub fn total(&self) -> i64 {
        self.blocked
            + self.available
            + self.running
            + self.retryable
            + self.completed
            + self.discarded
            + self.cancelled
    }
}

/// A workflow as [`Store::workflow_get`](crate::Store::workflow_get) returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRow {
    /// Its id.
    pub id: WorkflowId,
    /// Its name.
    pub name: String,
    /// Its tenant.
    pub tenant: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Derived from its jobs (see [`WorkflowState::derive`]).
    pub state: WorkflowState,
    /// Its jobs by state.
    pub counts: WorkflowCounts,
    /// Jobs waiting on a failed dependency under [`DepPolicy::Hold`].
    pub held: i64,
    /// Once completed: each final job's result (a job no other job of the workflow waits
    /// for), by node name.
    pub result: Option<Value>,
}

/// One job of a workflow with its edges, for drawing the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowJob {
    /// The job.
    pub id: JobId,
    /// Its node name.
    pub node: String,
    /// Its kind.
    pub kind: String,
    /// Its state.
    pub state: JobState,
    /// What it waits for (or waited for).
    pub depends_on: Vec<DependencyEdge>,
}

/// An edge as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyEdge {
    /// The job waited for.
    pub id: JobId,
    /// Its policy.
    pub policy: DepPolicy,
    /// Whether it has been resolved (the parent completed, or failed under `cancel` or
    /// `run`).
    pub resolved: bool,
}

/// A dependency of a job with its outcome: what a handler reads before it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependencyResult {
    /// The job depended on.
    pub id: JobId,
    /// Its node name, if it is in a workflow.
    pub node: Option<String>,
    /// Its state (for a job that runs, `completed`, or a failure under [`DepPolicy::Run`]).
    pub state: JobState,
    /// Its result, if it completed with one.
    pub result: Option<Value>,
    /// The edge's policy.
    pub policy: DepPolicy,
}

/// Parameters of [`Store::workflow_cancel`](crate::Store::workflow_cancel).
#[derive(Debug, Clone)]
pub struct WorkflowCancelParams {
    /// The workflow.
    pub id: WorkflowId,
    /// When.
    pub now: DateTime<Utc>,
}

/// The most workflows one list returns.
pub const WORKFLOW_LIST_MAX_LIMIT: u32 = 200;

/// Parameters of [`Store::workflow_list`](crate::Store::workflow_list).
#[derive(Debug, Clone, Default)]
pub struct WorkflowListParams {
    /// Only this tenant's workflows.
    pub tenant: Option<String>,
    /// Only workflows with an id below this (the next page).
    pub before: Option<WorkflowId>,
    /// At most this many, 1 to [`WORKFLOW_LIST_MAX_LIMIT`].
    pub limit: u32,
}

impl WorkflowListParams {
    /// Checks the limit.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `limit`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.limit == 0 || self.limit > WORKFLOW_LIST_MAX_LIMIT {
            return Err(InvalidInput::new(
                "limit",
                format!("must be 1 to {WORKFLOW_LIST_MAX_LIMIT}, got {}", self.limit),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Metadata, Priority, QUEUE_DEFAULT};

    fn job() -> JobInsert {
        JobInsert {
            kind: "k".into(),
            queue: QUEUE_DEFAULT.into(),
            args: serde_json::json!({}),
            priority: Priority::NORMAL,
            max_attempts: 1,
            run_at: None,
            unique_key: None,
            tenant: None,
            metadata: Metadata::default(),
            timeout_ms: None,
            backoff: None,
        }
    }

    fn node(name: &str, deps: &[&str]) -> WorkflowNode {
        WorkflowNode {
            name: name.into(),
            job: job(),
            depends_on: deps.iter().map(|d| Dependency::node(*d)).collect(),
        }
    }

    fn check(nodes: Vec<WorkflowNode>) -> Result<(), InvalidInput> {
        WorkflowInsertParams::new("w", nodes, Utc::now()).validate(&HashSet::new(), 0)
    }

    #[test]
    fn a_diamond_is_accepted() {
        check(vec![
            node("a", &[]),
            node("b", &["a"]),
            node("c", &["a"]),
            node("d", &["b", "c"]),
        ])
        .unwrap();
    }

    #[test]
    fn a_cycle_is_refused_naming_a_node_in_it() {
        let err = check(vec![
            node("a", &[]),
            node("b", &["a", "c"]),
            node("c", &["b"]),
        ])
        .unwrap_err();
        assert_eq!(err.field, "nodes[1].depends_on");
        assert!(err.reason.contains("\"b\""), "{}", err.reason);
    }

    #[test]
    fn unknown_and_self_dependencies_are_refused() {
        let err = check(vec![node("a", &["x"])]).unwrap_err();
        assert_eq!(err.field, "nodes[0].depends_on[0]");
        assert!(err.reason.contains("\"x\""));
        let err = check(vec![node("a", &["a"])]).unwrap_err();
        assert_eq!(err.field, "nodes[0].depends_on[0]");
    }

    #[test]
    fn too_many_jobs_and_duplicate_names_are_refused() {
        let mut params =
            WorkflowInsertParams::new("w", vec![node("a", &[]), node("b", &[])], Utc::now());
        params.max_jobs = 1;
        assert_eq!(
            params.validate(&HashSet::new(), 0).unwrap_err().field,
            "nodes"
        );
        let err = check(vec![node("a", &[]), node("a", &[])]).unwrap_err();
        assert_eq!(err.field, "nodes[1].name");
    }

    #[test]
    fn state_is_derived_from_counts() {
        let mut counts = WorkflowCounts::default();
        counts.add(JobState::Completed, 2);
        assert_eq!(
            WorkflowState::derive(&counts, 0, false),
            WorkflowState::Completed
        );
        counts.add(JobState::Blocked, 1);
        counts.add(JobState::Discarded, 1);
        assert_eq!(
            WorkflowState::derive(&counts, 1, false),
            WorkflowState::Held
        );
        assert_eq!(
            WorkflowState::derive(&counts, 1, true),
            WorkflowState::Cancelled
        );
        counts.add(JobState::Running, 1);
        assert_eq!(
            WorkflowState::derive(&counts, 1, false),
            WorkflowState::Running
        );
    }
}
