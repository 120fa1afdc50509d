//! Parents that wait for their children (issue 18, item 4).
//!
//! A running job enqueues children it waits for ([`Store::job_children_insert`]): each child
//! records its parent (`awaited_by`) and the [`DepPolicy`] its failure applies, and the parent
//! counts the children not yet resolved, all in the transaction of the insert. When the
//! parent's handler is done it asks to complete once its children are
//! ([`Store::job_wait_children`]): with nothing pending the parent completes at once; else it
//! moves to `blocked` with its result kept, and the transaction that resolves its last child
//! (a trigger in each store, on every path that finishes or deletes a job) completes it, never
//! running it again. A child that fails resolves its edge by its policy:
//!
//! - [`DepPolicy::Cancel`] (the default): the parent ends `cancelled` (a running parent is
//!   asked to stop, and a waiting one is cancelled at once);
//! - [`DepPolicy::Run`]: the parent completes anyway once its other children allow;
//! - [`DepPolicy::Hold`]: the parent keeps waiting until an operator retries the child and it
//!   completes (or cancels the parent).
//!
//! A deleted child resolves its edge as a failure that does not hold.
//!
//! [`Store::job_children_insert`]: crate::Store::job_children_insert
//! [`Store::job_wait_children`]: crate::Store::job_wait_children

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{DepPolicy, InvalidInput, JobId, JobInsert, JobState, WorkflowCounts};

/// The most children one call may enqueue.
pub const CHILDREN_MAX_PER_CALL: usize = 10_000;

/// Parameters of [`Store::job_children_insert`](crate::Store::job_children_insert).
#[derive(Debug, Clone)]
pub struct ChildrenInsertParams {
    /// The parent: a job running under `fence`.
    pub parent: JobId,
    /// The fence of the parent's claim.
    pub fence: i64,
    /// The children. A duplicate (an idempotency key that matched) is waited for too if it
    /// is unfinished and no other job waits for it.
    pub jobs: Vec<JobInsert>,
    /// What a child that fails does to the parent.
    pub policy: DepPolicy,
    /// The insert time.
    pub now: DateTime<Utc>,
    /// Args larger than this (as compact JSON) are refused.
    pub max_args_bytes: usize,
}

impl ChildrenInsertParams {
    /// Checks the count and each job.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `jobs` or `jobs[i].field`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.jobs.is_empty() || self.jobs.len() > CHILDREN_MAX_PER_CALL {
            return Err(InvalidInput::new(
                "jobs",
                format!(
                    "must hold 1 to {CHILDREN_MAX_PER_CALL} jobs, got {}",
                    self.jobs.len()
                ),
            ));
        }
        for (i, job) in self.jobs.iter().enumerate() {
            job.validate(self.max_args_bytes).map_err(|error| {
                InvalidInput::new(format!("jobs[{i}].{}", error.field), error.reason)
            })?;
        }
        Ok(())
    }
}

/// Parameters of [`Store::job_wait_children`](crate::Store::job_wait_children).
#[derive(Debug, Clone)]
pub struct WaitChildrenParams {
    /// The parent: a job running under `fence`.
    pub id: JobId,
    /// The fence of its claim.
    pub fence: i64,
    /// Its handler's result, kept while it waits.
    pub result: Option<Value>,
    /// When.
    pub now: DateTime<Utc>,
}

/// A parent's wait for its children, as
/// [`Store::job_children`](crate::Store::job_children) reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildrenWait {
    /// Children not yet resolved: the parent completes when this reaches 0.
    pub pending: i64,
    /// Children that failed under [`DepPolicy::Cancel`]: one or more cancels the parent.
    pub failed: i64,
    /// Every child waited for, by state.
    pub states: WorkflowCounts,
    /// The unresolved children, lowest id first (at most [`CHILDREN_LIST_MAX`]).
    pub unresolved: Vec<WaitedChild>,
}

/// The most unresolved children [`ChildrenWait::unresolved`] lists.
pub const CHILDREN_LIST_MAX: usize = 100;

/// A child its parent still waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitedChild {
    /// The child.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its state.
    pub state: JobState,
    /// What its failure does to the parent.
    pub policy: DepPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Metadata, Priority, QUEUE_DEFAULT};

    fn job(kind: &str) -> JobInsert {
        JobInsert {
            kind: kind.into(),
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

    #[test]
    fn empty_and_bad_jobs_are_refused_by_field() {
        let mut params = ChildrenInsertParams {
            parent: JobId(1),
            fence: 1,
            jobs: Vec::new(),
            policy: DepPolicy::Cancel,
            now: Utc::now(),
            max_args_bytes: 1024,
        };
        assert_eq!(params.validate().unwrap_err().field, "jobs");
        params.jobs = vec![job("ok"), job("")];
        assert_eq!(params.validate().unwrap_err().field, "jobs[1].kind");
        params.jobs.pop();
        params.validate().unwrap();
    }
}
