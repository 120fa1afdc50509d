//! The dashboard's Workflows and Batches pages (issue 18): the newest workflows with their
//! state and job counts, the newest batches with their counters, and one batch's page. Read
//! through the same client calls as `GET /v1/workflows` and `GET /v1/batches`, so a
//! tenant-bound viewer sees only its tenant's.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use stoker::core::BatchListParams;
use stoker::{BatchId, BatchRow, WorkflowId, WorkflowListParams};

use super::format::When;
use super::pages::Chrome;
use super::session::Viewer;
use super::{render, Dash, DashError};

/// How many rows a list page shows.
const PAGE: u32 = 50;

/// One workflow as the list shows it.
pub(crate) struct WorkflowLine {
    id: i64,
    name: String,
    state: &'static str,
    jobs: i64,
    done: i64,
    failed: i64,
    created: When,
}

#[derive(Template)]
#[template(path = "dashboard/workflows.html")]
struct WorkflowsPage {
    c: Chrome,
    workflows: Vec<WorkflowLine>,
    older: String,
}

/// One batch as the pages show it.
pub(crate) struct BatchLine {
    id: i64,
    name: String,
    tenant: String,
    state: &'static str,
    total: i64,
    pending: i64,
    completed: i64,
    discarded: i64,
    cancelled: i64,
    /// Finished jobs out of all, as a whole percentage.
    percent: i64,
    callback: Option<i64>,
    created: When,
    closed: Option<When>,
    finished: Option<When>,
    cancelled_at: Option<When>,
}

impl BatchLine {
    fn new(row: BatchRow, now: chrono::DateTime<chrono::Utc>) -> Self {
        let finished = row.total - row.pending;
        BatchLine {
            id: row.id.0,
            name: row.name,
            tenant: row.tenant.unwrap_or_default(),
            state: row.state.as_str(),
            total: row.total,
            pending: row.pending,
            completed: row.completed,
            discarded: row.discarded,
            cancelled: row.cancelled,
            percent: if row.total > 0 {
                finished * 100 / row.total
            } else {
                100
            },
            callback: row.callback.map(|id| id.0),
            created: When::new(row.created_at, now),
            closed: row.closed_at.map(|at| When::new(at, now)),
            finished: row.finished_at.map(|at| When::new(at, now)),
            cancelled_at: row.cancelled_at.map(|at| When::new(at, now)),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/batches.html")]
struct BatchesPage {
    c: Chrome,
    batches: Vec<BatchLine>,
    older: String,
}

#[derive(Template)]
#[template(path = "dashboard/batch.html")]
struct BatchPage {
    c: Chrome,
    b: BatchLine,
    /// Whether the viewer may close it: the `enqueue` scope, as the API's close route asks.
    can_close: bool,
}

/// The cursor a list page was asked to start before, if any.
fn cursor(params: &HashMap<String, String>) -> Result<Option<i64>, DashError> {
    match params.get("before").filter(|value| !value.is_empty()) {
        None => Ok(None),
        Some(value) => value.parse::<i64>().map(Some).map_err(|_| {
            DashError::new(
                StatusCode::BAD_REQUEST,
                "Not a cursor",
                format!("{value:?} is not a page cursor (a whole number)."),
            )
        }),
    }
}

/// The newest workflows, each with its state and how many of its jobs finished.
pub(crate) async fn workflows(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let rows = client
        .workflows(WorkflowListParams {
            tenant: None,
            before: cursor(&params)?.map(WorkflowId),
            limit: PAGE,
        })
        .await?;
    let older = match rows.last() {
        Some(last) if rows.len() == PAGE as usize => format!("/workflows?before={}", last.id),
        _ => String::new(),
    };
    let workflows = rows
        .into_iter()
        .map(|row| WorkflowLine {
            id: row.id.0,
            name: row.name,
            state: row.state.as_str(),
            jobs: row.counts.total(),
            done: row.counts.completed,
            failed: row.counts.discarded + row.counts.cancelled,
            created: When::new(row.created_at, now),
        })
        .collect();
    let c = Chrome::new(&viewer, "workflows", "Workflows", &params);
    Ok(render(&WorkflowsPage {
        c,
        workflows,
        older,
    }))
}

/// The newest batches with their counters.
pub(crate) async fn batches(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let rows = client
        .batches(BatchListParams {
            tenant: None,
            state: None,
            before: cursor(&params)?.map(BatchId),
            limit: PAGE,
        })
        .await?;
    let older = match rows.last() {
        Some(last) if rows.len() == PAGE as usize => format!("/batches?before={}", last.id),
        _ => String::new(),
    };
    let batches = rows
        .into_iter()
        .map(|row| BatchLine::new(row, now))
        .collect();
    let c = Chrome::new(&viewer, "batches", "Batches", &params);
    Ok(render(&BatchesPage { c, batches, older }))
}

/// One batch: its state, counters, callback and times.
pub(crate) async fn batch(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, DashError> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(DashError::new(
            StatusCode::BAD_REQUEST,
            "Not a batch id",
            format!("{id:?} is not a batch id (a whole number)."),
        ));
    };
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let Some(row) = client.batch(BatchId(id)).await? else {
        return Err(DashError::new(
            StatusCode::NOT_FOUND,
            "No such batch",
            format!("Batch {id} does not exist."),
        ));
    };
    let c = Chrome::new(&viewer, "batches", format!("Batch {id}"), &params);
    Ok(render(&BatchPage {
        c,
        b: BatchLine::new(row, now),
        can_close: viewer.principal.allows(crate::config::Scope::Enqueue),
    }))
}
