//! The audit log (issue 17, item 3): `GET /v1/audit`. Read-only: rows are written by the
//! management actions themselves, through the client, and leave only by age.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::ApiQuery;
use super::model::ErrorBody;
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// One recorded management action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryView {
    /// Its id: rows are numbered in the order they were written.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: a token's name, `anonymous` on a server without tokens, `cli` or `library` for
    /// the command line and code acting on the database directly.
    pub actor: String,
    /// The stored token's id, when the actor presented one.
    pub token_id: Option<String>,
    /// The face: `api`, `dashboard`, `cli` or `library`.
    pub via: String,
    /// The tenant the action was limited to.
    pub tenant: Option<String>,
    /// What, e.g. `job.cancel`, `queue.pause`, `bulk.start`, `cron.update`, `token.revoke`.
    pub action: String,
    /// On what, e.g. `job 42`, `queue mail`, `schedule nightly`.
    pub target: Option<String>,
    /// The filter of an action over many jobs.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// How many jobs it affected, when known.
    pub affected: Option<i64>,
    /// The caller's address.
    pub source: Option<String>,
}

impl From<stoker::AuditRow> for AuditEntryView {
    fn from(row: stoker::AuditRow) -> Self {
        let entry = row.entry;
        AuditEntryView {
            id: row.id,
            at: entry.at,
            actor: entry.actor,
            token_id: entry.token_id,
            via: entry.via,
            tenant: entry.tenant,
            action: entry.action,
            target: entry.target,
            filter: entry.filter,
            affected: entry.affected,
            source: entry.source,
        }
    }
}

/// One page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    /// The rows.
    pub entries: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// Filters of `GET /v1/audit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this tenant's rows (a tenant-bound token always reads only its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub tenant: Option<String>,
    /// Only this action, e.g. `job.cancel`; ending in `.` (e.g. `job.`), every action with
    /// that prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub action: Option<String>,
    /// Only this actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 255, pattern = r"^[ -~]*[!-~][ -~]*$")]
    pub actor: Option<String>,
    /// Only rows at or after this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Only rows before this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// The keyset cursor: `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
    /// Page size, 1 to 1000. Defaults to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The audit log: who did which management action, when, from where, to how many jobs.
///
/// Newest first, filtered by tenant, action (or action prefix), actor and time, paged by
/// `cursor`. Needs the `operate` scope; a tenant-bound token reads only its tenant's rows.
/// There is no way to write or change a row through the API.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "One page of the log", body = AuditList),
        (status = 403, description = "Missing scope, or another tenant than the token's", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    principal.require(Scope::Operate)?;
    for (field, value, spaces) in [
        ("tenant", &query.tenant, false),
        ("action", &query.action, false),
        ("actor", &query.actor, true),
    ] {
        if let Some(value) = value {
            super::jobs::ascii_text(|| field.to_owned(), value, spaces)?;
        }
    }
    let limit = query.limit.unwrap_or(100);
    let rows = state
        .client_for(&principal)
        .audit_list(stoker::AuditListParams {
            tenant: query.tenant,
            action: query.action,
            actor: query.actor,
            since: query.since,
            until: query.until,
            before_id: query.cursor,
            limit,
        })
        .await
        .map_err(|err| match err {
            // The client names the cursor as the library does; the query calls it `cursor`.
            stoker::Error::Invalid(invalid) if invalid.field == "before_id" => {
                ApiError::invalid("cursor", format!("invalid cursor: {}", invalid.reason))
            }
            other => other.into(),
        })?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|row| row.id))
        .flatten();
    Ok(Json(AuditList {
        entries: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}
