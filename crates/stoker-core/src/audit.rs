//! The audit log (issue 17, item 3): one row per management action, append-only.
//!
//! Who did what (a cancel, a retry, a pause, a bulk operation, a schedule or token change...),
//! through which face, for which tenant, on what and to how many jobs, and from where. The
//! `stoker` client writes the rows; the store only keeps, lists and prunes them by age. There
//! is no way to change a row.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::InvalidInput;

/// The most rows one [`AuditListParams`] page returns.
pub const AUDIT_LIST_MAX_LIMIT: u32 = 1000;

/// The longest text of an audit field (actor, action, tenant, target, source) in a filter.
pub const AUDIT_TEXT_MAX_LEN: usize = 255;

/// The faces an action comes through.
pub const AUDIT_VIAS: [&str; 4] = ["api", "dashboard", "cli", "library"];

/// One management action to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: a token's name, or `library` / `cli` for code and the command line acting on the
    /// database directly, or `anonymous` on a server without tokens.
    pub actor: String,
    /// The stored token's id, when the actor holds one.
    pub token_id: Option<String>,
    /// Through which face: one of [`AUDIT_VIAS`].
    pub via: String,
    /// The tenant the action was limited to, if any.
    pub tenant: Option<String>,
    /// What, e.g. `job.cancel`, `queue.pause`, `bulk.start`, `cron.update`, `token.revoke`.
    pub action: String,
    /// On what, e.g. `job 42`, `queue mail`, `schedule nightly`, `token ab12cd34`.
    pub target: Option<String>,
    /// The filter of an action over many jobs.
    pub filter: Option<Value>,
    /// How many jobs it affected, when that is known.
    pub affected: Option<i64>,
    /// The caller's address, for actions over the network.
    pub source: Option<String>,
}

impl AuditEntry {
    /// Checks what a store relies on before it writes the row with an action
    /// ([`Store::audited`](crate::Store::audited)): a known face and a named action. A
    /// refused row refuses the action with it.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `via` or `action`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if !AUDIT_VIAS.contains(&self.via.as_str()) {
            return Err(InvalidInput::new(
                "via",
                format!("must be one of {}", AUDIT_VIAS.join(", ")),
            ));
        }
        if self.action.is_empty() || self.action.len() > AUDIT_TEXT_MAX_LEN {
            return Err(InvalidInput::new(
                "action",
                format!("must be 1 to {AUDIT_TEXT_MAX_LEN} bytes"),
            ));
        }
        Ok(())
    }
}

/// A recorded action, as [`Store::audit_list`](crate::Store::audit_list) returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// Its id: rows are numbered in the order they were written.
    pub id: i64,
    /// The action.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Which rows [`Store::audit_list`](crate::Store::audit_list) returns: newest first, every
/// filter optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditListParams {
    /// Only this tenant's rows.
    pub tenant: Option<String>,
    /// Only this action, e.g. `job.cancel`; a value ending in `.` (e.g. `job.`) takes every
    /// action with that prefix.
    pub action: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows before this time.
    pub until: Option<DateTime<Utc>>,
    /// Keyset cursor: only rows with an id below this one.
    pub before_id: Option<i64>,
    /// The most rows, 1 to [`AUDIT_LIST_MAX_LIMIT`].
    pub limit: u32,
}

impl AuditListParams {
    /// Checks the limit, the cursor and the texts.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `limit`, `before_id`, `tenant`, `action` or `actor`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if !(1..=AUDIT_LIST_MAX_LIMIT).contains(&self.limit) {
            return Err(InvalidInput::new(
                "limit",
                format!("must be from 1 to {AUDIT_LIST_MAX_LIMIT}"),
            ));
        }
        if self.before_id.is_some_and(|id| id < 1) {
            return Err(InvalidInput::new("before_id", "must be 1 or more"));
        }
        for (field, text) in [
            ("tenant", &self.tenant),
            ("action", &self.action),
            ("actor", &self.actor),
        ] {
            if let Some(text) = text {
                if text.is_empty() || text.len() > AUDIT_TEXT_MAX_LEN {
                    return Err(InvalidInput::new(
                        field,
                        format!("must be 1 to {AUDIT_TEXT_MAX_LEN} bytes"),
                    ));
                }
            }
        }
        // An `until` before `since` is a valid query that matches nothing.
        Ok(())
    }
}

/// A management action a store applies together with its audit row (issue 17), through
/// [`Store::audited`](crate::Store::audited): the row is written in the action's own
/// transaction, so it exists if and only if the change committed. An action that fails (not
/// found, conflict, invalid) writes no row; an action that finds nothing to change (cancelling
/// a job that already finished) writes none either.
#[derive(Debug, Clone)]
pub enum AuditedAction {
    /// [`Store::job_cancel`](crate::Store::job_cancel); gives [`AuditedOutcome::Job`].
    JobCancel(crate::JobCancelParams),
    /// [`Store::job_retry`](crate::Store::job_retry); gives [`AuditedOutcome::Job`].
    JobRetry(crate::JobRetryParams),
    /// [`Store::job_delete`](crate::Store::job_delete); gives [`AuditedOutcome::Job`].
    JobDelete(crate::JobId),
    /// [`Store::queue_pause`](crate::Store::queue_pause); gives [`AuditedOutcome::Done`].
    QueuePause(crate::QueueParams),
    /// [`Store::queue_resume`](crate::Store::queue_resume); gives [`AuditedOutcome::Done`].
    QueueResume(crate::QueueParams),
    /// One batch of [`Store::job_retry_many_jobs`](crate::Store::job_retry_many_jobs); gives
    /// [`AuditedOutcome::Changed`] (the retried jobs, for live events), and the row's
    /// `affected` is how many.
    JobRetryMany(crate::JobRetryManyParams),
    /// One batch of [`Store::job_prune`](crate::Store::job_prune), or of
    /// [`Store::job_prune_tenant`](crate::Store::job_prune_tenant) with a tenant; gives
    /// [`AuditedOutcome::Count`], and the row's `affected` is that count.
    JobPrune {
        /// What to delete.
        params: crate::JobPruneParams,
        /// Only this tenant's jobs.
        tenant: Option<String>,
    },
    /// [`Store::cron_write`](crate::Store::cron_write); gives [`AuditedOutcome::Cron`].
    CronWrite(crate::cron::CronWriteParams),
    /// [`Store::cron_delete`](crate::Store::cron_delete) by name; gives
    /// [`AuditedOutcome::Cron`].
    CronDelete(String),
    /// [`Store::cron_fire`](crate::Store::cron_fire) (a run by hand); gives
    /// [`AuditedOutcome::CronFire`]. The row is written only with inserted jobs
    /// ([`CronFireOutcome::Fired`](crate::cron::CronFireOutcome::Fired)).
    CronFire(crate::cron::CronFireParams),
    /// [`Store::alert_write`](crate::Store::alert_write); gives [`AuditedOutcome::Alert`].
    AlertWrite(crate::alert::AlertWriteParams),
    /// [`Store::alert_delete`](crate::Store::alert_delete) by name; gives
    /// [`AuditedOutcome::Alert`].
    AlertDelete(String),
    /// [`Store::token_create`](crate::Store::token_create); gives [`AuditedOutcome::Token`].
    TokenCreate(crate::TokenCreateParams),
    /// [`Store::token_revoke`](crate::Store::token_revoke); gives [`AuditedOutcome::Token`].
    TokenRevoke {
        /// The token's id.
        id: String,
        /// When.
        now: DateTime<Utc>,
    },
    /// [`Store::limit_set`](crate::Store::limit_set); gives [`AuditedOutcome::Limit`].
    LimitSet(crate::LimitSetParams),
    /// [`Store::limit_delete`](crate::Store::limit_delete) by name; gives
    /// [`AuditedOutcome::Limit`].
    LimitDelete(String),
    /// [`Store::bulk_op_create`](crate::Store::bulk_op_create); gives
    /// [`AuditedOutcome::BulkOp`], and the row's target is `op <id>` and its `affected` the
    /// jobs the filter matched.
    BulkOpCreate(crate::BulkOpCreateParams),
    /// [`Store::bulk_op_abort`](crate::Store::bulk_op_abort); gives
    /// [`AuditedOutcome::BulkOp`], and the row's `affected` is the jobs already done.
    BulkOpAbort {
        /// The operation's id.
        id: i64,
        /// When.
        now: DateTime<Utc>,
    },
}

/// What an [`AuditedAction`] gave: the same value as the plain store operation.
#[derive(Debug, Clone)]
pub enum AuditedOutcome {
    /// A job as the action left it.
    Job(crate::JobRow),
    /// The action has no value.
    Done,
    /// How many jobs the action changed.
    Count(u64),
    /// The jobs the action changed, as live events show them.
    Changed(Vec<crate::ChangedJob>),
    /// A schedule.
    Cron(crate::cron::CronRow),
    /// What a schedule's fire did.
    CronFire(crate::cron::CronFireOutcome),
    /// An alert rule.
    Alert(crate::alert::AlertRow),
    /// A stored token.
    Token(crate::TokenRow),
    /// A bulk operation.
    BulkOp(crate::BulkOpRow),
    /// A limit.
    Limit(crate::LimitRow),
}

/// The error for an outcome of another kind than the action gives: a store bug.
fn mismatch(want: &str, got: &AuditedOutcome) -> crate::StoreError {
    crate::StoreError::Corrupt(format!(
        "an audited action gave {got:?} where {want} was expected"
    ))
}

impl AuditedOutcome {
    /// The job of [`AuditedOutcome::Job`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) for another kind of outcome.
    pub fn job(self) -> crate::StoreResult<crate::JobRow> {
        match self {
            AuditedOutcome::Job(job) => Ok(job),
            other => Err(mismatch("a job", &other)),
        }
    }

    /// The count of [`AuditedOutcome::Count`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) for another kind of outcome.
    pub fn count(self) -> crate::StoreResult<u64> {
        match self {
            AuditedOutcome::Count(count) => Ok(count),
            other => Err(mismatch("a count", &other)),
        }
    }

    /// The jobs of [`AuditedOutcome::Changed`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) for another kind of outcome.
    pub fn changed(self) -> crate::StoreResult<Vec<crate::ChangedJob>> {
        match self {
            AuditedOutcome::Changed(changed) => Ok(changed),
            other => Err(mismatch("the changed jobs", &other)),
        }
    }

    /// Nothing, from [`AuditedOutcome::Done`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) for another kind of outcome.
    pub fn done(self) -> crate::StoreResult<()> {
        match self {
            AuditedOutcome::Done => Ok(()),
            other => Err(mismatch("nothing", &other)),
        }
    }

    /// The schedule of [`AuditedOutcome::Cron`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) for another kind of outcome.
    pub fn cron(self) -> crate::StoreResult<crate::cron::CronRow> {
        match self {
            AuditedOutcome::Cron(row) => Ok(row),
            other => Err(mismatch("a schedule", &other)),
        }
    }

    /// The outcome of [`AuditedOutcome::CronFire`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) for another kind of outcome.
    pub fn cron_fire(self) -> crate::StoreResult<crate::cron::CronFireOutcome> {
        match self {
            AuditedOutcome::CronFire(outcome) => Ok(outcome),
            other => Err(mismatch("a fire's outcome", &other)),
        }
    }

    /// The rule of [`AuditedOutcome::Alert`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) for another kind of outcome.
    pub fn alert(self) -> crate::StoreResult<crate::alert::AlertRow> {
        match self {
            AuditedOutcome::Alert(row) => Ok(row),
            other => Err(mismatch("an alert rule", &other)),
        }
    }

    /// The token of [`AuditedOutcome::Token`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) for another kind of outcome.
    pub fn token(self) -> crate::StoreResult<crate::TokenRow> {
        match self {
            AuditedOutcome::Token(row) => Ok(row),
            other => Err(mismatch("a token", &other)),
        }
    }

    /// The limit of [`AuditedOutcome::Limit`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) for another kind of outcome.
    pub fn limit(self) -> crate::StoreResult<crate::LimitRow> {
        match self {
            AuditedOutcome::Limit(row) => Ok(row),
            other => Err(mismatch("a limit", &other)),
        }
    }

    /// The operation of [`AuditedOutcome::BulkOp`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) for another kind of outcome.
    pub fn bulk_op(self) -> crate::StoreResult<crate::BulkOpRow> {
        match self {
            AuditedOutcome::BulkOp(row) => Ok(row),
            other => Err(mismatch("a bulk operation", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_params_name_the_field() {
        let good = AuditListParams {
            limit: 10,
            ..AuditListParams::default()
        };
        assert!(good.validate().is_ok());
        let field = |params: AuditListParams| params.validate().unwrap_err().field;
        assert_eq!(
            field(AuditListParams {
                limit: 0,
                ..good.clone()
            }),
            "limit"
        );
        assert_eq!(
            field(AuditListParams {
                limit: AUDIT_LIST_MAX_LIMIT + 1,
                ..good.clone()
            }),
            "limit"
        );
        assert_eq!(
            field(AuditListParams {
                before_id: Some(0),
                ..good.clone()
            }),
            "before_id"
        );
        assert_eq!(
            field(AuditListParams {
                action: Some(String::new()),
                ..good
            }),
            "action"
        );
    }
}
