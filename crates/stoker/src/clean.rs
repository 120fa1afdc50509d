//! Cleaning finished jobs on demand (issue 13, retention): "delete finished jobs older than
//! T", as BullMQ's `clean` and good_job's `cleanup_preserved_jobs` do, one bounded batch per
//! call.

use std::time::Duration;

use stoker_core::{InvalidInput, JobPruneParams, JobState, Store};

use crate::{Client, Result};

/// The most jobs one [`Client::clean`] call deletes.
pub const CLEAN_MAX_BATCH: u32 = 10_000;
/// The longest `older_than` [`Client::clean`] takes: ten years.
pub const CLEAN_MAX_AGE: Duration = Duration::from_secs(10 * 365 * 86_400);

/// What [`Client::clean`] deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanRequest {
    /// Finished states to delete: `completed`, `discarded`, `cancelled`; at least one.
    pub states: Vec<JobState>,
    /// Only jobs that finished longer ago than this.
    pub older_than: Duration,
    /// The most jobs to delete in this call (1 to [`CLEAN_MAX_BATCH`]); call again while it
    /// deletes this many.
    pub limit: u32,
}

impl<S: Store + ?Sized> Client<S> {
    /// Deletes up to `limit` finished jobs of the given states that finished more than
    /// `older_than` ago, oldest first, and returns how many. Never touches unfinished jobs.
    /// The finished counts move with the rows (same transaction). A client scoped to a tenant
    /// (issue 17) deletes only its tenant's finished jobs.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) naming `states` (empty, or a state that is
    /// not finished), `older_than` or `limit`; a store error.
    pub async fn clean(&self, request: &CleanRequest) -> Result<u64> {
        if request.states.is_empty() {
            return Err(InvalidInput::new("states", "name at least one finished state").into());
        }
        if let Some(state) = request.states.iter().find(|s| !s.is_finished()) {
            return Err(InvalidInput::new(
                "states",
                format!("{state} is not a finished state (completed, discarded, cancelled)"),
            )
            .into());
        }
        if request.older_than > CLEAN_MAX_AGE {
            return Err(InvalidInput::new(
                "older_than",
                format!("must be at most {} seconds", CLEAN_MAX_AGE.as_secs()),
            )
            .into());
        }
        if !(1..=CLEAN_MAX_BATCH).contains(&request.limit) {
            return Err(InvalidInput::new(
                "limit",
                format!("must be from 1 to {CLEAN_MAX_BATCH}, got {}", request.limit),
            )
            .into());
        }
        let before = self.clock().now()
            - chrono::Duration::from_std(request.older_than).unwrap_or(chrono::Duration::MAX);
        let when = |state: JobState| request.states.contains(&state).then_some(before);
        let params = JobPruneParams {
            completed_before: when(JobState::Completed),
            cancelled_before: when(JobState::Cancelled),
            discarded_before: when(JobState::Discarded),
            keep_last: None,
            limit: request.limit,
            queue_rules: Vec::new(),
        };
        let states: Vec<String> = request.states.iter().map(ToString::to_string).collect();
        // The row commits with the deletion and counts it; a clean that deleted nothing
        // records nothing (issue 17).
        let entry = self.audit_entry(
            "job.clean",
            None,
            Some(serde_json::json!({
                "states": states,
                "older_than_seconds": request.older_than.as_secs(),
                "limit": request.limit,
            })),
            None,
        );
        let action = stoker_core::AuditedAction::JobPrune {
            params,
            tenant: self.tenant().map(str::to_owned),
        };
        Ok(self.store().audited(action, entry).await?.count()?)
    }
}
