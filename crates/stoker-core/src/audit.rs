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
