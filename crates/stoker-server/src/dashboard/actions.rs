//! The dashboard's buttons: each posts a form here, is checked (admin scope, form token; the
//! same-origin check ran in the session layer), and calls the [`stoker::Client`] operation
//! the matching `/v1` route calls. Then the browser is sent back where it came from, with a
//! notice, or to the bulk operation it started.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use stoker::{BatchId, BulkAction, BulkFilter, BulkRequest, JobId, WorkflowId};

use crate::config::Scope;

use super::session::{local_path, see_other, Viewer};
use super::{Dash, DashError, Form};

/// Reads an action's form: checks the form token and that the viewer holds `scope`, the
/// scope the API's route for the same action asks.
fn checked(viewer: &Viewer, body: &Bytes, scope: Scope) -> Result<Form, DashError> {
    let form = Form::parse(body);
    viewer.check_csrf(form.get("csrf"))?;
    viewer.require_act(scope)?;
    Ok(form)
}

/// The scope a bulk action needs: deleting is `admin`, the rest `operate`.
fn bulk_scope(action: &BulkAction) -> Scope {
    match action {
        BulkAction::Delete => Scope::Admin,
        _ => Scope::Operate,
    }
}

/// `back` with `done=code` added.
fn back_with(form: &Form, fallback: &str, code: &str) -> Response {
    let back = match form.get("back") {
        Some(back) => local_path(Some(back)),
        None => fallback.to_owned(),
    };
    let sep = if back.contains('?') { '&' } else { '?' };
    see_other(&format!("{back}{sep}done={code}"))
}

fn unknown(action: &str) -> DashError {
    DashError::new(
        StatusCode::NOT_FOUND,
        "No such action",
        format!("There is no action {action:?} here."),
    )
}

/// Who started an operation, as the API records it: the token's name, or `dashboard`.
fn actor(viewer: &Viewer) -> Option<String> {
    Some(viewer.principal.name.clone().map_or_else(
        || "dashboard".to_owned(),
        |name| format!("{name} (dashboard)"),
    ))
}

/// `POST /ui/queues/{name}/pause|resume`.
pub(crate) async fn queue(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = checked(&viewer, &body, Scope::Operate)?;
    let client = dash.app.client_for(&viewer.principal);
    let code = match action.as_str() {
        "pause" => {
            client.pause(&name).await?;
            "paused"
        }
        "resume" => {
            client.resume(&name).await?;
            "resumed"
        }
        other => return Err(unknown(other)),
    };
    Ok(back_with(&form, "/queues", code))
}

fn job_id(id: &str) -> Result<JobId, DashError> {
    id.parse::<i64>().map(JobId).map_err(|_| {
        DashError::new(
            StatusCode::BAD_REQUEST,
            "Not a job id",
            format!("{id:?} is not a job id (a whole number)."),
        )
    })
}

/// `POST /ui/jobs/{id}/retry|cancel|delete`.
pub(crate) async fn job(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, DashError> {
    let scope = if action == "delete" {
        Scope::Admin
    } else {
        Scope::Operate
    };
    let form = checked(&viewer, &body, scope)?;
    let id = job_id(&id)?;
    let client = dash.app.client_for(&viewer.principal);
    match action.as_str() {
        "retry" => {
            client.retry(id).await?;
            Ok(back_with(&form, &format!("/jobs/{id}"), "retried"))
        }
        "cancel" => {
            client.cancel(id).await?;
            Ok(back_with(&form, &format!("/jobs/{id}"), "cancelled"))
        }
        "delete" => {
            client.delete(id).await?;
            // The job's page is gone: back to the list.
            Ok(see_other("/jobs?done=deleted"))
        }
        other => Err(unknown(other)),
    }
}

fn bulk_action(name: &str) -> Result<BulkAction, DashError> {
    Ok(match name {
        "retry" => BulkAction::Retry,
        "cancel" => BulkAction::Cancel,
        "delete" => BulkAction::Delete,
        "discard" => BulkAction::Discard,
        other => return Err(unknown(other)),
    })
}

/// Starts a bulk operation and sends the browser to its progress.
async fn start_bulk(
    dash: &Dash,
    viewer: &Viewer,
    action: BulkAction,
    filter: BulkFilter,
) -> Result<Response, DashError> {
    let mut request = BulkRequest::new(action, filter);
    request.created_by = actor(viewer);
    let client = dash.app.client_for(&viewer.principal);
    let op = client.bulk_start(request).await?;
    Ok(see_other(&format!("/ops/{}", op.id)))
}

/// `POST /ui/jobs/selected`: retry, cancel or delete the ticked jobs (a page at most) as a
/// bulk operation by id, so its progress shows like any other.
pub(crate) async fn selected(
    State(dash): State<Dash>,
    viewer: Viewer,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = Form::parse(&body);
    let action = bulk_action(form.get("action").unwrap_or_default())?;
    let form = checked(&viewer, &body, bulk_scope(&action))?;
    let ids = form
        .all("id")
        .into_iter()
        .map(job_id)
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(DashError::new(
            StatusCode::BAD_REQUEST,
            "Nothing selected",
            "Tick at least one job, or use \"act on all matching\".",
        ));
    }
    if ids.len() > super::pages::PAGE_SIZE as usize {
        return Err(DashError::new(
            StatusCode::BAD_REQUEST,
            "Too many jobs",
            format!(
                "At most {} ticked jobs at once (a page); use \"act on all matching\".",
                super::pages::PAGE_SIZE
            ),
        ));
    }
    let filter = BulkFilter {
        ids,
        ..BulkFilter::default()
    };
    start_bulk(&dash, &viewer, action, filter).await
}

/// `POST /ui/ops`: a bulk operation over every job the search matches.
pub(crate) async fn bulk(
    State(dash): State<Dash>,
    viewer: Viewer,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = Form::parse(&body);
    let action = bulk_action(form.get("action").unwrap_or_default())?;
    let form = checked(&viewer, &body, bulk_scope(&action))?;
    let client = dash.app.client_for(&viewer.principal);
    let criteria = super::pages::read_query(&client, form.get("q").unwrap_or_default())?;
    start_bulk(&dash, &viewer, action, criteria).await
}

/// `POST /ui/ops/{id}/abort`.
pub(crate) async fn abort(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = checked(&viewer, &body, Scope::Operate)?;
    let id: i64 = id.parse().map_err(|_| {
        DashError::new(
            StatusCode::NOT_FOUND,
            "No such operation",
            format!("There is no bulk operation {id:?}."),
        )
    })?;
    let client = dash.app.client_for(&viewer.principal);
    client.bulk_abort(id).await?;
    Ok(back_with(&form, &format!("/ops/{id}"), "aborted"))
}

/// `POST /ui/failures/{fingerprint}/retry|discard`: a bulk operation over the group.
pub(crate) async fn failure_group(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path((fingerprint, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, DashError> {
    checked(&viewer, &body, Scope::Operate)?;
    let client = dash.app.client_for(&viewer.principal);
    let op = match action.as_str() {
        "retry" => {
            client
                .retry_failure_group(&fingerprint, actor(&viewer))
                .await?
        }
        "discard" => {
            client
                .discard_failure_group(&fingerprint, actor(&viewer))
                .await?
        }
        other => return Err(unknown(other)),
    };
    Ok(see_other(&format!("/ops/{}", op.id)))
}

/// `POST /ui/cron/{name}/pause|resume|run-now`.
pub(crate) async fn cron(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = checked(&viewer, &body, Scope::Admin)?;
    let client = dash.app.client_for(&viewer.principal);
    let code = match action.as_str() {
        "pause" => {
            client.cron_pause(&name).await?;
            "cron-paused"
        }
        "resume" => {
            client.cron_resume(&name).await?;
            "cron-resumed"
        }
        "run-now" => {
            client.cron_run_now(&name).await?;
            "cron-run"
        }
        other => return Err(unknown(other)),
    };
    Ok(back_with(&form, "/cron", code))
}

// --- stream workflows ---
/// An id of a batch or workflow from the path: a whole number.
fn whole(what: &str, id: &str) -> Result<i64, DashError> {
    id.parse::<i64>().map_err(|_| {
        DashError::new(
            StatusCode::BAD_REQUEST,
            "Not an id",
            format!("{id:?} is not a {what} id (a whole number)."),
        )
    })
}

/// `POST /ui/batches/{id}/close|cancel`: closing needs `enqueue`, as
/// `POST /v1/batches/{id}/close` does; cancelling `operate`, as `POST /v1/batches/{id}/cancel`.
pub(crate) async fn batch(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, DashError> {
    let scope = match action.as_str() {
        "close" => Scope::Enqueue,
        "cancel" => Scope::Operate,
        other => return Err(unknown(other)),
    };
    let form = checked(&viewer, &body, scope)?;
    let id = BatchId(whole("batch", &id)?);
    let client = dash.app.client_for(&viewer.principal);
    let code = if action == "close" {
        client.batch_close(id).await?;
        "batch-closed"
    } else {
        client.cancel_batch(id).await?;
        "batch-cancelled"
    };
    Ok(back_with(&form, &format!("/batches/{id}"), code))
}

/// `POST /ui/workflows/{id}/cancel`: `operate`, as `POST /v1/workflows/{id}/cancel`.
pub(crate) async fn workflow(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, DashError> {
    if action != "cancel" {
        return Err(unknown(&action));
    }
    let form = checked(&viewer, &body, Scope::Operate)?;
    let id = WorkflowId(whole("workflow", &id)?);
    let client = dash.app.client_for(&viewer.principal);
    client.cancel_workflow(id).await?;
    Ok(back_with(
        &form,
        &format!("/workflows/{id}"),
        "workflow-cancelled",
    ))
}
