//! The dashboard's Audit page (issue 17): the newest management actions, filtered by action,
//! actor and tenant, read through the same client call as `GET /v1/audit` (so a tenant-bound
//! viewer sees only its tenant's rows).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use stoker::AuditListParams;

use super::format::When;
use super::pages::Chrome;
use super::session::Viewer;
use super::{render, Dash, DashError};
use crate::config::Scope;

/// One row as the page shows it.
pub(crate) struct AuditView {
    id: i64,
    at: When,
    actor: String,
    via: String,
    tenant: String,
    action: String,
    target: String,
    affected: String,
    source: String,
}

#[derive(Template)]
#[template(path = "dashboard/audit.html")]
struct AuditPage {
    c: Chrome,
    entries: Vec<AuditView>,
    action: String,
    actor: String,
    tenant: String,
    older: String,
}

/// `GET /audit?action=&actor=&tenant=&before=`: one page of 100 rows, newest first.
pub(crate) async fn audit(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, DashError> {
    if !viewer.principal.allows(Scope::Operate) {
        return Err(DashError::new(
            StatusCode::FORBIDDEN,
            "Not for this token",
            "The audit log needs the operate (or admin) scope.",
        ));
    }
    let text = |key: &str| {
        params
            .get(key)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    let before_id = match text("before") {
        Some(before) => Some(before.parse::<i64>().map_err(|_| {
            DashError::new(
                StatusCode::BAD_REQUEST,
                "Not accepted",
                format!("before: {before:?} is not a row id"),
            )
        })?),
        None => None,
    };
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let limit = 100;
    let rows = client
        .audit_list(AuditListParams {
            tenant: text("tenant"),
            action: text("action"),
            actor: text("actor"),
            since: None,
            until: None,
            before_id,
            limit,
        })
        .await?;
    let older = match rows.last() {
        Some(last) if rows.len() == limit as usize => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for key in ["action", "actor", "tenant"] {
                if let Some(value) = text(key) {
                    query.append_pair(key, &value);
                }
            }
            query.append_pair("before", &last.id.to_string());
            format!("/audit?{}", query.finish())
        }
        _ => String::new(),
    };
    let entries = rows
        .into_iter()
        .map(|row| {
            let entry = row.entry;
            let target = match (entry.target, entry.filter) {
                (Some(target), _) => target,
                (None, Some(filter)) => filter.to_string(),
                (None, None) => String::new(),
            };
            AuditView {
                id: row.id,
                at: When::new(entry.at, now),
                actor: entry.actor,
                via: entry.via,
                tenant: entry.tenant.unwrap_or_default(),
                action: entry.action,
                target,
                affected: entry.affected.map(|n| n.to_string()).unwrap_or_default(),
                source: entry.source.unwrap_or_default(),
            }
        })
        .collect();
    let c = Chrome::new(&viewer, "audit", "Audit", &params);
    Ok(render(&AuditPage {
        c,
        entries,
        action: text("action").unwrap_or_default(),
        actor: text("actor").unwrap_or_default(),
        tenant: text("tenant").unwrap_or_default(),
        older,
    }))
}
